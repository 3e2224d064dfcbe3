"""The backtest on a real archive (`mlops decisions backtest --source`,
`pipelines.backtest.archive`): an archive in the data.binance.vision layout goes through the
pipeline's own fetch, validate and features steps, and each trial's seed picks its first day.

The archive here is the synthetic market written as a mirror: the same generator the
synthetic trials read directly, so a trial on the archive must see what the synthetic trial of
the mirror's seed sees."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.backtest.archive import archive_rows, check_seeds, prepare
from pipelines.backtest.matrix import BY_NAME, run_matrix, settings_digest
from pipelines.backtest.trials import Market, market_rows, run_trial
from pipelines.errors import PipelineError
from pipelines.ml.features import FeatureConfig, feature_names
from pipelines.settings import Settings
from pipelines.synthetic.mirror import write_mirror
from tests.conftest import run_cli

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
START = date(2024, 1, 1)  # the synthetic trials' first day (`pipelines.backtest.trials.START`)
DAYS = 20  # a monitor trial reads 7 training + 7 evaluation + 4 live days: seeds 0 and 1
SEED = 7


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    write_mirror(root, SYMBOLS, "1m", START, DAYS, seed=SEED)
    return root


def _settings(home: Path) -> Settings:
    return Settings(home=home, symbols=SYMBOLS, fetch_backoff_initial=0.01)


@pytest.mark.integration
def test_an_archive_trial_sees_what_the_synthetic_trial_of_its_seed_sees(
    archive: Path, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    path = prepare(settings, archive.as_uri(), START, date(2024, 1, DAYS))
    assert path.is_file() and (tmp_path / "backtest-archive") in path.parents
    days = DAYS - 2
    found = archive_rows(str(path), 0, days).set_index(["open_time", "symbol"])
    direct = market_rows(SYMBOLS, SEED, days, None, None).set_index(["open_time", "symbol"])
    # the same rows (the archive also knows the labels of the last hours the synthetic slice
    # cuts off), features equal to the archive's float32 and its prices' ticks
    common = direct.index.intersection(found.index)
    assert len(common) == len(direct) and len(found) - len(direct) < 2 * 60 * len(SYMBOLS)
    names = feature_names(FeatureConfig())
    np.testing.assert_allclose(
        found.loc[common, names].to_numpy(float),
        direct.loc[common, names].to_numpy(float),
        rtol=1e-5,
        atol=1e-6,
    )
    assert (found.loc[common, "label"] == direct.loc[common, "label"]).mean() > 0.999
    # seed 1 is the next day on
    later = archive_rows(str(path), 1, days)
    assert later["open_time"].min().normalize() == pd.Timestamp("2024-01-02", tz="UTC")
    # and a trial on the archive decides as the synthetic trial of the mirror's seed
    healthy = BY_NAME["healthy-champion"]
    on_archive = run_trial(healthy, 0, settings, Market(tuple(SYMBOLS), str(path)))
    synthetic = run_trial(healthy, SEED, settings)
    assert on_archive.extra["recorded"] == pytest.approx(synthetic.extra["recorded"], abs=0.005)
    assert len(on_archive.extra["auc_deficit"]) == len(synthetic.extra["auc_deficit"]) == 4


@pytest.mark.integration
def test_the_cli_replays_an_archive(archive: Path, tmp_path: Path) -> None:
    done = run_cli(
        [
            "decisions",
            "backtest",
            "--source",
            archive.as_uri(),
            "--start",
            "2024-01-01",
            "--end",
            f"2024-01-{DAYS}",
            "--scenarios",
            "healthy-champion",
            "--seeds",
            "2",
            "--json",
        ],
        {"MLOPS_HOME": str(tmp_path), "MLOPS_SYMBOLS": ",".join(SYMBOLS)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(done.stdout)["scenarios"]
    assert row["name"] == "healthy-champion" and row["seeds"] == 2
    assert row["false_rollback_rate"] is not None
    # a third seed would need day 20 of an archive of 19 whole days (the last one's final
    # hour has no label): one clear error, before any trial
    args = ["--source", archive.as_uri(), "--start", "2024-01-01", "--end", f"2024-01-{DAYS}"]
    more = run_cli(
        ["decisions", "backtest", *args, "--scenarios", "healthy-champion", "--seeds", "3"],
        {"MLOPS_HOME": str(tmp_path), "MLOPS_SYMBOLS": ",".join(SYMBOLS)},
    )
    assert more.returncode != 0
    assert "holds 19 whole days" in more.stderr, more.stderr[-800:]
    assert "use at most 2 seeds" in more.stderr and "Traceback" not in more.stderr


def test_a_shift_scenario_needs_the_synthetic_market() -> None:
    with pytest.raises(PipelineError, match="on a real archive: vol-x2"):
        run_matrix(Settings.model_construct(), ["vol-x2"], seeds=1, archive="unused.parquet")


@pytest.mark.integration
def test_source_needs_its_range_and_the_range_needs_source(tmp_path: Path) -> None:
    env = {"MLOPS_HOME": str(tmp_path)}
    alone = run_cli(["decisions", "backtest", "--source", "file:///nowhere", "--seeds", "1"], env)
    assert alone.returncode != 0 and "--source needs --start and --end" in alone.stderr
    stray = run_cli(["decisions", "backtest", "--start", "2024-01-01", "--seeds", "1"], env)
    assert stray.returncode != 0 and "only go with --source" in stray.stderr


def test_seeds_beyond_the_archive_are_refused_before_any_trial(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=5 * 1440, freq="1min", tz="UTC")
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"open_time": times, "symbol": "BTCUSDT", "label": 1}).to_parquet(path)
    assert len(archive_rows(str(path), 1, 3)) == 3 * 1440
    assert archive_rows(str(path), 1, 3)["open_time"].min() == times[1440]
    assert len(archive_rows(str(path), 2, 3)) == 3 * 1440  # five whole days: the last one too
    with pytest.raises(PipelineError, match="holds 5 whole days"):
        archive_rows(str(path), 3, 3)
    check_seeds(str(path), {"healthy-champion": 3}, 0, {"healthy-champion": 3})
    with pytest.raises(PipelineError, match="use at most 3 seeds from --first-seed 0"):
        check_seeds(str(path), {"healthy-champion": 3}, 0, {"healthy-champion": 4})
    with pytest.raises(PipelineError, match="use at most 1 seeds from --first-seed 2"):
        check_seeds(str(path), {"healthy-champion": 3}, 2, {"healthy-champion": 2})
    # run_matrix checks before it starts a single trial (a monitor trial reads 18 days)
    with pytest.raises(PipelineError, match="healthy-champion reads 18 days"):
        run_matrix(Settings.model_construct(), ["healthy-champion"], seeds=1, archive=str(path))


def test_an_archive_s_figures_never_pass_for_the_synthetic_market() -> None:
    settings = Settings.model_construct()
    synthetic = settings_digest(settings)
    assert settings_digest(settings, "file:///a 2024-01-01..2024-06-30") != synthetic
    assert settings_digest(settings, "file:///a 2024-01-01..2024-06-29") != settings_digest(
        settings, "file:///a 2024-01-01..2024-06-30"
    )
