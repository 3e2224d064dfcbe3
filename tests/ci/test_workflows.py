"""The GitHub Actions workflows (.github/workflows/): actionlint clean, every action pinned to a
commit, least permissions per job, the right triggers (GitHub's path-filter semantics), and the
roles they assume are the ones the stacks create."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.decisions.pin import ServingPin, write_pin
from stacks.ci_targets import ci_targets
from stacks.config import load_stack_config
from tests.conftest import REPO, StackPlans
from tests.support.github_paths import compile_pattern, triggers

WORKFLOWS = REPO / ".github" / "workflows"
STACKS = sorted(p.name.split(".")[1] for p in (REPO / "stacks").glob("Pulumi.*.yaml"))
PINNED = re.compile(r"^(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})$")
VERSION_COMMENT = re.compile(r"#\s*v\d+(?:\.\d+)*\s*$")


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    if True in document:  # YAML 1.1 reads the key `on` as a boolean
        document["on"] = document.pop(True)
    return dict(document)


def all_workflows() -> dict[str, dict[str, Any]]:
    return {p.name: load(p.name) for p in sorted(WORKFLOWS.glob("*.yml"))}


def uses(workflows: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(workflow, job, uses) of every step and reusable-workflow call."""
    found = []
    for name, workflow in workflows.items():
        for job_id, job in workflow["jobs"].items():
            if "uses" in job:
                found.append((name, job_id, job["uses"]))
            found += [(name, job_id, s["uses"]) for s in job.get("steps", []) if "uses" in s]
    return found


