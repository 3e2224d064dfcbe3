"""Tests of the container images the repository builds (Dockerfiles and their requirements)."""

from __future__ import annotations

import subprocess

from tests.conftest import REPO


def locked_requirements(group: str) -> str:
    """The dependency group `group` exported from uv.lock with hashes: what an image's
    ``requirements.txt`` must hold (``make golden`` writes it)."""
    return subprocess.run(
        ["uv", "export", "--only-group", group, "--frozen", "--no-header", "--no-annotate"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
