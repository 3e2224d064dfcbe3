"""S3 storage on failure: bounded retries, and refused credentials as one clear error naming
the endpoint and the access key id — never the secret (in-process, stubbed: no request leaves)."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from pipelines.errors import PipelineError
from pipelines.storage import S3_MAX_ATTEMPTS, S3Storage
from tests.support.s3_stub import ENDPOINT, KEY_ID, SECRET, stub_s3


@pytest.fixture
def storage(monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    return stub_s3(monkeypatch)


def test_the_client_retries_a_bounded_number_of_times(storage: S3Storage) -> None:
    config = storage.client.meta.config
    assert config.retries["mode"] == "standard"
    assert config.retries["total_max_attempts"] == S3_MAX_ATTEMPTS
    assert config.connect_timeout <= 10 and config.read_timeout <= 120


@pytest.mark.parametrize(
    ("code", "operation"),
    [
        ("SignatureDoesNotMatch", "write"),
        ("InvalidAccessKeyId", "write"),
        ("AccessDenied", "read"),
        ("403", "exists"),  # a HEAD answer has no body: only its status
    ],
)
def test_refused_credentials_name_the_endpoint_and_key_id_never_the_secret(
    storage: S3Storage, code: str, operation: str
) -> None:
    method = {"write": "put_object", "read": "get_object", "exists": "head_object"}[operation]
    with Stubber(storage.client) as stub:
        stub.add_client_error(method, service_error_code=code, http_status_code=403)
        with pytest.raises(PipelineError) as caught:
            if operation == "write":
                storage.write_bytes("runs/r1/params.json", b"{}")
            elif operation == "read":
                storage.read_bytes("runs/r1/params.json")
            else:
                storage.exists("runs/r1/params.json")
    message = str(caught.value)
    assert ENDPOINT in message and KEY_ID in message and code in message, message
    assert "s3://curated/v1/runs/r1/params.json" in message
    assert SECRET not in message and "AWS_SECRET_ACCESS_KEY" in message  # how to fix it


def test_a_server_error_is_waited_out_and_other_errors_pass_through(storage: S3Storage) -> None:
    from botocore.exceptions import ClientError

    with Stubber(storage.client) as stub:
        for _ in range(2):  # a restarting server answers 500 for a while
            stub.add_client_error("put_object", "InternalError", http_status_code=500)
        stub.add_response("put_object", {})  # the server is back
        storage.write_bytes("runs/r1/params.json", b"{}")
        stub.assert_no_pending_responses()
    with Stubber(storage.client) as stub:
        stub.add_client_error("put_object", "InvalidRequest", http_status_code=400)
        with pytest.raises(ClientError, match="InvalidRequest"):  # not retried: no stub left
            storage.write_bytes("runs/r1/params.json", b"{}")
