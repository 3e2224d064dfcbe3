"""Ledger records are created once by the store itself (finding 10): no check that can go stale
between a writer's look and its write, and only ``decisions/{env}/*.json`` are records."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber

from pipelines import layout
from pipelines.decisions import ledger
from pipelines.decisions.ledger import Decision
from pipelines.storage import LocalStorage, S3Storage
from tests.support.records import make_decision


def decision(**changes: object) -> Decision:
    return make_decision(**{"env": "dev", "reasons": ["ours"], **changes})


class RivalStorage(LocalStorage):
    """Another writer creates `key` as soon as this one touches it: after a look (which then
    said "free"), or just before a create."""

    def __init__(self, root: Path, key: str, rival: bytes) -> None:
        super().__init__(root)
        self.key, self.rival = key, rival

    def _rival_writes(self) -> None:
        if not super().exists(self.key):
            super().write_bytes(self.key, self.rival)

    def exists(self, key: str) -> bool:
        found = super().exists(key)
        if key == self.key:
            self._rival_writes()
        return found

    def create(self, key: str, data: bytes) -> None:
        if key == self.key:
            self._rival_writes()
        super().create(key, data)


@pytest.mark.hostile
def test_a_reserved_key_taken_meanwhile_is_refused_not_overwritten(tmp_path: Path) -> None:
    key = layout.decision("dev", "20261130T000000000000Z", "gate")
    rival = decision(reasons=["theirs"], key=key).model_dump_json().encode()
    storage = RivalStorage(tmp_path, key, rival)
    with pytest.raises(FileExistsError, match="records are append-only"):
        ledger.write(storage, decision(key=key))
    assert storage.read_bytes(key) == rival  # the record already there is intact


def test_an_unreserved_record_takes_the_next_key_when_its_key_is_taken(tmp_path: Path) -> None:
    class Taken(LocalStorage):
        """The first key reserved is created by another writer before ours lands."""

        taken: str | None = None

        def create(self, key: str, data: bytes) -> None:
            if self.taken is None:
                self.taken = key
                super().create(key, b'{"theirs": true}')
            super().create(key, data)

    storage = Taken(tmp_path)
    written = ledger.write(storage, decision())
    assert storage.taken is not None and written.key != storage.taken
    assert storage.read_bytes(storage.taken) == b'{"theirs": true}'
    assert Decision.model_validate_json(storage.read_bytes(written.key)).reasons == ["ours"]


def test_on_s3_a_record_is_one_conditional_put() -> None:
    client = boto3.client(
        "s3",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # a stub: no request leaves the process
    )
    storage = S3Storage("bucket", "v1", client=client)
    key = layout.decision("dev", "20261130T000000000000Z", "gate")
    with Stubber(client) as stub:
        # no look first: the PUT itself is the check (If-None-Match: *)
        stub.add_response(
            "put_object",
            {"ETag": '"e"'},
            {"Bucket": "bucket", "Key": f"v1/{key}", "Body": ANY, "IfNoneMatch": "*"},
        )
        written = ledger.write(storage, decision(key=key))
        stub.assert_no_pending_responses()
    assert written.key == key


def test_intents_below_the_ledger_are_not_records(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    record = ledger.write(storage, decision())
    intent = f"{layout.decision_intents_prefix('dev')}{record.key.rsplit('/', 1)[1]}"
    storage.write_bytes(intent, b'{"intent": "promote v2"}')  # no Decision: read_all must skip
    assert ledger.is_record("dev", record.key) and not ledger.is_record("dev", intent)
    assert [d.key for d in ledger.read_all(storage, "dev")] == [record.key]
    storage.delete(intent)  # working state: deletable, unlike a record (see the bucket policy)
    assert not storage.exists(intent)
