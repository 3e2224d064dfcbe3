"""Start and stop shadowing a challenger: the GitOps pin of the env's serving pods names it
beside the champion (``MLOPS_CHALLENGER_VERSION``/``MLOPS_CHALLENGER_SHA256`` in ``model.env``),
and the ``challenger`` alias names it in the registry, in one decision — the same all-or-nothing
transaction as a promotion (`promotion.apply`: an intent, the alias move, one commit, a
``shadow`` ledger record of decision ``start`` or ``stop``).

The shadow decision (`pipelines.decisions.shadow`) ends it by itself: a promotion pins the
challenger as champion with no challenger beside it, a rejection pins the champion alone.
"""

from __future__ import annotations

from pipelines.decisions import ledger
from pipelines.decisions.ledger import Decision
from pipelines.decisions.pin import ServingPin
from pipelines.decisions.promotion import apply, current_aliases, pin_of, prepare, repo_of
from pipelines.errors import PipelineError
from pipelines.ml.registry import CHALLENGER
from pipelines.ml.tracking import client as mlflow_client
from pipelines.settings import Settings
from pipelines.storage import Storage


def pin_challenger(settings: Settings, storage: Storage, version: int | None) -> Decision:
    """Shadow `version` beside the serving champion (None: stop shadowing). Idempotent: asking
    for what the overlay already pins writes nothing and returns the record that pinned it.

    Raises:
        PipelineError: no champion is served yet, `version` is the champion, or it was never
            packaged (no archive to pin).
    """
    client = mlflow_client(settings)
    name, env = settings.model_name, settings.env
    repo = repo_of(settings)
    with repo.lock():
        prepare(settings, storage, repo)
        aliases = current_aliases(client, name)
        champion = aliases.get("champion")
        served = repo.pinned(env)
        if champion is None or served is None:
            raise PipelineError(
                f"{name} serves nothing in {env} yet: there is no champion to shadow beside",
                "promote a version first (the gate, or mlops decisions rollback --to VERSION)",
            )
        if version == champion:
            raise PipelineError(
                f"version {version} is the champion of {env}: it cannot be its own challenger",
                "pass another version (mlops models list)",
            )
        pin = served.with_challenger(pin_of(client, name, version) if version else None)
        action = "start" if version else "stop"
        identity = ledger.decision_id("shadow-pin", env, name, pin.model_dump(mode="json"))
        if pin == served and (done := ledger.find(storage, env, identity)) is not None:
            return done
        record = Decision(
            kind="shadow",
            env=env,
            model_name=name,
            decision=action,
            reasons=[_reason(action, served, pin, version)],
            decision_id=identity,
            inputs={"champion": champion, "challenger": version},
            started_at=ledger.now_iso(),
        )
        moves: dict[str, int | None] = {CHALLENGER: version} if version else {}
        message = f"shadow: {action} in {env}: {pin.describe()} (decision {{record}})"
        return apply(settings, storage, record, moves, pin, message)


def _reason(action: str, served: ServingPin, pin: ServingPin, version: int | None) -> str:
    if action == "stop":
        was = served.challenger_version
        return f"by hand: stop shadowing{f' v{was}' if was else ''} beside v{pin.model_version}"
    return f"by hand: shadow v{version} beside the champion v{pin.model_version}"
