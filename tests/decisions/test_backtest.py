"""`mlops decisions backtest`: a small matrix in CI (the full one runs from the CLI; its figures
are in benchmarks/README.md), the bounds, and a planted broken setting caught by the targets."""

from __future__ import annotations

import json

import pytest
from scipy.stats import binom

from pipelines.backtest.matrix import Rate, ScenarioResult, run_matrix, upper_bound
from pipelines.backtest.targets import targets
from pipelines.settings import Settings
from tests.conftest import run_cli

KEYS = {
    "name",
    "seeds",
    "promotion_rate",
    "false_promotion_rate",
    "false_rollback_rate",
    "missed_rollback_rate",
    "detection_delay_windows",
    "drift_false_alarm_rate",
}


def test_upper_bound_is_one_sided_clopper_pearson() -> None:
    # ~150 clean windows are what a 2% bound needs; 100 are not enough
    assert upper_bound(0, 150) == pytest.approx(1 - 0.05 ** (1 / 150))
    assert upper_bound(0, 150) <= 0.02 < upper_bound(0, 100)  # type: ignore[operator]
    for events, trials in ((1, 40), (7, 60), (20, 20)):
        bound = upper_bound(events, trials)
        assert bound is not None
        if events < trials:
            assert binom.cdf(events, trials, bound) == pytest.approx(0.05, abs=1e-9)
    assert upper_bound(0, 0) is None


def test_a_target_is_met_only_when_its_bound_is() -> None:
    def healthy(events: int, trials: int) -> list[ScenarioResult]:
        rate = Rate(events=events, trials=trials)
        return [ScenarioResult(name="healthy-champion", seeds=trials, false_rollback=rate)]

    assert targets(healthy(0, 200))[0].status == "met"
    assert targets(healthy(0, 60))[0].status == "point estimate only"
    assert targets(healthy(9, 60))[0].status == "not met"


@pytest.mark.integration
def test_small_matrix_from_the_cli(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = run_cli(
        [
            "decisions",
            "backtest",
            "--scenarios",
            "no-change,broken-unit,worse-challenger,healthy-champion",
            "--seeds",
            "2",
            "--json",
        ],
        {"MLOPS_HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads(done.stdout)
    assert set(document) == {"settings_digest", "scenarios"}
    rows = {row["name"]: row for row in document["scenarios"]}
    assert all(set(row) == KEYS and row["seeds"] == 2 for row in rows.values())
    assert rows["no-change"]["drift_false_alarm_rate"] is not None
    assert rows["no-change"]["promotion_rate"] is None
    assert rows["broken-unit"]["detection_delay_windows"] == 1.0  # caught in its first window
    assert rows["worse-challenger"]["promotion_rate"] is not None
    assert rows["worse-challenger"]["drift_false_alarm_rate"] is None
    assert rows["healthy-champion"]["false_rollback_rate"] is not None


@pytest.mark.integration
def test_a_planted_broken_setting_is_caught() -> None:
    # CUSUMs whose units are a tenth of a healthy window's noise and whose line is a hair above
    # zero roll a healthy champion back on its first unlucky window
    broken = Settings.model_construct(
        monitor_windows=1,
        monitor_auc_sd=0.002,
        monitor_log_loss_sd=0.002,
        monitor_cusum_threshold=0.01,
    )
    results = run_matrix(broken, ["healthy-champion"], seeds=3)
    (goal,) = targets(results)
    assert goal.name.startswith("false rollback")
    assert goal.status == "not met", goal
    sane = run_matrix(Settings.model_construct(), ["healthy-champion"], seeds=3)
    assert targets(sane)[0].events < goal.events


def test_the_power_bounds_use_the_generators_volatility_process() -> None:
    import numpy as np

    from pipelines.backtest.power import VOL_INNOVATION, VOL_PERSISTENCE
    from pipelines.synthetic.market import _daily_path

    log_vol = np.log(_daily_path(3, "BTCUSDT", None)[1])
    slope, intercept = np.polyfit(log_vol[:-1], log_vol[1:], 1)
    residual = log_vol[1:] - (slope * log_vol[:-1] + intercept)
    assert slope == pytest.approx(VOL_PERSISTENCE, abs=0.01)
    assert residual.std() == pytest.approx(VOL_INNOVATION, rel=0.03)


def test_vol_x2_is_out_of_reach_against_the_training_rows() -> None:
    from pipelines.backtest.power import degradation_power, vol_shift_power

    against_training, trailing = vol_shift_power(2.0, 0.02, 2, 3)
    # even an oracle reading each day's volatility exactly: ~37% against the pooled training
    # rows (a stable day is routinely x1.8), ~97% against the days just before the window
    assert against_training.power < 0.5 < 0.95 < trailing.power
    assert against_training.needed > 4 and trailing.needed < 2
    # power grows with the effect and reaches 95% exactly at `needed`
    weak = degradation_power(0.1, 0.02, 3)
    assert weak.power < 0.1
    assert degradation_power(weak.needed, 0.02, 3).power == pytest.approx(0.95)


def test_the_markdown_names_only_the_seed_counts_it_ran() -> None:
    from pipelines.backtest.targets import markdown

    healthy = ScenarioResult(
        name="healthy-champion", seeds=150, false_rollback=Rate(events=2, trials=150)
    )
    alone = markdown([healthy], "d", "x", "2026-12-01", 150, 150, 0, 2)
    assert "Seeds: 150 per scenario; 2 symbols." in alone and "no-change" not in alone
    drift = ScenarioResult(name="no-change", seeds=38, drift_false_alarm=Rate(events=1, trials=152))
    both = markdown([drift, healthy], "d", "x", "2026-12-01", 6, 38, 0, 2)
    assert "Seeds: 38 per no-change drift scenario (4 windows each), 6 per other scenario;" in both
