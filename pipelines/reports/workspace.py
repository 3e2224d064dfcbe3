"""The env's Evidently Workspace project: its dashboard panels, created in code the first time the
workspace is used, and the decisions published into it with their outcome.

A decision (gate, monitor, rollback) publishes, once its ledger record is written:

- each report it produced (drift, live quality), re-read from storage (``snapshot.json``) and
  added with the decision's metadata and tags;
- one ``decision`` snapshot: a one-row frame whose columns are the outcome (1 for the outcome
  taken, 0 for the others), each drift report's share and drifted-column count by report kind
  and the champion's evaluation ROC-AUC, so the dashboard charts decisions over time next to
  their evidence. (The per-kind numbers are columns, not tag filters on Evidently's own drift
  metric: the local Workspace's series lookup takes the first panel series matching a metric
  and its labels and drops snapshots whose tags differ, so two series of one metric told apart
  by tags show only the first.)

Every snapshot's metadata carries ``outcome``, ``drift_share``, ``models_compared`` and
``record`` (the ledger record's key), and its tags the env, the report kind, the step and the
outcome, so the Reports list can be filtered by outcome. Evidently is imported inside the
functions (it takes seconds to import).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipelines.reports.store import quiet_evidently
from pipelines.storage import Storage

OUTCOMES = ("promote", "reject", "rollback", "hold")
"""The outcomes charted in "Decisions over time" (a ``failed`` attempt is not a decision)."""
DECISION_KIND = "decision"
"""Report kind (and tag) of the one-row snapshot each decision publishes."""
CHAMPION_AUC = "champion_eval_roc_auc"
DRIFT_SHARE = "drift_share"
TAB = "Decisions"
PANELS = (
    "Dataset drift share over time",
    "Drifted columns",
    "Drift score per feature",
    "Live ROC-AUC per monitor window vs the champion's evaluation",
    "Decisions over time",
)
"""The dashboard's panel titles, in order."""


class DecisionFacts(BaseModel):
    """What the dashboard records of one decision (built from its ledger record)."""

    env: str
    step: str
    """``gate``, ``monitor`` or ``rollback`` (the record's kind)."""
    outcome: str
    record: str
    """The ledger record's storage key."""
    decided_at: datetime
    models_compared: str
    """e.g. ``challenger v5 vs champion v4``, ``champion v5 -> v4``."""
    drift_share: float | None = None
    drift_by_kind: dict[str, tuple[float, int]] = {}
    """Per drift report kind (``data_drift``, ``live_drift``): (drift share, drifted columns)."""
    champion_eval_roc_auc: float | None = None
    reports: list[str] = []
    """Report prefixes (``reports/{env}/{kind}/{timestamp}``) the decision produced."""


