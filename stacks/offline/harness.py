"""Run a Pulumi program in-process under Pulumi's unit-test mocks and record what it registered.

This is how the stacks prove themselves without a Pulumi CLI or a cloud account: ``mlops infra
plan`` and the tests run the real program against `PlatformMocks`, which answer every resource
with its inputs plus plausible computed outputs, and every invoke the program makes.

Verified with pulumi 3.272.0, pulumi-aws 7.51.1, pulumi-eks 4.4.0, pulumi-kubernetes 4.34.2,
pulumi-random 4.21.4, Python 3.11 (no CLI, no cloud).

Usage:
    from stacks.offline.harness import run_program   # mocks default to fakes.PlatformMocks
    result = run_program(program, project="mlops-platform", stack="prod",
                         config={"mlops-platform:workflows": {...}, "aws:region": "eu-west-1"},
                         preview=True)
    result.resources   # [Registered(type, name, parent, inputs, ...)] in registration order,
                       # which is NOT deterministic (async) -> look up by type+name, not index
    result.outputs     # {"name": plain value}, secrets unwrapped
    result.secret_outputs  # {"name", ...} exported as secrets
    result.by_type("aws:s3/bucket:Bucket")

`program` is a zero-arg callable, or a directory / .py path run like the language host runs it
(runpy.run_path(dir, run_name="__main__") inside run_in_stack).

Mock-facing quirks kept from the stock MockMonitor: numbers arrive as floats (Struct), secret
inputs arrive wrapped ({"4dabf18193072939515e22adb298388d": "1b47...", "value": v}), preview
unknowns arrive as pulumi.output.Unknown; a Resource passed as an input arrives as
{"urn": ..., "id": ...} (`resource_ref_guard` below; stock would hand a rehydrated Resource,
flakily).

Importing this module patches nothing: `run_program` installs the one runtime patch it needs
(`resource_ref_guard`) for the duration of the run and restores the original afterwards.

How it works (the same path the real Python language host takes):
  1. reset the ambient runtime (root stack ContextVar, pending output tasks, config),
  2. set_mocks(mocks, project, stack, preview, monitor=RecordingMonitor(mocks)),
  3. drop the root Stack that set_mocks made (it has already "finished": exports into it
     would never reach RegisterResourceOutputs), then
  4. _sync_await(run_in_stack(program)): makes a fresh Stack, runs the program, registers the
     exports via RegisterResourceOutputs (captured by the monitor, secrets kept), and waits
     for every RPC and every pending Output task (wait_for_rpcs) before returning.
"""

from __future__ import annotations

import contextlib
import json
import runpy
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as _config
from pulumi.runtime import rpc
from pulumi.runtime import settings as _settings
from pulumi.runtime.mocks import (
    MockCallArgs,
    MockMonitor,
    MockResourceArgs,
    Mocks,
    _resolve_callbacks,
    set_mocks,
)
from pulumi.runtime.proto import provider_pb2, resource_pb2
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from stacks.offline.fakes import PlatformMocks

UNKNOWN = "<unknown>"  # what an unknown (computed, preview-only) input becomes in `inputs`


# --------------------------------------------------------------------------- recording


@dataclass
class Registered:
    """One resource the program registered, as the monitor saw it."""

    type: str  # type token, e.g. "aws:s3/bucket:Bucket", "eks:index:Cluster"
    name: str  # logical name
    urn: str
    parent: str  # parent URN ("" only for the Stack itself; top-level resources -> stack URN)
    parent_name: str  # logical name of the parent ("<project>-<stack>" for the stack)
    custom: bool  # CustomResource (True) vs ComponentResource (False)
    remote: bool  # multi-language component (eks.Cluster, helm.v4.Chart, ...)
    provider: str  # "urn::id" of an explicit provider ("" = default provider)
    inputs: dict  # plain python values; secrets unwrapped; unknowns -> UNKNOWN
    secret_inputs: set
    masked_inputs: dict  # inputs with every secret (at any depth) replaced by SECRET
    dependencies: list  # URNs of depends_on / implicit deps
    id: str | None = None
    state: dict = field(default_factory=dict)  # what the mock returned (outputs)


SECRET = "[secret]"


def _plain(value: Any, mask: bool = False) -> Any:
    """Deserialized gRPC value -> plain python (secrets unwrapped, Unknown -> UNKNOWN)."""
    from pulumi.output import Unknown

    if isinstance(value, Unknown):
        return UNKNOWN
    if rpc.is_rpc_secret(value):
        return SECRET if mask else _plain(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: _plain(v, mask) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, mask) for v in value]
    if isinstance(value, pulumi.Resource):  # a rehydrated resource reference
        return f"<resource {type(value).__module__}.{type(value).__name__}>"
    return value


def _secret_keys(props: dict) -> set:
    return {k for k, v in props.items() if rpc.is_rpc_secret(v)}


