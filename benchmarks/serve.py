"""Serving benchmark: this Bento against `mlflow models serve --env-manager local`, the same
registered model, in one run, on 127.0.0.1, one worker each, loaded by `loadgen.py` (its own
process).

- Closed loop (like wrk): 32 clients x 1 row, 32 clients x 100 rows, 1 client x 1 row. Each
  scenario is repeated `--repeats` times, the servers interleaved (bento, mlflow, mlflow, bento,
  …), and the ratios are medians of the per-repeat ratios: mlflow's own throughput moves by 2x
  between runs on a shared machine.
- Open loop: single-row requests at fixed arrival rates (`--rates`), latency from each request's
  scheduled send time, so queueing is counted (no coordinated omission). p50/p99/p99.9 and
  errors per rate (an error can also be the server closing an idle keep-alive connection as a
  request goes out on it), the generator's scheduling error, and each server's knee: the lowest rate at
  which its p99 exceeds 100 ms. A server is not loaded at higher rates once its p99 passed 2 s
  or over 1% of its requests failed.

Before any load, both servers must give the same probabilities for the same 100 rows.
`--baseline DIR` adds a third server: the Bento built from the code in DIR (e.g. `git archive
main | tar -x -C DIR`), for before/after figures in the same run.

    uv run python benchmarks/serve.py [--home DIR] [--duration 10] [--repeats 3]
        [--rates 50,100,200,300,500,700,1000] [--baseline DIR] [--json FILE]
    uv run python benchmarks/serve.py --shadow --rates 50,200 --repeats 5 [--home DIR]

`--shadow` measures only the cost of a challenger in shadow: the champion served twice (shadow
off, shadow on), open loop at each rate, repeats interleaved.

Without --home it trains a model first (`mlops quickstart`).
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
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.services import free_port, stop, wait_http  # noqa: E402

KNEE_MS = 100.0
"""The knee: the lowest arrival rate at which a server's p99 exceeds this."""

GIVE_UP_MS = 2000.0
"""Past this p99 (or over 1% errors) a server is not loaded at higher rates (it only queues)."""


def mlops(home: Path, *args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        cwd=cwd,
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


def load(mode: str, url: str, body: bytes, work: Path, **options: float) -> dict[str, float]:
    """Run `loadgen.py` in its own process; its JSON summary."""
    body_file = work / f"body-{abs(hash(body))}.json"
    body_file.write_bytes(body)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "loadgen.py"),
            mode,
            url,
            str(body_file),
            *flags,
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout)
    return result


