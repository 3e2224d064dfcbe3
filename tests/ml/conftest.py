"""Fixtures the ML tests share."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pipelines.data.fetch import fetch
from pipelines.data.validate import validate
from pipelines.settings import Settings
from pipelines.storage import LocalStorage
from tests.conftest import MIRROR_DAYS, MIRROR_START, SYMBOLS

END = MIRROR_START + timedelta(days=MIRROR_DAYS - 1)


@pytest.fixture
def curated(mirror_root: Path, tmp_path: Path, settings: Settings) -> LocalStorage:
    """The test mirror's days fetched and validated into a fresh local storage."""
    storage = LocalStorage(tmp_path / "data")
    fetch(settings, storage, mirror_root.as_uri(), SYMBOLS, "1m", MIRROR_START, END)
    validate(storage, SYMBOLS, "1m", MIRROR_START, END, max_share=0.01)
    return storage
