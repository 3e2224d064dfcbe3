"""Serving benchmark: this Bento (`mlops serve`) against `mlflow models serve --env-manager local`,
the same registered model, in one run, on 127.0.0.1, one worker each, loaded by wrk.

Scenarios: 32 clients x DURATION of single-row requests, then of 100-row requests, then 1 client
single-row. Reports ok-requests/s, p50/p99 latency, non-2xx and socket errors for each, and the
ratios. Before loading, both servers must give the same probabilities for the same 100 rows.

    uv run python benchmarks/serve.py [--home DIR] [--duration 30]

Needs `wrk` (Debian package). Without --home it trains a model first (`mlops quickstart`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.services import free_port, stop, wait_http  # noqa: E402

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY_FILE"), "rb")
wrk.body = f:read("*a")
f:close()
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def mlops(home: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        cwd=REPO,
        env={**os.environ, "MLOPS_HOME": str(home)},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def sample_rows(home: Path, n: int) -> tuple[list[str], np.ndarray]:
    """The champion's feature list and its latest `n` evaluation rows."""
    from pipelines.ml.dataset import read_dataset
    from pipelines.ml.registry import list_versions
    from pipelines.settings import Settings
    from pipelines.storage import open_storage

    settings = Settings(home=home)
    champion = next(v for v in list_versions(settings) if "champion" in v["aliases"])
    storage = open_storage(settings.data_url)
    prefix = f"features/{champion['interval']}/{champion['dataset_hash']}"
    manifest = json.loads(storage.read_bytes(f"{prefix}/manifest.json"))
    rows = read_dataset(storage, prefix).tail(n)
    return manifest["features"], rows[manifest["features"]].to_numpy(dtype=float)


def start(command: list[str], env: dict[str, str], log: Path, ready: str) -> Any:
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_http(ready, process, timeout=180)
    return process


def wrk(url: str, body: bytes, clients: int, seconds: int, work: Path) -> dict[str, float]:
    body_file = work / f"body-{len(body)}.json"
    body_file.write_bytes(body)
    script = work / "post.lua"
    script.write_text(LUA)
    threads = min(2, clients)
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{clients}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        env={**os.environ, "BODY_FILE": str(body_file)},
        capture_output=True,
        text=True,
        check=True,
    )
    text = done.stdout
    total = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", text).group(1))  # type: ignore[union-attr]
    duration = float(re.search(r"requests in ([\d.]+)s", text).group(1))  # type: ignore[union-attr]
    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", text)) else 0
    errors = 0
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        errors = sum(int(g) for g in m.groups())

    def percentile(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", text).groups()  # type: ignore[union-attr]
        return float(value) * UNITS[unit]

    return {
        "requests": total,
        "ok_rps": (total - non_2xx - errors) / duration,
        "p50_ms": percentile("50"),
        "p99_ms": percentile("99"),
        "non_2xx": non_2xx,
        "socket_errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, help="MLOPS_HOME with a champion (default: train one)")
    parser.add_argument("--duration", type=int, default=30, help="seconds per loaded scenario")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    home = args.home or work / "home"
    if args.home is None:
        print("training a model (mlops quickstart) …", file=sys.stderr)
        mlops(home, "quickstart")
    tag = mlops(home, "bento", "build", "--alias", "champion").strip()
    features, matrix = sample_rows(home, 100)
    one_thread = {"OMP_NUM_THREADS": "1", "MLOPS_HOME": str(home)}
    bento_port, mlflow_port = free_port(), free_port()
    bento = start(
        [sys.executable, "-m", "pipelines", "serve", "--port", str(bento_port)],
        one_thread,
        work / "bento.log",
        f"http://127.0.0.1:{bento_port}/readyz",
    )
    mlflow = start(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/market-direction@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--workers",
            "1",
        ],
        {**one_thread, "MLFLOW_TRACKING_URI": f"sqlite:///{home.resolve()}/mlflow.db"},
        work / "mlflow.log",
        f"http://127.0.0.1:{mlflow_port}/ping",
    )
    try:

        def bento_body(rows: np.ndarray) -> bytes:
            return json.dumps(
                {"rows": [dict(zip(features, r, strict=True)) for r in rows.tolist()]}
            ).encode()

        def mlflow_body(rows: np.ndarray) -> bytes:
            return json.dumps(
                {"dataframe_split": {"columns": features, "data": rows.tolist()}}
            ).encode()

        bento_url = f"http://127.0.0.1:{bento_port}/predict"
        mlflow_url = f"http://127.0.0.1:{mlflow_port}/invocations"
        headers = {"Content-Type": "application/json"}
        ours = [
            p["probability_up"]
            for p in httpx.post(bento_url, content=bento_body(matrix), headers=headers).json()
        ]
        theirs = httpx.post(mlflow_url, content=mlflow_body(matrix), headers=headers).json()[
            "predictions"
        ]
        np.testing.assert_allclose(ours, np.asarray(theirs)[:, 1], rtol=1e-12)
        print(f"same answers on 100 rows; bento {tag}", file=sys.stderr)
        scenarios = [
            ("32 clients, 1 row", 32, 1),
            ("32 clients, 100 rows", 32, 100),
            ("1 client, 1 row", 1, 1),
        ]
        results: list[dict[str, Any]] = []
        for name, clients, n in scenarios:
            rows = matrix[-n:]
            for server, url, body in (
                ("bento", bento_url, bento_body(rows)),
                ("mlflow", mlflow_url, mlflow_body(rows)),
            ):
                print(f"{name}: {server} …", file=sys.stderr)
                results.append(
                    {
                        "scenario": name,
                        "server": server,
                        **wrk(url, body, clients, args.duration, work),
                    }
                )
                time.sleep(2)
    finally:
        stop(bento)
        stop(mlflow)
    print("\n| scenario | server | ok req/s | p50 ms | p99 ms | non-2xx | socket errors |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['scenario']} | {r['server']} | {r['ok_rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['non_2xx']} | {r['socket_errors']} |"
        )
    print("\n| scenario | ok req/s ratio (bento / mlflow) | p99 ratio |")
    print("|---|---:|---:|")
    for name, *_ in scenarios:
        b, m = (
            next(r for r in results if r["scenario"] == name and r["server"] == s)
            for s in ("bento", "mlflow")
        )
        print(f"| {name} | {b['ok_rps'] / m['ok_rps']:.2f}x | {b['p99_ms'] / m['p99_ms']:.2f} |")
    print(json.dumps({"bento": tag, "results": results}))


if __name__ == "__main__":
    main()
