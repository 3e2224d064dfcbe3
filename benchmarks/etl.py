"""Validate+curate vs the equivalent DuckDB and Polars queries, side by side in one run.

Builds (once, cached under benchmarks/.work) a synthetic archive of 2 symbols x 365 days of
1m bars (730 zips, ~1.05M rows, about half with a header row) with faults planted in some
files: rows that break a row rule (every 7th file) and malformed rows — a non-number, an empty
value, an 11-column line, exact and conflicting duplicates (every 29th file). It fetches the
archive into a local storage and unzips the CSVs for the peers. Then, for each repetition,
each engine runs in a fresh subprocess (so peak RSS is its own), in an order rotated every
repetition:

* ours:   `pipelines.data.validate.validate` over the zips in storage — bounded unzip, header
          detection, typed parse, every row rule with its reason, dedupe, quarantine CSV per
          day, curated zstd Parquet per symbol/day with its stats in the file metadata;
* duckdb: `read_csv` over the unzipped CSVs (spared the unzip) with typed columns and
          `store_rejects` (header, ragged and non-numeric lines land in its rejects table with
          their line number and column), the same rules as a CASE per row giving the first
          reason, DISTINCT, conflicting duplicates out, Parquet partitioned by symbol and date,
          the quarantined rows with their reason to CSV;
* polars: the same over the unzipped CSVs read as lines (Polars has no rejects table, so the
          column count and non-numbers are found by splitting each line and casting), written
          the same way.

After the first repetition the outputs are compared: curated rows, their sums of open_time,
close and volume, the quarantine counts by reason and the exact duplicates must be equal for
all engines, or the benchmark stops.

Usage: uv run python benchmarks/etl.py [--days 365] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
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
ENGINES = ("ours", "duckdb", "polars")

PEAK = """
import sys, time, json
def peak_mib():
    # VmHWM belongs to this process image (ru_maxrss would carry the parent's over exec)
    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))
    return int(line.split()[1]) / 1024
"""

OURS = (
    PEAK
    + """
from collections import Counter
from datetime import date
from pathlib import Path
from pipelines.storage import LocalStorage
from pipelines.data.validate import validate
storage = LocalStorage(Path(sys.argv[1]))
start, end = date.fromisoformat(sys.argv[2]), date.fromisoformat(sys.argv[3])
t = time.perf_counter()
r = validate(storage, ["BTCUSDT", "ETHUSDT"], "1m", start, end, max_share=0.01)
wall = time.perf_counter() - t
reasons = Counter()
for per_file in r.quarantine.values():
    reasons.update(per_file)
print(json.dumps({"wall": wall, "rows": r.rows_valid, "quarantined": r.rows_quarantined,
                  "duplicates": r.rows_duplicate, "reasons": dict(reasons), "rss_mib": peak_mib()}))
"""
)

COLUMNS = (  # inside the child's f-string: its braces are added there
    "'open_time':'BIGINT','open':'DOUBLE','high':'DOUBLE','low':'DOUBLE','close':'DOUBLE',"
    "'volume':'DOUBLE','close_time':'BIGINT','quote_volume':'DOUBLE','count':'BIGINT',"
    "'taker_buy_volume':'DOUBLE','taker_buy_quote_volume':'DOUBLE','ignore':'VARCHAR'"
)
NUMERIC = ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
           "count", "taker_buy_volume", "taker_buy_quote_volume")  # fmt: skip
NEGATIVE = ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume", "count")
VALUES = ", ".join(n for n in NUMERIC if n not in ("open_time", "close_time"))

DUCK_RULES = (
    "CASE "
    + " ".join(
        f"WHEN {n} IS NULL OR NOT isfinite({n}::DOUBLE) THEN 'unparseable or missing {n}'"
        for n in NUMERIC
    )
    + " WHEN open <= 0 OR high <= 0 OR low <= 0 OR close <= 0 THEN 'non-positive price'"
    " WHEN low > least(open, close) OR greatest(open, close) > high"
    " THEN 'OHLC inconsistent (low <= open,close <= high)' "
    + " ".join(f"WHEN {n} < 0 THEN 'negative {n}'" for n in NEGATIVE)
    + " WHEN ot < day_ms OR ot >= day_ms + 86400000 THEN 'open_time outside the file''s day'"
    " WHEN (ot - day_ms) % 60000 != 0 THEN 'open_time not on a 1m boundary'"
    " WHEN ct != ot + 59999 THEN 'close_time != open_time + 1m - 1ms' END"
)

DUCK = (
    PEAK
    + f"""
