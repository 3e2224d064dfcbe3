"""Which logged predictions the monitor judges (`pipelines.decisions.trust`), in-process: curated
bars of the synthetic market, rows logged through the real inference log and read back."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bentos.inference_log import Chunk, InferenceLog
from pipelines import layout
from pipelines.data.validate import CURATED_SCHEMA
from pipelines.decisions.inference import read_inference
from pipelines.decisions.trust import (
    FEATURE_ATOL,
    UNTRUSTED_ALERT_SHARE,
    TrustReport,
    trust_reasons,
    verify,
)
from pipelines.ml.features import FeatureConfig, compute_features, compute_labels, feature_names
from pipelines.storage import LocalStorage
from pipelines.synthetic.market import minute_bars

DAY = date(2024, 3, 2)
BAR = 60_000
CONFIG = FeatureConfig(interval="1m", horizon=12)
FEATURES = feature_names(CONFIG)
SYMBOLS = {"BTCUSDT"}


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    """Curated 1m bars of BTCUSDT for the day before `DAY` and `DAY`."""
    storage = LocalStorage(tmp_path / "data")
    for day in (DAY - timedelta(days=1), DAY):
        bars = minute_bars("BTCUSDT", day, seed=3)
        arrays = [
            pa.array(bars[f.name].to_numpy(dtype="int64")).cast(f.type)
            if pa.types.is_timestamp(f.type)
            else pa.array(bars[f.name].to_numpy(), type=f.type)
            for f in CURATED_SCHEMA
        ]
        table = pa.Table.from_arrays(arrays, schema=CURATED_SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        storage.write_bytes(layout.curated("BTCUSDT", "1m", day), sink.getvalue().to_pybytes())
    return storage


def bars_of(day: date) -> pd.DataFrame:
    bars = minute_bars("BTCUSDT", day, seed=3)
    bars["open_time"] = pd.to_datetime(bars["open_time"], unit="ms", utc=True)
    return bars


def client_rows(positions: list[int]) -> tuple[np.ndarray, list[int], np.ndarray]:
    """What an honest client sends for bars of `DAY` (by position in the day): the features of
    each bar computed from only the last warm-up bars, as /predict_klines does; and their labels."""
    bars = pd.concat([bars_of(DAY - timedelta(days=1)), bars_of(DAY)], ignore_index=True)
    w = CONFIG.warmup_bars
    rows, times = [], []
    for p in positions:
        end = 1440 + p + 1
        window = bars.iloc[end - w : end].reset_index(drop=True)
        rows.append(compute_features(window, CONFIG)[FEATURES].iloc[-1].to_numpy(dtype=float))
        times.append(int(bars["open_time"].iloc[end - 1].value // 1_000_000))
    labels = compute_labels(bars, CONFIG.horizon)["label"].iloc[[1440 + p for p in positions]]
    return np.vstack(rows), times, labels.to_numpy()


def logged(
    storage: LocalStorage,
    matrix: np.ndarray,
    times: list[int],
    asked: list[int],
    symbols: list[str] | None = None,
    probability: np.ndarray | None = None,
) -> pd.DataFrame:
    """Rows written by the real inference log (one request per row) and read back as the
    monitor reads them."""
    log = InferenceLog(storage, "local", "7", FEATURES)
    names = symbols or ["BTCUSDT"] * len(times)
    answers = probability if probability is not None else np.linspace(0.1, 0.9, len(times))
    for i, (t, a) in enumerate(zip(times, asked, strict=True)):
        log.append(Chunk(f"r{i}", "predict", a, matrix[[i]], answers[[i]], [names[i]], [t]))
    log.close()
    frame: pd.DataFrame = read_inference(storage, "local", "7").to_pandas()
    return frame


def live(times: list[int], delay_ms: int = 2_000) -> list[int]:
    """Answer times of a client asking right after each bar closed."""
    return [t + BAR + delay_ms for t in times]


def test_honest_live_predictions_are_trusted_with_their_outcomes(storage: LocalStorage) -> None:
    matrix, times, labels = client_rows(list(range(100, 160)))
    rows = logged(storage, matrix, times, live(times))
    trusted, report = verify(storage, rows, FEATURES, CONFIG, "1m", SYMBOLS)
    assert report == TrustReport(keyed_rows=60, trusted_rows=60)
    assert trusted["label"].to_numpy().tolist() == labels.tolist()
    assert np.array_equal(trusted["probability_up"], np.linspace(0.1, 0.9, 60))
    assert trust_reasons(report) == []


@pytest.mark.hostile
def test_crafted_features_for_real_bars_are_untrusted_and_cannot_displace_honest_rows(
    storage: LocalStorage,
) -> None:
    """The attack: a bar answered honestly, then again later with crafted features (the
    latest answer per bar used to stand)."""
    matrix, times, _ = client_rows(list(range(200, 240)))
    crafted = matrix.copy()
    crafted[:, FEATURES.index("log_return_1")] *= -1  # e.g. the sign of the last move flipped
    crafted[:, FEATURES.index("rsi_14")] = 1 - crafted[:, FEATURES.index("rsi_14")]
    rows = logged(
        storage,
        np.vstack([matrix, crafted]),
        times + times,
        live(times) + live(times, delay_ms=30_000),
        probability=np.r_[np.full(40, 0.7), np.full(40, 0.2)],
    )
    trusted, report = verify(storage, rows, FEATURES, CONFIG, "1m", SYMBOLS)
    assert report.untrusted == {"features_differ": 40} and report.trusted_rows == 40
    assert len(trusted) == 40 and set(trusted["probability_up"]) == {0.7}
    assert "features_differ 40" in trust_reasons(report)[0]


def test_the_tolerance_is_the_measured_round_trip_not_more(storage: LocalStorage) -> None:
    """A feature off by the measured float round-trip (~1e-12) matches; one off by 1e-7 —
    far below anything that moves a prediction on purpose, but a forgery — does not."""
    matrix, times, _ = client_rows([300, 301])
    nudged = matrix.copy()
    nudged[0, FEATURES.index("volume_z_48")] += FEATURE_ATOL / 1000
    nudged[1, FEATURES.index("volume_z_48")] += 1e-7
    rows = logged(storage, nudged, times, live(times))
    _, report = verify(storage, rows, FEATURES, CONFIG, "1m", SYMBOLS)
    assert report.trusted_rows == 1 and report.untrusted == {"features_differ": 1}


@pytest.mark.hostile
def test_honest_features_asked_after_the_outcome_are_not_live(storage: LocalStorage) -> None:
    """Selection: the true features of the bars a model got wrong, asked once the outcome is
    known, would make any model look bad. Only answers given by one bar after the close count;
    an answer before the bar opened is refused too (and bounds what the monitor reads)."""
    matrix, times, _ = client_rows([400, 401, 402, 403])
    asked = [
        times[0] + 2 * BAR,  # the deadline itself: live
        times[1] + 2 * BAR + 1,  # a millisecond past it
        times[2] + 13 * BAR,  # once the 12-bar outcome is known
        times[3] - 1,  # before the bar opened
    ]
    rows = logged(storage, matrix, times, asked)
    trusted, report = verify(storage, rows, FEATURES, CONFIG, "1m", SYMBOLS)
    assert report.untrusted == {"asked_late": 2, "asked_before_bar": 1}
    assert trusted["open_time"].tolist() == [pd.Timestamp(times[0], unit="ms", tz="UTC")]


def test_rows_the_curated_klines_cannot_vouch_for(storage: LocalStorage) -> None:
    matrix, times, _ = client_rows([500, 501, 502, 503])
    later = times[3] + 3 * 86_400_000  # a bar not curated yet: pending, judged on a later run
    rows = logged(
        storage,
        matrix,
        [times[0], times[1] + 30_000, times[2], later],
        [*live([times[0]]), times[1] + 30_000 + BAR, *live([times[2], later])],
        symbols=["FAKEUSDT", "BTCUSDT", "BTCUSDT", "BTCUSDT"],
    )
    trusted, report = verify(storage, rows, FEATURES, CONFIG, "1m", SYMBOLS)
    assert report.untrusted == {"unknown_symbol": 1, "off_grid": 1}
    assert report.trusted_rows == 1 and report.pending_rows == 1 and len(trusted) == 1
    # without the champion's feature configuration nothing can be verified: nothing is judged
    trusted, report = verify(storage, rows, FEATURES, None, "1m", SYMBOLS)
    assert trusted.empty and report.untrusted == {"no_feature_config": 4}


def test_the_alert_line_appears_only_above_the_share() -> None:
    below = TrustReport(keyed_rows=100, trusted_rows=95, untrusted_rows=5, untrusted={"x": 5})
    above = TrustReport(keyed_rows=100, trusted_rows=94, untrusted_rows=6, untrusted={"x": 6})
    assert below.untrusted_share == UNTRUSTED_ALERT_SHARE and trust_reasons(below) == []
    assert "6 of 100 checked predictions (6.0%" in trust_reasons(above)[0]


def test_the_monitors_drift_reference_is_recomputed_from_curated_bars(
    storage: LocalStorage,
) -> None:
    """The days before a window, as the monitor compares it with: every curated bar in
    ``start <= open_time < end``, with the features a live client computes for it."""
    from pipelines.decisions.trust import curated_features

    start = pd.Timestamp(DAY, tz="UTC") + pd.Timedelta(hours=6)
    end = start + pd.Timedelta(hours=6)
    reference = curated_features(storage, ["BTCUSDT"], "1m", CONFIG, start, end)
    assert len(reference) == 360 and set(FEATURES) <= set(reference.columns)
    assert reference["open_time"].min() == start and reference["open_time"].max() < end
    matrix, times, _ = client_rows([400, 700])
    for row, t in zip(matrix, times, strict=True):
        found = reference[reference["open_time"] == pd.Timestamp(t, unit="ms", tz="UTC")]
        assert np.allclose(found[FEATURES].to_numpy(dtype=float)[0], row, rtol=0, atol=1e-9)
    # days nothing was curated for give no reference (the monitor then writes no drift report)
    later = pd.Timestamp(DAY + timedelta(days=5), tz="UTC")
    next_day = later + pd.Timedelta(days=1)
    empty = curated_features(storage, ["BTCUSDT"], "1m", CONFIG, later, next_day)
    assert empty.empty
