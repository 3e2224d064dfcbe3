"""The serving contract and the inference log, without a server (the server tests are in
test_serving.py)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from bentos.contract import (
    Kline,
    klines_frame,
    klines_request_model,
    predict_request_model,
    rows_matrix,
)
from bentos.inference_log import Chunk, InferenceLog
from pipelines.archive import KLINE_COLUMNS
from pipelines.decisions.inference import read_inference
from pipelines.storage import LocalStorage
from pipelines.synthetic.market import day_bars

FEATURES = ("a", "b")


def problems(model: type[BaseModel], body: bytes) -> list[tuple[str, ...]]:
    """Validate `body` as BentoML does (``model_validate_json``); each problem as
    (loc joined by '.', type, msg)."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(body)
    return [(".".join(map(str, e["loc"])), e["type"], e["msg"]) for e in caught.value.errors()]


def test_rows_become_a_matrix_in_model_column_order() -> None:
    request: Any = predict_request_model(FEATURES).model_validate_json(
        b'{"rows": [{"b": 2, "a": 1.5}, {"a": -1, "b": 0.25, "symbol": "BTCUSDT"}]}'
    )
    assert rows_matrix(request.rows, FEATURES).tolist() == [[1.5, 2.0], [-1.0, 0.25]]
    assert [r.symbol for r in request.rows] == [None, "BTCUSDT"]


@pytest.mark.parametrize(
    ("body", "where", "kind"),
    [
        (b'{"rows": [{"a": 1}]}', "rows.0.b", "missing"),
        (b'{"rows": [{"a": 1, "b": 2}, {"a": 1, "b": 2, "c": 3}]}', "rows.1.c", "extra_forbidden"),
        (b'{"rows": [{"a": 1, "b": "2"}]}', "rows.0.b", "float_type"),
        (b'{"rows": [{"a": true, "b": 2}]}', "rows.0.a", "float_type"),
        (b'{"rows": [{"a": null, "b": 2}]}', "rows.0.a", "float_type"),
        (b'{"rows": [{"a": NaN, "b": 2}]}', "rows.0.a", "finite_number"),
        (b'{"rows": [{"a": 1, "b": -Infinity}]}', "rows.0.b", "finite_number"),
        (b'{"rows": [{"a": 1, "b": 1e999}]}', "rows.0.b", "finite_number"),
        (b'{"rows": []}', "rows", "too_short"),
        (b'{"rows": {"a": 1}}', "rows", "list_type"),
        (b'{"data": []}', "rows", "missing"),
        (b'{"rows": [{"a": 1, "b": 2}], "x": 1}', "x", "extra_forbidden"),
        (b'{"rows": [' + b",".join([b'{"a": 1, "b": 2}'] * 11) + b"]}", "rows", "too_long"),
        (b"rows=1", "", "json_invalid"),
        # hostile: a bar time past 2100 once failed every inference-log flush (issue 15 #6)
        (
            b'{"rows": [{"a": 1, "b": 2, "open_time": 1000000000000000000000000000000}]}',
            "rows.0.open_time",
            "less_than_equal",
        ),
    ],
)
def test_each_bad_row_names_what_is_wrong(body: bytes, where: str, kind: str) -> None:
    found = problems(predict_request_model(FEATURES, max_rows=10), body)
    assert (where, kind) in [(loc, t) for loc, t, _ in found]


def klines(n: int, start_ms: int = 1_709_251_200_000) -> list[dict[str, Any]]:
    bars = day_bars("BTCUSDT", date(2024, 3, 1), "1m", seed=7).head(n)
    rows = []
    for values in bars.itertuples(index=False):
        row = dict(zip(KLINE_COLUMNS, values, strict=True))
        rows.append(
            {
                k: (int(v) if k in ("open_time", "close_time", "count") else float(v))
                for k, v in row.items()
            }
        )
    assert rows[0]["open_time"] == start_ms
    return rows


def test_kline_model_has_the_archive_columns() -> None:
    assert list(Kline.model_fields) == list(KLINE_COLUMNS)


