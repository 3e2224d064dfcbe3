"""Evaluate the rules offline over resources captured from a (mocked) program run.

It mirrors what Pulumi's analyzer does with the same functions: resource rules see one
resource at a time, stack rules see them all; a rule that reads a value unknown at preview
time is skipped for that resource; each rule's enforcement level comes from the pack's config
(per environment), falling back to the rule's default.

Two modes. ``pulumi``: every rule at the level ``pulumi preview``/``up`` enforces. ``explore``
(the default offline, for exploring the shipped example stacks): a rule marked with an offline
level (``policies.rules.placeholders.offline``, e.g. ``no-placeholders``) is lowered to it, and
its findings are reported apart, as warnings with the note the mark gives, not as violations.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from policies.rules import RULES, Rule

UNKNOWN = "<unknown>"
"""How a captured resource marks a value unknown at preview time."""
CONFIG_DIR = Path(__file__).resolve().parent / "config"

Mode = Literal["pulumi", "explore"]
MODES: tuple[Mode, ...] = ("pulumi", "explore")
RANK = {"disabled": 0, "advisory": 1, "mandatory": 2}


class UnknownValueError(Exception):
    """A rule read a value that is not known yet."""


def _wrap(value: Any) -> Any:
    if isinstance(value, str) and value == UNKNOWN:
        raise UnknownValueError
    if isinstance(value, Mapping):
        return _Props(value)
    if isinstance(value, list):
        return _List(value)
    return value


class _Props(dict):  # type: ignore[type-arg]
    """Props whose unknown values raise when read (like pulumi_policy's proxy)."""

    def __getitem__(self, key: Any) -> Any:
        return _wrap(super().__getitem__(key))

    def get(self, key: Any, default: Any = None) -> Any:
        return _wrap(super().get(key, default))

    def values(self) -> Any:
        return [_wrap(v) for v in super().values()]

    def items(self) -> Any:
        return [(k, _wrap(v)) for k, v in super().items()]


class _List(list):  # type: ignore[type-arg]
    def __getitem__(self, index: Any) -> Any:
        return _wrap(super().__getitem__(index))

    def __iter__(self) -> Any:
        return (_wrap(v) for v in super().__iter__())


@dataclass
class Resource:
    """What a rule sees of one resource (the attributes of pulumi_policy's args)."""

    resource_type: str
    name: str
    props: Mapping[str, Any]
    urn: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)

    def get_config(self) -> Mapping[str, Any]:
        """The rule's config (as Pulumi's policy API asks for it)."""
        return self.config


@dataclass
class StackArgs:
    """What a stack rule sees."""

    resources: list[Resource]
    config: Mapping[str, Any] = field(default_factory=dict)

    def get_config(self) -> Mapping[str, Any]:
        """The rule's config (as Pulumi's policy API asks for it)."""
        return self.config


@dataclass(frozen=True)
class Violation:
    """One rule broken by one resource (or the stack)."""

    rule: str
    level: str
    resource: str
    message: str
    pulumi_level: str | None = None
    """The level ``pulumi preview``/``up`` enforces, when the explore mode lowered it."""


@dataclass
class Verdict:
    """What one evaluation found."""

    mode: Mode
    violations: list[Violation]
    """The violations at the level the mode enforces (explore: without the lowered rules')."""
    warnings: list[Violation]
    """Explore mode: the findings of rules lowered offline (each with its `pulumi_level`)."""
    skipped: int
    """Checks skipped because a rule read a value unknown at preview time."""
    notes: dict[str, str] = field(default_factory=dict)
    """Rule → why its findings are only warnings here, for each lowered rule that fired."""


def load_pack_config(env: str, directory: Path = CONFIG_DIR) -> dict[str, Any]:
    """The policy config of an environment (``policies/config/<env>.json``), or ``{}``."""
    path = directory / f"{env}.json"
    loaded: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    return loaded


