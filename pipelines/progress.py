"""How long-running library code reports progress without knowing about the terminal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    """Creates a progress task of `total` units and returns the callback that advances it."""

    def __call__(self, description: str, total: int) -> Callable[[], None]:
        """Start a task of `total` units; return the callback that advances it by one."""
        ...


def no_progress(description: str, total: int) -> Callable[[], None]:
    """A `Progress` that shows nothing."""
    return lambda: None
