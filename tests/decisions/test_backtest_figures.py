"""Changing a threshold is a reviewed decision: every decision setting an env runs with (defaults,
then each stack's ``workflows.settings``) must have backtest figures in benchmarks/README.md,
found by its settings digest. Change any ``MLOPS_GATE_*``, ``MLOPS_MONITOR_*`` or
``MLOPS_DRIFT_*`` default or per-env value, ``MLOPS_EVAL_DAYS`` (the gate's window, the
monitor's recorded evaluation), or the calibration method, and this fails until `mlops decisions
backtest --markdown` has been run for it and its figures checked in."""

from __future__ import annotations

import re
from typing import Annotated, Any

import yaml
from pydantic import TypeAdapter

from pipelines.backtest.matrix import DECISION_FIELDS, DECISION_PREFIXES, digest_of
from pipelines.settings import REPO_ROOT, Settings

README = REPO_ROOT / "benchmarks" / "README.md"
SECTION = "## Decisions backtest"


def defaults() -> dict[str, Any]:
    fields = Settings.model_fields
    return {
        name: _adapter(name).dump_python(fields[name].default, mode="json")
        for name in sorted(fields)
        if name.startswith(DECISION_PREFIXES) or name in DECISION_FIELDS
    }


def _adapter(name: str) -> TypeAdapter[Any]:
    field = Settings.model_fields[name]
    annotation: Any = field.annotation
    if field.metadata:  # e.g. the symbols' validator, which splits "A,B"
        annotation = Annotated[annotation, *field.metadata]
    return TypeAdapter(annotation)


def env_values(stack: str) -> dict[str, Any]:
    """Defaults overridden by the stack's ``workflows.settings`` (as the Workflows pass them)
    and its ``workflows.symbols`` (the runs' symbols parameter)."""
    workflows = yaml.safe_load(stack)["config"]["mlops-platform:workflows"]
    symbols = {"MLOPS_SYMBOLS": workflows["symbols"]} if "symbols" in workflows else {}
    config = {**symbols, **workflows.get("settings", {})}
    values = defaults()
    for key, raw in config.items():
        name = key.removeprefix("MLOPS_").lower()
        if name in values:
            adapter = _adapter(name)
            values[name] = adapter.dump_python(adapter.validate_python(raw), mode="json")
    return values


def required() -> dict[str, str]:
    """Label -> digest of every decision setting that runs somewhere."""
    found = {"defaults": digest_of(defaults())}
    for path in sorted((REPO_ROOT / "stacks").glob("Pulumi.*.yaml")):
        env = path.name.split(".")[1]
        found[env] = digest_of(env_values(path.read_text()))
    return found


def missing(readme: str, needed: dict[str, str]) -> list[str]:
    """The labels whose digest has no figures in the README's backtest section."""
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0] if SECTION in readme else ""
    present = set(re.findall(r"settings digest `([0-9a-f]{16})`", section))
    return [f"{label} ({digest})" for label, digest in needed.items() if digest not in present]


def test_every_env_has_figures_for_its_decision_settings() -> None:
    gaps = missing(README.read_text(), required())
    assert not gaps, (
        f"benchmarks/README.md has no backtest figures for: {', '.join(gaps)}; run "
        "`mlops decisions backtest --markdown --label ENV` with that env's MLOPS_GATE_*/"
        "MONITOR_*/DRIFT_* values and put the figures in its '## Decisions backtest' section"
    )


def test_the_settings_digest_is_what_the_backtest_prints() -> None:
    from pipelines.backtest.matrix import settings_digest

    assert settings_digest(Settings.model_construct()) == required()["defaults"]


def test_a_changed_default_without_figures_fails() -> None:
    readme = README.read_text()
    planted = {**defaults(), "monitor_windows": 4}
    assert missing(readme, {"defaults": digest_of(planted)}) != []
    assert missing(readme, {"defaults": digest_of(defaults())}) == []


def test_a_changed_env_value_without_figures_fails() -> None:
    readme = README.read_text()
    stack = (REPO_ROOT / "stacks" / "Pulumi.prod.yaml").read_text()
    drop = "MLOPS_MONITOR_MAX_AUC_DROP"
    planted = stack.replace(f'{drop}: "0.03"', f'{drop}: "0.1"')
    assert planted != stack
    assert missing(readme, {"prod": digest_of(env_values(planted))}) != []
    assert missing(readme, {"prod": digest_of(env_values(stack))}) == []


def test_the_calibration_method_is_part_of_the_digest(monkeypatch: Any) -> None:
    import pipelines.backtest.matrix as matrix

    before = digest_of(defaults())
    monkeypatch.setattr(matrix, "METHOD", "another-method/v9")
    assert digest_of(defaults()) != before


def test_the_evaluation_window_is_part_of_the_digest() -> None:
    # the gate decides on, and the monitor's champion is recorded on, the last MLOPS_EVAL_DAYS
    readme = README.read_text()
    planted = {**defaults(), "eval_days": 3.0}
    assert digest_of(planted) != digest_of(defaults())
    assert missing(readme, {"defaults": digest_of(planted)}) != []


def test_an_env_trading_other_symbols_needs_its_own_figures() -> None:
    """Each symbol adds evidence to every window, so the figures of six symbols say nothing
    about an env that trains on one."""
    stack = (REPO_ROOT / "stacks" / "Pulumi.prod.yaml").read_text()
    planted = stack.replace(
        "mlops-platform:workflows:\n", "mlops-platform:workflows:\n    symbols: BTCUSDT\n", 1
    )
    assert planted != stack
    assert env_values(planted)["symbols"] == ["BTCUSDT"]
    readme = README.read_text()
    assert missing(readme, {"prod": digest_of(env_values(planted))}) != []