def dashboard_panels(features: list[str]) -> list[Any]:
    """The panels of the project's dashboard (`PANELS`); `features`: the drift-tested ones."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import bar_plot_panel, line_plot_panel

    def fact(column: str, legend: str, tags: list[str]) -> PanelMetric:
        return PanelMetric(
            legend=legend, metric="MaxValue", metric_labels={"column": column}, tags=tags
        )

    kinds = (("data_drift", "gate: train vs window"), ("live_drift", "monitor: live window"))
    return [
        line_plot_panel(
            PANELS[0],
            [fact(f"{kind}_share", legend, [DECISION_KIND]) for kind, legend in kinds],
            description="Share of the tested features that drifted, per report kind",
            size="half",
        ),
        bar_plot_panel(
            PANELS[1],
            [fact(f"{kind}_columns", legend, [DECISION_KIND]) for kind, legend in kinds],
            description="How many features drifted, per report kind",
            size="half",
        ),
        line_plot_panel(
            PANELS[2],
            [
                PanelMetric(legend=name, metric="ValueDrift", metric_labels={"column": name})
                for name in features
            ],
            description="Each tested feature's drift score (its stattest's distance or p-value)",
        ),
        line_plot_panel(
            PANELS[3],
            [
                PanelMetric(legend="live ROC-AUC", metric="RocAuc", tags=["live_quality"]),
                fact(CHAMPION_AUC, "champion's evaluation ROC-AUC", [DECISION_KIND, "monitor"]),
            ],
            description="The monitor's latest judged window against the champion's evaluation",
            size="half",
        ),
        bar_plot_panel(
            PANELS[4],
            [fact(outcome, outcome, [DECISION_KIND]) for outcome in OUTCOMES],
            description="One bar per decision: promote, reject, rollback or hold",
            size="half",
            stacked=True,
        ),
    ]


def open_project(workspace: Path, project: str, features: list[str]) -> tuple[Any, Any]:
    """The Workspace at `workspace` and its project `project`, each created if missing; the
    first time (or whenever a panel of `PANELS` is missing) the dashboard panels are added.

    Panels a user added in the UI are kept; a panel of ours is added only when no panel has
    its title.
    """
    from evidently.ui.workspace import Workspace

    quiet_evidently()
    space = Workspace.create(str(workspace))
    # search_project matches the exact name; keep the exact check in case that changes.
    found = [p for p in space.search_project(project) if p.name == project]
    target = found[0] if found else space.create_project(project, description="mlops reports")
    have = {panel.title for panel in space.get_dashboard(target.id).panels}
    for panel in dashboard_panels(features):
        if panel.title not in have:
            target.dashboard.add_panel(panel, tab=TAB)
    _add_feature_series(space, target.id, features)
    return space, target


def _add_feature_series(space: Any, project_id: Any, features: list[str]) -> None:
    """Give the per-feature panel a series for each of `features` it lacks (a report may test
    features the panel was created without)."""
    from evidently.sdk.models import PanelMetric

    model = space.get_dashboard(project_id)
    for panel in model.panels:
        if panel.title != PANELS[2]:
            continue
        charted = {value.metric_labels.get("column") for value in panel.values}
        missing = [name for name in features if name not in charted]
        if missing:
            panel.values.extend(
                PanelMetric(legend=name, metric="ValueDrift", metric_labels={"column": name})
                for name in missing
            )
            space.save_dashboard(project_id, model)


def add_report(
    snapshot: Any, workspace: Path, project: str, name: str, features: list[str]
) -> None:
    """Add a report's `snapshot` (without its data) to `project` as it is, outside a decision
    (``mlops decisions drift-report``): the project and its dashboard are created if missing."""
    space, target = open_project(workspace, project, features)
    space.add_run(target.id, snapshot, include_data=False, name=name)


def snapshot_fields(facts: DecisionFacts, kind: str) -> tuple[dict[str, str], list[str]]:
    """The metadata and tags every snapshot of the decision carries."""
    metadata = {
        "env": facts.env,
        "kind": kind,
        "decision": facts.step,
        "outcome": facts.outcome,
        "drift_share": "" if facts.drift_share is None else f"{facts.drift_share:.4f}",
        "models_compared": facts.models_compared,
        "record": facts.record,
    }
    return metadata, [facts.env, kind, facts.step, facts.outcome]


def publish_decision(
    storage: Storage, facts: DecisionFacts, workspace: Path, project: str, features: list[str]
) -> list[str]:
    """Add the decision's reports and its ``decision`` snapshot to the project (created with its
    dashboard if missing); returns the names of the runs added.

    Raises:
        PipelineError: if a report's stored snapshot is missing or unreadable.
    """
    space, target = open_project(workspace, project, features)
    added = []
    for prefix in facts.reports:
        kind = prefix.rstrip("/").split("/")[-2]
        snapshot = _stored_snapshot(storage, prefix, *snapshot_fields(facts, kind))
        space.add_run(target.id, snapshot, include_data=False, name=prefix)
        added.append(prefix)
    name = f"{facts.record.removesuffix('.json')}"
    space.add_run(target.id, decision_snapshot(facts), include_data=False, name=name)
    return [*added, name]


def decision_snapshot(facts: DecisionFacts) -> Any:
    """The one-row ``decision`` snapshot: the outcome one-hot, the drift share and the
    champion's evaluation ROC-AUC (columns absent when unknown), as ``MaxValue`` metrics."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MaxValue

    quiet_evidently()
    row: dict[str, float] = {o: float(o == facts.outcome) for o in OUTCOMES}
    if facts.drift_share is not None:
        row[DRIFT_SHARE] = facts.drift_share
    for kind, (share, columns) in facts.drift_by_kind.items():
        row[f"{kind}_share"], row[f"{kind}_columns"] = share, float(columns)
    if facts.champion_eval_roc_auc is not None:
        row[CHAMPION_AUC] = facts.champion_eval_roc_auc
    frame = pd.DataFrame([row])
    definition = DataDefinition(numerical_columns=list(row))
    metadata, tags = snapshot_fields(facts, DECISION_KIND)
    return Report([MaxValue(column=c) for c in row]).run(
        current_data=Dataset.from_pandas(frame, data_definition=definition),
        timestamp=facts.decided_at.astimezone(UTC).replace(tzinfo=None),
        metadata=metadata,
        tags=tags,
    )


def _stored_snapshot(
    storage: Storage, prefix: str, metadata: dict[str, str], tags: list[str]
) -> Any:
    """The report's snapshot as stored (``snapshot.json``), with the decision's fields merged
    into its metadata and tags."""
    from evidently.core.report import Snapshot

    from pipelines.errors import PipelineError

    key = f"{prefix}/snapshot.json"
    try:
        document = json.loads(storage.read_bytes(key))
    except (FileNotFoundError, ValueError) as error:
        raise PipelineError(
            f"report snapshot {key} is missing or unreadable ({error.__class__.__name__})",
            "re-run the report; reports written before snapshots were stored cannot be published",
        ) from None
    document["metadata"] = {**document.get("metadata", {}), **metadata}
    document["tags"] = list(dict.fromkeys([*document.get("tags", []), *tags]))
    return Snapshot.load_dict(document)
