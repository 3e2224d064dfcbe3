"""`promtool test rules`: every alert fires on synthetic series made to fire it, and stays
silent on series just short of it (production windows; Debian's promtool 2.42)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines import metrics as m
from pipelines.observability import rules

TEAM = {"team": "mlops"}
PREDICT = 'endpoint="/predict"'


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}" if inner else name, "values": values}


def requests(ok: float, failed: float, minutes: int, client_errors: float = 0) -> list[Any]:
    """Request counters growing by `ok` (200), `failed` (500), `client_errors` (400) a minute."""
    found = [
        series(m.REQUESTS.name, f"0+{ok}x{minutes}", endpoint="/predict", http_response_code="200"),
        series(
            m.REQUESTS.name, f"0+{failed}x{minutes}", endpoint="/predict", http_response_code="500"
        ),
    ]
    if client_errors:
        found.append(
            series(
                m.REQUESTS.name,
                f"0+{client_errors}x{minutes}",
                endpoint="/predict",
                http_response_code="400",
            )
        )
    return found


def latency(fast: float, slow: float, minutes: int, code: str = "200") -> list[Any]:
    """A latency histogram growing by `fast` answers under 0.25 s and `slow` ones in (0.5, 1],
    all with status `code`."""
    bucket = m.REQUEST_DURATION.series("_bucket")
    total = fast + slow
    labels = {"endpoint": "/predict", "http_response_code": code}
    return [
        series(bucket, f"0+{fast}x{minutes}", le="0.25", **labels),
        series(bucket, f"0+{fast}x{minutes}", le="0.5", **labels),
        series(bucket, f"0+{total}x{minutes}", le="1.0", **labels),
        series(bucket, f"0+{total}x{minutes}", le="+Inf", **labels),
        series(m.REQUEST_DURATION.series("_count"), f"0+{total}x{minutes}", **labels),
    ]


def slow_failures(fast: float, slow: float, minutes: int) -> list[Any]:
    """Fast 200s, and slow answers that all failed (503): the latency SLI does not count those
    (the availability SLI does)."""
    return latency(fast, 0, minutes) + latency(0, slow, minutes, code="503")


Case = tuple[list[Any], list[Any], str, dict[str, str], int]
"""(series that fire, series that do not, evaluation time, labels of the fired alert, the
series' interval in minutes)."""


def cases() -> dict[str, Case]:
    hour = 3600
    step = {"pipeline": "training", "step": "fetch"}
    found: dict[str, Case] = {
        "MlopsTrainingStale": (
            [series(m.TRAINING_LAST_SUCCESS.name, "0x120")],
            [series(m.TRAINING_LAST_SUCCESS.name, f"{2 * hour}x120")],  # 25 h old at 27 h
            "27h",
            {"severity": "warning"},
            15,
        ),
        "MlopsServingModelStale": (
            # an env that does not train, serving a model that became a candidate at t=0
            [series(m.SERVING_MODEL_CREATED.name, "0x2400")],
            [  # the same age where training is recorded: MlopsTrainingStale's business
                series(m.SERVING_MODEL_CREATED.name, "0x2400"),
                series(m.TRAINING_LAST_SUCCESS.name, "0x2400"),
            ],
            f"{rules.SERVING_MODEL_MAX_AGE_HOURS + 1}h",
            {"severity": "warning"},
            5,
        ),
        "MlopsStepFailing": (
            [series(m.STEP_RESULT.name, "0+1x30", status="Failed", **step)],
            [
                series(m.STEP_RESULT.name, "0 0 0 0 0 1x25", status="Failed", **step),
                series(m.STEP_RESULT.name, "0+5x30", status="Succeeded", **step),
            ],
            "20m",
            {"severity": "warning", **step},
            1,
        ),
        "MlopsDriftOverLimit": (
            [
                series(m.DRIFT_SHARE.name, "0.6x10", kind="gate"),
                series(m.DRIFT_SHARE_LIMIT.name, "0.5x10", kind="gate"),
            ],
            [
                series(m.DRIFT_SHARE.name, "0.3x10", kind="gate"),
                series(m.DRIFT_SHARE_LIMIT.name, "0.5x10", kind="gate"),
            ],
            "5m",
            {"severity": "warning", "kind": "gate"},
            1,
        ),
        "MlopsLiveAucBelowFloor": (
            [
                series(m.LIVE_ROC_AUC.name, "0.45x90", window="0"),
                series(m.LIVE_ROC_AUC.name, "0.60x90", window="1"),
                series(m.LIVE_ROC_AUC_FLOOR.name, "0.50x90"),
            ],
            [  # an older window under the floor is history, not an alert
                series(m.LIVE_ROC_AUC.name, "0.55x90", window="0"),
                series(m.LIVE_ROC_AUC.name, "0.40x90", window="1"),
                series(m.LIVE_ROC_AUC_FLOOR.name, "0.50x90"),
            ],
            "70m",
            {"severity": "critical"},
            1,
        ),
        "MlopsServingErrors": (
            requests(100, 5, 30),
            [  # 0.5% 5xx; 4xx are the caller's; the runner's own RPC is not a request
                *requests(100, 0.5, 30, client_errors=50),
                series(
                    m.REQUESTS.name,
                    "0+50x30",
                    endpoint="/predict_proba",
                    http_response_code="503",
                    runner_name="market-direction-runner",
                ),
            ],
            "20m",
            {"severity": "critical"},
            1,
        ),
        "MlopsServingLatencyP99": (
            latency(90, 10, 30),
            slow_failures(90, 10, 30),  # as many slow answers, but failed ones
            "25m",
            {"severity": "warning"},
            1,
        ),
        "MlopsInferenceLogDropping": (
            [series(m.INFERENCE_LOG_DROPPED.name, "0 0 0 5 5 5 5 5", model_version="3")],
            [series(m.INFERENCE_LOG_DROPPED.name, "0x8", model_version="3")],
            "5m",
            {"severity": "warning", "model_version": "3"},
            1,
        ),
        "MlopsChampionChanged": (
            [series(m.CHAMPION_VERSION.name, "1 1 1 2 2 2", model="market-direction")],
            [series(m.CHAMPION_VERSION.name, "2x6", model="market-direction")],
            "5m",
            {"severity": "info", "model": "market-direction"},
            1,
        ),
    }
    minutes = {"5m": 5, "30m": 30, "1h": 60, "2h": 120, "6h": 360, "1d": 1440, "3d": 4320}
    budgets = {
        "Availability": round(1 - rules.AVAILABILITY_OBJECTIVE, 6),
        "Latency": round(1 - rules.LATENCY_OBJECTIVE, 6),
    }
    for long, short, factor, duration, severity in rules.Windows().burn:
        every = max(1, minutes[short] // 6)  # six samples in the short window
        span = minutes[long] + minutes.get(duration, 0) + 6 * every
        for title, budget in budgets.items():
            over, under = 1.5 * factor * budget, 0.5 * factor * budget
            grow = requests if title == "Availability" else latency
            quiet = grow(100 * every * (1 - under), 100 * every * under, span // every)
            if title == "Latency":  # and slow failures over the factor do not burn it either
                quiet += latency(0, 100 * every * over, span // every, code="500")
            found[f"MlopsServing{title}BudgetBurn{long.title()}"] = (
                grow(100 * every * (1 - over), 100 * every * over, span // every),
                quiet,
                f"{span - every}m",
                {"severity": severity},
                every,
            )
    return found


def expand(annotations: dict[str, str], labels: dict[str, str]) -> dict[str, str]:
    """The annotations as Prometheus renders them (the templates use only ``$labels``)."""
    found = {}
    for key, text in annotations.items():
        for name, value in labels.items():
            text = text.replace(f"{{{{ $labels.{name} }}}}", value)
        assert "{{" not in text, text
        found[key] = text
    return found


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    assert sorted(cases()) == sorted(a.name for a in rules.alerts(rules.Windows()))


@pytest.mark.integration
def test_promtool_fires_each_alert_on_its_case_and_not_on_the_near_miss(tmp_path: Path) -> None:
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules.rule_groups(), sort_keys=False))
    annotations = {a.name: a.rule()["annotations"] for a in rules.alerts(rules.Windows())}
    by_interval: dict[int, list[Any]] = {}
    for alert, (fire, quiet, at, labels, every) in cases().items():
        fired = {
            "exp_labels": {**labels, **TEAM},
            "exp_annotations": expand(annotations[alert], labels),
        }
        for input_series, expected in ((fire, [fired]), (quiet, [])):
            by_interval.setdefault(every, []).append(
                {
                    "name": f"{alert} {'fires' if expected else 'stays silent'}",
                    "interval": f"{every}m",
                    "input_series": input_series,
                    "alert_rule_test": [
                        {"eval_time": at, "alertname": alert, "exp_alerts": expected}
                    ],
                }
            )
    # promtool evaluates the rules every evaluation_interval up to each eval_time: days of
    # series are evaluated at their own sampling interval (one file per interval)
    files = []
    for every, tests in sorted(by_interval.items()):
        unit = tmp_path / f"tests-{every}m.yaml"
        document = {
            "rule_files": [str(rule_file)],
            "evaluation_interval": f"{every}m",
            "tests": tests,
        }
        unit.write_text(yaml.safe_dump(document))
        files.append(str(unit))
    done = subprocess.run(
        ["promtool", "test", "rules", *files], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert (done.stdout + done.stderr).count("SUCCESS") == len(files)
