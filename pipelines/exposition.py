"""Metrics of short-lived processes: kept in a Prometheus textfile, or pushed to a Pushgateway.

A step ends before anything scrapes it, so what it measures is written somewhere that outlives
it: locally the textfile ``$MLOPS_HOME/metrics/mlops.prom`` (node-exporter's textfile collector
or any static file server can expose it; `mlops run` and `mlops step` keep it), on the cluster
the Pushgateway (``MLOPS_METRICS_PUSHGATEWAY``). Families and their names come from
`pipelines.metrics`; this module only keeps values.

The textfile is the rendering of a small JSON state beside it (``mlops.json``): counters add up
and histograms accumulate across runs there, gauges keep their last value, and a family given
whole (`Update.replace`) loses the series it no longer has. Updates take a file lock, so steps
running in parallel (threads or processes) never lose one another's figures; both files are
replaced atomically, so a reader never sees half of one.
"""

from __future__ import annotations

import fcntl
import json
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.metrics import Metric
from pipelines.storage import write_file_atomic

Labels = Mapping[str, str]
_LOCK = threading.Lock()


def _key(metric: Metric, labels: Labels) -> str:
    unknown = set(labels) ^ set(metric.labels)
    if unknown:
        raise ValueError(
            f"{metric.name} takes labels {list(metric.labels)}, not {sorted(labels)}: "
            "fix the caller or the catalogue (pipelines/metrics.py)"
        )
    return json.dumps([str(labels[name]) for name in metric.labels])


@dataclass
class Update:
    """Changes to one state, applied together under the file lock."""

    sets: list[tuple[Metric, dict[str, str], float]] = field(default_factory=list)
    incs: list[tuple[Metric, dict[str, str], float]] = field(default_factory=list)
    observations: list[tuple[Metric, dict[str, str], float]] = field(default_factory=list)
    replaced: dict[str, tuple[Metric, list[tuple[dict[str, str], float]]]] = field(
        default_factory=dict
    )

    def set(self, metric: Metric, value: float, **labels: str) -> Update:
        """A gauge's (or a counter recomputed from a source of truth) value."""
        self.sets.append((metric, labels, float(value)))
        return self

    def inc(self, metric: Metric, amount: float = 1.0, **labels: str) -> Update:
        """Add to a counter."""
        self.incs.append((metric, labels, float(amount)))
        return self

    def observe(self, metric: Metric, value: float, **labels: str) -> Update:
        """One observation of a histogram."""
        self.observations.append((metric, labels, float(value)))
        return self

    def replace(self, metric: Metric, samples: Iterable[tuple[dict[str, str], float]]) -> Update:
        """The family's series are exactly `samples` (others it had are dropped)."""
        self.replaced[metric.name] = (metric, [(dict(k), float(v)) for k, v in samples])
        return self

    def families(self) -> dict[str, Metric]:
        """Every family this update touches, by name."""
        touched = [m for m, _, _ in (*self.sets, *self.incs, *self.observations)]
        touched += [m for m, _ in self.replaced.values()]
        return {m.name: m for m in touched}


State = dict[str, dict[str, Any]]
"""Family name → label-values key (JSON list) → value, or a histogram's buckets/sum/count."""


def apply(state: State, update: Update) -> State:
    """`state` with `update` applied (a new dict; `state` is unchanged)."""
    new: State = {name: dict(series) for name, series in state.items()}
    for name, (metric, samples) in update.replaced.items():
        new[name] = {_key(metric, labels): value for labels, value in samples}
    for metric, labels, value in update.sets:
        new.setdefault(metric.name, {})[_key(metric, labels)] = value
    for metric, labels, amount in update.incs:
        family = new.setdefault(metric.name, {})
        key = _key(metric, labels)
        family[key] = float(family.get(key, 0.0)) + amount
    for metric, labels, value in update.observations:
        family = new.setdefault(metric.name, {})
        key = _key(metric, labels)
        bounds = [*metric.buckets, math.inf]
        held = family.get(key) or {"buckets": [0] * len(bounds), "sum": 0.0, "count": 0}
        held = {
            "buckets": [
                n + (value <= bound) for n, bound in zip(held["buckets"], bounds, strict=True)
            ],
            "sum": held["sum"] + value,
            "count": held["count"] + 1,
        }
        family[key] = held
    return new


def _families(state: State, metrics: Mapping[str, Metric]) -> Iterator[Any]:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    for name in sorted(state):
        metric = metrics[name]
        labels = list(metric.labels)
        family: Any
        if metric.kind == "counter":
            family = CounterMetricFamily(metric.family, metric.help, labels=labels)
        elif metric.kind == "gauge":
            family = GaugeMetricFamily(metric.family, metric.help, labels=labels)
        else:
            family = HistogramMetricFamily(metric.family, metric.help, labels=labels)
        for key, value in sorted(state[name].items()):
            values = json.loads(key)
            if metric.kind == "histogram":
                bounds = [*metric.buckets, math.inf]
                buckets = [
                    ("+Inf" if b == math.inf else repr(float(b)), float(n))
                    for b, n in zip(bounds, value["buckets"], strict=True)
                ]
                family.add_metric(values, buckets=buckets, sum_value=value["sum"])
            else:
                family.add_metric(values, value)
        yield family


def registry(state: State, metrics: Mapping[str, Metric]) -> Any:
    """A prometheus_client registry holding `state` (to render or to push)."""
    from prometheus_client import CollectorRegistry

    class _Held:
        def collect(self) -> Iterator[Any]:
            return _families(state, metrics)

    held = CollectorRegistry(auto_describe=False)
    held.register(_Held())  # type: ignore[arg-type]
    return held


def render(state: State, metrics: Mapping[str, Metric]) -> bytes:
    """`state` in the Prometheus text exposition format."""
    from prometheus_client import generate_latest

    rendered: bytes = generate_latest(registry(state, metrics))
    return rendered


class MetricsFile:
    """The textfile ``<dir>/mlops.prom`` and its state ``<dir>/mlops.json``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.textfile = directory / "mlops.prom"
        self.state_file = directory / "mlops.json"

    def read_state(self) -> State:
        """The kept state (empty if none yet)."""
        try:
            loaded: State = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        return loaded

    def update(self, update: Update) -> State:
        """Apply `update` under the lock; rewrite the state and the textfile; the new state."""
        from pipelines.metrics import CATALOGUE

        self.directory.mkdir(parents=True, exist_ok=True)
        metrics = {m.name: m for m in CATALOGUE} | update.families()
        with _LOCK, open(self.directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = apply(self.read_state(), update)
                write_file_atomic(self.state_file, json.dumps(state, sort_keys=True).encode())
                write_file_atomic(self.textfile, render(state, metrics))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return state


def push(url: str, job: str, grouping: Mapping[str, str], update: Update) -> None:
    """Replace the Pushgateway group (`job`, `grouping`) with what `update` sets.

    Only set and replaced values are pushed: a pushed counter of a short-lived process would
    restart from zero in every pod, so what a pod counts is left to Argo's template metrics
    (`pipelines.metrics`, origin ``argo``).
    """
    from prometheus_client import push_to_gateway

    state = apply({}, Update(sets=update.sets, replaced=update.replaced))
    push_to_gateway(
        url,
        job=job,
        registry=registry(state, update.families()),
        grouping_key=dict(grouping),
        timeout=10,
    )
