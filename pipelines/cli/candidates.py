"""``mlops candidates …``: one verified artifact promoted dev → staging → prod.

Run each command with the settings of the env it acts in: a move with the target env's
(``MLOPS_ENV``, storage, MLflow, GitOps), an approval or rejection with the env whose ledger
records it. ``MLOPS_CANDIDATE_STAGES`` names the chain.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pipelines.cli.common import JsonFlag, load_settings, open_settings_storage
from pipelines.cli.console import out, print_json

candidates_app = typer.Typer(
    help="Candidates: one artifact promoted through the envs (soak, approval, rollback).",
    no_args_is_help=True,
)
CandidateArg = Annotated[
    str, typer.Argument(help="Candidate id (or a unique prefix of 6+ digits).")
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded in the ledger).")]
ByOpt = Annotated[
    str | None,
    typer.Option("--by", help="Who (default: git config user.email / user.name, else $USER)."),
]


def _cell(state: dict[str, Any]) -> str:
    if state["state"] == "absent":
        return "—"
    version = f"v{state['version']} " if state["version"] is not None else ""
    hours = f" {state['served_hours']:.1f}h" if state["served_hours"] is not None else ""
    approved = " approved" if state["approvals"] else ""
    return f"{version}{state['state']}{hours}{approved}"


@candidates_app.command("list")
def candidates_list(json_out: JsonFlag = False) -> None:
    """Every candidate of the chain and where it stands in each env."""
    from rich.table import Table

    from pipelines.candidates.views import overview

    settings = load_settings()
    document = overview(settings, open_settings_storage(settings))
    if json_out:
        print_json(document)
        return
    if not document["candidates"]:
        out.print("no candidates yet: the gate creates one when it promotes (where envs train)")
        return
    table = Table(title="candidates")
    for column in ("candidate", "origin", "created", *document["stages"]):
        table.add_column(column)
    for row in document["candidates"]:
        cells = [_cell(row["envs"][env]) for env in document["stages"]]
        table.add_row(row["id"], row["origin"], row["created_at"][:19], *cells)
    out.print(table)


@candidates_app.command("show")
def candidates_show(candidate: CandidateArg, json_out: JsonFlag = False) -> None:
    """One candidate: its digests, lineage and every event in every env."""
    from pipelines.candidates.views import show

    settings = load_settings()
    document = show(settings, open_settings_storage(settings), candidate)
    if json_out:
        print_json(document)
        return
    record = document["record"]
    out.print(f"candidate {record['id']}: {record['model_name']} {document['origin']}")
    out.print(f"  model archive sha256 {record['model_sha256']}")
    out.print(f"  serving image {record['serving_image']}@{record['serving_image_digest']}")
    out.print(f"  run {record['mlflow_run_id']}, dataset {record['dataset_hash']},")
    out.print(f"  commit {record['git_commit']}, gate record {record['gate_record']}")
    for env, state in document["envs"].items():
        out.print(f"  {env}: {_cell(state)}")
        for event in state["events"]:
            by = f" by {event['by']}" if event["by"] else ""
            why = "; ".join(event["reasons"])
            out.print(f"    {event['when'][:19]} {event['action']}{by}: {why}")


@candidates_app.command("promote")
def candidates_promote(
    candidate: CandidateArg,
    to: Annotated[str, typer.Option("--to", help="The env it moves into (this env).")],
    json_out: JsonFlag = False,
) -> None:
    """Move a candidate into the next env: copied, checked, registered and pinned there."""
    from pipelines.candidates.move import promote

    settings = load_settings()
    result = promote(settings, open_settings_storage(settings), candidate, to)
    if json_out:
        print_json(result.model_dump())
        return
    verb = "already in" if result.reused else "moved into"
    out.print(
        f"candidate {result.candidate} {verb} {result.env} as version {result.version} "
        f"(record {result.record}, commit {(result.gitops_commit or '')[:10]})"
    )


def _judge(verdict: str, candidate: str, reason: str, by: str | None, json_out: bool) -> None:
    from pipelines.candidates.move import judge

    settings = load_settings()
    record = judge(settings, open_settings_storage(settings), candidate, verdict, reason, by)
    if json_out:
        print_json(record.model_dump())
        return
    out.print(
        f"candidate {record.inputs['candidate']} {verdict.removesuffix('e')}ed in {record.env} by "
        f"{record.inputs['by']} (record {record.key})"
    )


@candidates_app.command("approve")
def candidates_approve(
    candidate: CandidateArg, reason: ReasonOpt, by: ByOpt = None, json_out: JsonFlag = False
) -> None:
    """Approve a candidate for this env (prod needs one before a move)."""
    _judge("approve", candidate, reason, by, json_out)


@candidates_app.command("reject")
def candidates_reject(
    candidate: CandidateArg, reason: ReasonOpt, by: ByOpt = None, json_out: JsonFlag = False
) -> None:
    """Reject a candidate for good: it never moves again, from any env."""
    _judge("reject", candidate, reason, by, json_out)
