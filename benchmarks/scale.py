"""The whole training DAG (`mlops run`, in-process) at 1x, 4x and 16x two symbols x 60 days.

Builds (once, cached under benchmarks/.work/scale) a synthetic mirror of the largest size; each
size then runs `mlops run --json` on a subset of it in a fresh process with a fresh
``MLOPS_HOME`` (local sqlite MLflow, local storage). The child's wall time, CPU seconds (user +
system) and peak RSS come from `os.wait4` (the child and the processes it waited for), so one
size's figures never carry another's. While it runs, the child's RSS and CPU are sampled every
0.1 s from /proc and attributed to the step(s) running (the runner's ``<step>: started`` lines):
``step_peak_rss_mib`` and ``step_cpu_s`` in the JSON (a step's peak is the process's while it
ran, so it includes what earlier steps left allocated; the fan-out's worker processes count in
CPU, not in RSS).

Sizes (1m bars): 1x = 2 symbols x 60 days (the defaults until 2026-12-02; the default six
symbols' 60 days are 3x), 4x = 4 x 120, 16x = 8 x 240.

Usage: uv run python benchmarks/scale.py [--sizes 1,4,16] [--env KEY=VALUE ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import IO

WORK = Path(__file__).resolve().parent / ".work" / "scale"
REPO = Path(__file__).resolve().parent.parent
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "LTCUSDT"]
START = date(2024, 1, 1)
SIZES = {1: (2, 60), 4: (4, 120), 16: (8, 240)}
"""Scale factor -> (symbols, days)."""


def mirror() -> Path:
    """The mirror of the largest size (built once; every size reads a subset of it)."""
    root = WORK / "mirror"
    symbols, days = max(SIZES.values())
    if not (WORK / "ready").exists():
        shutil.rmtree(root, ignore_errors=True)
        print(f"building mirror of {symbols} x {days} days …", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pipelines", "data", "mirror", str(root),
             "--symbols", ",".join(SYMBOLS[:symbols]), "--start", START.isoformat(),
             "--days", str(days), "--json"],
            cwd=REPO, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        (WORK / "ready").touch()
    return root


def _rss_and_cpu(pid: int) -> tuple[int, float]:
    """The process's resident set (bytes) and CPU seconds so far (user + system, its own and
    its waited-for children's: the fan-out's worker processes), from /proc."""
    rss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, sum(int(value) for value in fields[11:15]) / ticks


def _exited(pid: int) -> bool:
    """Whether the child exited, without reaping it (`os.wait4` collects its usage after)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


STEP_EVENTS = {
    "step_started": "started",
    "step_succeeded": "succeeded",
    "step_failed": "failed",
    "step_resumed": "resumed",
}
"""The runner's JSON log events (its logs are JSON where stderr is no terminal) as the events
of its ``<step>: <event>`` progress lines."""


def _step_event(text: str) -> tuple[str, str]:
    """(step, event) of one stderr line of the run: a JSON log record or a progress line."""
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except ValueError:
            return "", ""
        return str(record.get("step") or ""), STEP_EVENTS.get(str(record.get("event")), "")
    name, _, event = text.rpartition(": ")
    return name, event


def watch(child: subprocess.Popen[bytes], log: IO[bytes]) -> dict[str, dict[str, float]]:
    """Copy the child's stderr to `log` while sampling its RSS every 0.1 s; the peak RSS and
    CPU seconds of each step, attributed by the runner's ``<step>: started`` lines (the peak of
    a step is the process's, so it includes what earlier steps left allocated)."""
    running: list[str] = []
    current = ["(start-up)"]
    figures: dict[str, dict[str, float]] = {}

    def copy() -> None:
        assert child.stderr is not None
        for line in child.stderr:
            log.write(line)
            name, event = _step_event(line.decode(errors="replace").strip())
            if event == "started" and name:
                running.append(name)
            elif event in ("succeeded", "failed", "resumed") and name in running:
                running.remove(name)
            current[0] = "+".join(running) or current[0]

    reader = threading.Thread(target=copy, daemon=True)
    reader.start()
    cpu_before, step = 0.0, current[0]
    while not _exited(child.pid):
        try:
            rss, cpu = _rss_and_cpu(child.pid)
        except (OSError, IndexError, ValueError):
            break
        if current[0] != step:
            figures.setdefault(step, {"rss": 0, "cpu": 0.0})["cpu"] += cpu - cpu_before
            cpu_before, step = cpu, current[0]
        entry = figures.setdefault(step, {"rss": 0, "cpu": 0.0})
        entry["rss"] = max(entry["rss"], rss)
        time.sleep(0.1)
    reader.join(timeout=10)
    figures.setdefault(step, {"rss": 0, "cpu": 0.0})["cpu"] -= cpu_before  # + the rest: caller
    figures[step]["last"] = 1
    return figures