import duckdb
csv_glob, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
t = time.perf_counter()
con.execute(f'''
CREATE TEMP TABLE checked AS
SELECT symbol, date, ot, ct, {VALUES}, {DUCK_RULES} AS reason FROM (
  SELECT regexp_extract(filename, '([A-Z0-9]+)-1m-', 1) AS symbol,
    CAST(regexp_extract(filename, '-1m-([0-9-]+)\\\\.csv', 1) AS DATE) AS date,
    epoch_ms(date::TIMESTAMP) AS day_ms,
    CASE WHEN open_time >= 1e15 THEN open_time // 1000 ELSE open_time END AS ot,
    CASE WHEN close_time >= 1e15 THEN close_time // 1000 ELSE close_time END AS ct, *
  FROM read_csv('{{csv_glob}}', header=false, filename=true, auto_detect=false, delim=',',
    quote='"', store_rejects=true, columns={{{{{COLUMNS}}}}}))
''')
con.execute('''CREATE TEMP TABLE rejected AS
SELECT CASE WHEN error_type IN ('TOO MANY COLUMNS', 'MISSING COLUMNS')
  THEN 'expected 12 columns, got ' || (length(csv_line) - length(replace(csv_line, ',', '')) + 1)
  ELSE 'unparseable or missing ' || column_name END AS reason, csv_line
FROM (SELECT file_id, line, arg_min(column_name, column_idx) AS column_name,
        any_value(error_type) AS error_type, any_value(csv_line) AS csv_line
      FROM reject_errors GROUP BY file_id, line)
WHERE NOT (line = 1 AND NOT regexp_full_match(trim(split_part(csv_line, ',', 1)), '-*[0-9]+'))''')
con.execute('CREATE TEMP TABLE valid AS SELECT DISTINCT * EXCLUDE (reason) FROM checked WHERE reason IS NULL')
con.execute('''CREATE TEMP TABLE conflicting AS SELECT v.* FROM valid v
  SEMI JOIN (SELECT symbol, ot FROM valid GROUP BY ALL HAVING count(*) > 1) USING (symbol, ot)''')
con.execute(f'''COPY (SELECT symbol, date, epoch_ms(ot) AS open_time, open, high, low, close, volume,
  epoch_ms(ct) AS close_time, quote_volume, count, taker_buy_volume, taker_buy_quote_volume
  FROM valid ANTI JOIN conflicting USING (symbol, ot) ORDER BY symbol, open_time)
  TO '{{out}}/curated' (FORMAT parquet, PARTITION_BY (symbol, date), COMPRESSION zstd)''')
con.execute(f'''COPY (SELECT reason, NULL AS raw_line FROM checked WHERE reason IS NOT NULL
  UNION ALL SELECT 'conflicting duplicate open_time', NULL FROM conflicting
  UNION ALL SELECT reason, csv_line FROM rejected) TO '{{out}}/quarantine.csv' ''')
reasons = dict(con.execute('''SELECT reason, count(*) FROM (
  SELECT reason FROM checked WHERE reason IS NOT NULL UNION ALL SELECT reason FROM rejected
  UNION ALL SELECT 'conflicting duplicate open_time' FROM conflicting) GROUP BY reason''').fetchall())
valid_rows = con.execute('SELECT count(*) FROM checked WHERE reason IS NULL').fetchone()[0]
distinct = con.execute('SELECT count(*) FROM valid').fetchone()[0]
conflicting = con.execute('SELECT count(*) FROM conflicting').fetchone()[0]
wall = time.perf_counter() - t
print(json.dumps({{"wall": wall, "rows": distinct - conflicting, "quarantined": sum(reasons.values()),
                  "duplicates": valid_rows - distinct, "reasons": reasons, "rss_mib": peak_mib()}}))
"""
)

POLARS = (
    PEAK
    + f"""
import polars as pl
csv_glob, out = sys.argv[1], sys.argv[2]
NUMERIC = {NUMERIC!r}
NEGATIVE = {NEGATIVE!r}
INTS = ("open_time", "close_time", "count")
t = time.perf_counter()
lines = pl.scan_csv(csv_glob, has_header=False, separator="\\x1f", quote_char=None,
                    schema={{"line": pl.String}}, include_file_paths="file")
