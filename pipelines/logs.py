"""Structured logs: one JSON line per event, naming the run, step, model version and request it
belongs to, so a log store (Loki, CloudWatch Logs) can follow a run or a request.

A foundation (the serving runtime uses it too). Every line carries ``time`` (UTC, ISO 8601),
``level``, ``logger``, ``message`` and, where known, the fields bound in the current context
(`CONTEXT_FIELDS`: `bound` for a block, `bind`/`unbind` around an ASGI request), plus whatever a
call passes in ``extra`` (``event`` names the kind of event: ``step_started``, ``request``…).

Where the lines go (``MLOPS_LOG_FORMAT``): ``json`` writes them to stderr; ``text`` keeps the
human console (rich progress bars, one-line messages); ``auto`` (the default) is ``json`` when
stderr is not a terminal — a pod, a CI job, a captured subprocess — and ``text`` on a terminal.
``MLOPS_LOG_LEVEL`` sets the level (default ``INFO``).

No line carries a credential: every string in a line is passed through `redact`, which removes
the values of secret-named environment variables, ``user:password@`` in URLs and
``Authorization`` header values.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import IO, Any, Literal

from pydantic_settings import BaseSettings, SettingsConfigDict
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

CONTEXT_FIELDS = ("run_id", "pipeline", "step", "shard", "model_version", "request_id")
"""What a line says it belongs to, when the code that logs it knows."""
REDACTED = "***"
SECRET_NAME = re.compile(r"(?i)(password|passwd|secret|token|credential|private_key|api_key)")
"""Environment variables whose values never appear in a line (``*_FILE`` ones name a path)."""
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@:]+:[^\s/@]*@")
_AUTH_HEADER = re.compile(
    r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?(?:basic|bearer|token)\s+)[^\s\"']+"
)
_QUIET_LIBRARIES = ("botocore", "boto3", "urllib3", "httpx", "httpcore", "alembic", "filelock")
"""Chatty at INFO; kept at WARNING."""

_context: ContextVar[Mapping[str, str] | None] = ContextVar("mlops_log_context", default=None)


class LogSettings(BaseSettings):
    """``MLOPS_LOG_FORMAT`` (auto, json, text) and ``MLOPS_LOG_LEVEL``."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_LOG_", extra="ignore")

    format: Literal["auto", "json", "text"] = "auto"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def env_secrets(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The values of secret-named variables of `environ` (default: this process's)."""
    found = {
        value
        for name, value in (os.environ if environ is None else environ).items()
        if SECRET_NAME.search(name) and not name.upper().endswith(("_FILE", "_PATH", "_DIR"))
    }
    return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` without the literal `secrets`, a URL's ``user:password@`` or an auth header."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    return _AUTH_HEADER.sub(rf"\g<1>{REDACTED}", text)


def _redacted(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: _redacted(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v, secrets) for v in value]
    return value


def current() -> dict[str, str]:
    """The fields bound in this context."""
    return dict(_context.get() or {})


def bind(**fields: object) -> Token[Mapping[str, str] | None]:
    """Add `fields` (None ones are skipped) to this context; `unbind` the token after."""
    return _context.set({**current(), **{k: str(v) for k, v in fields.items() if v is not None}})


def unbind(token: Token[Mapping[str, str] | None]) -> None:
    """Undo the `bind` that returned `token`."""
    _context.reset(token)


@contextmanager
def bound(**fields: object) -> Iterator[None]:
    """Every line logged in the block (in this thread or task) carries `fields`."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


class JsonLines(JsonFormatter):
    """A record as one JSON object: time, level, logger, message, context, extras; redacted."""

    def __init__(
        self, secrets: tuple[str, ...] = (), fields: Mapping[str, str] | None = None
    ) -> None:
        reserved = [*RESERVED_ATTRS, "taskName", "color_message", *CONTEXT_FIELDS]
        super().__init__(
            reserved_attrs=reserved, static_fields=dict(fields or {}), json_ensure_ascii=False
        )
        self.secrets = secrets

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        """The fixed fields first, then the context, then the call's extras."""
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_data["time"] = stamp.replace("+00:00", "Z")
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["message"] = record.message
        for name, value in current().items():
            log_data[name] = value
        for name in CONTEXT_FIELDS:  # an explicit extra wins over the context
            if record.__dict__.get(name) is not None:
                log_data[name] = str(record.__dict__[name])
        super().add_fields(log_data, record, message_dict)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """Every string of the line, redacted."""
        redacted: dict[str, Any] = _redacted(log_data, self.secrets)
        return redacted


def json_enabled(settings: LogSettings | None = None, stream: IO[str] | None = None) -> bool:
    """Whether this process logs JSON lines (see the module's docstring)."""
    chosen = settings or LogSettings()
    if chosen.format != "auto":
        return chosen.format == "json"
    target = stream or sys.stderr
    return not (hasattr(target, "isatty") and target.isatty())


def configure(
    stream: IO[str] | None = None,
    settings: LogSettings | None = None,
    loggers: tuple[str, ...] = (),
    fields: Mapping[str, str] | None = None,
) -> bool:
    """Send every log record of this process to `stream` (default stderr) as JSON lines, if
    `json_enabled`; the root logger and `loggers` (libraries that keep their own handlers, e.g.
    ``bentoml``) get one handler, and every line the constant `fields`. Returns whether JSON
    is on (off: nothing is changed)."""
    chosen = settings or LogSettings()
    target = stream or sys.stderr
    if not json_enabled(chosen, target):
        return False
    handler = logging.StreamHandler(target)
    handler.setFormatter(JsonLines(env_secrets(), fields))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(chosen.level)
    for name in (*loggers, "mlflow", "py.warnings"):
        library = logging.getLogger(name)
        for existing in list(library.handlers):
            library.removeHandler(existing)
        library.propagate = True
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
    # MLflow adds its own stderr handler when first imported, unless told not to
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    return True


class LineWriter(io.TextIOBase):
    """A text stream whose every line becomes a log record (``event: output``) of `logger`:
    what libraries print goes out as JSON lines too, not as bare text between them."""

    def __init__(self, logger: logging.Logger, level: int = logging.INFO) -> None:
        super().__init__()
        self.logger = logger
        self.level = level
        self.pending = ""

    def writable(self) -> bool:
        """Always."""
        return True

    def write(self, text: str) -> int:
        """Log each complete line of `text`; keep a partial one for the next write."""
        self.pending += text
        *lines, self.pending = re.split(r"[\r\n]", self.pending)
        for line in lines:
            if line.strip():
                self.logger.log(self.level, line.rstrip(), extra={"event": "output"})
        return len(text)

    def flush(self) -> None:
        """Log a partial line left over."""
        if self.pending.strip():
            self.logger.log(self.level, self.pending.rstrip(), extra={"event": "output"})
        self.pending = ""