def level_of(rule: Rule, pack_config: Mapping[str, Any]) -> str:
    """The rule's enforcement level: ``all`` or its own entry in the config, else its default."""
    own = pack_config.get(rule.name)
    if isinstance(own, str):
        return own
    if isinstance(own, Mapping) and "enforcementLevel" in own:
        return str(own["enforcementLevel"])
    return (
        str(pack_config.get("all", rule.level))
        if isinstance(pack_config.get("all"), str)
        else rule.level
    )


def offline_level(rule: Rule) -> str | None:
    """The level the rule's offline mark lowers it to in explore mode, if it has one."""
    level = getattr(rule.validate, "offline_level", None)
    return str(level) if level in RANK else None


def effective_level(rule: Rule, pack_config: Mapping[str, Any], mode: Mode) -> str:
    """The rule's level in `mode`: the configured level, lowered to its offline level when
    exploring (never raised)."""
    level = level_of(rule, pack_config)
    lowered = offline_level(rule) if mode == "explore" else None
    if lowered is not None and RANK.get(lowered, 0) < RANK.get(level, 0):
        return lowered
    return level


def rule_config(rule: Rule, pack_config: Mapping[str, Any]) -> dict[str, Any]:
    """The rule's config: its schema's defaults overlaid with the pack config's entry for it."""
    own = pack_config.get(rule.name)
    return (
        {k: v for k, v in own.items() if k != "enforcementLevel"}
        if isinstance(own, Mapping)
        else {}
    )


def assess(
    resources: Iterable[Resource],
    pack_config: Mapping[str, Any] | None = None,
    rules: Sequence[Rule] = RULES,
    mode: Mode = "explore",
) -> Verdict:
    """Every finding of `rules` on `resources` in `mode`, and how many checks were skipped."""
    if mode not in MODES:
        raise ValueError(f"unknown policy mode {mode!r}; use one of {', '.join(MODES)}")
    pack_config = pack_config or {}
    captured = list(resources)
    verdict = Verdict(mode, [], [], 0)
    for rule in rules:
        enforced = level_of(rule, pack_config)
        level = effective_level(rule, pack_config, mode)
        if level == "disabled":
            continue
        lowered = level != enforced
        found = verdict.warnings if lowered else verdict.violations
        config = rule_config(rule, pack_config)

        def report(
            message: str,
            urn: str | None = None,
            *,
            _rule: Rule = rule,
            _level: str = level,
            _pulumi: str | None = enforced if lowered else None,
            _found: list[Violation] = found,
            _who: str = "",
        ) -> None:
            _found.append(Violation(_rule.name, _level, urn or _who, message, _pulumi))

        before = len(found)
        if rule.kind == "stack":
            wrapped = [
                Resource(r.resource_type, r.name, _Props(r.props), r.urn, config) for r in captured
            ]
            try:
                rule.validate(StackArgs(wrapped, config), report)
            except UnknownValueError:
                verdict.skipped += 1
        else:
            for r in captured:
                args = Resource(r.resource_type, r.name, _Props(r.props), r.urn, config)
                try:
                    rule.validate(
                        args,
                        lambda message, urn=None, _r=r: report(message, urn or _r.urn or _r.name),
                    )
                except UnknownValueError:
                    verdict.skipped += 1
        note = getattr(rule.validate, "offline_note", None)
        if lowered and len(found) > before and note:
            verdict.notes[rule.name] = str(note)
    return verdict


def evaluate(
    resources: Iterable[Resource],
    pack_config: Mapping[str, Any] | None = None,
    rules: Sequence[Rule] = RULES,
    mode: Mode = "explore",
) -> tuple[list[Violation], int]:
    """Every violation of `rules` by `resources`, and how many checks were skipped as unknown.

    In ``explore`` mode the findings of rules lowered offline are not violations (`assess`
    returns them as warnings); in ``pulumi`` mode they are, at the level Pulumi enforces.
    """
    verdict = assess(resources, pack_config, rules, mode)
    return verdict.violations, verdict.skipped


def mandatory(violations: Iterable[Violation]) -> list[Violation]:
    """The violations that block a deployment."""
    return [v for v in violations if v.level == "mandatory"]
