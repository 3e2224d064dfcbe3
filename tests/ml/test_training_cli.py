"""`mlops run` end to end as a user runs it: other intervals with market gaps, a real MLflow."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import date, timedelta
from pathlib import Path

import pytest

from pipelines.archive import checksum_line, zip_path
from pipelines.synthetic.mirror import make_zip, write_mirror
from tests.conftest import run_cli
from tests.services import mlflow_server
from tests.support.summary import contract_violations

pytestmark = pytest.mark.integration


def close_the_market(root: Path, symbols: list[str], start: date, days: int) -> int:
    """Weekends missing (404), and 21:00-24:00 UTC missing every weekday: a market-hours history."""
    kept = 0
    for offset in range(days):
        day = start + timedelta(days=offset)
        for symbol in symbols:
            rel = zip_path(symbol, "1h", day)
            if day.weekday() >= 5:
                (root / rel).unlink()
                (root / (rel + ".CHECKSUM")).unlink()
                continue
            with zipfile.ZipFile(io.BytesIO((root / rel).read_bytes())) as archive:
                name = archive.namelist()[0]
                lines = archive.read(name).decode().splitlines()
            header = lines[:1] if lines[0].startswith("open_time") else []
            body = [
                line
                for line in lines[len(header) :]
                if (int(line.split(",")[0]) // 3_600_000) % 24 < 21
            ]
            kept += len(body)
            blob = make_zip(name, ("\n".join(header + body) + "\n").encode(), day)
            (root / rel).write_bytes(blob)
            (root / (rel + ".CHECKSUM")).write_text(
                checksum_line(hashlib.sha256(blob).hexdigest(), Path(rel).name)
            )
    return kept


def test_hourly_history_with_market_closed_gaps_runs_the_whole_dag(tmp_path: Path) -> None:
    start, days = date(2024, 1, 1), 75
    symbols = ["BTCUSDT", "ETHUSDT"]
    write_mirror(tmp_path / "mirror", symbols, "1h", start, days)
    kept = close_the_market(tmp_path / "mirror", symbols, start, days)
    end = start + timedelta(days=days - 1)
    done = run_cli(
        [
            "run",
            "--source",
            (tmp_path / "mirror").as_uri(),
            "--interval",
            "1h",
            "--start",
            start.isoformat(),
            "--end",
            end.isoformat(),
            "--json",
        ],
        {"MLOPS_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert contract_violations(summary) == []  # the run summary keeps its documented shape
    steps = summary["steps"]
    weekdays = sum((start + timedelta(days=i)).weekday() < 5 for i in range(days))
    assert len(steps["fetch"]["files_missing"]) == days - weekdays  # weekends: 404, reported
    assert steps["validate"]["rows_valid"] == kept and steps["validate"]["rows_quarantined"] == 0
    assert steps["validate"]["missing_bars"] == weekdays * 2 * 3  # gaps counted, never filled
    assert steps["features"]["interval"] == "1h"
    assert steps["register"]["version"] == 1 and "challenger" in steps["register"]["aliases"]
    assert set(steps) == {
        "shards",
        "fetch",
        "validate",
        "features",
        "train",
        "evaluate",
        "register",
        "package",
        "gate",
    }
    assert steps["gate"]["decision"] == "promote"  # the first version: bootstrap, pinned


def test_run_against_a_real_mlflow_server(tmp_path: Path, mirror_root: Path) -> None:
    from mlflow import MlflowClient

    with mlflow_server(tmp_path) as url:
        env = {
            "MLOPS_HOME": str(tmp_path / "home"),
            "MLFLOW_TRACKING_URI": url,
            "MLOPS_EVAL_DAYS": "1",
            "MLOPS_CV_FOLDS": "2",
            "MLOPS_MODEL_PARAMS": '{"max_iter": 30}',
            "MLOPS_CHAMPION_MIN_ROC_AUC": "0",
        }
        args = [
            "run",
            "--source",
            mirror_root.as_uri(),
            "--start",
            "2024-03-01",
            "--end",
            "2024-03-06",
            "--json",
        ]
        first = run_cli(args, env)
        assert first.returncode == 0, first.stderr[-3000:]
        second = run_cli(args, env)
        assert second.returncode == 0, second.stderr[-3000:]
        client = MlflowClient(tracking_uri=url, registry_uri=url)
        model = client.get_registered_model("market-direction")
        assert model.aliases == {"champion": "1", "challenger": "2"} or model.aliases == {
            "champion": 1,
            "challenger": 2,
        }
        run_id = json.loads(second.stdout)["steps"]["train"]["mlflow_run_id"]
        assert client.get_run(run_id).data.metrics["eval_roc_auc"] > 0
    # the model files went through the server's artifact proxy, not into MLOPS_HOME
    assert list((tmp_path / "server-artifacts").rglob("model.skops"))
    assert not (tmp_path / "home" / "mlartifacts").exists()
    assert not (tmp_path / "home" / "mlflow.db").exists()
