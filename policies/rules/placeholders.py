"""Placeholders: no resource input may hold a value the example stacks ship for a user to replace.

The example stacks (``stacks/Pulumi.<env>.yaml``) hold example account IDs (``111111111111``),
example organisations and domains (``github.com/example-org``, ``example.com``), documentation
address ranges (``203.0.113.0/24``) and fill-in markers (``REPLACE_ME``). `no_placeholders`
flags every resource input that holds one, naming the resource, the input path, the value and
the stack config key to set. It is mandatory under Pulumi; the offline engine's ``explore`` mode
(``mlops infra plan``, for exploring the shipped examples) lowers it to a warning, as its
`offline` mark says. `stack_placeholders` lists the placeholders of a stack config itself (the
list a user works through before a first deploy).

Not a placeholder: ``123456789012``, the account ID of AWS's documentation, because it is also
the account of the offline mocks (every mocked ARN holds it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from policies.rules.base import Level, Report, config_of, rule, who

F = TypeVar("F", bound=Callable[..., None])

PROJECT = "mlops-platform"
"""The stack config namespace of the program's keys (``stacks.config.PROJECT``)."""
OFFLINE_NOTE = "placeholders are warnings offline; `pulumi up` refuses them"

PLACEHOLDERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an example AWS account ID", re.compile(r"(?<!\d)(\d)\1{11}(?!\d)")),
    (
        "an example domain",
        re.compile(
            r"(?i)(?<![\w-])(?:[\w-]+\.)*example\.(?:com|net|org)(?![\w-])"
            r"|(?<![\w-])(?:[\w-]+\.)+(?:example|invalid)(?![\w.-])"
        ),
    ),
    (
        "an example organisation or repository",
        re.compile(
            r"(?i)(?:(?<=[/:])|^)(?:example|your|my)[-_]?"
            r"(?:org|organi[sz]ation|user|company|team|account|repo|project)(?![\w-])"
        ),
    ),
    (
        "a documentation address range",
        re.compile(
            r"(?<![\d.])(?:192\.0\.2|198\.51\.100|203\.0\.113)\.\d{1,3}(?:/\d{1,2})?(?![\d.])"
            r"|(?i:(?<![\w:])2001:0?db8:[0-9a-f:]*(?:/\d{1,3})?)"
        ),
    ),
    (
        "a fill-in marker",
        re.compile(
            r"(?i)(?<![\w-])(?:replace[_-]?me|change[_-]?me|fill[_-]?me[_-]?in)(?![\w-])"
            r"|<(?:your|replace|insert|account)[^<>]*>"
        ),
    ),
)
"""What a placeholder looks like: (what it is, pattern)."""

