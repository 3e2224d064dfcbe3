"""The xdist schedule's longest-first list names modules that exist (a renamed module would
silently fall back to its alphabetical place, and the run's tail would grow again)."""

from __future__ import annotations

from tests.conftest import REPO, SLOWEST_FIRST


def test_every_module_of_the_longest_first_list_exists_once() -> None:
    missing = [path for path in SLOWEST_FIRST if not (REPO / path).is_file()]
    assert missing == []
    assert len(set(SLOWEST_FIRST)) == len(SLOWEST_FIRST)
