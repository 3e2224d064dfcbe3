"""The canary's own series, checked by ``promtool test rules`` (Debian's 2.42) on the generated
rules and the serving AnalysisTemplate's exact queries:

- a canary failing 10% of its requests beside stable pods that dilute it to under 1% overall:
  the per-template error ratio of the canary's template is over the analysis limit while the
  service-wide ratio (what the analysis read before) and its alert stay under theirs; the same
  for slow answers;
- a healthy canary that never answered a 5xx has a 0 error ratio, not none (no series of a
  status code BentoML never returned: an absent ratio would leave its analysis inconclusive);
- the live-quality query returns the pushed verdict of the judged version while the push is
  fresh, and nothing once it is older than the Job's deadline (an earlier step's verdict never
  answers for this one)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines import metrics as m
from pipelines.observability import rules
from tests.gitops.test_analysis_conditions import TEMPLATES, metric
from tests.observability.test_promtool_units import series
from tests.support.expr import phase

HASH = rules.POD_TEMPLATE_LABEL
STABLE, CANARY, HEALTHY = "6c9f7b8d5", "7d4b9c6f8", "5f8d6c7b9"
PER_MINUTE = {STABLE: (1000, 0), CANARY: (90, 10), HEALTHY: (100, 0)}
"""Answers a minute per template: (ok, failed or slow). The canary fails 10% of its own."""
MINUTES = 30


def traffic() -> list[dict[str, str]]:
    """Each template's request counters and latency histogram; 5xx series only where any 5xx
    was answered (as BentoML creates them), slow answers only on the canary."""
    found = []
    bucket, count = m.REQUEST_DURATION.series("_bucket"), m.REQUEST_DURATION.series("_count")
    for template, (ok, bad) in PER_MINUTE.items():
        labels = {"endpoint": "/predict", HASH: template}
        grow = f"0+{ok}x{MINUTES}"
        found.append(series(m.REQUESTS.name, grow, http_response_code="200", **labels))
        if bad:
            every = f"0+{bad}x{MINUTES}"
            found.append(series(m.REQUESTS.name, every, http_response_code="500", **labels))
        answered = {"http_response_code": "200", **labels}
        total = f"0+{ok + bad}x{MINUTES}"
        found.append(series(bucket, grow, le="0.5", **answered))
        found.append(series(bucket, total, le="+Inf", **answered))
        found.append(series(count, total, **answered))
    return found


def query(name: str) -> str:
    """A metric's query of the AnalysisTemplate, its arguments filled in as the controller does."""
    text: str = metric(name)["provider"]["prometheus"]["query"]
    return text.replace("{{args.model-version}}", "7").replace("{{args.canary-hash}}", CANARY)


def test_the_analysis_judges_the_canary_and_would_have_passed_it_service_wide() -> None:
    """The arithmetic of the promtool case: 10% on the canary, under 1% overall."""
    ok = sum(o for o, _ in PER_MINUTE.values())
    bad = sum(b for _, b in PER_MINUTE.values())
    overall = bad / (ok + bad)
    assert overall < rules.ERROR_RATIO_LIMIT < 0.1
    assert phase(metric("error-ratio"), [overall]) == "Successful"  # what the old query read
    assert phase(metric("error-ratio"), [0.1]) == "Failed"
    assert f'{HASH}="{{{{args.canary-hash}}}}"' in TEMPLATES.read_text()


@pytest.mark.integration
def test_promtool_the_canary_is_caught_and_the_verdict_is_read_only_when_fresh(
    tmp_path: Path,
) -> None:
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules.rule_groups(), sort_keys=False))
    over = f" > bool {rules.ERROR_RATIO_LIMIT}"
    per_template = rules.template_ratio_name("errors", "5m")
    slow_per_template = rules.template_ratio_name("slow", "5m")

    def samples(value: int, **labels: str) -> dict[str, Any]:
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return {"labels": f"{{{inner}}}", "value": value}

    canary_case = {
        "name": "a canary failing 10% is caught where the service-wide ratio is diluted",
        "interval": "1m",
        "input_series": traffic(),
        "promql_expr_test": [
            {
                "expr": f"{query('error-ratio')}{over}",
                "eval_time": "20m",
                "exp_samples": [samples(1, **{HASH: CANARY})],
            },
            {
                "expr": f"{query('p99')}{over}",
                "eval_time": "20m",
                "exp_samples": [samples(1, **{HASH: CANARY})],
            },
            {
                "expr": f"{per_template}{over}",
                "eval_time": "20m",
                "exp_samples": [
                    samples(0, **{HASH: STABLE}),
                    samples(1, **{HASH: CANARY}),
                    samples(0, **{HASH: HEALTHY}),  # no 5xx series: 0, not absent
                ],
            },
            {
                "expr": f"{slow_per_template}{{{HASH}='{HEALTHY}'}} == bool 0",
                "eval_time": "20m",
                "exp_samples": [samples(1, **{HASH: HEALTHY})],
            },
            {
                "expr": f"mlops:serving_errors:ratio_rate5m{over}",
                "eval_time": "20m",
                "exp_samples": [samples(0)],
            },
            {
                "expr": f"mlops:serving_slow:ratio_rate5m{over}",
                "eval_time": "20m",
                "exp_samples": [samples(0)],
            },
        ],
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": "MlopsServingErrors", "exp_alerts": []}
        ],
    }
    pushed = {"job": m.PUSHGATEWAY_JOBS["canary"], "model_version": "7"}
    verdict_case = {
        "name": "the pushed verdict is read while fresh",
        "interval": "1m",
        "input_series": [
            # version 7's verdict pushed at t=0 (push_time_seconds is the push's Unix time);
            # version 8 pushed at t=10m, so a verdict of another version never answers for 7
            series(m.CANARY_VERDICT.name, "-1x30", **pushed),
            series("push_time_seconds", "0x30", **pushed),
            series(m.CANARY_VERDICT.name, "1x30", **{**pushed, "model_version": "8"}),
            series("push_time_seconds", "600x30", **{**pushed, "model_version": "8"}),
        ],
        "promql_expr_test": [
            {
                "expr": query("live-quality"),
                "eval_time": "10m",
                "exp_samples": [{**samples(-1, **pushed), "labels": _labels(pushed)}],
            },
            {"expr": query("live-quality"), "eval_time": "16m", "exp_samples": []},
        ],
    }
    unit = tmp_path / "tests.yaml"
    unit.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rule_file)],
                "evaluation_interval": "1m",
                "tests": [canary_case, verdict_case],
            }
        )
    )
    done = subprocess.run(
        ["promtool", "test", "rules", str(unit)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert "SUCCESS" in done.stdout + done.stderr


def _labels(labels: dict[str, str]) -> str:
    return m.CANARY_VERDICT.name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