def run_size(factor: int, source: Path, extra_env: dict[str, str]) -> dict[str, object]:
    """One `mlops run` of the size `factor` in a fresh process and home; its figures."""
    n_symbols, days = SIZES[factor]
    end = START + timedelta(days=days - 1)
    home = Path(tempfile.mkdtemp(prefix=f"scale-{factor}x-", dir=WORK))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))}
    env.update({"MLOPS_HOME": str(home), "PYTHONUNBUFFERED": "1", **extra_env})
    command = [
        sys.executable, "-m", "pipelines", "run", "--source", source.as_uri(),
        "--symbols", ",".join(SYMBOLS[:n_symbols]), "--start", START.isoformat(),
        "--end", end.isoformat(), "--json",
    ]  # fmt: skip
    started = time.perf_counter()
    with open(home / "stdout.json", "wb") as out, open(home / "stderr.log", "wb") as errors:
        child = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.PIPE)
        by_step = watch(child, errors)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        tail = (home / "stderr.log").read_text()[-3000:]
        raise SystemExit(f"{factor}x failed (exit {child.returncode}); home {home}:\n{tail}")
    summary = json.loads((home / "stdout.json").read_text())
    rows = n_symbols * days * 1440
    peak = usage.ru_maxrss * 1024  # KiB on Linux
    cpu = usage.ru_utime + usage.ru_stime
    for figure in by_step.values():
        figure["cpu"] += cpu if figure.pop("last", 0) else 0
    steps = summary["steps"]
    shutil.rmtree(home, ignore_errors=True)
    return {
        "factor": factor,
        "symbols": n_symbols,
        "days": days,
        "rows_1m": rows,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "peak_rss_mib": round(peak / 2**20),
        "cpu_us_per_row": round(cpu / rows * 1e6, 2),
        "peak_rss_b_per_row": round(peak / rows),
        "train_rows": steps["train"]["train_rows"],
        "train_sampled": steps["train"].get("sampled_from"),
        "roc_auc": round(steps["evaluate"]["metrics"]["roc_auc"], 4),
        "step_seconds": {name: step.get("seconds") for name, step in steps.items()},
        "step_peak_rss_mib": {name: round(v["rss"] / 2**20) for name, v in by_step.items()},
        "step_cpu_s": {name: round(v["cpu"], 1) for name, v in by_step.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,4,16", help="scale factors among 1,4,16")
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the runs (e.g. MLOPS_...)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    WORK.mkdir(parents=True, exist_ok=True)
    source = mirror()
    results = []
    for factor in (int(s) for s in args.sizes.split(",")):
        results.append(run_size(factor, source, extra))
        r = results[-1]
        print(
            f"{factor}x: {r['wall_s']} s wall, {r['cpu_s']} s CPU, {r['peak_rss_mib']} MiB peak",
            file=sys.stderr,
        )
    load = os.getloadavg()
    report = {"date": date.today().isoformat(), "load_avg": load, "env": extra, "sizes": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        "| size | symbols x days | 1m rows | wall | CPU | peak RSS | CPU/row | RSS/row | "
        "train rows | ROC-AUC |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for r in results:
        print(
            f"| {r['factor']}x | {r['symbols']} x {r['days']} | {r['rows_1m']:,} | {r['wall_s']} s "
            f"| {r['cpu_s']} s | {r['peak_rss_mib']} MiB | {r['cpu_us_per_row']} µs "
            f"| {r['peak_rss_b_per_row']} B | {r['train_rows']:,} | {r['roc_auc']} |"
        )
    for r in results:
        steps = r["step_peak_rss_mib"]
        cpu = r["step_cpu_s"]
        assert isinstance(steps, dict) and isinstance(cpu, dict)
        print(
            f"\n{r['factor']}x by step (peak RSS MiB / CPU s): "
            + ", ".join(f"{name} {steps[name]} / {cpu[name]}" for name in steps)
        )
    print(f"\nload average at the end (1, 5, 15 min): {load}")


if __name__ == "__main__":
    main()