# --- pulumi/pulumi#6561 guard -------------------------------------------------------------
# The MockMonitor deserializes each request (in an executor thread). A resource reference in it
# (any Resource passed as an input: cluster=eks_cluster, role=role, ...) is rehydrated by the
# package's registered ResourceModule: it constructs e.g. pulumi_eks.Cluster(opts=urn=...), whose
# "pulumi:pulumi:getResource" RPC task is created on that executor thread's private event loop
# and appended to the shared rpc_manager. The main loop's wait_for_rpcs then awaits it:
# "RuntimeError: Task ... got Future ... attached to a different loop", or it hangs, or (if the
# thread loop happened to be pumped by a later _sync_await on that thread) it passes -> flaky.
# Fix: while the monitor deserializes, turn resource references into plain dicts instead of
# constructing resources. The SDK side (main loop) still rehydrates refs in mock *outputs*.
# The patch of rpc.deserialize_resource is installed by run_program for one run only (it only
# acts on monitor threads, inside the _no_rehydrate methods below); importing patches nothing.
GUARD_RESOURCE_REFS = True  # set False to get the stock (flaky) behaviour, for experiments
_IN_MONITOR = threading.local()


@contextlib.contextmanager
def resource_ref_guard() -> Iterator[None]:
    """Patch ``rpc.deserialize_resource`` with the #6561 guard for a block; restore it after."""
    original = rpc.deserialize_resource

    def deserialize_resource(ref_struct, keep_unknowns=None):
        if GUARD_RESOURCE_REFS and getattr(_IN_MONITOR, "active", False):
            ref = {"urn": str(ref_struct["urn"])}
            if "id" in ref_struct:
                ref["id"] = str(ref_struct["id"])
            return ref  # what Mocks.new_resource sees for a Resource input: {"urn", "id"}
        return original(ref_struct, keep_unknowns)

    rpc.deserialize_resource = deserialize_resource
    try:
        yield
    finally:
        rpc.deserialize_resource = original


def _no_rehydrate(method):
    def wrapper(self, request):
        _IN_MONITOR.active = True
        try:
            return method(self, request)
        finally:
            _IN_MONITOR.active = False

    wrapper.__name__ = method.__name__
    return wrapper


class RecordingMonitor(MockMonitor):
    """MockMonitor that records every registration and the stack's outputs.

    It never rehydrates resource references while `resource_ref_guard` is installed (see above).
    """

    def __init__(self, mocks: Mocks):
        """Record nothing yet; answer with `mocks`."""
        super().__init__(mocks)
        self.registered: list[Registered] = []
        self.stack_outputs_raw: dict | None = None
        self.stack_urn: str | None = None
        self.calls: list[tuple[str, dict]] = []

    @_no_rehydrate
    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        """Register (and record) one resource; the mocks supply its id and outputs."""
        # Same steps as MockMonitor.RegisterResource (pulumi 3.272), plus: deserialize once,
        # record, and apply additionalSecretOutputs like the engine does (the stock mock ignores
        # them, so e.g. RandomPassword.result would not be secret).
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            self.stack_urn = urn
            return resource_pb2.RegisterResourceResponse(urn=urn)
        _ensure_event_loop()
        inputs = rpc.deserialize_properties(request.object)  # preview: unknowns -> Unknown()
        id_, state = self.mocks.new_resource(
            MockResourceArgs(
                typ=request.type,
                name=request.name,
                inputs=dict(inputs),
                provider=request.provider,
                resource_id=request.importId,
                custom=request.custom or False,
                transforms=_resolve_callbacks(request.transforms),
            )
        )
        state = dict(state or {})
        for key in request.additionalSecretOutputs:
            if key in state:
                state[key] = rpc.wrap_rpc_secret(state[key])
        # state must be plain data: an Output or a Resource in it would be awaited on this
        # executor thread's loop (see resource_ref() for resource-typed outputs).
        obj_proto = _sync_await(rpc.serialize_properties(state, {}))
        self.resources[urn] = MockMonitor.ResourceRegistration(urn, id_, state)
        self.registered.append(
            Registered(
                type=request.type,
                name=request.name,
                urn=urn,
                parent=request.parent,
                parent_name=request.parent.split("::")[-1] if request.parent else "",
                custom=request.custom,
                remote=request.remote,
                provider=request.provider,
                inputs=_plain(inputs),
                masked_inputs=_plain(inputs, mask=True),
                secret_inputs=_secret_keys(inputs),
                dependencies=list(request.dependencies),
                id=id_ or None,
                state=_plain(state),
            )
        )
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=obj_proto)

    @_no_rehydrate
    def ReadResource(self, request):  # noqa: N802 (gRPC method name)
        """Read an existing resource (stock behaviour, without rehydrating references)."""
        return super().ReadResource(request)

    @_no_rehydrate
    def RegisterResourceOutputs(self, request):  # noqa: N802 (gRPC method name)
        """Record the root Stack's outputs (the program's exports)."""
        # Only the root Stack's outputs are the program's exports; components call this too.
        if request.urn.split("::")[2] == "pulumi:pulumi:Stack":
            self.stack_outputs_raw = rpc.deserialize_properties(request.outputs, keep_unknowns=True)
        return super().RegisterResourceOutputs(request)

    @_no_rehydrate
    def Call(self, request):  # noqa: N802 (gRPC method name)
        """Answer a component method call (e.g. ``eks.Cluster.get_kubeconfig``) from the mocks."""
        # Methods of (remote) components, e.g. eks.Cluster.get_kubeconfig() ->
        # token "eks:index:Cluster/getKubeconfig", args incl. "__self__" (a resource ref).
        # The stock MockMonitor (3.272) has no Call: "AttributeError: ... has no attribute 'Call'".
        _ensure_event_loop()
        args = rpc.deserialize_properties(request.args)
        self.calls.append((request.tok, _plain(args)))
        tup = self.mocks.call(MockCallArgs(token=request.tok, args=args, provider=request.provider))
        ret, failures = (tup, None) if isinstance(tup, dict) else (tup[0], tup[1])
        ret_proto = _sync_await(rpc.serialize_properties(ret or {}, {}))
        return provider_pb2.CallResponse(
            failures=[
                provider_pb2.CheckFailure(property=f[0], reason=f[1]) for f in failures or []
            ],
            **{"return": ret_proto},
        )

    @_no_rehydrate
    def Invoke(self, request):  # noqa: N802 (gRPC method name)
        """Answer (and record) an invoke from the mocks."""
        if request.tok != "pulumi:pulumi:getResource":
            self.calls.append((request.tok, _plain(rpc.deserialize_properties(request.args))))
        return super().Invoke(request)


