"""The serving image (images/serving/): one per version of the serving code, no model inside.

Its tag is the serving code's digest, so what it copies must be exactly the files the digest
covers; the pipeline pod (the installed wheel) must compute the same digest as CI (a checkout),
or the GitOps pin would name an image nobody built. Building and running it needs a container
engine: the cluster-on-one-machine work does that with podman.
"""

from __future__ import annotations

import re
import subprocess
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from bentos.build import code_digest, serving_files
from tests.conftest import REPO
from tests.images import locked_requirements

IMAGE = REPO / "images" / "serving"


def copied_sources(dockerfile: str) -> set[str]:
    """The repository files the Dockerfile's COPY lines bring in (globs expanded), except the
    requirements it installs from."""
    files: set[str] = set()
    for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, flags=re.MULTILINE):
        *sources, _target = line.split()
        for source in sources:
            if source.startswith("images/"):
                continue
            files |= {p.relative_to(REPO).as_posix() for p in REPO.glob(source) if p.is_file()}
    return files


def copy_problems(dockerfile: str) -> list[str]:
    """Differences between what the image copies and what the digest covers."""
    covered = {f.relative_to(REPO).as_posix() for f in serving_files()}
    copied = copied_sources(dockerfile)
    return [f"the image lacks {f}, which the digest covers" for f in sorted(covered - copied)] + [
        f"the image copies {f}, which the digest does not cover" for f in sorted(copied - covered)
    ]


def test_the_image_holds_exactly_the_code_its_tag_names() -> None:
    text = (IMAGE / "Dockerfile").read_text()
    assert copy_problems(text) == []
    assert "bentos/start.py" in copied_sources(text)  # its entry point


def test_the_copy_check_catches_a_planted_difference() -> None:
    text = (IMAGE / "Dockerfile").read_text()
    planted = text.replace(" pipelines/ml/modeling.py", "")
    assert copy_problems(planted) == [
        "the image lacks pipelines/ml/modeling.py, which the digest covers"
    ]
    planted = text.replace("COPY pipelines/*.py", "COPY pipelines/*.py pipelines/data/*.py")
    assert "the image copies pipelines/data/fetch.py, which the digest does not cover" in (
        copy_problems(planted)
    )


def test_the_dockerfile_is_pinned_hashed_non_root_and_starts_by_checking_the_model() -> None:
    text = (IMAGE / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base
    assert "--require-hashes -r /tmp/requirements.txt" in text
    (user,) = re.findall(r"^USER (\d+):(\d+)$", text, flags=re.MULTILINE)
    deployment = yaml.safe_load((REPO / "platform/base/serving/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert (int(user[0]), int(user[1])) == (pod["runAsUser"], pod["runAsGroup"])
    assert re.search(r'^ENTRYPOINT \["python", "-m", "bentos.start"\]', text, flags=re.M)
    assert "MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false" in text


def test_the_requirements_pin_the_serving_group_with_hashes() -> None:
    text = (IMAGE / "requirements.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", text, flags=re.MULTILINE))
    for name in ("bentoml", "scikit-learn", "skops", "boto3"):
        assert pins[name] == version(name), name
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    assert [b.split()[0] for b in blocks if "--hash=sha256:" not in b] == []


@pytest.mark.integration  # runs `uv export`
def test_the_image_requirements_are_fresh_from_the_lock() -> None:
    fresh = locked_requirements("serving")
    assert (IMAGE / "requirements.txt").read_text() == fresh, "run: make golden"


@pytest.mark.integration  # runs `uv build`
def test_the_installed_wheel_computes_the_digest_ci_tags_the_image_with(tmp_path: Path) -> None:
    """The package step runs from the installed wheel (the pipeline image), CI from a checkout:
    both must name the same serving image."""
    subprocess.run(
        ["uv", "build", "--wheel", "--out-dir", str(tmp_path / "dist")],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    assert code_digest(tmp_path / "site") == code_digest()
    # and the digest does move with the code
    (tmp_path / "site/pipelines/ml/features.py").write_text("# changed\n")
    assert code_digest(tmp_path / "site") != code_digest()


@pytest.mark.integration  # runs `mlops infra plan`
def test_the_plan_names_the_serving_image_ci_must_push() -> None:
    """`mlops infra plan --json` lists, beside the stack's own images, the serving image the
    env's pods run once promoted: the overlay's repository at this code's digest."""
    import json

    from tests.conftest import run_cli

    done = run_cli(["infra", "plan", "--stack", "staging", "--json"])
    assert done.returncode == 0, done.stderr[-2000:]
    images = json.loads(done.stdout)["images"]
    overlay = yaml.safe_load((REPO / "platform/envs/staging/kustomization.yaml").read_text())
    serving = f"{overlay['images'][0]['newName']}:{code_digest()}"
    assert images[serving] == ["platform/envs/staging (GitOps: serving)"]
    assert serving.split("/")[-1].startswith("mlops-serving:")  # one name in every account
