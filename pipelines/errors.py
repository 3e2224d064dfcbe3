"""User-facing errors: one clear line naming what was wrong and how to fix it."""

from __future__ import annotations

from pydantic import ValidationError


class PipelineError(Exception):
    """An error the CLI prints as one line (no traceback) before exiting non-zero.

    Args:
        message: what went wrong, naming the offending input.
        hint: how to fix it, appended after the message.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} — {hint}" if hint else message)


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    """One line naming each invalid field and why."""
    parts = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        where = ".".join(str(x) for x in item["loc"])
        parts.append(f"{prefix}{where}: {message}" if where else message)
    return "invalid " + "; ".join(parts)
