"""The metric catalogue (pipelines/metrics.py) and the textfile/state it is kept in."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipelines import metrics
from pipelines.exposition import MetricsFile, State, Update, apply, render

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def test_every_family_is_named_once_with_valid_names_and_labels() -> None:
    names = [m.name for m in metrics.CATALOGUE]
    assert len(names) == len(set(names))
    for metric in metrics.CATALOGUE:
        assert NAME.match(metric.name) and all(NAME.match(label) for label in metric.labels)
        assert metric.name.endswith("_total") == (metric.kind == "counter"), metric.name
        assert bool(metric.buckets) == (metric.kind == "histogram"), metric.name
        assert metric.help and "le" not in metric.labels
    every_constant = [v for v in vars(metrics).values() if isinstance(v, metrics.Metric)]
    assert set(every_constant) == set(metrics.CATALOGUE), "a family outside the catalogue"


def test_by_name_finds_a_histograms_series_and_refuses_an_unknown_name() -> None:
    assert metrics.by_name("mlops_step_duration_seconds_bucket") is metrics.STEP_DURATION
    assert metrics.by_name("mlops_step_result_total") is metrics.STEP_RESULT
    with pytest.raises(KeyError, match="mlops_step_result_total_bucket is not in the metric"):
        metrics.by_name("mlops_step_result_total_bucket")


def parsed(text: bytes) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_counters_add_up_histograms_accumulate_and_gauges_keep_the_last_value() -> None:
    step = {"pipeline": "training", "step": "fetch"}
    state: State = {}
    for seconds in (3.0, 45.0):
        update = Update().inc(
            metrics.STEP_RESULT, pipeline="training", step="fetch", status="Succeeded"
        )
        update.observe(metrics.STEP_DURATION, seconds, **step).set(metrics.STEP_RETRIES, 1, **step)
        state = apply(state, update)
    samples = parsed(render(state, {m.name: m for m in metrics.CATALOGUE}))
    key = (("pipeline", "training"), ("status", "Succeeded"), ("step", "fetch"))
    assert samples["mlops_step_result_total"][key] == 2
    buckets = samples["mlops_step_duration_seconds_bucket"]
    assert buckets[(("le", "5.0"), ("pipeline", "training"), ("step", "fetch"))] == 1
    assert buckets[(("le", "60.0"), ("pipeline", "training"), ("step", "fetch"))] == 2
    assert buckets[(("le", "+Inf"), ("pipeline", "training"), ("step", "fetch"))] == 2
    assert (
        samples["mlops_step_duration_seconds_sum"][(("pipeline", "training"), ("step", "fetch"))]
        == 48
    )
    assert samples["mlops_step_retries"][(("pipeline", "training"), ("step", "fetch"))] == 1


def test_a_replaced_family_loses_the_series_it_no_longer_has() -> None:
    first = apply(
        {}, Update().replace(metrics.LIVE_ROC_AUC, [({"window": "0"}, 0.6), ({"window": "1"}, 0.5)])
    )
    second = apply(first, Update().replace(metrics.LIVE_ROC_AUC, [({"window": "0"}, 0.55)]))
    assert second["mlops_live_roc_auc"] == {'["0"]': 0.55}


def test_a_label_the_catalogue_does_not_declare_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"mlops_step_retries takes labels \['pipeline', 'step'\]"):
        apply({}, Update().set(metrics.STEP_RETRIES, 1, pipeline="training"))


def test_parallel_writers_lose_no_increment_and_leave_no_partial_file(tmp_path: Path) -> None:
    target = MetricsFile(tmp_path / "metrics")

    def write(step: str) -> None:
        for _ in range(20):
            target.update(
                Update().inc(metrics.STEP_RESULT, status="Failed", pipeline="p", step=step)
            )

    threads = [threading.Thread(target=write, args=(f"s{k}",)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samples = parsed(target.textfile.read_bytes())["mlops_step_result_total"]
    assert sorted(samples.values()) == [20.0] * 4
    assert sorted(p.name for p in target.directory.iterdir()) == [
        ".lock",
        "mlops.json",
        "mlops.prom",
    ]
