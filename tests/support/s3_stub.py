"""An `S3Storage` pointed at a closed local port with test credentials, for in-process tests
that stub its client (botocore's Stubber): no request ever leaves the process."""

from __future__ import annotations

import pytest

from pipelines.storage import S3Storage

ENDPOINT = "http://127.0.0.1:9"
KEY_ID = "AKIATESTKEYID000"
SECRET = "the-secret-that-must-never-show"
"""A secret no error or log line may show."""


def stub_s3(monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    """The curated bucket's storage under ``v1``, its credentials set through the environment."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", ENDPOINT)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return S3Storage("curated", "v1")
