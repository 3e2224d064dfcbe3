"""The storage layout: every key family, the same on a local directory and on an S3 bucket.

Nothing else in the code spells a storage key; the S3 lifecycle rules of the stack are checked
against the prefixes named here (``PREFIXES``).

    raw/klines/{symbol}/{interval}/{symbol}-{interval}-{date}.zip[.CHECKSUM]  as downloaded
    quarantine/klines/{symbol}/{interval}/{date}.csv                         rejected rows
    curated/klines/{interval}/symbol={symbol}/date={date}/part-0.parquet     clean bars
    features/{interval}/{dataset_hash}/{labelled,scoring}.parquet, manifest.json
    features/{interval}/{dataset_hash}/calibration/{digest}.json               drift thresholds
    runs/{run_id}/params.json, steps/{step}.json, steps/{step}/shards/{shard}.json, exit.json
    bentos/{name}/{version}.bento                                            exported Bentos
    bentos/{name}/v{model_version}.bentomodel                                model archives
    bentos/_registry/serving/{manifests/{hex}.json,tags/{tag}}               local image stand-in
    inference/{env}/{model_version}/{date}/{batch}.parquet                   serving log
    reports/{env}/{kind}/{timestamp}/report.{html,json}, summary.json        Evidently
    decisions/{env}/{timestamp}[-{n}]-{kind}.json                            the ledger
    decisions/{env}/intents/pending.json                                     decision in flight
    decisions/{env}/candidates/{candidate}.json                              candidates here

Write-once (created with `Storage.create`, never overwritten or deleted; on S3 the stack's
bucket policy enforces it): the ledger records and everything under ``bentos/``.
"""

from __future__ import annotations

from datetime import date

from pipelines.archive import zip_name

RAW = "raw/"
QUARANTINE = "quarantine/"
CURATED = "curated/"
FEATURES = "features/"
RUNS = "runs/"
BENTOS = "bentos/"
INFERENCE = "inference/"
REPORTS = "reports/"
DECISIONS = "decisions/"
PREFIXES = (RAW, QUARANTINE, CURATED, FEATURES, RUNS, BENTOS, INFERENCE, REPORTS, DECISIONS)
"""Every top-level prefix the platform writes."""
RAW_PREFIXES = (RAW, QUARANTINE)
"""The prefixes that may live in a separate raw bucket (``MLOPS_RAW_STORAGE_URL``)."""


def raw_zip(symbol: str, interval: str, day: date) -> str:
    """Verified archive zip, as downloaded."""
    return f"{RAW}klines/{symbol}/{interval}/{zip_name(symbol, interval, day)}"


def raw_checksum(symbol: str, interval: str, day: date) -> str:
    """The ``.CHECKSUM`` the zip was verified against, kept beside it."""
    return raw_zip(symbol, interval, day) + ".CHECKSUM"


def quarantine(symbol: str, interval: str, day: date) -> str:
    """Rejected rows of one day, each with its reason."""
    return f"{QUARANTINE}klines/{symbol}/{interval}/{day.isoformat()}.csv"


def curated(symbol: str, interval: str, day: date) -> str:
    """Clean, typed, deduplicated bars of one symbol and day."""
    return f"{CURATED}klines/{interval}/symbol={symbol}/date={day.isoformat()}/part-0.parquet"


def dataset(interval: str, dataset_hash: str) -> str:
    """Prefix of one content-addressed dataset (``labelled.parquet``, ``scoring.parquet``,
    ``manifest.json``, written last)."""
    return f"{FEATURES}{interval}/{dataset_hash}"


def drift_calibration(dataset_prefix: str, digest: str) -> str:
    """Drift thresholds calibrated on a dataset's training rows (content-addressed by
    `digest`); a model version's ``drift_calibration`` tag names the one it is judged by."""
    return f"{dataset_prefix}/calibration/{digest}.json"


def run_params(run_id: str) -> str:
    """Parameters a run was started with (read by every step of that run)."""
    return f"{RUNS}{run_id}/params.json"


def step_result(run_id: str, step: str) -> str:
    """What one step of a run produced (its part of the run summary)."""
    return f"{RUNS}{run_id}/steps/{step}.json"


def shard_result(run_id: str, step: str, shard: str) -> str:
    """What one shard of a fan-out step produced (the step's result merges them)."""
    return f"{RUNS}{run_id}/steps/{step}/shards/{shard}.json"