def bento_server(home: Path, tag: str, work: Path, name: str) -> tuple[Any, int]:
    """`bentoml serve TAG` as `mlops serve` runs it (one thread per BLAS, MLOPS_HOME set)."""
    port = free_port()
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    process = start(
        [bentoml, "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
        {
            "OMP_NUM_THREADS": "1",
            "MLOPS_HOME": str(home.resolve()),
            "BENTOML_HOME": str(home.resolve() / "bentoml"),
        },
        work / f"{name}.log",
        f"http://127.0.0.1:{port}/readyz",
    )
    return process, port


def service_server(
    home: Path, model: str, work: Path, name: str, challenger: str = ""
) -> tuple[Any, int]:
    """`bentoml serve bentos.service:MarketDirection` of `model` from the store (as
    `bentos.start` runs it in a pod), with `challenger` scored in shadow if given."""
    port = free_port()
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    shadow = ["--arg", f"challenger={challenger}"] if challenger else []
    where = ["--host", "127.0.0.1", "--port", str(port)]
    process = start(
        [
            bentoml,
            "serve",
            "bentos.service:MarketDirection",
            *where,
            "--arg",
            f"model={model}",
            *shadow,
        ],
        {
            "OMP_NUM_THREADS": "1",
            "MLOPS_HOME": str(home.resolve()),
            "BENTOML_HOME": str(home.resolve() / "bentoml"),
        },
        work / f"{name}.log",
        f"http://127.0.0.1:{port}/readyz",
    )
    return process, port


def shadow_overhead(home: Path, work: Path, args: argparse.Namespace) -> None:
    """Open loop, shadow off vs on, in one run: the same champion served twice, one of them
    scoring a challenger in shadow (the champion's own model again under the ``challenger``
    argument: the same size of forest as a retrained challenger). Rates and repeats
    interleaved (off, on, on, off, …); per rate the p99s and the median of the per-repeat
    on/off p99 ratios."""
    listed = json.loads(mlops(home, "models", "list", "--json"))["versions"]
    champion = next(v for v in listed if "champion" in v["aliases"])
    model = f"market-direction:v{champion['version']}"
    mlops(home, "bento", "build", "--alias", "champion")  # imports the model into the store
    features, matrix = sample_rows(home, 1)
    body = json.dumps({"rows": [dict(zip(features, matrix[0].tolist(), strict=True))]}).encode()
    processes: list[Any] = []
    urls: dict[str, str] = {}
    try:
        for name, challenger in (("shadow-off", ""), ("shadow-on", model)):
            process, port = service_server(home, model, work, name, challenger)
            processes.append(process)
            urls[name] = f"http://127.0.0.1:{port}/predict"
        meta = httpx.get(urls["shadow-on"].replace("/predict", "/metadata")).json()
        assert meta["shadow"]["state"] == "on", meta["shadow"]
        rows: list[dict[str, Any]] = []
        rates = [float(r) for r in args.rates.split(",")]
        for repeat in range(args.repeats):
            for rate in rates:
                order = list(urls) if (repeat + len(rows)) % 2 == 0 else list(urls)[::-1]
                for server in order:
                    print(f"open {rate:g} req/s #{repeat + 1}: {server} …", file=sys.stderr)
                    result = load(
                        "open", urls[server], body, work, rate=rate, duration=args.open_duration
                    )
                    rows.append({"server": server, "repeat": repeat, **result})
                    time.sleep(1)
    finally:
        for process in processes:
            stop(process)
    print(
        "\n| rate req/s | repeats | p50 off / on ms | p99 off ms (median) | p99 on ms (median) "
        "| p99 on/off (median of repeats, min to max) | errors off / on | load avg |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rate in sorted({r["rate"] for r in rows}):
        off = [r for r in rows if r["rate"] == rate and r["server"] == "shadow-off"]
        on = [r for r in rows if r["rate"] == rate and r["server"] == "shadow-on"]
        ratios = [b["p99_ms"] / a["p99_ms"] for a in off for b in on if a["repeat"] == b["repeat"]]

        def med(runs: list[dict[str, Any]], key: str) -> float:
            return float(statistics.median(r[key] for r in runs))

        print(
            f"| {rate:g} | {len(off)} | {med(off, 'p50_ms'):.2f} / {med(on, 'p50_ms'):.2f} | "
            f"{med(off, 'p99_ms'):.2f} | {med(on, 'p99_ms'):.2f} | "
            f"**{statistics.median(ratios):.3f}** ({min(ratios):.2f} to {max(ratios):.2f}) | "
            f"{sum(r['errors'] + r['non_2xx'] for r in off)} / "
            f"{sum(r['errors'] + r['non_2xx'] for r in on)} | "
            f"{med(off + on, 'load_average'):.1f} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"shadow": rows}))


def mlflow_server(home: Path, work: Path) -> tuple[Any, int]:
    """`mlflow models serve` of the champion, one worker, no env manager."""
    port = free_port()
    process = start(
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
            str(port),
            "--workers",
            "1",
        ],
        {
            "OMP_NUM_THREADS": "1",
            "MLOPS_HOME": str(home),
            "MLFLOW_TRACKING_URI": f"sqlite:///{home.resolve()}/mlflow.db",
        },
        work / "mlflow.log",
        f"http://127.0.0.1:{port}/ping",
    )
    return process, port


def knee(rows: list[dict[str, Any]], server: str) -> str:
    """The lowest rate at which `server`'s p99 exceeded KNEE_MS (or errors appeared)."""
    runs = sorted((r for r in rows if r["server"] == server), key=lambda r: r["rate"])
    below = [r["rate"] for r in runs if r["p99_ms"] <= KNEE_MS and not r["errors"]]
    above = [r["rate"] for r in runs if r["p99_ms"] > KNEE_MS or r["errors"]]
    if not above:
        return f"> {max(below):g} req/s (not reached)" if below else "n/a"
    first = min(above)
    last_ok = max((b for b in below if b < first), default=None)
    return f"{last_ok:g} to {first:g} req/s" if last_ok is not None else f"≤ {first:g} req/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, help="MLOPS_HOME with a champion (default: train one)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per closed-loop run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved closed-loop repeats")
    parser.add_argument("--open-duration", type=float, default=10, help="seconds per rate")
    parser.add_argument("--rates", default="50,100,200,300,500,700,1000", help="open loop, req/s")
    parser.add_argument("--baseline", type=Path, help="a checkout whose Bento is served too")
    parser.add_argument("--only", choices=["closed", "open"], help="run one of the two parts")
    parser.add_argument("--json", type=Path, help="also write every result here")
    parser.add_argument(
        "--shadow",
        action="store_true",
        help="only the shadow overhead: open loop at --rates, shadow off vs on, --repeats times",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    home = (args.home or work / "home").resolve()
    if args.home is None:
        print("training a model (mlops quickstart) …", file=sys.stderr)
        mlops(home, "quickstart")
    if args.shadow:
        shadow_overhead(home, work, args)
        return
    tags = {"bento": mlops(home, "bento", "build", "--alias", "champion").strip()}
    if args.baseline is not None:
        base = args.baseline.resolve()
        tags["bento-base"] = mlops(home, "bento", "build", "--alias", "champion", cwd=base).strip()
    features, matrix = sample_rows(home, 100)
    processes: list[Any] = []
    urls: dict[str, str] = {}
    try:
        for name, tag in tags.items():
            process, port = bento_server(home, tag, work, name)
            processes.append(process)
            urls[name] = f"http://127.0.0.1:{port}/predict"
        process, port = mlflow_server(home, work)
        processes.append(process)
        urls["mlflow"] = f"http://127.0.0.1:{port}/invocations"

        def body(server: str, rows: np.ndarray) -> bytes:
            if server == "mlflow":
                split = {"columns": features, "data": rows.tolist()}
                return json.dumps({"dataframe_split": split}).encode()
            named = [dict(zip(features, r, strict=True)) for r in rows.tolist()]
            return json.dumps({"rows": named}).encode()

        headers = {"Content-Type": "application/json"}
        theirs = httpx.post(urls["mlflow"], content=body("mlflow", matrix), headers=headers)
        for name in tags:
            ours = httpx.post(urls[name], content=body(name, matrix), headers=headers).json()
            np.testing.assert_allclose(
                [p["probability_up"] for p in ours],
                np.asarray(theirs.json()["predictions"])[:, 1],
                rtol=1e-12,
            )
        print(f"same answers on 100 rows; {tags}", file=sys.stderr)
        servers = list(urls)
        closed: list[dict[str, Any]] = []
        scenarios = [("32 clients, 1 row", 32, 1), ("32 clients, 100 rows", 32, 100)]
        scenarios.append(("1 client, 1 row", 1, 1))
        for repeat in range(args.repeats if args.only != "open" else 0):
            order = servers if repeat % 2 == 0 else servers[::-1]
            for name, clients, n in scenarios:
                for server in order:
                    print(f"closed {name} #{repeat + 1}: {server} …", file=sys.stderr)
                    result = load(
                        "closed",
                        urls[server],
                        body(server, matrix[-n:]),
                        work,
                        clients=clients,
                        duration=args.duration,
                    )
                    closed.append({"scenario": name, "server": server, "repeat": repeat, **result})
                    time.sleep(1)
        opened: list[dict[str, Any]] = []
        given_up: set[str] = set()
        rates = [float(r) for r in args.rates.split(",")] if args.only != "closed" else []
        for i, rate in enumerate(rates):
            for server in servers if i % 2 == 0 else servers[::-1]:
                if server in given_up:
                    continue
                print(f"open {rate:g} req/s: {server} …", file=sys.stderr)
                result = load(
                    "open",
                    urls[server],
                    body(server, matrix[-1:]),
                    work,
                    rate=rate,
                    duration=args.open_duration,
                )
                opened.append({"server": server, **result})
                if (
                    result["p99_ms"] > GIVE_UP_MS
                    or result["errors"] > 0.01 * rate * args.open_duration
                ):
                    given_up.add(server)
                time.sleep(1)
    finally:
        for process in processes:
            stop(process)
    report(servers, closed, opened, scenarios)
    if args.json is not None:
        args.json.write_text(json.dumps({"tags": tags, "closed": closed, "open": opened}))


def report(
    servers: list[str],
    closed: list[dict[str, Any]],
    opened: list[dict[str, Any]],
    scenarios: list[tuple[str, int, int]],
) -> None:
    """Markdown tables: closed-loop medians and ratios, open-loop rows and knees."""
    if closed:
        print(
            "\n| scenario | server | ok req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | errors "
            "| load avg |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, *_ in scenarios:
            for server in servers:
                runs = [r for r in closed if r["scenario"] == name and r["server"] == server]
                med = {
                    k: statistics.median(r[k] for r in runs)
                    for k in runs[0]
                    if isinstance(runs[0][k], (int, float))
                }
                bad = sum(r["non_2xx"] for r in runs), sum(r["errors"] for r in runs)
                print(
                    f"| {name} | {server} | {med['ok_rps']:.0f} | {med['p50_ms']:.2f} | "
                    f"{med['p99_ms']:.2f} | {med['p999_ms']:.2f} | {bad[0]} | {bad[1]} | "
                    f"{med['load_average']:.1f} |"
                )
        print("\n(medians of the repeats; non-2xx and errors summed over them)")
        print("\n| scenario | server | ok req/s ratio vs mlflow (median, min to max) | p99 ratio |")
        print("|---|---|---:|---:|")
        for name, *_ in scenarios:
            for server in (s for s in servers if s != "mlflow"):
                pairs = [
                    (b, m)
                    for b in closed
                    for m in closed
                    if b["scenario"] == m["scenario"] == name
                    and b["server"] == server
                    and m["server"] == "mlflow"
                    and b["repeat"] == m["repeat"]
                ]
                ratios = [b["ok_rps"] / m["ok_rps"] for b, m in pairs]
                p99s = [b["p99_ms"] / m["p99_ms"] for b, m in pairs]
                print(
                    f"| {name} | {server} | **{statistics.median(ratios):.2f}x** "
                    f"({min(ratios):.2f} to {max(ratios):.2f}) | {statistics.median(p99s):.2f} |"
                )
    if opened:
        print(
            "\n| rate req/s | server | ok req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | errors "
            "| p99 from actual send ms | sched. late p99 / max ms | connections | load avg |"
        )
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in sorted(opened, key=lambda r: (r["rate"], servers.index(r["server"]))):
            print(
                f"| {r['rate']:g} | {r['server']} | {r['ok_rps']:.0f} | {r['p50_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {r['non_2xx']} | {r['errors']} | "
                f"{r['service_p99_ms']:.2f} | "
                f"{r['sched_late_p99_ms']:.2f} / {r['sched_late_max_ms']:.2f} | "
                f"{r['connections']} | {r['load_average']:.1f} |"
            )
        print(f"\n| server | knee (p99 > {KNEE_MS:g} ms) |")
        print("|---|---|")
        for server in servers:
            print(f"| {server} | {knee(opened, server)} |")


if __name__ == "__main__":
    main()