fields = pl.col("line").str.split_exact(",", 11).struct.rename_fields([*NUMERIC, "ignore"])
first = pl.col("line").str.split_exact(",", 1).struct.field("field_0").str.strip_chars()
header = (pl.int_range(pl.len()).over("file") == 0) & ~first.str.strip_chars_start("-").str.contains(r"^[0-9]+$")
frame = (
    lines.filter(~header)
    .with_columns(
        columns=pl.col("line").str.count_matches(",", literal=True) + 1,
        symbol=pl.col("file").str.extract(r"([A-Z0-9]+)-1m-", 1),
        date=pl.col("file").str.extract(r"-1m-([0-9-]+)\\.csv", 1).str.to_date(),
        parts=fields,
    )
    .unnest("parts")
    .with_columns(
        [pl.col(n).cast(pl.Int64 if n in INTS else pl.Float64, strict=False) for n in NUMERIC]
    )
    .with_columns(
        day_ms=pl.col("date").cast(pl.Int64) * 86_400_000,
        ot=pl.when(pl.col("open_time") >= 10**15).then(pl.col("open_time") // 1000).otherwise(pl.col("open_time")),
        ct=pl.when(pl.col("close_time") >= 10**15).then(pl.col("close_time") // 1000).otherwise(pl.col("close_time")),
    )
)
c = pl.col
rule = pl.when(c("columns") != 12).then(pl.format("expected 12 columns, got {{}}", c("columns")))
for n in NUMERIC:
    rule = rule.when(c(n).is_null() | ~c(n).cast(pl.Float64).is_finite()).then(pl.lit(f"unparseable or missing {{n}}"))
rule = rule.when((c("open") <= 0) | (c("high") <= 0) | (c("low") <= 0) | (c("close") <= 0)).then(pl.lit("non-positive price"))
rule = rule.when((c("low") > pl.min_horizontal("open", "close")) | (pl.max_horizontal("open", "close") > c("high"))).then(
    pl.lit("OHLC inconsistent (low <= open,close <= high)"))
for n in NEGATIVE:
    rule = rule.when(c(n) < 0).then(pl.lit(f"negative {{n}}"))
rule = rule.when((c("ot") < c("day_ms")) | (c("ot") >= c("day_ms") + 86_400_000)).then(pl.lit("open_time outside the file's day"))
rule = rule.when((c("ot") - c("day_ms")) % 60_000 != 0).then(pl.lit("open_time not on a 1m boundary"))
rule = rule.when(c("ct") != c("ot") + 59_999).then(pl.lit("close_time != open_time + 1m - 1ms"))
keep = ["symbol", "date", "ot", "ct", *[n for n in NUMERIC if n not in ("open_time", "close_time")]]
checked = frame.with_columns(reason=rule.otherwise(None)).select(*keep, "reason", "line").collect()
good = checked.filter(c("reason").is_null())
valid = good.select(keep).unique()
dup = pl.len().over("symbol", "ot") > 1
conflicting = valid.filter(dup)
curated = valid.filter(~dup).sort("symbol", "ot").select(
    "symbol", "date", open_time=c("ot").cast(pl.Datetime("ms", "UTC")), open=c("open"), high=c("high"),
    low=c("low"), close=c("close"), volume=c("volume"), close_time=c("ct").cast(pl.Datetime("ms", "UTC")),
    quote_volume=c("quote_volume"), count=c("count"), taker_buy_volume=c("taker_buy_volume"),
    taker_buy_quote_volume=c("taker_buy_quote_volume"))
curated.write_parquet(f"{{out}}/curated", partition_by=["symbol", "date"], compression="zstd")
bad = checked.filter(c("reason").is_not_null()).select("reason", raw_line=c("line"))
quarantine = pl.concat([bad, conflicting.with_columns(reason=pl.lit("conflicting duplicate open_time"), raw_line=pl.lit(None, pl.String)).select("reason", "raw_line")])
quarantine.write_csv(f"{{out}}/quarantine.csv")
reasons = dict(quarantine.group_by("reason").len().iter_rows())
wall = time.perf_counter() - t
print(json.dumps({{"wall": wall, "rows": curated.height, "quarantined": quarantine.height,
                  "duplicates": good.height - valid.height, "reasons": reasons, "rss_mib": peak_mib()}}))
"""
)


def plant_faults(lines: list[str], kind: str) -> list[str]:
    """Faults of one file: `rules` breaks row rules only, `format` adds malformed rows."""
    body = 1 if lines[0].startswith("open_time") else 0
    rows = [line.split(",") for line in lines[body:]]

    def changed(i: int, **values: str) -> str:
        fields = list(rows[i])
        for name, value in values.items():
            fields[NUMERIC.index(name)] = value
        return ",".join(fields)

    out = [",".join(r) for r in rows]
    if kind == "rules":
        out[11] = changed(11, high=str(float(rows[11][3]) - 1))  # OHLC inconsistent
        out[222] = changed(222, volume="-1.0")  # negative volume
        out[333] = changed(333, close_time=str(int(rows[333][6]) + 5))  # close_time off
        out[444] = changed(444, open="0")  # non-positive price
        out[555] = changed(  # off the minute boundary (close_time moved with it)
            555, open_time=str(int(rows[555][0]) + 7), close_time=str(int(rows[555][6]) + 7)
        )
        micro = changed(  # microseconds: valid
            666,
            open_time=str(int(rows[666][0]) * 1000),
            close_time=str(int(rows[666][6]) * 1000 + 999),
        )
        out[666] = micro
    else:
        out[10] = changed(10, high="abc")  # not a number
        out[20] = changed(20, volume="")  # missing value
        out[30] = ",".join(rows[30][:11])  # 11 columns
        out += [out[300], out[301], out[301]]  # exact duplicates (3)
        out.append(changed(400, volume="999.000"))  # conflicts with row 400
    return lines[:body] + out


def prepare(days: int) -> tuple[Path, Path, date]:
    """Mirror (with planted faults), fetched storage and unzipped CSVs (built once, reused)."""
    from pipelines.archive import checksum_line, zip_name, zip_path
    from pipelines.data.fetch import fetch
    from pipelines.settings import Settings
    from pipelines.storage import LocalStorage
    from pipelines.synthetic.mirror import make_zip, write_mirror

    end = START + timedelta(days=days - 1)
    base = WORK / f"{days}d-faults"
    mirror, storage_dir, csv_dir = base / "mirror", base / "storage", base / "csv"
    if not (base / "ready").exists():
        shutil.rmtree(base, ignore_errors=True)
        print(f"building mirror of {len(SYMBOLS)} x {days} days …", file=sys.stderr)
        write_mirror(mirror, SYMBOLS, "1m", START, days)
        for n, (symbol, day) in enumerate(
            (s, START + timedelta(days=d)) for d in range(days) for s in SYMBOLS
        ):
            kind = "format" if n % 29 == 5 else "rules" if n % 7 == 3 else None
            if kind is None:
                continue
            path = mirror / zip_path(symbol, "1m", day)
            with zipfile.ZipFile(path) as archive:
                lines = archive.read(archive.namelist()[0]).decode().splitlines()
            name = zip_name(symbol, "1m", day)
            text = "\n".join(plant_faults(lines, kind)) + "\n"
            blob = make_zip(name.removesuffix(".zip") + ".csv", text.encode(), day)
            path.write_bytes(blob)
            checksum = checksum_line(hashlib.sha256(blob).hexdigest(), name)
            Path(f"{path}.CHECKSUM").write_text(checksum)
        storage = LocalStorage(storage_dir)
        fetch(Settings(home=base), storage, mirror.as_uri(), SYMBOLS, "1m", START, end)
        csv_dir.mkdir(parents=True)
        for key in storage.list("raw/"):
            if key.endswith(".zip"):
                with zipfile.ZipFile(io.BytesIO(storage.read_bytes(key))) as archive:
                    archive.extractall(csv_dir)
        (base / "ready").touch()
    return storage_dir, csv_dir, end


def run(code: str, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"benchmark child failed:\n{done.stderr}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def curated_figures(directory: Path) -> dict[str, float]:
    """Rows and column sums of a Parquet dataset partitioned by symbol and date."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = ds.dataset(directory, format="parquet").to_table(
        columns=["open_time", "close", "volume"]
    )
    times = table["open_time"].cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
    return {
        "rows": table.num_rows,
        "open_time_sum": pc.sum(times).as_py(),
        "close_sum": round(pc.sum(table["close"]).as_py(), 3),
        "volume_sum": round(pc.sum(table["volume"]).as_py(), 3),
    }


def check_equal(
    results: dict[str, dict[str, object]], outputs: dict[str, Path]
) -> dict[str, object]:
    """The figures every engine must agree on; stops the benchmark when they do not."""
    seen = {}
    for engine, result in results.items():
        seen[engine] = {
            "curated": curated_figures(outputs[engine]),
            "rows": result["rows"],
            "quarantined": result["quarantined"],
            "duplicates": result["duplicates"],
            "reasons": dict(sorted(result["reasons"].items())),  # type: ignore[attr-defined]
        }
    reference = seen["ours"]
    for engine, figures in seen.items():
        if figures != reference:
            raise SystemExit(f"outputs differ: ours {reference}\n{engine} {figures}")
    return reference


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    storage_dir, csv_dir, end = prepare(args.days)
    outputs = {
        "ours": storage_dir / "curated" / "klines" / "1m",
        "duckdb": WORK / "duck-out" / "curated",
        "polars": WORK / "polars-out" / "curated",
    }
    commands = {
        "ours": (OURS, str(storage_dir), START.isoformat(), end.isoformat()),
        "duckdb": (DUCK, str(csv_dir / "*.csv"), str(WORK / "duck-out")),
        "polars": (POLARS, str(csv_dir / "*.csv"), str(WORK / "polars-out")),
    }
    runs: dict[str, list[dict[str, object]]] = {e: [] for e in ENGINES}
    agreed: dict[str, object] = {}
    for i in range(args.repeat):
        order = ENGINES[i % 3 :] + ENGINES[: i % 3]
        for engine in order:
            for directory in (storage_dir / "curated", storage_dir / "quarantine"):
                shutil.rmtree(directory, ignore_errors=True)
            for out in (WORK / "duck-out", WORK / "polars-out"):
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
            runs[engine].append(run(*commands[engine]))
            if i == 0:  # keep this output for the comparison below
                keep = WORK / f"first-{engine}"
                shutil.rmtree(keep, ignore_errors=True)
                shutil.copytree(outputs[engine], keep)
        if i == 0:
            agreed = check_equal(
                {e: runs[e][0] for e in ENGINES}, {e: WORK / f"first-{e}" for e in ENGINES}
            )
        walls = ", ".join(f"{e} {runs[e][-1]['wall']:.2f}s" for e in order)
        print(f"rep {i + 1}: {walls}", file=sys.stderr)

    def med(engine: str) -> float:
        return statistics.median(float(x["wall"]) for x in runs[engine])  # type: ignore[arg-type]

    import duckdb
    import polars

    versions = {"ours": "", "duckdb": duckdb.__version__, "polars": polars.__version__}
    report: dict[str, object] = {
        "date": date.today().isoformat(),
        "load_avg": os.getloadavg(),
        "files": len(SYMBOLS) * args.days,
        "repeats": args.repeat,
        "agreed_outputs": agreed,
    }
    for engine in ENGINES:
        report[engine] = {
            "version": versions[engine],
            "wall_s": round(med(engine), 3),
            "walls": [round(float(x["wall"]), 3) for x in runs[engine]],  # type: ignore[arg-type]
            "peak_rss_mib": round(max(float(x["rss_mib"]) for x in runs[engine])),  # type: ignore[arg-type]
        }
    fastest_peer = min(("duckdb", "polars"), key=med)
    ratios = {
        peer: statistics.median(
            float(o["wall"]) / float(p["wall"])  # type: ignore[arg-type]
            for o, p in zip(runs["ours"], runs[peer], strict=True)
        )
        for peer in ("duckdb", "polars")
    }
    report["fastest_peer"] = fastest_peer
    report["ratio_of_medians"] = {p: round(med("ours") / med(p), 2) for p in ("duckdb", "polars")}
    report["median_ratio"] = {p: round(r, 2) for p, r in ratios.items()}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print("| engine | wall (median) | walls | peak RSS |\n|---|---:|---|---:|")
    for engine in ENGINES:
        e = report[engine]
        print(
            f"| {engine} {e['version']} | {e['wall_s']} s | {e['walls']} | {e['peak_rss_mib']} MiB |"  # type: ignore[index]
        )
    print(f"\nagreed outputs: {json.dumps(agreed)}")
    print(f"ours/peer (ratio of medians): {report['ratio_of_medians']}; "
          f"median of per-repeat ratios: {report['median_ratio']}; fastest peer: {fastest_peer}; "
          f"load avg {report['load_avg']}")  # fmt: skip


if __name__ == "__main__":
    main()
