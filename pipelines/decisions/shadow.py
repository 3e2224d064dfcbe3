"""The shadow decision: is the challenger, scored in shadow on live requests, better than the
champion on the outcomes that were realized?

Serving scores every request with the challenger too and logs its answer beside the champion's,
same ``request_id``, role ``shadow`` (`pipelines.decisions.inference`). Here, on each monitor
run:

1. both sides' rows go through the monitor's trust rule (`pipelines.decisions.trust.verify`):
   asked live, features equal to those recomputed from curated klines — the challenger's with
   its own feature configuration. Untrusted rows are counted and left out;
2. the trusted rows are joined on request id, symbol and bar, with their realized label;
3. the per-row log-loss difference (challenger - champion), averaged per block of a label
   horizon and clipped to ``MLOPS_SHADOW_LOSS_BOUND``, in bar-time order, feeds an
   anytime-valid confidence sequence (`pipelines.decisions.sequential`, level
   ``1 - MLOPS_SHADOW_ALPHA``): it may be looked at every hour and stopped at any time;
4. the sequence entirely below 0 → **promote** (through `promotion.apply`, the gate's path:
   ``champion`` ← challenger, ``previous`` ← champion, the GitOps pin), entirely above 0 →
   **reject**, else **continue** (keep collecting). Every run is a ``shadow`` ledger record
   with the evidence and an Evidently quality report per model on the joined rows. A promote
   or reject answers the pair for good: later runs find it in the ledger.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from pipelines.decisions import ledger
from pipelines.decisions.inference import SHADOW, read_inference
from pipelines.decisions.ledger import Decision
from pipelines.decisions.promotion import apply, current_aliases, pin_of, prepare, repo_of
from pipelines.decisions.publish import publish
from pipelines.decisions.sequential import Interval, difference_interval, log_loss_rows
from pipelines.decisions.trust import TrustReport, feature_config_of, trust_reasons, verify
from pipelines.intervals import interval_ms
from pipelines.ml.tracking import client as mlflow_client
from pipelines.settings import Settings
from pipelines.storage import Storage

JOIN = ["request_id", "symbol", "open_time"]


class ShadowResult(BaseModel):
    """One shadow run: the verdict, its reasons and where its record is."""

    decision: str
    """``promote``, ``reject``, ``continue`` or ``hold`` (no challenger in shadow)."""
    reasons: list[str]
    record: str | None = None
    rows: int = 0
    """Joined trusted rows with a realized label."""
    interval: list[float] | None = None
    """The confidence sequence of the mean log-loss difference (challenger - champion)."""
    reused: bool = False


def _keyed(log: pd.DataFrame) -> pd.DataFrame:
    if not {"symbol", "open_time", "timestamp"} <= set(log.columns):
        return pd.DataFrame()
    return log.dropna(subset=["symbol", "open_time"])


def _trusted(
    settings: Settings, storage: Storage, rows: pd.DataFrame, tags: dict[str, str]
) -> tuple[pd.DataFrame, TrustReport]:
    keyed = _keyed(rows)
    if keyed.empty:
        return keyed, TrustReport()
    features = tags.get("features", "").split(",")
    symbols = set(settings.symbols) | {s for s in tags.get("symbols", "").split(",") if s}
    config = feature_config_of(storage, tags)
    return verify(storage, keyed, features, config, settings.interval, symbols)


def pair_rows(served: pd.DataFrame, shadow: pd.DataFrame) -> pd.DataFrame:
    """Trusted served and shadow rows of the same request and bar, with a realized label:
    ``label``, ``p_champion``, ``p_challenger``, in bar-time order (then answer time)."""
    left = served.dropna(subset=["label"])[[*JOIN, "timestamp", "label", "probability_up"]].rename(
        columns={"probability_up": "p_champion"}
    )
    right = shadow[[*JOIN, "probability_up"]].rename(columns={"probability_up": "p_challenger"})
    joined = left.merge(right, on=JOIN, how="inner", validate="1:1")
    return joined.sort_values(["open_time", "timestamp", "symbol"], kind="stable").reset_index(
        drop=True
    )


def block_differences(
    open_time: pd.Series, diff: np.ndarray, block: pd.Timedelta, complete_only: bool = True
) -> np.ndarray:
    """Mean of `diff` per block of bar time (`block` wide: the label horizon), in time order.

    Rows whose labels share future bars are strongly dependent (a horizon of 12 bars: 11 of
    them shared by neighbours), which breaks the confidence sequence's assumption that each
    observation's conditional mean is the same. Block means over a horizon are nearly
    independent of each other, so the sequence runs on them. The newest block is left out while
    it may still grow (`complete_only`): the sequence only ever extends.
    """
    if len(diff) == 0:
        return np.zeros(0)
    epoch = pd.Timestamp(0, tz="UTC")
    index = ((open_time - epoch) // block).to_numpy()
    frame = pd.DataFrame({"block": index, "diff": np.asarray(diff, dtype=float)})
    means = frame.groupby("block", sort=True)["diff"].mean()
    if complete_only:
        means = means.iloc[:-1]
    return np.asarray(means.to_numpy(dtype=float))


def row_differences(joined: pd.DataFrame) -> np.ndarray:
    """Per-row log-loss of the challenger minus the champion's."""
    y = joined["label"].to_numpy(dtype=float)
    return np.asarray(
        log_loss_rows(y, joined["p_challenger"].to_numpy())
        - log_loss_rows(y, joined["p_champion"].to_numpy())
    )