# --------------------------------------------------------------------------- running


@dataclass
class RunResult:
    """What one `run_program` registered, exported and called."""

    resources: list[Registered]
    outputs: dict
    masked_outputs: dict
    secret_outputs: set
    calls: list
    stack_urn: str | None

    def by_type(self, typ: str) -> list[Registered]:
        """Every registered resource of type token `typ`."""
        return [r for r in self.resources if r.type == typ]

    def get(self, typ: str, name: str) -> Registered:
        """The one registered resource of type `typ` named `name`."""
        (hit,) = [r for r in self.resources if r.type == typ and r.name == name]
        return hit


def value(output: Any) -> tuple[Any, bool, bool]:
    """(value, is_known, is_secret) of an Output after run_program returned (loop idle)."""
    out = pulumi.Output.from_input(output)
    data = _sync_await(out._data)
    return data.value, data.is_known, data.is_secret


def reset_runtime() -> None:
    """Forget everything a previous run left in the ambient runtime (same thread/context)."""
    _settings.ROOT.set(None)  # else set_mocks keeps the OLD Stack (old project/stack, old exports)
    with _settings.SETTINGS.lock:
        _settings.SETTINGS.outputs.clear()  # not replaced by set_mocks/MockSettings
    _settings.SETTINGS.rpc_manager.clear()
    _settings.SETTINGS.package_refs = {}
    _config.set_all_config({}, [])


def _config_strings(config: dict) -> dict:
    # Config values are strings on the wire; objects/lists/bools/numbers as JSON (what the CLI does)
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def run_program(
    program: Callable[[], Any] | str | Path,
    *,
    project: str = "project",
    stack: str = "stack",
    config: dict | None = None,
    secret_keys: list | None = None,
    preview: bool = False,
    mocks: Mocks | None = None,
) -> RunResult:
    """Run `program` under mocks; return every registered resource and the stack outputs.

    The `resource_ref_guard` runtime patch is installed for the run and removed afterwards.
    """
    reset_runtime()
    _config.set_all_config(_config_strings(config or {}), list(secret_keys or []))
    mocks = mocks or PlatformMocks()
    monitor = RecordingMonitor(mocks)
    set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor)
    _settings.ROOT.set(None)  # run_in_stack makes the real root Stack

    before = set(sys.modules)
    if callable(program):
        func = program
    else:
        path = Path(program).resolve()

        def func() -> None:
            # like the language host: the dir goes on sys.path, __main__.py runs as __main__
            runpy.run_path(str(path), run_name="__main__")

    try:
        with resource_ref_guard():
            _sync_await(run_in_stack(func))  # raises the program's exception, if any
    finally:
        if not callable(program):
            # Modules the program imported from its own directory are cached in sys.modules;
            # a second run would NOT re-execute them (module-level resources silently missing,
            # stale Outputs from the previous run). Drop them.
            root = str(path if path.is_dir() else path.parent)
            for mod in set(sys.modules) - before:
                f = getattr(sys.modules[mod], "__file__", None) or ""
                if f.startswith(root):
                    del sys.modules[mod]

    raw = monitor.stack_outputs_raw or {}
    return RunResult(
        resources=monitor.registered,
        outputs={k: _plain(v) for k, v in raw.items()},
        masked_outputs={k: _plain(v, mask=True) for k, v in raw.items()},
        secret_outputs=_secret_keys(raw),
        calls=monitor.calls,
        stack_urn=monitor.stack_urn,
    )
