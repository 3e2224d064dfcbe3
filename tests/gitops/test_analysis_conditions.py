"""The serving canary's analysis conditions, evaluated as Argo Rollouts evaluates them: the exact
``successCondition``/``failureCondition`` strings of platform/base/serving/analysistemplate.yaml
through the expr-lang subset of `tests.support.expr`. The three verdicts the analysis Job
pushes (`VERDICT_VALUES`) reach the three outcomes — pass succeeds, degraded fails, inconclusive
and a missing or stale push are Inconclusive (a pause, never a pass) — and a canary with no
traffic is Inconclusive on the serving metrics too. The evaluator itself is tested first."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml

from pipelines.decisions.canary import VERDICT_VALUES
from tests.gitops.test_overlays import PLATFORM
from tests.support.expr import ExprError, evaluate, phase

TEMPLATES = PLATFORM / "base" / "serving" / "analysistemplate.yaml"
OUTCOMES = {"pass": "Successful", "degraded": "Failed", "inconclusive": "Inconclusive"}


def metric(name: str) -> dict[str, Any]:
    documents = [d for d in yaml.safe_load_all(TEMPLATES.read_text()) if d]
    (found,) = [m for d in documents for m in d["spec"]["metrics"] if m["name"] == name]
    return dict(found)


# -- the evaluator -----------------------------------------------------------------------------


def test_and_short_circuits_so_a_guarded_index_of_an_empty_vector_is_false() -> None:
    assert evaluate("len(result) > 0 && result[0] <= 0.01", []) is False
    assert evaluate("len(result) > 0 && result[0] <= 0.01", [0.002]) is True
    with pytest.raises(ExprError, match="index out of range: 0"):
        evaluate("result[0] <= 0.01", [])


def test_precedence_negation_and_numbers() -> None:
    assert evaluate("1 == 1 || 1 == 2 && 1 == 3", []) is True  # && binds tighter
    assert evaluate("(1 == 1 || 1 == 2) && 1 == 3", []) is False
    assert evaluate("!(result[0] == -1) and not false", [1.0]) is True
    assert evaluate("result[1] >= .5", [0.0, 0.5]) is True
    assert evaluate("isNaN(result[0])", [math.nan]) is True


@pytest.mark.parametrize(
    ("condition", "error"),
    [
        ("result[0]", "expected bool, but got float"),
        ("len(result) > 0 && avg(result) < 1", "unknown name 'avg'"),
        ("result[0] <= 0.01 ;", "cannot read"),
        ("(result[0] <= 0.01", "expected \\)"),
    ],
)
def test_what_the_subset_cannot_evaluate_is_an_error(condition: str, error: str) -> None:
    with pytest.raises(ExprError, match=error):
        evaluate(condition, [0.5])


def test_phases_follow_argo_s_rule_for_missing_conditions() -> None:
    only_success = {"successCondition": "result[0] == 1"}
    assert phase(only_success, [0.0]) == "Failed"  # no failure condition: not a success fails
    only_failure = {"failureCondition": "result[0] == -1"}
    assert phase(only_failure, [0.0]) == "Successful"
    assert phase({}, [0.0]) == "Successful"
    assert phase({"successCondition": "result[0] == 1"}, []) == "Error"


# -- the template's conditions -----------------------------------------------------------------


@pytest.mark.parametrize("verdict", sorted(VERDICT_VALUES))
def test_each_pushed_verdict_reaches_its_outcome(verdict: str) -> None:
    assert phase(metric("live-quality"), [VERDICT_VALUES[verdict]]) == OUTCOMES[verdict]


def test_no_fresh_push_is_inconclusive_never_a_pass() -> None:
    assert phase(metric("live-quality"), []) == "Inconclusive"
    assert phase(metric("live-quality"), [1.0, 1.0]) == "Inconclusive"  # ambiguous: two series


def test_a_condition_that_passed_an_inconclusive_verdict_would_be_caught() -> None:
    planted = {**metric("live-quality"), "successCondition": "len(result) == 1 && result[0] >= 0"}
    assert phase(planted, [VERDICT_VALUES["inconclusive"]]) != OUTCOMES["inconclusive"]


@pytest.mark.parametrize("name", ["error-ratio", "p99"])
def test_the_serving_metrics_pass_fail_and_wait(name: str) -> None:
    judged = metric(name)
    assert phase(judged, [0.004]) == "Successful"
    assert phase(judged, [0.01]) == "Successful"  # at most 1%
    assert phase(judged, [0.1]) == "Failed"
    assert phase(judged, []) == "Inconclusive"  # no traffic on the canary yet
    assert phase(judged, [math.nan]) == "Inconclusive"  # 0/0
    assert judged["failureLimit"] == 0 and judged.get("inconclusiveLimit", 0) == 0
