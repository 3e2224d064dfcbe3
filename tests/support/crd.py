"""Offline validation of a Kubernetes custom resource against its CustomResourceDefinition.

1. structural: the version's openAPIV3Schema converted to JSON Schema (draft 4, like OpenAPI
   3.0) and checked with `jsonschema`; strict like `kubectl apply --validate=strict`: unknown
   fields are errors (the API server would silently prune them without strict validation).
2. CEL: every `x-kubernetes-validations` rule evaluated with `self` = the value at that schema
   node (cel-python), plus uniqueness of `x-kubernetes-list-type: map|set` lists.

Not covered: defaulting, ObjectMeta validation, transition rules (`oldSelf`), CEL cost limits,
formats.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import celpy
import jsonschema
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

Schema = dict[str, Any]
_DROP = {"description", "example", "default", "nullable", "format", "x-kubernetes-validations"}


def _to_jsonschema(node: Schema) -> Schema:
    """Convert one Kubernetes structural-schema node to JSON Schema (recursively)."""
    out: Schema = {}
    for key, val in node.items():
        if key in _DROP or key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {name: _to_jsonschema(sub) for name, sub in val.items()}
        elif key in ("items", "not") or (key == "additionalProperties" and isinstance(val, dict)):
            out[key] = _to_jsonschema(val)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_to_jsonschema(sub) for sub in val]
        else:
            out[key] = val
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    open_object = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
        "x-kubernetes-embedded-resource"
    )
    if node.get("type") == "object" and "additionalProperties" not in node and not open_object:
        out["additionalProperties"] = False  # strict: unknown fields are errors
    return out


@functools.cache
def _load_crd(crd_path: str) -> Schema:
    with open(crd_path, encoding="utf-8") as fh:
        crd: Schema = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return crd


@functools.cache
def _validator(crd_path: str, version: str) -> jsonschema.Draft4Validator:
    js = _to_jsonschema(_version_schema(_load_crd(crd_path), version))
    js.setdefault("properties", {})["metadata"] = {
        "type": "object"
    }  # ObjectMeta is validated by the API server
    return jsonschema.Draft4Validator(js)


def _version_schema(crd: Schema, version: str) -> Schema:
    for ver in crd["spec"]["versions"]:
        if ver["name"] == version:
            schema: Schema = ver["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(version)


@functools.cache
def _program(expr: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(expr))


def _fmt(path: list[str | int]) -> str:
    return (
        "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "<root>"
    )


def _check_rules(schema: Schema, value: Any, path: list[str | int], errors: list[str]) -> None:
    """Walk schema and value together; evaluate CEL rules and list-type uniqueness at each node."""
    if value is None:
        return
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            continue  # transition rules need the previous object
        activation = {"self": json_to_cel(value)}
        try:
            ok = _program(rule["rule"]).evaluate(activation)
        except CELEvalError as exc:
            errors.append(f"{_fmt(path)}: CEL rule error: {exc.args[0]} (rule: {rule['rule']})")
            continue
        if ok != celtypes.BoolType(True):
            msg = rule.get("message") or f"failed rule: {rule['rule']}"
            if "messageExpression" in rule:
                msg = str(_program(rule["messageExpression"]).evaluate(activation))
            errors.append(f"{_fmt(path)}: Invalid value: {msg}")
    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key, sub in value.items():
            sub_schema = props.get(key, extra if isinstance(extra, dict) else None)
            if sub_schema is not None:
                _check_rules(sub_schema, sub, [*path, key], errors)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        if schema.get("x-kubernetes-list-type") == "map":
            keys = schema.get("x-kubernetes-list-map-keys", [])
            seen: set[str] = set()
            for i, item in enumerate(value):
                ident = json.dumps([item.get(k) for k in keys] if isinstance(item, dict) else item)
                if ident in seen:
                    duplicate = dict(zip(keys, json.loads(ident), strict=False))
                    errors.append(f"{_fmt([*path, i])}: Duplicate value: {duplicate}")
                seen.add(ident)
        for i, item in enumerate(value):
            _check_rules(schema["items"], item, [*path, i], errors)


def validate_custom_resource(obj: dict[str, Any], crd_path: str) -> list[str]:
    """Return human-readable errors (empty list when `obj` is valid for the CRD at `crd_path`)."""
    crd = _load_crd(crd_path)
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    served = [v["name"] for v in crd["spec"]["versions"] if v.get("served", True)]
    if group != crd["spec"]["group"] or version not in served:
        allowed = [f"{crd['spec']['group']}/{v}" for v in served]
        return [f"apiVersion: {obj.get('apiVersion')!r} is not one of {allowed}"]
    if obj.get("kind") != crd["spec"]["names"]["kind"]:
        return [f"kind: {obj.get('kind')!r} is not {crd['spec']['names']['kind']!r}"]
    errors = [
        f"{_fmt(list(e.absolute_path))}: {e.message}"
        for e in sorted(
            _validator(crd_path, version).iter_errors(obj),
            key=lambda e: list(map(str, e.absolute_path)),
        )
    ]
    _check_rules(_version_schema(crd, version), obj, [], errors)
    return errors
