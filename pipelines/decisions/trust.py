"""Which logged predictions the monitor may judge.

``/predict`` takes feature rows, ``symbol`` and ``open_time`` from the caller, and even
``/predict_klines`` computes features from klines the caller sends: anyone who can reach the
service decides what the inference log says was asked. Judged as they are, crafted rows that name
real bars force a rollback (issue: crafted predictions). So a logged row is evidence only when the
monitor can re-derive it from data it trusts:

- **live**: the server's own timestamp (set by the service, not the caller) is at or after the bar
  opened and no later than `ANSWER_DEADLINE_BARS` bars after it closed. A prediction asked once
  the outcome is known adds nothing but a choice of which bars are judged: honest features of the
  bars a model got wrong, asked afterwards, would otherwise make any model look bad;
- **verified**: every logged feature equals the one the monitor recomputes from the curated klines
  of that symbol and bar, with the champion's own feature configuration (`FEATURE_RTOL`,
  `FEATURE_ATOL`). The answer logged beside those features is then the served model's answer to
  exactly the features the platform would have computed.

Rows that fail are left out and counted by reason. A row whose bar is not curated yet is
*pending* (neither trusted nor untrusted): the archive publishes a day late, and the next run
judges it. Trusted rows are deduplicated after the check (the latest answer per bar stands), so a
crafted row can neither be judged nor displace an honest one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from pipelines.data.bars import load_curated, prepare_bars
from pipelines.intervals import interval_ms
from pipelines.ml.dataset import DatasetInfo
from pipelines.ml.features import FeatureConfig, compute_features, compute_labels
from pipelines.storage import Storage

FEATURE_RTOL = 1e-9
FEATURE_ATOL = 1e-9
"""How far a logged feature may be from the recomputed one. Measured: features of the same bar
computed from a client's 49-bar window and from days of curated history, sent as JSON and stored
as Parquet float64, differ by at most 1.4e-12 (``volume_z_48``; rolling sums started elsewhere) —
the bound leaves ~700x of room and no room to move a row across a tree split in practice."""
ANSWER_DEADLINE_BARS = 1
"""A prediction counts as live when the server answered it no later than this many bars after the
bar closed (the label needs `horizon` more bars, so the outcome is still unknown then)."""
UNTRUSTED_ALERT_SHARE = 0.05
"""Above this share of untrusted rows among the checked ones the record says so in its reasons.
The decision itself stays with the trusted rows: holding on it would let anyone block a due
rollback by flooding ``/predict``."""

REASONS = (
    "unknown_symbol",
    "off_grid",
    "asked_before_bar",
    "asked_late",
    "no_such_bar",
    "features_undefined",
    "features_differ",
    "no_feature_config",
)
"""Why a row is untrusted (the keys of `TrustReport.untrusted`)."""


class TrustReport(BaseModel):
    """How many logged predictions the monitor judged, and why it left the others out."""

    keyed_rows: int = 0
    """Rows with a symbol and a bar time (the only ones that can be judged)."""
    trusted_rows: int = 0
    """Live rows whose features match the curated klines (before deduplication)."""
    untrusted_rows: int = 0
    pending_rows: int = 0
    """Rows whose bar is not curated yet: checked on a later run."""
    untrusted: dict[str, int] = Field(default_factory=dict)
    """Reason → rows (see `REASONS`)."""

    @property
    def untrusted_share(self) -> float:
        """Untrusted rows among the rows checked (pending ones excluded)."""
        checked = self.trusted_rows + self.untrusted_rows
        return self.untrusted_rows / checked if checked else 0.0


def feature_config_of(storage: Storage, tags: dict[str, str]) -> FeatureConfig | None:
    """The feature configuration a registry version was trained with (from its dataset's
    manifest), or None when the manifest is gone."""
    prefix = tags.get("dataset_prefix")
    if not prefix or not storage.exists(key := f"{prefix}/manifest.json"):
        return None
    info = DatasetInfo.model_validate_json(storage.read_bytes(key))
    return FeatureConfig.model_validate(info.config)


def _curated_rows(
    storage: Storage,
    symbol: str,
    source_interval: str,
    config: FeatureConfig,
    first: pd.Timestamp,
    last: pd.Timestamp,
) -> pd.DataFrame:
    """Recomputed features (suffixed ``__curated``) and labels of `symbol`'s curated bars that
    cover ``first..last``, with the warm-up before and the horizon after."""
    step = timedelta(milliseconds=interval_ms(config.interval))
    start = (first - step * config.warmup_bars).date()
    end = (last + step * (config.horizon + 1)).date()
    bars = load_curated(storage, symbol, source_interval, start, end)
    if bars.empty:
        return pd.DataFrame()
    bars = prepare_bars(bars, source_interval, config.interval).reset_index(drop=True)
    features = compute_features(bars, config)
    out = features.rename(columns={c: f"{c}__curated" for c in features if c != "open_time"})
    out["label"] = compute_labels(bars, config.horizon)["label"]
    out.insert(0, "symbol", symbol)
    return out


def curated_features(
    storage: Storage,
    symbols: list[str],
    source_interval: str,
    config: FeatureConfig,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> pd.DataFrame:
    """The features of `symbols` recomputed from their curated bars, for the bars with
    ``start <= open_time < end`` (the monitor's drift reference: the days before a window);
    empty when none is curated."""
    parts = []
    for symbol in symbols:
        rows = _curated_rows(storage, symbol, source_interval, config, start, end)
        if rows.empty:
            continue
        rows = rows[(rows["open_time"] >= start) & (rows["open_time"] < end)]
        parts.append(rows.rename(columns=lambda c: str(c).removesuffix("__curated")))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def verify(
    storage: Storage,
    keyed: pd.DataFrame,
    features: list[str],
    config: FeatureConfig | None,
    source_interval: str,
    symbols: set[str],
) -> tuple[pd.DataFrame, TrustReport]:
    """The trusted rows of `keyed` (one per bar, the latest answer), with their ``label`` (NaN
    while the outcome is unknown), and the counts of what was left out and why.

    Args:
        keyed: logged rows with ``symbol``, ``open_time``, ``timestamp``, the features and
            ``probability_up``.
        features: the model's feature names (the logged columns to check).
        config: the model's feature configuration (None: nothing can be verified).
        source_interval: the interval curated bars are stored at.
        symbols: the symbols whose curated klines the platform keeps.
    """
    keyed = keyed.reset_index(drop=True)
    report = TrustReport(keyed_rows=len(keyed))
    empty = keyed.iloc[0:0].assign(label=pd.Series(dtype=float))
    if keyed.empty:
        return empty, report
    if config is None or not set(features) <= set(keyed.columns):
        reason = pd.Series("no_feature_config", index=keyed.index, dtype=object)
        return _finish(report, reason, empty)
    step = interval_ms(config.interval)
    epoch = pd.Timestamp(0, tz="UTC")
    opened = ((keyed["open_time"] - epoch) // pd.Timedelta(milliseconds=1)).astype("int64")
    asked = ((keyed["timestamp"] - epoch) // pd.Timedelta(milliseconds=1)).astype("int64")
    checks = {
        "unknown_symbol": ~keyed["symbol"].isin(sorted(symbols)),
        "off_grid": opened % step != 0,
        "asked_before_bar": asked < opened,
        "asked_late": asked > opened + (1 + ANSWER_DEADLINE_BARS) * step,
    }
    reason = pd.Series("", index=keyed.index, dtype=object)
    for name, failed in checks.items():
        reason = reason.mask((reason == "") & failed, name)
    live = keyed[reason == ""]
    curated = [
        _curated_rows(
            storage,
            str(symbol),
            source_interval,
            config,
            rows["open_time"].min(),
            rows["open_time"].max(),
        )
        for symbol, rows in live.groupby("symbol", sort=True)
    ]
    curated = [c for c in curated if not c.empty]
    if not curated:  # nothing curated yet for these bars: every live row waits
        report.pending_rows = len(live)
        return _finish(report, reason, empty)
    recomputed = pd.concat(curated, ignore_index=True)
    joined = live.merge(
        recomputed, on=["symbol", "open_time"], how="left", indicator=True, validate="m:1"
    )
    joined.index = live.index  # a left merge on unique right keys keeps the left rows in order
    latest = recomputed.groupby("symbol")["open_time"].max()
    found = joined["_merge"] == "both"
    newest = joined["symbol"].map(latest)
    pending = ~found & (newest.isna() | (joined["open_time"] > newest))
    reason.loc[joined.index[~found & ~pending]] = "no_such_bar"
    logged = joined[features].to_numpy(dtype=float)
    truth = joined[[f"{f}__curated" for f in features]].to_numpy(dtype=float)
    undefined = found & ~np.isfinite(truth).all(axis=1)
    close = np.isclose(logged, truth, rtol=FEATURE_RTOL, atol=FEATURE_ATOL).all(axis=1)
    reason.loc[joined.index[undefined]] = "features_undefined"
    reason.loc[joined.index[found & ~undefined & ~close]] = "features_differ"
    trusted_mask = found & ~undefined & close
    report.pending_rows = int(pending.sum())
    report.trusted_rows = int(trusted_mask.sum())
    trusted = joined[trusted_mask]
    return _finish(report, reason, trusted[[*keyed.columns, "label"]])


def _finish(
    report: TrustReport, reason: pd.Series, trusted: pd.DataFrame
) -> tuple[pd.DataFrame, TrustReport]:
    """Count the reasons; keep the latest trusted answer per bar (a bar asked more than once)."""
    counts = {name: int((reason == name).sum()) for name in REASONS}
    report.untrusted = {name: n for name, n in counts.items() if n}
    report.untrusted_rows = sum(report.untrusted.values())
    latest = trusted.sort_values("timestamp", kind="stable").drop_duplicates(
        ["symbol", "open_time"], keep="last"
    )
    return latest.reset_index(drop=True), report


def trust_reasons(report: TrustReport) -> list[str]:
    """A reason line for the record when the untrusted share is above `UNTRUSTED_ALERT_SHARE`
    (the decision still rests on the trusted rows)."""
    if report.untrusted_share <= UNTRUSTED_ALERT_SHARE:
        return []
    shown = ", ".join(f"{k} {v}" for k, v in sorted(report.untrusted.items()))
    return [
        f"{report.untrusted_rows} of {report.trusted_rows + report.untrusted_rows} checked "
        f"predictions ({report.untrusted_share:.1%}, alert above {UNTRUSTED_ALERT_SHARE:.0%}) do "
        f"not match the curated klines or were not asked live ({shown}); they were left out — "
        "find who sends them"
    ]


def trust_thresholds() -> dict[str, Any]:
    """The trust rule's constants, for the ledger record."""
    return {
        "feature_rtol": FEATURE_RTOL,
        "feature_atol": FEATURE_ATOL,
        "answer_deadline_bars": ANSWER_DEADLINE_BARS,
        "untrusted_alert_share": UNTRUSTED_ALERT_SHARE,
    }