def test_klines_become_bars() -> None:
    model = klines_request_model("1m", 50)
    request: Any = model.model_validate_json(
        json.dumps({"symbol": "BTCUSDT", "klines": klines(60)})
    )
    bars = klines_frame(request.klines)
    assert len(bars) == 60 and str(bars["open_time"].dt.tz) == "UTC"
    assert bars["close"].tolist() == [k["close"] for k in klines(60)]


@pytest.mark.parametrize(
    ("mutate", "where", "text"),
    [
        (lambda k: k[:10], "klines", "at least 50"),
        (lambda k: [k[0], k[2], k[1], *k[3:]], "klines", "bar 2: out of order"),
        (lambda k: [*k[:5], {**k[5], "close": "1"}, *k[6:]], "klines.5.close", "number"),
        (
            lambda k: [*k[:5], {**k[5], "open_time": k[5]["open_time"] + 1}, *k[6:]],
            "klines",
            "bar 5: open_time",
        ),
        (lambda k: [*k[:3], {**k[3], "high": 1.0}, *k[4:]], "klines", "bar 3: need low"),
        (lambda k: [*k[:3], {**k[3], "extra": 1.0}, *k[4:]], "klines.3.extra", "not permitted"),
        (lambda k: [*k[:3], {**k[3], "volume": None}, *k[4:]], "klines.3.volume", "number"),
        # hostile: a far-future bar answered 500 (OutOfBoundsDatetime) (issue 15 #11)
        (lambda k: [*k[:-1], {**k[-1], "open_time": 10**19}], "klines.59.open_time", "less than"),
    ],
)
def test_bad_klines_name_the_bar(mutate, where: str, text: str) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"symbol": "BTCUSDT", "klines": mutate(klines(60))})
    found = problems(klines_request_model("1m", 50), body.encode())
    assert any(loc == where and text in msg for loc, _, msg in found), found


class FlakyStorage(LocalStorage):
    """Fails the first `failures` writes."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    def write_bytes(self, key: str, data: bytes) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("storage is down")
        super().write_bytes(key, data)


def chunk(request_id: str, n: int) -> Chunk:
    rng = np.random.default_rng(len(request_id))
    return Chunk(
        request_id,
        "/predict",
        1_709_251_200_000,
        rng.normal(size=(n, 2)),
        rng.uniform(size=n),
        ["BTCUSDT"] * n,
        [None] * n,
    )


def test_failed_writes_are_counted_retried_and_lose_nothing(tmp_path: Path) -> None:
    storage = FlakyStorage(tmp_path, failures=2)
    logger = InferenceLog(storage, "local", "3", FEATURES, flush_seconds=60)
    logger.append(chunk("r1", 3))
    assert logger.flush() is False
    logger.append(chunk("r22", 2))
    assert logger.flush() is False
    assert logger.stats.write_failures == 2 and logger.stats.pending == 5
    logger.close()
    table = read_inference(storage, "local", "3")
    assert table.num_rows == 5 and logger.stats.rows_written == 5 and logger.stats.pending == 0
    assert table.column("request_id").to_pylist() == ["r1"] * 3 + ["r22"] * 2
    assert set(table.column_names) >= {
        "timestamp",
        "model_version",
        "a",
        "b",
        "probability_up",
        "direction",
        "symbol",
        "open_time",
    }
    keys = storage.list("inference/")
    assert len(keys) == 1 and keys[0].startswith("inference/local/3/2024-03-01/")


def test_bounded_memory_while_storage_is_down(tmp_path: Path) -> None:
    storage = FlakyStorage(tmp_path, failures=10**6)
    logger = InferenceLog(storage, "local", "3", FEATURES, max_pending_rows=10)
    for k in range(6):
        logger.append(chunk(f"r{k}", 4))
        logger.flush()
    assert logger.stats.pending <= 10 and logger.stats.rows_dropped == 24 - logger.stats.pending


def test_background_writer_flushes_on_its_own(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    logger = InferenceLog(storage, "local", "3", FEATURES, flush_seconds=0.05)
    logger.start()
    logger.append(chunk("r1", 3))
    import time

    deadline = time.monotonic() + 5
    while not storage.list("inference/") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert read_inference(storage, "local").num_rows == 3
    logger.close()
    assert logger.stats.files_written == 1 and logger.stats.write_failures == 0
