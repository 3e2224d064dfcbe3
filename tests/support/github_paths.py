"""GitHub Actions' path filters (``on.<event>.paths`` / ``paths-ignore``), as GitHub documents them
("Filter pattern cheat sheet", workflow syntax for GitHub Actions):

- ``*`` matches zero or more characters except ``/``; ``**`` zero or more of any character, and
  ``**/`` zero or more whole directories;
- ``?`` zero or one of the preceding character, ``+`` one or more of it;
- ``[...]`` one character listed or in a range (``a-z``, ``A-Z``, ``0-9`` only);
- ``\\`` escapes the next character; ``!`` first negates the pattern;
- a pattern matches the whole path from the repository root;
- ``paths``: a file counts when the *last* pattern matching it is positive; the workflow runs
  when any changed file counts. ``paths-ignore``: it runs when any changed file is not ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

_RANGE = re.compile(r"^(?:[a-z]-[a-z]|[A-Z]-[A-Z]|[0-9]-[0-9]|[A-Za-z0-9])+$")


@lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> tuple[bool, re.Pattern[str]]:
    """(negated, regex) of one filter pattern.

    Raises:
        ValueError: on a pattern GitHub refuses (an empty or unclosed ``[]``, a bad range, a
            trailing ``\\``).
    """
    negated = pattern.startswith("!")
    body = pattern[1:] if negated else pattern
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char in "?+":
            out.append(char if out else re.escape(char))
            i += 1
        elif char == "[":
            end = body.find("]", i + 1)
            inside = body[i + 1 : end] if end != -1 else ""
            if end == -1 or not _RANGE.match(inside):
                raise ValueError(f"invalid filter pattern {pattern!r}: bad [...] at {i}")
            out.append(f"[{inside}]")
            i = end + 1
        elif char == "\\":
            if i + 1 >= len(body):
                raise ValueError(f"invalid filter pattern {pattern!r}: trailing backslash")
            out.append(re.escape(body[i + 1]))
            i += 2
        else:
            out.append(re.escape(char))
            i += 1
    return negated, re.compile("".join(out), re.DOTALL)


def _last_match(patterns: Sequence[str], path: str) -> bool | None:
    """True/False: the last pattern matching `path` is positive/negated; None: none matches."""
    verdict = None
    for pattern in patterns:
        negated, regex = compile_pattern(pattern)
        if regex.fullmatch(path):
            verdict = not negated
    return verdict


def triggers(
    changed: Iterable[str],
    paths: Sequence[str] | None = None,
    paths_ignore: Sequence[str] | None = None,
) -> bool:
    """Whether a push or pull request changing `changed` starts the workflow (one of `paths` or
    `paths_ignore`, as GitHub allows only one per event; neither: it always starts)."""
    if paths is not None and paths_ignore is not None:
        raise ValueError("GitHub refuses paths and paths-ignore on the same event")
    files = list(changed)
    if paths is not None:
        return any(_last_match(paths, f) is True for f in files)
    if paths_ignore is not None:
        return any(_last_match(paths_ignore, f) is not True for f in files)
    return True
