"""What the serving tests share: one training run (a real `mlops run` over the mirror) for the
whole package, so the Bento tests and the serving-image start tests do not train twice."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MIRROR_DAYS, MIRROR_START, run_cli

END = MIRROR_START + timedelta(days=MIRROR_DAYS - 1)


def training_env(home: Path) -> dict[str, str]:
    return {
        "MLOPS_HOME": str(home),
        # named, not inherited: a test that used BentoML in this worker's own process left
        # BENTOML_HOME pointing at its store, and a run that inherited it built its Bento there
        # (a CI run on 2026-12-02: the next server found no Bento under this home)
        "BENTOML_HOME": str(home / "bentoml"),
        "MLOPS_EVAL_DAYS": "1",
        "MLOPS_CV_FOLDS": "2",
        "MLOPS_CHAMPION_MIN_ROC_AUC": "0",
        "MLOPS_INFERENCE_FLUSH_SECONDS": "3600",  # rows reach storage only at shutdown
    }


@pytest.fixture(scope="package")
def trained(
    tmp_path_factory: pytest.TempPathFactory, mirror_root: Path
) -> tuple[Path, dict[str, Any]]:
    home = tmp_path_factory.mktemp("serving") / "home"
    done = run_cli(
        [
            "run",
            "--source",
            mirror_root.as_uri(),
            "--start",
            MIRROR_START.isoformat(),
            "--end",
            END.isoformat(),
            "--json",
        ],
        training_env(home),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return home, json.loads(done.stdout)
