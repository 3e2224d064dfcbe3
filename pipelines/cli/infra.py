"""``mlops infra …``: the Pulumi stacks, planned offline under Pulumi's mocks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.cli.common import JsonFlag
from pipelines.cli.console import err, out, print_json

infra_app = typer.Typer(
    help="Pulumi stacks, planned offline under Pulumi's mocks.", no_args_is_help=True
)


@infra_app.command("plan")
def infra_plan(
    stack: Annotated[
        str, typer.Option("--stack", help="dev, staging or prod (stacks/Pulumi.<stack>.yaml).")
    ],
    program: Annotated[
        Path | None, typer.Option(help="Another Pulumi Python program's directory.")
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config-file", help="Stack config file (default: <program>/Pulumi.<stack>.yaml)."
        ),
    ] = None,
    update: Annotated[
        bool,
        typer.Option(
            "--update", help="Mock an update instead of a preview (computed values known)."
        ),
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Run the Pulumi program in-process under mocks (no CLI, no cloud); list its resources and
    the policy pack's verdict. Exit 1 on a config error or a mandatory violation.

    The pack runs in its offline ``explore`` mode: placeholders of the example stacks are
    warnings here (``--json``: ``.policy.warnings``, ``.policy.placeholders``), while ``pulumi
    preview``/``up`` refuse them."""
    from stacks.offline.plan import plan_stack  # lazily: pipelines does not import stacks

    with err.status(f"planning stack {stack} under mocks …"):
        result = plan_stack(stack, program, config_file, preview=not update)
    policy = result.policy
    if json_out:
        document = result.document()
        if program is None:  # our own stacks: the serving image GitOps pins comes from here
            document["images"].update(serving_image(stack))
        print_json(document)
        for note in policy.get("notes", []):
            err.print(f"[yellow]warning:[/] {note}", soft_wrap=True, highlight=False)
    else:
        _show_plan(result, stack)
    if policy.get("mandatory"):
        err.print(
            f"[red]error:[/] {policy['mandatory']} mandatory policy violation(s) in stack {stack}"
        )
        raise typer.Exit(1)


@infra_app.command("ci-targets")
def infra_ci_targets(
    stack: Annotated[
        str, typer.Option("--stack", help="dev, staging or prod (stacks/Pulumi.<stack>.yaml).")
    ],
    json_out: JsonFlag = False,
) -> None:
    """What a GitHub Actions job of STACK uses: region, registry, repositories, the OIDC role of
    each job kind, the Pulumi state bucket, and the image tags beyond the git SHA."""
    from importlib.metadata import version

    from pipelines.ml.packaging import serving_digest
    from stacks.ci_targets import ci_targets  # lazily: pipelines does not import stacks

    targets = {
        **ci_targets(stack),
        "pulumi_version": version("pulumi"),
        "mlflow_version": version("mlflow"),
        "serving_digest": serving_digest()[0],
    }
    if json_out:
        print_json(targets)
        return
    for key, value in targets.items():
        out.print(f"{key}: {value}")


def serving_image(stack: str) -> dict[str, list[str]]:
    """The serving image the env's pods run once promoted: the overlay's repository, tagged with
    this checkout's serving code digest (what CI builds and pushes; the GitOps pin names it)."""
    import yaml

    from pipelines.ml.packaging import serving_digest
    from pipelines.settings import REPO_ROOT

    overlay = REPO_ROOT / "platform" / "envs" / stack / "kustomization.yaml"
    if not overlay.is_file():
        return {}
    (rewrite,) = yaml.safe_load(overlay.read_text())["images"]
    digest, _ = serving_digest()
    return {f"{rewrite['newName']}:{digest}": [f"platform/envs/{stack} (GitOps: serving)"]}


def _show_plan(result: Any, stack: str) -> None:
    from rich.table import Table
    from rich.tree import Tree

    from stacks.offline.plan import key_properties

    root = Tree(f"[bold]{stack}[/] ({result.mode}, {len(result.resources)} resources)")
    nodes: dict[str, Any] = {}
    for resource in result.resources:
        parent = nodes.get(resource.parent, root)
        label = f"{resource.type} [bold]{resource.name}[/]"
        details = key_properties(resource.inputs)
        node = parent.add(f"{label} [dim]{details}[/]" if details else label)
        if not resource.custom:  # only components parent other resources
            nodes[resource.name] = node
    out.print(root)
    out.print(
        "outputs: "
        + ", ".join(
            f"{k}={'[secret]' if k in result.secret_outputs else v}"
            for k, v in result.outputs.items()
        ),
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    policy = result.policy
    warnings = policy.get("warnings", [])
    table = Table(
        title=f"policies: {policy['mandatory']} mandatory, {policy['advisory']} advisory, "
        f"{len(warnings)} warnings ({policy['skipped_unknown']} checks skipped on unknown values)"
    )
    for column in ("rule", "level", "resource", "message"):
        table.add_column(column)
    for v in policy["violations"]:
        table.add_row(v["rule"], v["level"], v["resource"], v["message"])
    out.print(table)
    if warnings:
        resources = len({v["resource"] for v in warnings})
        out.print(
            f"[yellow]warning:[/] {len(warnings)} finding(s) on {resources} resource(s) "
            f"(mlops infra plan --stack {stack} --json | jq .policy.warnings)",
            soft_wrap=True,
            highlight=False,
        )
    for note in policy.get("notes", []):
        out.print(f"[yellow]warning:[/] {note}", soft_wrap=True, highlight=False)
    placeholders = policy.get("placeholders", [])
    if placeholders:
        out.print(f"placeholders to replace in the stack config ({stack}):", highlight=False)
        for p in placeholders:
            out.print(
                f"  {p['key']} = {p['value']}  ({p['placeholder']}: {p['what']})",
                soft_wrap=True,
                highlight=False,
                markup=False,
            )