def unpinned(workflows: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"{name}:{job}: {ref}"
        for name, job, ref in uses(workflows)
        if not ref.startswith("./") and not PINNED.match(ref)
    ]


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "actionlint"
    return subprocess.run(
        [str(binary), "-no-color", "-format", "{{json .}}", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.mark.integration
def test_actionlint_passes_and_catches_a_planted_mistake(tmp_path: Path) -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {p.name for p in files} == {"ci.yml", "images.yml", "infra.yml", "pulumi-up.yml"}
    done = actionlint(*files)
    assert done.returncode == 0 and json.loads(done.stdout or "[]") == [], done.stdout
    planted = tmp_path / ".github" / "workflows"
    planted.mkdir(parents=True)
    for path in files:
        shutil.copy(path, planted / path.name)
    text = (planted / "images.yml").read_text().replace("id-token: write", "id-token: wirte")
    (planted / "images.yml").write_text(text)
    done = actionlint(*sorted(planted.glob("*.yml")))
    errors = json.loads(done.stdout)
    assert done.returncode == 1 and len(errors) == 1, done.stdout
    assert errors[0]["filepath"].endswith("images.yml") and "wirte" in errors[0]["message"]


def test_every_action_is_pinned_to_a_full_commit_sha() -> None:
    workflows = all_workflows()
    refs = uses(workflows)
    assert len({r for _, _, r in refs if not r.startswith("./")}) >= 5
    assert unpinned(workflows) == []
    # the same action at one commit everywhere, its tag named beside it
    shas: dict[str, set[str]] = {}
    for _, _, ref in refs:
        if (match := PINNED.match(ref)) is not None:
            shas.setdefault(match["action"], set()).add(match["sha"])
    assert all(len(s) == 1 for s in shas.values()), shas
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text().splitlines():
            if re.search(r"uses: \w[\w.-]*/", line):
                assert VERSION_COMMENT.search(line), f"{path.name}: {line.strip()} names no tag"
    broken = copy.deepcopy(workflows)
    broken["ci.yml"]["jobs"]["test"]["steps"][1]["uses"] = "actions/checkout@v7"
    assert unpinned(broken) == ["ci.yml:test: actions/checkout@v7"]
    broken["ci.yml"]["jobs"]["test"]["steps"][1]["uses"] = "actions/checkout@3d3c42e"
    assert unpinned(broken) == ["ci.yml:test: actions/checkout@3d3c42e"]


AWS = "aws-actions/configure-aws-credentials"


def permission_problems(workflows: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for name, workflow in workflows.items():
        if workflow.get("permissions") != {}:
            problems.append(f"{name}: the workflow's default permissions are not {{}}")
        for job_id, job in workflow["jobs"].items():
            granted = job.get("permissions")
            if not isinstance(granted, dict):
                problems.append(f"{name}:{job_id}: no permissions map of its own")
                continue
            steps = [s.get("uses", "") for s in job.get("steps", [])]
            assumes = any(u.startswith(AWS) for u in steps) or "pulumi-up" in job.get("uses", "")
            allowed = {"contents": "read"}
            if assumes:
                allowed["id-token"] = "write"
            if job_id == "preview":
                allowed["pull-requests"] = "write"
            if granted != allowed:
                problems.append(f"{name}:{job_id}: permissions {granted}, least is {allowed}")
    return problems


def test_every_job_has_the_least_permissions_it_needs() -> None:
    workflows = all_workflows()
    assert permission_problems(workflows) == []
    broken = copy.deepcopy(workflows)
    broken["ci.yml"]["jobs"]["test"]["permissions"]["id-token"] = "write"
    del broken["images.yml"]["jobs"]["push"]["permissions"]
    broken["infra.yml"]["permissions"] = "write-all"
    assert permission_problems(broken) == [
        "ci.yml:test: permissions {'contents': 'read', 'id-token': 'write'}, least is "
        "{'contents': 'read'}",
        "images.yml:push: no permissions map of its own",
        "infra.yml: the workflow's default permissions are not {}",
    ]


def test_ci_runs_the_ci_script_itself() -> None:
    (job,) = load("ci.yml")["jobs"].values()
    runs = [s["run"].strip() for s in job["steps"] if "run" in s]
    assert runs[-1] == "bash .ci/run"
    restated = re.compile(r"\b(pytest|ruff|mypy|lint-imports|uv sync)\b")
    assert not [r for r in runs if restated.search(r)], runs
    assert set(load("ci.yml")["on"]) == {"pull_request", "push", "workflow_dispatch"}


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [  # GitHub's cheat-sheet examples, and the paths each must not match
        ("*", "README.md", True),
        ("*", "docs/README.md", False),
        ("*.jsx?", "page.js", True),
        ("*.jsx?", "page.jsx", True),
        ("*.jsx?", "page.jsxx", False),
        ("**", "all/the/files.md", True),
        ("*.js", "app.js", True),
        ("*.js", "js/app.js", False),
        ("**.js", "src/js/app.js", True),
        ("docs/*", "docs/file.txt", True),
        ("docs/*", "docs/mona/octocat.txt", False),
        ("docs/**", "docs/mona/octocat.txt", True),
        ("docs/**/*.md", "docs/README.md", True),
        ("docs/**/*.md", "docs/a/markdown/file.md", True),
        ("docs/**/*.md", "docs/a/file.txt", False),
        ("**/docs/**", "space/docs/plan/space.doc", True),
        ("**/README.md", "README.md", True),
        ("**/README.md", "js/README.md", True),
        ("**/*src/**", "my-src/code/js/app.js", True),
        ("**/*src/**", "source/app.js", False),
        ("**/migrate-*.sql", "db/sept/migrate-v1.sql", True),
        ("v[12].[0-9]+.[0-9]+", "v1.10.1", True),
        ("v[12].[0-9]+.[0-9]+", "v3.0.0", False),
        ("[CB]at", "Cat", True),
        ("[CB]at", "Hat", False),
        ("\\!file", "!file", True),
        ("stacks/**", "stackss/x.py", False),
    ],
)
def test_github_glob_semantics(pattern: str, path: str, expected: bool) -> None:
    negated, regex = compile_pattern(pattern)
    assert not negated and bool(regex.fullmatch(path)) is expected


def test_github_filters_order_and_negation() -> None:
    assert triggers(["hello.md"], paths=["*.md", "!README.md"])
    assert not triggers(["README.md"], paths=["*.md", "!README.md"])
    assert triggers(["README.md"], paths=["*.md", "!README.md", "README*"])  # the last match wins
    assert not triggers(["docs/hello.md"], paths=["*.md"])
    assert triggers(["a.py", "docs/x.md"], paths_ignore=["docs/**"])
    assert not triggers(["docs/x.md"], paths_ignore=["docs/**"])
    assert triggers(["docs/keep.md"], paths_ignore=["docs/**", "!docs/keep.md"])
    assert triggers(["anything"])
    for bad in ("[]x", "[a-", "x\\", "[%]"):
        with pytest.raises(ValueError, match="invalid filter pattern"):
            compile_pattern(bad)


def pin_commit(tmp_path: Path, env: str) -> list[str]:
    """The files a promotion or rollback commits for `env` (pipelines/decisions/pin.py)."""
    overlay_dir = tmp_path / "platform" / "envs" / env
    shutil.copytree(REPO / "platform" / "envs" / env, overlay_dir)
    pin = ServingPin(image_tag="0123456789ab", model_version=7, model_sha256="a" * 64)
    changed = write_pin(overlay_dir / "kustomization.yaml", pin)
    return sorted(p.relative_to(tmp_path).as_posix() for p in changed)


def filters(name: str, event: str) -> list[str]:
    return list(load(name)["on"][event]["paths"])


@pytest.mark.parametrize("env", STACKS)
def test_a_gitops_pin_commit_never_deploys_and_a_stack_change_does(
    tmp_path: Path, env: str
) -> None:
    changed = pin_commit(tmp_path, env)
    assert changed == [f"platform/envs/{env}/kustomization.yaml", f"platform/envs/{env}/model.env"]
    infra_push, infra_pr = filters("infra.yml", "push"), filters("infra.yml", "pull_request")
    assert infra_push == infra_pr
    assert load("infra.yml")["on"]["push"]["branches"] == ["main"]
    assert not triggers(changed, paths=infra_push)
    assert not triggers(changed, paths=filters("images.yml", "push"))
    for stack_change in (
        ["stacks/program.py"],
        ["policies/rules/iam.py"],
        ["uv.lock"],
        [f"stacks/Pulumi.{env}.yaml"],
        [*changed, "stacks/components/ci.py"],  # a pin riding along a stack change
    ):
        assert triggers(stack_change, paths=infra_push), stack_change
    # the check bites: a filter that reaches the overlays would deploy on every promotion
    assert triggers(changed, paths=[*infra_push, "platform/**"])
    assert triggers(changed, paths=[*infra_push, "**.yaml"])


def docker_inputs() -> list[str]:
    """Every file a Dockerfile of the images workflow copies from the build context."""
    files: set[str] = set()
    for dockerfile, context in (
        ("Dockerfile", REPO),
        ("images/mlflow/Dockerfile", REPO / "images" / "mlflow"),
        ("images/serving/Dockerfile", REPO),
    ):
        for line in (REPO / dockerfile).read_text().splitlines():
            words = line.split()
            if not words or words[0] not in ("COPY", "ADD") or any("--from" in w for w in words):
                continue
            sources = [w for w in words[1:-1] if not w.startswith("--")]
            for source in sources:
                if source.startswith("http"):
                    continue
                for path in context.glob(source):
                    found = [path] if path.is_file() else [p for p in path.rglob("*.py")]
                    files |= {p.relative_to(REPO).as_posix() for p in found}
        files.add(dockerfile)
    return sorted(files)


def test_the_images_workflow_runs_on_every_change_to_an_image() -> None:
    inputs = docker_inputs()
    assert "images/mlflow/requirements.txt" in inputs and "bentos/service.py" in inputs
    paths = filters("images.yml", "push")
    assert [f for f in inputs if not triggers([f], paths=paths)] == []
    without = [p for p in paths if p != "policies/**"]
    assert [f for f in inputs if not triggers([f], paths=without)][:1] == [
        next(f for f in inputs if f.startswith("policies/"))
    ]


def test_deploys_go_dev_staging_prod_behind_environments() -> None:
    infra = load("infra.yml")
    jobs = infra["jobs"]
    preview = jobs["preview"]
    assert preview["if"] == "github.event_name == 'pull_request'"
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "staging", "prod"]
    assert sorted(preview["strategy"]["matrix"]["stack"]) == STACKS
    steps = "\n".join(s.get("run", "") for s in preview["steps"])
    assert "--policy-pack policies" in steps and "gh pr comment" in steps
    chain = [(j, jobs[j].get("needs"), jobs[j]["with"]["stack"]) for j in jobs if j != "preview"]
    assert chain == [
        ("deploy-dev", None, "dev"),
        ("deploy-staging", "deploy-dev", "staging"),
        ("deploy-prod", "deploy-staging", "prod"),
    ]
    assert "github.event_name == 'push'" in jobs["deploy-dev"]["if"]
    assert all(jobs[j]["uses"] == "./.github/workflows/pulumi-up.yml" for j, _, _ in chain)
    (up,) = load("pulumi-up.yml")["jobs"].values()
    assert up["environment"] == "${{ inputs.stack }}"
    assert "pulumi up" in "\n".join(s.get("run", "") for s in up["steps"])
    # the GitHub environment each deploy runs in is the one its stack's deploy role trusts
    for stack in STACKS:
        assert load_stack_config(stack).ci.deploy_environment == stack


@pytest.mark.parametrize("env", STACKS)
def test_the_roles_the_workflows_assume_are_the_stacks_roles(plans: StackPlans, env: str) -> None:
    targets = ci_targets(env)
    roles = {
        r.name.removeprefix("ci-"): r.inputs["name"]
        for r in plans[env].resources
        if r.type == "aws:iam/role:Role" and r.name.startswith("ci-")
    }
    assert {k: str(v).rsplit("/", 1)[1] for k, v in dict(targets["roles"]).items()} == roles  # type: ignore[call-overload]
    assert str(targets["registry"]).startswith(f"{targets['account']}.dkr.ecr.")