def run_exit(run_id: str) -> str:
    """How a cluster run ended (the Argo exit handler's record)."""
    return f"{RUNS}{run_id}/exit.json"


def bento_archive(tag: str) -> str:
    """Exported Bento archive of ``name:version``."""
    name, version = parse_bento_tag(tag)
    return f"{BENTOS}{name}/{version}.bento"


def model_archive(name: str, version: int) -> str:
    """Exported BentoML model archive of registry version `version` of model `name`: what a
    serving pod fetches, checks against the GitOps pin's digest and imports at start."""
    return f"{BENTOS}{name}/v{version}.bentomodel"


SERVING_IMAGES = f"{BENTOS}_registry/serving/"
"""The local stand-in of an env's serving image repository (`pipelines.ml.images`): only where
no ECR repository is configured (``MLOPS_SERVING_REPOSITORY`` unset). Write-once like the rest
of ``bentos/``; ``_`` keeps it apart from any model name."""


def serving_image_manifest(digest: str) -> str:
    """The stand-in registry's manifest of image `digest` (``sha256:<hex>``)."""
    return f"{SERVING_IMAGES}manifests/{digest.removeprefix('sha256:')}.json"


def serving_image_tag(tag: str) -> str:
    """The stand-in registry's tag `tag`: the digest it names (tags are immutable)."""
    return f"{SERVING_IMAGES}tags/{tag}"


def parse_bento_tag(tag: str) -> tuple[str, str]:
    """``("market-direction", "v3-abc123")`` from ``market-direction:v3-abc123``.

    Raises:
        ValueError: if `tag` is not ``name:version`` with both parts non-empty.
    """
    name, sep, version = tag.partition(":")
    if not sep or not name or not version or ":" in version:
        raise ValueError(f"Bento tag {tag!r} is not NAME:VERSION")
    return name, version


def inference_prefix(env: str, model_version: str | None = None) -> str:
    """Prefix of the inference log of `env` (optionally of one model version)."""
    return f"{INFERENCE}{env}/" + (f"{model_version}/" if model_version else "")


def inference(env: str, model_version: str, day: date, name: str) -> str:
    """One batch of logged predictions (what the server saw and said)."""
    return f"{inference_prefix(env, model_version)}{day.isoformat()}/{name}"


def reports_prefix(env: str | None = None, kind: str | None = None) -> str:
    """Prefix of the reports of `env` (and `kind`), or of all reports."""
    if env is None:
        return REPORTS
    return f"{REPORTS}{env}/" + (f"{kind}/" if kind else "")


def report(env: str, kind: str, stamp: str) -> str:
    """Prefix of one report (Evidently's HTML and JSON and our ``summary.json``)."""
    return f"{reports_prefix(env, kind)}{stamp}"


def decisions_prefix(env: str) -> str:
    """Prefix of the decision ledger of `env`."""
    return f"{DECISIONS}{env}/"


DECISION_INTENTS = "intents/"
"""Below ``decisions/{env}/``: working state of decisions in progress (written, then deleted);
not a record, so neither write-once nor read as the ledger."""


def decision_intents_prefix(env: str) -> str:
    """Prefix of the decisions-in-progress of `env`, ``decisions/{env}/intents/``."""
    return f"{decisions_prefix(env)}{DECISION_INTENTS}"


def decision_intent(env: str) -> str:
    """The write-ahead intent of the decision in progress in `env` (at most one: decisions are
    serialized); not a ledger record."""
    return f"{decision_intents_prefix(env)}pending.json"


def decision(env: str, stamp: str, kind: str, n: int = 1) -> str:
    """Key of one ledger record; ``n`` > 1 disambiguates records of the same instant."""
    suffix = f"-{n}" if n > 1 else ""
    return f"{decisions_prefix(env)}{stamp}{suffix}-{kind}.json"


def candidates_prefix(env: str) -> str:
    """Prefix of the candidate records `env` holds (the ones created or moved there)."""
    return f"{decisions_prefix(env)}candidates/"


def candidate(env: str, candidate_id: str) -> str:
    """One candidate's immutable record, as `env` holds it (write-once like the ledger, byte for
    byte the same in every env it reached; not a ledger record)."""
    return f"{candidates_prefix(env)}{candidate_id}.json"
