"""The training memory budget holds: the train step, in a process of its own, samples as many
rows as `MLOPS_TRAIN_MEMORY_MB` allows at `TRAIN_BYTES_PER_ROW`, and its peak RSS grows by no
more than that budget's growth when the budget grows (the fixed part — MLflow, the model's
logging — cancels out between two budgets)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.ml.dataset import DatasetInfo
from pipelines.ml.features import FeatureConfig, feature_names
from pipelines.ml.train import TRAIN_BYTES_PER_ROW
from pipelines.storage import LocalStorage

pytestmark = pytest.mark.integration  # starts a process per budget

MINUTES = 150_000  # two symbols: 300,000 rows, about 104 days
CHILD = """
import json, sys
from pathlib import Path
from pipelines.ml.dataset import DatasetInfo
from pipelines.ml.train import train
from pipelines.settings import Settings
from pipelines.storage import LocalStorage
import mlflow, sklearn.ensemble, skops.io  # loaded before the baseline: fixed, not per row

def status(name):
    text = Path("/proc/self/status").read_text()
    return int(text.split(name + ":")[1].split()[0]) * 1024

home, budget = Path(sys.argv[1]), int(sys.argv[2])
settings = Settings(home=home, train_memory_mb=budget, eval_days=1, cv_folds=2,
                    min_train_rows=1000, model_params={"max_iter": 20})
info = DatasetInfo.model_validate_json((home / "info.json").read_text())
Path("/proc/self/clear_refs").write_text("5")  # the peak from here on
before = status("VmRSS")
result = train(settings, LocalStorage(home / "data"), info, "budget-run")
print(json.dumps({"before": before, "peak": status("VmHWM"), "train_rows": result.train_rows,
                  "sampled_from": result.sampled_from}))
"""


def _dataset(home: Path) -> DatasetInfo:
    """A labelled dataset of two symbols, in time order, as the features step writes it."""
    rng = np.random.default_rng(0)
    names = feature_names(FeatureConfig())
    times = pd.date_range("2024-01-01", periods=MINUTES, freq="1min", tz="UTC").repeat(2)
    columns: dict[str, object] = {
        "symbol": np.tile(["BTCUSDT", "ETHUSDT"], MINUTES),
        "open_time": times,
    }
    for name in names:
        columns[name] = rng.standard_normal(2 * MINUTES).astype(np.float32)
    columns["label"] = rng.integers(0, 2, 2 * MINUTES)
    columns["future_return"] = rng.standard_normal(2 * MINUTES) * 1e-3
    prefix = "features/1m/budget"
    (home / "data" / prefix).mkdir(parents=True)
    table = pa.Table.from_pandas(pd.DataFrame(columns), preserve_index=False)
    pq.write_table(table, home / "data" / prefix / "labelled.parquet", row_group_size=131_072)
    info = DatasetInfo(
        dataset_hash="budget",
        prefix=prefix,
        interval="1m",
        source_interval="1m",
        horizon=12,
        symbols=["BTCUSDT", "ETHUSDT"],
        start=times[0].date(),
        end=times[-1].date(),
        features=names,
        rows=2 * MINUTES,
        rows_unlabelled=0,
        first_time=str(times[0]),
        last_time=str(times[-1]),
        config=FeatureConfig().model_dump(mode="json"),
    )
    (home / "info.json").write_text(info.model_dump_json())
    assert LocalStorage(home / "data").exists(f"{prefix}/labelled.parquet")
    return info


def _train(home: Path, budget: int) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(home), str(budget)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "OMP_NUM_THREADS": "2"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_the_train_step_samples_to_its_budget_and_its_peak_grows_at_most_as_the_budget(
    tmp_path: Path,
) -> None:
    info = _dataset(tmp_path)
    small, large = _train(tmp_path, 16), _train(tmp_path, 64)
    for run, budget in ((small, 16), (large, 64)):
        allowed = budget * 2**20 // TRAIN_BYTES_PER_ROW
        assert run["sampled_from"] is not None and run["sampled_from"] > allowed
        assert run["sampled_from"] < info.rows
        assert run["train_rows"] == allowed
    growth = (large["peak"] - large["before"]) - (small["peak"] - small["before"])
    per_row = growth / (large["train_rows"] - small["train_rows"])
    print(f"\npeak growth per sampled row: {per_row:.0f} B")
    assert 0 < growth <= (64 - 16) * 2**20, f"{growth / 2**20:.1f} MiB for 48 MiB more budget"