def evidence(joined: pd.DataFrame, block: pd.Timedelta, alpha: float, bound: float) -> Interval:
    """The confidence sequence of the mean log-loss difference on `joined`, over block means."""
    blocks = block_differences(joined["open_time"], row_differences(joined), block)
    return difference_interval(blocks, alpha, bound)


def shadow(settings: Settings, storage: Storage, run_id: str | None = None) -> ShadowResult:
    """Judge the challenger in shadow; record the verdict; promote it through the gate's path
    when the sequence says it is better; publish the record to the env's Evidently project.
    Returns what was decided."""
    result = _decide(settings, storage, run_id)
    if not result.reused and result.record is not None:
        publish(settings, storage, result.record)
    return result


def _decide(settings: Settings, storage: Storage, run_id: str | None) -> ShadowResult:
    client = mlflow_client(settings)
    name, env = settings.model_name, settings.env
    aliases = current_aliases(client, name)
    champion, challenger = aliases.get("champion"), aliases.get("challenger")
    if champion is None or challenger is None or champion == challenger:
        return ShadowResult(decision="hold", reasons=["no challenger distinct from the champion"])
    final = ledger.decision_id("shadow", env, name, champion, challenger)
    if (done := ledger.find(storage, env, final)) is not None:
        return _result(done, reused=True)
    log = read_inference(storage, env, str(champion), role=None).to_pandas()
    if "role" not in log.columns:  # nothing logged yet, or only before shadowing existed
        log = log.assign(role="served", model_version=str(champion))
    shadow_rows = log[(log["role"] == SHADOW) & (log["model_version"] == str(challenger))]
    if shadow_rows.empty:  # serving is not shadowing this challenger: nothing to record
        return ShadowResult(
            decision="hold",
            reasons=[f"no answer of challenger v{challenger} logged in shadow yet"],
        )
    served = log[log["role"].fillna("served") != SHADOW]
    tags = {v: client.get_model_version(name, str(v)).tags or {} for v in (champion, challenger)}
    trusted_served, trust_served = _trusted(settings, storage, served, tags[champion])
    trusted_shadow, trust_shadow = _trusted(settings, storage, shadow_rows, tags[challenger])
    joined = (
        pair_rows(trusted_served, trusted_shadow)
        if not trusted_served.empty and not trusted_shadow.empty
        else pd.DataFrame(columns=[*JOIN, "label", "p_champion", "p_challenger"])
    )
    config = feature_config_of(storage, tags[champion])
    block = pd.Timedelta(
        milliseconds=interval_ms(config.interval if config else settings.interval)
        * (config.horizon if config else settings.horizon)
    )
    interval = evidence(joined, block, settings.shadow_alpha, settings.shadow_loss_bound)
    verdict = interval.verdict()
    metrics: dict[str, Any] = {
        "shadow_rows": len(shadow_rows),
        "joined_rows": len(joined),
        "blocks": interval.rows,
        "mean_log_loss_delta": interval.mean,
        "log_loss_delta_interval": [interval.low, interval.high],
        "trust": {"champion": trust_served.model_dump(), "challenger": trust_shadow.model_dump()},
    }
    thresholds = {
        "alpha": settings.shadow_alpha,
        "loss_bound": settings.shadow_loss_bound,
        "block": str(block),
        "method": "predictable plug-in empirical-Bernstein confidence sequence "
        "(Waudby-Smith & Ramdas 2024)",
    }
    reasons = [
        f"challenger v{challenger} vs champion v{champion} on {len(joined)} trusted realized "
        f"rows ({interval.rows} complete blocks of {block}): mean log-loss difference "
        f"{interval.mean:+.4f}, "
        f"{1 - settings.shadow_alpha:.0%} anytime-valid interval "
        f"[{interval.low:+.4f}, {interval.high:+.4f}] — "
        + {
            "promote": "challenger better: promote",
            "reject": "challenger worse: reject",
            "continue": "includes 0: keep collecting",
        }[verdict],
        *trust_reasons(trust_served),
        *trust_reasons(trust_shadow),
    ]
    identity = final if verdict != "continue" else ledger.decision_id(final, len(joined))
    record = Decision(
        kind="shadow",
        env=env,
        model_name=name,
        decision=verdict,
        reasons=reasons,
        decision_id=identity,
        inputs={"champion": champion, "challenger": challenger},
        metrics=metrics,
        thresholds=thresholds,
        reports=_reports(settings, storage, joined, champion, challenger) if len(joined) else [],
        aliases_before=aliases,
        aliases_after=aliases,
        run_id=run_id,
        started_at=ledger.now_iso(),
    )
    if verdict == "continue":
        if (done := ledger.find(storage, env, identity)) is not None:
            return _result(done, reused=True)
        return _result(ledger.write(storage, record))
    return _result(_settle(settings, storage, record, champion, challenger))


