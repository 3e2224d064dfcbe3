"""A small evaluator of the expr-lang subset the AnalysisTemplates' conditions use, and Argo
Rollouts' rule that turns a measurement's two conditions into its phase.

Argo Rollouts evaluates ``successCondition`` and ``failureCondition`` with expr-lang
(github.com/expr-lang/expr, utils/evaluate/evaluate.go), with ``result`` bound to the provider's
value (a Prometheus vector: a list of floats). The subset here: numbers, ``result``, ``len(x)``,
``isNaN(x)``, indexing ``x[i]``, unary ``-``/``!``/``not``, comparisons (``== != < <= > >=``),
``&&``/``and``, ``||``/``or`` and parentheses, with expr-lang's precedence (``||`` < ``&&`` <
comparisons < unary) and its short-circuit. As in expr-lang, indexing out of range is an error
(so ``result[0]`` on an empty vector is an error unless guarded), and an expression that is not
a boolean is an error. Anything outside the subset is refused by name, never guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

TOKEN = re.compile(
    r"\s*(?:(\d+\.\d*|\d*\.\d+|\d+)|([A-Za-z_]\w*)|(&&|\|\||==|!=|<=|>=|[<>!()\[\],-]))"
)
FUNCTIONS: dict[str, Callable[[Any], Any]] = {"len": len, "isNaN": math.isnan}


class ExprError(ValueError):
    """The expression is outside the subset, or failed at run time (as expr-lang would)."""


def _tokens(text: str) -> list[str]:
    found, at = [], 0
    while at < len(text.rstrip()):
        match = TOKEN.match(text, at)
        if not match:
            raise ExprError(f"cannot read {text[at:]!r} in {text!r}")
        found.append(next(g for g in match.groups() if g is not None))
        at = match.end()
    return found


class _Parser:
    """Recursive descent over the tokens, evaluating as it goes (short-circuit included)."""

    def __init__(self, text: str, env: dict[str, Any]) -> None:
        self.tokens, self.at, self.env, self.text = _tokens(text), 0, env, text

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise ExprError(f"expected {expected or 'more'} at token {self.at} of {self.text!r}")
        self.at += 1
        return token

    def run(self) -> Any:
        value = self.disjunction(True)
        if self.peek() is not None:
            raise ExprError(f"unexpected {self.peek()!r} in {self.text!r}")
        return value

    def disjunction(self, live: bool) -> Any:
        value = self.conjunction(live)
        while self.peek() in ("||", "or"):
            self.take()
            right = self.conjunction(live and not _boolean(value))
            value = _boolean(value) or _boolean(right) if live else None
        return value

    def conjunction(self, live: bool) -> Any:
        value = self.comparison(live)
        while self.peek() in ("&&", "and"):
            self.take()
            right = self.comparison(live and _boolean(value))
            value = (_boolean(value) and _boolean(right)) if live else None
        return value

    def comparison(self, live: bool) -> Any:
        left = self.unary(live)
        operators: dict[str, Callable[[Any, Any], bool]] = {
            "==": lambda a, b: bool(a == b),
            "!=": lambda a, b: bool(a != b),
            "<": lambda a, b: bool(a < b),
            "<=": lambda a, b: bool(a <= b),
            ">": lambda a, b: bool(a > b),
            ">=": lambda a, b: bool(a >= b),
        }
        if self.peek() in operators:
            operator = operators[self.take()]
            right = self.unary(live)
            return operator(left, right) if live else None
        return left

    def unary(self, live: bool) -> Any:
        if self.peek() in ("!", "not"):
            self.take()
            value = self.unary(live)
            return (not _boolean(value)) if live else None
        if self.peek() == "-":
            self.take()
            value = self.unary(live)
            return -value if live else None
        return self.postfix(live)

    def postfix(self, live: bool) -> Any:
        value = self.primary(live)
        while self.peek() == "[":
            self.take("[")
            index = self.disjunction(live)
            self.take("]")
            if live:
                if not isinstance(index, int) or not -len(value) <= index < len(value):
                    raise ExprError(f"index out of range: {index} (array length {len(value)})")
                value = value[index]
        return value

    def primary(self, live: bool) -> Any:
        token = self.take()
        if token == "(":
            value = self.disjunction(live)
            self.take(")")
            return value
        if token[0].isdigit() or token[0] == ".":
            return float(token) if "." in token else int(token)
        if token in FUNCTIONS:
            self.take("(")
            argument = self.disjunction(live)
            self.take(")")
            return FUNCTIONS[token](argument) if live else None
        if token in ("true", "false"):
            return token == "true"
        if token in self.env:
            return self.env[token]
        raise ExprError(f"unknown name {token!r} in {self.text!r} (not in this subset)")


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ExprError(f"expected bool, but got {type(value).__name__}")
    return value


def evaluate(condition: str, result: Any) -> bool:
    """`condition` with ``result`` bound to `result`, as Argo Rollouts' EvalCondition.

    Raises:
        ExprError: outside the subset, a run-time error, or not a boolean.
    """
    return _boolean(_Parser(condition, {"result": result}).run())


def phase(metric: dict[str, Any], result: Any) -> str:
    """A measurement's phase from its metric's conditions (Argo Rollouts' EvaluateResult):
    ``Error`` when a condition cannot be evaluated, ``Failed`` when the failure condition
    holds, ``Successful`` when the success condition does, ``Inconclusive`` when neither."""
    success, failure = metric.get("successCondition", ""), metric.get("failureCondition", "")
    try:
        succeeded = evaluate(success, result) if success else False
        failed = evaluate(failure, result) if failure else False
    except ExprError:
        return "Error"
    if not success and not failure:
        return "Successful"
    if success and not failure:
        failed = not succeeded
    if failure and not success:
        succeeded = not failed
    if failed:
        return "Failed"
    return "Successful" if succeeded else "Inconclusive"
