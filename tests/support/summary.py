"""The run summary contract (`mlops run --json`): its keys and value types, per step.

`tests/golden/run_summary.json` is a checked-in example of a whole training run (the quickstart
on the synthetic archive). A fresh summary must have the same top-level keys and, for each step
the example shows, the same keys with the same JSON types — later issues may add keys (then the
example is regenerated in the same change), never rename or retype one.
"""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import REPO

EXAMPLE = REPO / "tests" / "golden" / "run_summary.json"


def _kind(value: Any) -> str:
    """The JSON type of a value; int and float are one kind (a float metric may print as 0)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def contract_violations(summary: dict[str, Any]) -> list[str]:
    """Every difference between `summary` and the example, as one line each (empty: it holds)."""
    example: dict[str, Any] = json.loads(EXAMPLE.read_text())
    problems = [f"missing top-level key {k!r}" for k in example if k not in summary]
    for step, fields in example["steps"].items():
        fresh = summary.get("steps", {}).get(step)
        if fresh is None:
            problems.append(f"step {step!r} missing")
            continue
        for key, value in fields.items():
            if key not in fresh:
                problems.append(f"{step}.{key} missing")
            elif _kind(value) != "null" and _kind(value) != _kind(fresh[key]):
                # the example's null fields (e.g. a gate report on bootstrap) may be anything
                problems.append(f"{step}.{key} is {_kind(fresh[key])}, was {_kind(value)}")
    return problems
