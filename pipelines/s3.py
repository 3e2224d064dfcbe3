"""The storage layout on an S3 bucket: whole-object PUTs, write-once creates, bounded retries
and one clear error for refused credentials."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from pipelines.errors import PipelineError

S3_MAX_ATTEMPTS = 10
"""Attempts per S3 request by botocore (standard mode); 5 s to connect, 60 s to answer."""
S3_UNREACHABLE_SECONDS = 60.0
"""How long a request waits out a server that refuses or drops connections or answers 5xx (a
restart): botocore's backoff starts at 50 ms, so its attempts alone can be spent in a second.
Retried with a backoff from 0.5 s doubling to 8 s; then the error reaches the step's retry."""
S3_AUTH_ERRORS = {
    "InvalidAccessKeyId": "the S3 server does not know this access key id",
    "SignatureDoesNotMatch": "the secret key does not match the access key id",
    "AccessDenied": "the credentials are not allowed this operation",
    "InvalidToken": "the session token is invalid",
    "ExpiredToken": "the session token has expired",
    "403": "the server refused the request's credentials",  # a HEAD answer has no body
}
"""S3 error codes no retry can fix: one `PipelineError`, never retried."""


def _server_unavailable(error: BaseException) -> bool:
    """A refused or dropped connection, or a 5xx but 501 (a restarting server): wait it out."""
    from botocore.exceptions import ClientError, ConnectionClosedError
    from botocore.exceptions import ConnectionError as Refused

    if isinstance(error, ClientError):
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 and status != 501
    return isinstance(error, Refused | ConnectionClosedError)


class S3Storage:
    """The layout under ``s3://bucket/prefix``; a PUT of the whole object is atomic in S3.
    Requests retry, bounded; refused credentials are one error naming endpoint and key id."""

    def __init__(self, bucket: str, prefix: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = client
        self._session: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its client and session (a fan-out worker process makes its own)."""
        return {**self.__dict__, "_client": None, "_session": None}

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # lazy: keeps `mlops --help` fast
            from botocore.config import Config

            self._session = boto3.session.Session()
            self._client = self._session.client(
                "s3",
                endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3"),
                config=Config(
                    connect_timeout=5,
                    read_timeout=60,
                    retries={"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS},
                ),
            )
        return self._client

    def _key_id(self) -> str:
        """The access key id the client signs with (an identifier, not a secret)."""
        try:
            return str(self._session.get_credentials().access_key)
        except Exception:  # no session (a given client) or no credentials
            return "(unknown)"

    def _call(
        self, operation: str, key: str, method: str | Callable[..., Any], **kwargs: Any
    ) -> Any:
        """``client.<method>(Bucket=…, **kwargs)`` (or ``method(Bucket=…, **kwargs)``) about
        `key`: waits out an unreachable endpoint, and turns refused or missing credentials into
        one `PipelineError`."""
        from botocore.exceptions import ClientError, NoCredentialsError
        from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

        endpoint = self.client.meta.endpoint_url
        try:
            for attempt in Retrying(
                retry=retry_if_exception(_server_unavailable),
                wait=wait_exponential(multiplier=0.5, max=8),
                stop=stop_after_delay(S3_UNREACHABLE_SECONDS),
                reraise=True,
            ):
                with attempt:
                    call = getattr(self.client, method) if isinstance(method, str) else method
                    return call(Bucket=self.bucket, **kwargs)
        except NoCredentialsError:
            raise PipelineError(
                f"no S3 credentials to {operation} {self.url}/{key} at {endpoint}",
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or give the pod its IAM role)",
            ) from None
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code not in S3_AUTH_ERRORS:
                raise
            raise PipelineError(
                f"S3 at {endpoint} refused to {operation} {self.url}/{key} for access key id "
                f"{self._key_id()}: {code} ({S3_AUTH_ERRORS[code]})",
                "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the pod's IAM role) for "
                "that endpoint",
            ) from None

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def read_bytes(self, key: str) -> bytes:
        try:
            response = self._call("read", key, "get_object", Key=self._key(key))
            body: bytes = response["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"{self.url}/{key}") from None
        return body

    def write_bytes(self, key: str, data: bytes) -> None:
        self._call("write", key, "put_object", Key=self._key(key), Body=data)

    UPLOAD_PART_BYTES = 64 * 2**20
    """Part size of a streamed object's multipart upload (and the size above which it is one)."""

    def _upload(self, **kwargs: Any) -> None:
        """``client.upload_file``, its failure re-raised as the `ClientError` boto3 wraps (so
        `_call` waits out a restarting server and names refused credentials)."""
        from boto3.exceptions import S3UploadFailedError
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import ClientError

        size = self.UPLOAD_PART_BYTES
        config = TransferConfig(multipart_threshold=size, multipart_chunksize=size)
        try:
            self.client.upload_file(Config=config, **kwargs)
        except S3UploadFailedError as error:
            if isinstance(error.__context__, ClientError):
                raise error.__context__ from None
            raise

    @contextlib.contextmanager
    def open_writer(self, key: str) -> Iterator[BinaryIO]:
        """Stream into a temp file of the local spool (``TMPDIR``), uploaded to `key` when the
        block ends cleanly. Above `UPLOAD_PART_BYTES` it is a multipart upload, whose object S3
        shows only once every part is in (a failed upload is aborted): never a partial
        object."""
        with tempfile.NamedTemporaryFile(prefix="mlops-upload-") as out:
            yield out  # type: ignore[misc]
            out.flush()
            self._call("write", key, self._upload, Filename=out.name, Key=self._key(key))

    CREATE_ATTEMPTS = 3
    """A 409 ConditionalRequestConflict (a concurrent write to the key) is retried, as S3
    asks; the retry then succeeds or meets the winner's object (412)."""

    def create(self, key: str, data: bytes) -> None:
        """Write-once: one conditional PUT (``If-None-Match: *``); S3 answers 412 if the key
        exists. A server that does not implement the header answers 501: refused by name,
        never degraded to an overwriting PUT."""
        from botocore.exceptions import ClientError

        for attempt in range(1, self.CREATE_ATTEMPTS + 1):
            try:
                self._call(
                    "create", key, "put_object", Key=self._key(key), Body=data, IfNoneMatch="*"
                )
                return
            except ClientError as error:
                code = str(error.response.get("Error", {}).get("Code", ""))
                if code in {"PreconditionFailed", "412"}:
                    raise FileExistsError(f"{self.url}/{key} exists: it is written once") from None
                if code in {"NotImplemented", "501"}:
                    raise PipelineError(
                        f"the S3 server of {self.url} does not implement conditional writes "
                        "(If-None-Match), which write-once keys need",
                        "use Amazon S3 or a server that answers 412 to an If-None-Match PUT",
                    ) from None
                if code != "ConditionalRequestConflict" or attempt == self.CREATE_ATTEMPTS:
                    raise

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._call("look up", key, "head_object", Key=self._key(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    def list(self, prefix: str) -> list[str]:
        full, strip = self._key(prefix), len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        token: dict[str, str] = {}
        while True:  # one page at a time, each a retried call
            page = self._call("list", prefix, "list_objects_v2", Prefix=full, **token)
            keys += [item["Key"][strip:] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete(self, key: str) -> None:
        self._call("delete", key, "delete_object", Key=self._key(key))
