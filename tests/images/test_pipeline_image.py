"""What can be checked of the pipeline image without a container engine: its Dockerfile."""

from __future__ import annotations

import re

from tests.conftest import REPO


def test_dockerfile_essentials() -> None:
    text = (REPO / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert bases and all(
        re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+( AS \w+)?", b) or ":" in b for b in bases
    )
    assert all(not b.endswith(":latest") and re.search(r":\d+\.\d+\.\d+", b) for b in bases), (
        "pinned bases"
    )
    assert "uv sync --locked --no-dev" in text, "installs exactly the locked runtime dependencies"
    user = re.findall(r"^USER (\S+)", text, flags=re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("root", "0"), "runs as a non-root user"
    assert re.search(r'^ENTRYPOINT \["mlops"\]', text, flags=re.MULTILINE)
    assert "MLOPS_HOME=/tmp/" in text, (
        "writes only to the scratch emptyDir (read-only root filesystem)"
    )