def _settle(
    settings: Settings, storage: Storage, record: Decision, champion: int, challenger: int
) -> Decision:
    """Carry out a promote or reject under the decision lock; if the aliases moved meanwhile,
    the evidence is for another pair: hold. A promotion is the gate's (`promotion.apply`:
    ``champion`` ← challenger, its pin with no challenger beside it); a rejection ends the
    shadow when the overlay pins this challenger (`pipelines.decisions.shadow_pin`), else it
    is only recorded."""
    client = mlflow_client(settings)
    name = settings.model_name
    repo = repo_of(settings)
    with repo.lock():
        prepare(settings, storage, repo)
        now = current_aliases(client, name)
        if now.get("champion") != champion or now.get("challenger") != challenger:
            held = record.model_copy(
                update={
                    "decision": "hold",
                    "decision_id": ledger.decision_id(record.decision_id, "moved", now),
                    "reasons": [*record.reasons, f"aliases moved meanwhile ({now}): hold"],
                    "aliases_before": now,
                    "aliases_after": now,
                }
            )
            return ledger.write(storage, held)
        if record.decision == "reject":
            served = repo.pinned(settings.env)
            if served is None or served.challenger_version != challenger:
                return ledger.write(storage, record)
            message = (
                f"shadow: reject {name} v{challenger}, serve v{champion} alone in "
                f"{settings.env} (decision {{record}})"
            )
            return apply(settings, storage, record, {}, served.with_challenger(None), message)
        message = (
            f"shadow: promote {name} v{challenger} over v{champion} in {settings.env} "
            "(decision {record})"
        )
        moves: dict[str, int | None] = {"previous": champion, "champion": challenger}
        return apply(settings, storage, record, moves, pin_of(client, name, challenger), message)


def _reports(
    settings: Settings, storage: Storage, joined: pd.DataFrame, champion: int, challenger: int
) -> list[str]:
    """Evidently quality of each model on the joined rows (same rows, same labels)."""
    from pipelines.reports.quality import quality_report

    frame = joined.assign(label=joined["label"].astype(int))
    out = []
    for role, version, column in (
        ("champion", champion, "p_champion"),
        ("challenger", challenger, "p_challenger"),
    ):
        report = quality_report(
            frame.rename(columns={column: "probability_up"})[["label", "probability_up"]],
            storage=storage,
            env=settings.env,
            model_version=str(version),
            kind="shadow_quality",
            metadata={"role": role, "champion": champion, "challenger": challenger},
        )
        out.append(report.prefix)
    return out


def _result(record: Decision, reused: bool = False) -> ShadowResult:
    return ShadowResult(
        decision=record.decision,
        reasons=record.reasons,
        record=record.key,
        rows=int(record.metrics.get("joined_rows", 0)),
        interval=record.metrics.get("log_loss_delta_interval"),
        reused=reused,
    )