CONFIG_KEYS: tuple[tuple[str | None, str | None, str | None, str], ...] = (
    (None, r"env\[name=MLOPS_STORAGE_URL\]", None, "workflows.storageUrl"),
    (None, r"env\[name=MLOPS_RAW_STORAGE_URL\]", None, "workflows.rawStorageUrl"),
    (None, r"env\[name=(?P<setting>MLOPS_\w+)\]", None, "workflows.settings.{setting}"),
    (r":CronWorkflow$", r"\.image$", None, "workflows.image"),
    (r":Deployment$", r"\.image$", r"mlflow", "platform.mlflowImage"),
    (r":Application$", r"(^|\.)repoURL$", None, "platform.gitopsRepoUrl"),
    (r":Secret$", r"^stringData\.url$", None, "platform.gitopsRepoUrl"),
    (None, r"(^|\.)publicAccessCidrs(\[|$)", None, "cluster.publicAccessCidrs"),
    (r"^eks:index:Cluster$", r"^accessEntries\.ci\.principalArn$", None, "cluster.ciRoleArn"),
    (r"^eks:index:Cluster$", r"^accessEntries\.admin-\d+\.", None, "cluster.adminRoleArns"),
    (r":Chart$", r"\.sso\.issuer$", None, "platform.argoSso.issuer"),
    (r":Chart$", r"\.sso\.redirectUrl$", None, "platform.argoSso.redirectUrl"),
    # the promotion chain's accounts: the curated key's policy, the other envs' read grants in
    # the bucket policy, their keys in the pipeline's policy (stacks/components/candidate_grants.py)
    (r"^aws:kms/key:Key$", r"^policy$", None, "candidates.accounts"),
    (
        r"^aws:s3/bucketPolicy:BucketPolicy$",
        r"^policy$",
        r"^arn:aws:iam::\d{12}:(root|role/mlops-[a-z0-9-]+-pipeline)$",
        "candidates.accounts",
    ),
    (
        r"^aws:iam/rolePolicy:RolePolicy$",
        r"^policy$",
        r"^arn:aws:kms:[a-z0-9-]+:\d{12}:key/\*$",
        "candidates.accounts",
    ),
    # the serving image's replication from the chain's first account to the later ones, and
    # their registry policies admitting it (stacks/components/image_replication.py)
    (
        r"^aws:ecr/replicationConfiguration:ReplicationConfiguration$",
        r"\.registryId$",
        None,
        "candidates.accounts",
    ),
    (r"^aws:ecr/registryPolicy:RegistryPolicy$", r"^policy$", None, "candidates.accounts"),
    (
        r"^aws:iam/rolePolicy:RolePolicy$",
        r"^policy$",
        r"^arn:aws:ecr:[a-z0-9-]+:\d{12}:repository/mlops-serving$",
        "workflows.settings.MLOPS_SERVING_REPOSITORY",
    ),
    (
        r":ConfigMap$",
        r"^data\.MLOPS_SERVING_REPOSITORY$",
        None,
        "workflows.settings.MLOPS_SERVING_REPOSITORY",
    ),
    # the write-once statements exempt the operators' roles (stacks/components/buckets.py)
    (
        r"^aws:s3/bucketPolicy:BucketPolicy$",
        r"^policy$",
        r"^arn:aws:iam::",
        "cluster.adminRoleArns",
    ),
    (None, None, r"[a-z0-9.-]+-(raw|curated|artifacts)(?![a-z0-9.-])", "storage.bucketPrefix"),
    (r"^aws:iam/role:Role$", r"^assumeRolePolicy$", r"repo:", "ci.githubRepository"),
    (r"^aws:iam/rolePolicy:RolePolicy$", r"^policy$", r"arn:aws:kms:", "ci.secretsKeyArn"),
    (r"^aws:iam/rolePolicy:RolePolicy$", r"^policy$", r"pulumi-state", "ci.stateBucket"),
)
"""Which stack config key sets an input: (type, input path, value patterns; None matches all) →
key under the ``mlops-platform:`` namespace, first match wins. A rule sees resources, not the
stack config, so this mirrors how the program (``stacks/``) uses its config; the tests check it
against the placeholders of the shipped stack configs."""

_DELIMITERS = frozenset(" \t\r\n\"'`,;()[]{}")


@dataclass(frozen=True)
class Finding:
    """One placeholder in one value."""

    path: str
    """Where: ``spec.source.repoURL``, ``tags.owner``, ``env[name=MLOPS_X].value``, ``cidrs[0]``."""
    value: str
    """The value holding it (for a long value, the word around it)."""
    placeholder: str
    """The placeholder itself, e.g. ``111111111111``."""
    what: str
    """What kind of placeholder it is."""


def offline(level: Level, note: str) -> Callable[[F], F]:
    """Mark the decorated rule as enforced at `level` when the offline engine explores.

    ``policies.engine`` in mode ``explore`` lowers the rule to `level` (never raises it) and
    reports `note` when it fires; Pulumi (``policies.pack``) ignores the mark.
    """

    def mark(validate: F) -> F:
        validate.offline_level = level  # type: ignore[attr-defined]
        validate.offline_note = note  # type: ignore[attr-defined]
        return validate

    return mark


def _word(text: str, start: int, end: int) -> str:
    """`text` itself when short, else the word (up to quotes, spaces, brackets) around a match."""
    if len(text) <= 120:
        return text
    while start > 0 and text[start - 1] not in _DELIMITERS:
        start -= 1
    while end < len(text) and text[end] not in _DELIMITERS:
        end += 1
    return text[start:end]


