"""Validate+curate vs an equivalent DuckDB query, side by side in one run.

Builds (once, cached under benchmarks/.work) a synthetic archive of 2 symbols x 365 days of
1m bars (730 zips, ~1.05M rows), fetches it into a local storage and unzips the CSVs for
DuckDB. Then, for each repetition, runs in a fresh subprocess (so peak RSS is its own):

* ours:   `pipelines.data.validate.validate` — header detection, typed parse, row rules,
          dedupe, quarantine, curated Parquet partitioned by symbol and date;
* duckdb: read the same CSVs (typed columns, header rows skipped as errors), DISTINCT,
          the same OHLC/volume/close_time rules, Parquet partitioned by symbol and date,
          plus a daily OHLC aggregation.

Usage: uv run python benchmarks/etl.py [--days 365] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import zipfile
from datetime import date, timedelta
from pathlib import Path

WORK = Path(__file__).resolve().parent / ".work"
REPO = Path(__file__).resolve().parent.parent
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
START = date(2023, 1, 1)

OURS = """
import sys, time, json
def peak_mib():
    # VmHWM belongs to this process image (ru_maxrss would carry the parent's over exec)
    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))
    return int(line.split()[1]) / 1024
from datetime import date
from pipelines.storage import LocalStorage
from pipelines.data.validate import validate
storage = LocalStorage(__import__('pathlib').Path(sys.argv[1]))
start, end = date.fromisoformat(sys.argv[2]), date.fromisoformat(sys.argv[3])
t = time.perf_counter()
r = validate(storage, ["BTCUSDT", "ETHUSDT"], "1m", start, end, max_share=0.01)
wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "rows": r.rows_valid, "errors": r.rows_quarantined,
                  "rss_mib": peak_mib()}))
"""

DUCK = """
import sys, time, json
def peak_mib():
    # VmHWM belongs to this process image (ru_maxrss would carry the parent's over exec)
    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))
    return int(line.split()[1]) / 1024
import duckdb
csv_glob, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
t = time.perf_counter()
con.execute(f'''
CREATE TEMP TABLE bars AS
SELECT DISTINCT
  regexp_extract(filename, '([A-Z0-9]+)-1m-', 1) AS symbol,
  CAST(regexp_extract(filename, '-1m-([0-9-]+)\\.csv', 1) AS DATE) AS date,
  make_timestamp(CASE WHEN open_time >= 1e15 THEN open_time // 1000 ELSE open_time END * 1000) AS open_time,
  open, high, low, close, volume,
  make_timestamp(CASE WHEN close_time >= 1e15 THEN close_time // 1000 ELSE close_time END * 1000) AS close_time,
  quote_volume, count, taker_buy_volume, taker_buy_quote_volume
FROM read_csv('{csv_glob}', header=false, ignore_errors=true, filename=true,
  columns={{'open_time':'BIGINT','open':'DOUBLE','high':'DOUBLE','low':'DOUBLE','close':'DOUBLE',
           'volume':'DOUBLE','close_time':'BIGINT','quote_volume':'DOUBLE','count':'BIGINT',
           'taker_buy_volume':'DOUBLE','taker_buy_quote_volume':'DOUBLE','ignore':'BIGINT'}})
WHERE low <= least(open, close) AND greatest(open, close) <= high AND open > 0
  AND volume >= 0 AND quote_volume >= 0 AND count >= 0 AND taker_buy_volume >= 0
  AND close_time = open_time + 59999
''')
con.execute(f"COPY (SELECT * FROM bars ORDER BY symbol, open_time) TO '{out}' (FORMAT parquet, PARTITION_BY (symbol, date))")
daily = con.execute('''SELECT symbol, date, arg_min(open, open_time), max(high), min(low), arg_max(close, open_time),
  sum(volume) FROM bars GROUP BY ALL''').fetchall()
rows = con.execute('SELECT count(*) FROM bars').fetchone()[0]
wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "rows": rows, "errors": 0, "days": len(daily),
                  "rss_mib": peak_mib()}))
"""


def prepare(days: int) -> tuple[Path, Path, date]:
    """Mirror, fetched storage and unzipped CSVs for `days` days (built once, then reused)."""
    from pipelines.data.fetch import fetch
    from pipelines.settings import Settings
    from pipelines.storage import LocalStorage
    from pipelines.synthetic.mirror import write_mirror

    end = START + timedelta(days=days - 1)
    base = WORK / f"{days}d"
    mirror, storage_dir, csv_dir = base / "mirror", base / "storage", base / "csv"
    if not (base / "ready").exists():
        shutil.rmtree(base, ignore_errors=True)
        print(f"building mirror of {len(SYMBOLS)} x {days} days …", file=sys.stderr)
        write_mirror(mirror, SYMBOLS, "1m", START, days)
        storage = LocalStorage(storage_dir)
        fetch(Settings(home=base), storage, mirror.as_uri(), SYMBOLS, "1m", START, end)
        csv_dir.mkdir(parents=True)
        for key in storage.list("raw/"):
            if key.endswith(".zip"):
                with zipfile.ZipFile(io.BytesIO(storage.read_bytes(key))) as archive:
                    archive.extractall(csv_dir)
        (base / "ready").touch()
    return storage_dir, csv_dir, end


def run(code: str, *args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"benchmark child failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    storage_dir, csv_dir, end = prepare(args.days)
    ours, duck = [], []
    for i in range(args.repeat):
        shutil.rmtree(storage_dir / "curated", ignore_errors=True)
        shutil.rmtree(storage_dir / "quarantine", ignore_errors=True)
        out = WORK / "duck-out"
        shutil.rmtree(out, ignore_errors=True)
        ours.append(run(OURS, str(storage_dir), START.isoformat(), end.isoformat()))
        duck.append(run(DUCK, str(csv_dir / "*.csv"), str(out)))
        print(
            f"rep {i + 1}: ours {ours[-1]['wall']:.2f}s, duckdb {duck[-1]['wall']:.2f}s",
            file=sys.stderr,
        )

    def med(xs: list[dict[str, float]], key: str) -> float:
        return statistics.median(x[key] for x in xs)

    report = {
        "date": date.today().isoformat(),
        "files": len(SYMBOLS) * args.days,
        "rows": int(ours[0]["rows"]),
        "ours": {
            "wall_s": round(med(ours, "wall"), 3),
            "peak_rss_mib": round(max(x["rss_mib"] for x in ours)),
            "rows": int(ours[0]["rows"]),
            "errors": int(ours[0]["errors"]),
        },
        "duckdb": {
            "wall_s": round(med(duck, "wall"), 3),
            "peak_rss_mib": round(max(x["rss_mib"] for x in duck)),
            "rows": int(duck[0]["rows"]),
            "errors": int(duck[0]["errors"]),
        },
    }
    report["ratio_wall"] = round(report["ours"]["wall_s"] / report["duckdb"]["wall_s"], 2)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        o, d = report["ours"], report["duckdb"]
        print("| engine | wall (median) | peak RSS | rows | errors |\n|---|---|---|---|---|")
        print(
            f"| ours (validate+curate) | {o['wall_s']} s | {o['peak_rss_mib']} MiB | {o['rows']:,} | {o['errors']} |"
        )
        print(
            f"| DuckDB {__import__('duckdb').__version__} | {d['wall_s']} s | {d['peak_rss_mib']} MiB | {d['rows']:,} | {d['errors']} |"
        )
        print(f"\nratio ours/duckdb wall: {report['ratio_wall']}x")


if __name__ == "__main__":
    main()
