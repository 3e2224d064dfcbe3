"""Repository-wide rules: self-contained, small modules, the layout, the import contracts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.summary import contract_violations

SOURCE_PACKAGES = ("pipelines", "bentos", "stacks", "policies")
FOUNDATIONS = {
    "__init__.py",
    "__main__.py",
    "archive.py",
    "errors.py",
    "intervals.py",
    "layout.py",
    "logs.py",
    "metrics.py",
    "exposition.py",
    "progress.py",
    "s3.py",
    "settings.py",
    "storage.py",
}
CONCERNS = {
    "backtest",
    "candidates",
    "cli",
    "data",
    "decisions",
    "images",
    "ml",
    "observability",
    "orchestration",
    "reports",
    "services",
    "synthetic",
}
MAX_LINES = 400


def tracked_files() -> list[Path]:
    """Every file git tracks plus every new file not ignored (what a clone or a commit holds)."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [REPO / name for name in listing.split("\0") if name and (REPO / name).is_file()]


def outside_references(paths: list[Path], root: Path) -> list[str]:
    """Files (relative to `root`) that refer to the material beside the checkout."""
    needle = b"../" + b"shared"  # spelled apart so this file does not match itself
    return [str(p.relative_to(root)) for p in paths if needle in p.read_bytes()]


@pytest.mark.integration  # asks git which files are tracked
def test_no_tracked_file_refers_outside_the_repository(tmp_path: Path) -> None:
    assert outside_references(tracked_files(), REPO) == []
    planted = tmp_path / "README.md"
    planted.write_text("Read ../" + "shared/DESIGN.md for the design.\n")
    clean = tmp_path / "CONTRIBUTING.md"
    clean.write_text("Read docs/architecture.md for the design.\n")
    assert outside_references([planted, clean], tmp_path) == ["README.md"]


def test_no_module_exceeds_the_size_limit() -> None:
    too_long = {
        str(path.relative_to(REPO)): lines
        for package in SOURCE_PACKAGES
        for path in (REPO / package).rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert too_long == {}


def test_pipelines_top_level_holds_only_foundations_and_concern_folders() -> None:
    root = REPO / "pipelines"
    modules = {p.name for p in root.glob("*.py")}
    folders = {p.name for p in root.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert modules <= FOUNDATIONS, sorted(modules - FOUNDATIONS)
    assert folders == CONCERNS


def test_the_summary_contract_check_fails_on_a_renamed_or_retyped_key() -> None:
    import json

    example = json.loads((REPO / "tests" / "golden" / "run_summary.json").read_text())
    assert contract_violations(example) == []
    renamed = json.loads(json.dumps(example))
    renamed["steps"]["fetch"]["files_fetched"] = renamed["steps"]["fetch"].pop("files_downloaded")
    renamed["steps"]["register"]["version"] = "7"
    renamed["steps"]["evaluate"]["rows"] = None
    del renamed["run_id"]
    assert contract_violations(renamed) == [
        "missing top-level key 'run_id'",
        "fetch.files_downloaded missing",
        "evaluate.rows is null, was number",
        "register.version is string, was number",
    ]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` over the packages under `root`, with the contracts of pyproject.toml."""
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "lint-imports"),
            "--config",
            str(root / "pyproject.toml"),
        ],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.integration  # runs lint-imports as a process, over a copy of the source
def test_the_import_contracts_hold_and_catch_a_planted_violation(tmp_path: Path) -> None:
    for package in SOURCE_PACKAGES:
        shutil.copytree(
            REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    clean = lint_imports(tmp_path)
    assert clean.returncode == 0, clean.stdout[-2000:] + clean.stderr[-2000:]
    features = tmp_path / "pipelines" / "ml" / "features.py"
    features.write_text(
        features.read_text() + "\nfrom pipelines.synthetic.market import day_bars  # planted\n"
    )
    broken = lint_imports(tmp_path)
    assert broken.returncode == 1
    assert "The serving runtime imports only the feature code and the foundations BROKEN" in (
        " ".join(broken.stdout.split())
    )
    assert "Production code never imports the synthetic market" in " ".join(broken.stdout.split())