def find(value: Any, path: str = "", allowed: Sequence[str] = ()) -> list[Finding]:
    """The placeholders in one scalar (strings and numbers; not booleans)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return []
    text = str(value)
    findings = []
    for what, pattern in PLACEHOLDERS:
        for match in pattern.finditer(text):
            word = _word(text, match.start(), match.end())
            if match.group(0) in allowed or word in allowed:
                continue
            findings.append(Finding(path, word, match.group(0), what))
    return findings


def _is_unknown(error: Exception) -> bool:
    # pulumi_policy's proxy and policies.engine each raise their own UnknownValueError on a
    # value unknown at preview time; this module may import neither.
    return type(error).__name__ == "UnknownValueError"


def _read(container: Any, key: Any) -> tuple[bool, Any]:
    try:
        return True, container[key]
    except Exception as error:
        if _is_unknown(error):
            return False, None
        raise


def _label(item: Any) -> str | None:
    if not isinstance(item, Mapping) or "name" not in item:
        return None
    known, name = _read(item, "name")
    return name if known and isinstance(name, str) else None


def walk(value: Any, path: str = "", by_name: bool = True) -> Iterator[tuple[str, Any]]:
    """(path, scalar) for every scalar under `value`, skipping values unknown at preview time.

    A list item that is a mapping with a ``name`` is addressed ``[name=…]`` when `by_name`
    (``containers[name=main].image``), else by index.
    """
    if isinstance(value, Mapping):
        for key in list(value):
            known, item = _read(value, key)
            if known:
                yield from walk(item, f"{path}.{key}" if path else str(key), by_name)
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for index in range(len(value)):
            known, item = _read(value, index)
            if known:
                label = _label(item) if by_name else None
                where = f"{path}[name={label}]" if label else f"{path}[{index}]"
                yield from walk(item, where, by_name)
    else:
        yield path, value


def config_key(resource_type: str, path: str, value: str) -> str | None:
    """The stack config key (``mlops-platform:…``) that sets this input, if known."""
    for type_pattern, path_pattern, value_pattern, key in CONFIG_KEYS:
        if type_pattern and not re.search(type_pattern, resource_type):
            continue
        found = re.search(path_pattern, path) if path_pattern else None
        if path_pattern and not found:
            continue
        if value_pattern and not re.search(value_pattern, value):
            continue
        return f"{PROJECT}:" + key.format(**(found.groupdict() if found else {}))
    return None


@rule(
    "no-placeholders",
    "No resource input holds an example value of the stacks (account IDs, example.com, "
    "documentation CIDRs, REPLACE_ME)",
    "mandatory",
    config_schema={"allowed": {"type": "array", "items": {"type": "string"}}},
)
@offline("advisory", OFFLINE_NOTE)
def no_placeholders(args: Any, report: Report) -> None:
    """No input holds a placeholder of the example stacks; names the config key to set.

    One violation per resource, placeholder and config key, with the first input path and value
    holding it and how many more inputs do. ``allowed`` lists values that only look like
    placeholders.
    """
    allowed = [str(a) for a in config_of(args).get("allowed") or []]
    groups: dict[tuple[str, str | None], list[Finding]] = {}
    for path, scalar in walk(args.props or {}):
        for found in find(scalar, path, allowed):
            key = config_key(args.resource_type, path, found.value)
            groups.setdefault((found.placeholder, key), []).append(found)
    for (placeholder, key), findings in groups.items():
        first = findings[0]
        more = len(dict.fromkeys(f.path for f in findings)) - 1
        where = first.path + (f" (and {more} more input{'s' * (more > 1)})" if more else "")
        fix = (
            f"set {key} in the stack config (stacks/Pulumi.<stack>.yaml)"
            if key
            else "set the stack config key that holds it (stacks/Pulumi.<stack>.yaml)"
        )
        report(f"{who(args)}: {where} holds {first.value!r} ({placeholder}: {first.what}); {fix}")


def stack_placeholders(config: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every placeholder in a stack's ``config:`` map: what a user must replace.

    Keys are in Pulumi's ``--path`` form: ``mlops-platform:storage.bucketPrefix``,
    ``mlops-platform:cluster.publicAccessCidrs[0]``.
    """
    rows: list[dict[str, str]] = []
    for top, value in config.items():
        for path, scalar in walk(value, "", by_name=False):
            key = f"{top}.{path}" if path and not path.startswith("[") else f"{top}{path}"
            rows.extend(
                {"key": key, "value": str(scalar), "placeholder": f.placeholder, "what": f.what}
                for f in find(scalar, key)
            )
    return rows
