"""The training DAG in-process (the local default) vs the same DAG on the cluster path, pod by
pod (`mlops workflows run-local` against `mlops services`), on the same mirror and settings.

    uv run python benchmarks/cluster_path.py [--days 30] [--repeat 2] [--json]

It starts its own services (own home and port base, stopped at the end), writes a synthetic
1m mirror of 2 symbols, and per repeat runs, interleaved: `mlops run` on local storage with a
sqlite registry, then `mlops workflows run-local --stack dev --pipeline training` on S3 and the
MLflow server. Reported: wall time of each (median), their ratio, and per step the extra
seconds of a pod (cold process, imports, S3 and MLflow-server hand-off) over the in-process step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FAST = {  # the same small model on both paths
    "MLOPS_EVAL_DAYS": "2",
    "MLOPS_CV_FOLDS": "2",
    "MLOPS_CHAMPION_MIN_ROC_AUC": "0",
    "MLOPS_MODEL_PARAMS": '{"max_iter": 60}',
}


SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def mlops(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )


def exports(env: dict[str, str]) -> dict[str, str]:
    done = mlops(["services", "env"], env)
    pairs = {}
    for line in done.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        pairs[name] = value.strip("'\"")
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from pipelines.orchestration.argo import render
    from pipelines.orchestration.dag import get_pipeline
    from stacks.config import load_stack_config

    work = Path(tempfile.mkdtemp(prefix="bench-cluster-", dir="/tmp"))
    work.chmod(0o711)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_", "AWS_"))}
    base["MLOPS_SYMBOLS"] = ",".join(SYMBOLS)  # the figures' size (the default is six symbols)
    services_env = {
        **base,
        "MLOPS_HOME": str(work / "services"),
        "MLOPS_SERVICES_PORT_BASE": "18400",
    }
    end = date.today() - timedelta(days=1)
    start = end - timedelta(days=args.days - 1)
    mirror = work / "mirror"
    mlops(
        ["data", "mirror", str(mirror), "--days", str(args.days), "--start", start.isoformat()],
        base,
    )
    config = load_stack_config("dev").workflows
    config = config.model_copy(
        update={"settings": {**config.settings, **FAST}, "symbols": ",".join(SYMBOLS)}
    )
    manifest = work / "training.yaml"
    manifest.write_text(yaml.safe_dump(render(get_pipeline("training"), config)))
    remote = work / "gitops.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(REPO), str(remote)], check=True)
    up = mlops(["services", "up"], services_env)
    assert up.returncode == 0, up.stderr
    rows: list[dict[str, Any]] = []
    try:
        cluster_env = {
            **services_env,
            **exports(services_env),
            "MLOPS_GITOPS_REMOTE": remote.as_uri(),
        }
        for index in range(args.repeat):
            local_env = {**base, **FAST, "MLOPS_HOME": str(work / f"local-{index}")}
            began = time.monotonic()
            done = mlops(
                [
                    "run",
                    "--source",
                    mirror.as_uri(),
                    "--start",
                    start.isoformat(),
                    "--end",
                    end.isoformat(),
                    "--json",
                ],
                local_env,
            )
            local_wall = time.monotonic() - began
            local = json.loads(done.stdout)
            began = time.monotonic()
            done = mlops(
                [
                    "workflows",
                    "run-local",
                    "--file",
                    str(manifest),
                    "--json",
                    "-p",
                    f"source={mirror.as_uri()}",
                    "-p",
                    f"start={start}",
                    "-p",
                    f"end={end}",
                ],
                {**cluster_env, "MLOPS_HOME": str(work / f"pods-{index}")},
            )
            pods_wall = time.monotonic() - began
            pods = json.loads(done.stdout)
            per_pod: dict[str, float] = {}
            for node in pods["nodes"]:
                per_pod[node["task"]] = max(per_pod.get(node["task"], 0.0), node["seconds"])
            rows.append(
                {
                    "local_s": round(local_wall, 1),
                    "local_status": local["status"],
                    "pods_s": round(pods_wall, 1),
                    "pods_status": pods["status"],
                    "step_overhead_s": {
                        step: round(per_pod[step] - result.get("seconds", 0.0), 1)
                        for step, result in local["steps"].items()
                        if step in per_pod
                    },
                }
            )
    finally:
        mlops(["services", "down"], services_env)
    report = {
        "days": args.days,
        "symbols": len(SYMBOLS),
        "repeats": rows,
        "local_median_s": statistics.median(r["local_s"] for r in rows),
        "pods_median_s": statistics.median(r["pods_s"] for r in rows),
        "errors": sum(
            r["local_status"] != "succeeded" or r["pods_status"] != "Succeeded" for r in rows
        ),
        "load_average": os.getloadavg(),
    }
    report["ratio"] = round(report["pods_median_s"] / report["local_median_s"], 2)
    print(json.dumps(report, indent=2) if args.json else report)


if __name__ == "__main__":
    main()
