"""Structured logging: JSON lines for machines, readable lines on a terminal, never a secret.

Log events are snake_case actions with fields: ``log.info("profile_added", profile="wp")``.
Standard-library loggers (alembic, asyncio, ...) go through the same processors, so a
container's output is JSON from top to bottom.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["REDACTED", "configure_logging", "forget_secrets", "redact_secrets", "register_secret"]

REDACTED = "[redacted]"

# A field whose name contains one of these words holds a secret, whatever its value.
_SECRET_FIELD = re.compile(
    r"pass(word|wd)?|secret|token|auth_data|authorization|api_key|fernet", re.IGNORECASE
)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
# Plain-text secrets seen at run time (decrypted passwords, keys), scrubbed from any value.
_known_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Make sure ``value`` never appears in a log line, whatever field carries it."""
    if len(value) >= 4:  # shorter strings would blank out ordinary words
        _known_secrets.add(value)


def forget_secrets() -> None:
    _known_secrets.clear()


def _scrub(value: str) -> str:
    if "://" in value:  # most values hold no URL: the expression need not run
        value = _URL_PASSWORD.sub(r"\1***@", value)
    for secret in _known_secrets:
        if secret in value:
            value = value.replace(secret, REDACTED)
    return value


@functools.lru_cache(maxsize=1024)  # the same few field names, in every line
def _secret_field(name: str) -> bool:
    return _SECRET_FIELD.search(name) is not None


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return _scrub(value)
    if value is None or isinstance(value, int | float):  # most other fields; no ABC check
        return value
    if isinstance(value, MutableMapping):
        return {
            key: REDACTED if _secret_field(str(key)) else _redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item) for item in value]
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: secret-named fields and known secret values become ``[redacted]``."""
    return {
        key: REDACTED if _secret_field(key) else _redact(value) for key, value in event_dict.items()
    }


def _render_exception_then_redact(
    logger: WrappedLogger, method: str, event_dict: EventDict
) -> EventDict:
    # Exceptions are turned into text first, so their messages get redacted too.
    return redact_secrets(
        logger, method, structlog.processors.format_exc_info(logger, method, event_dict)
    )


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is logged, not when it was set up.

    A command run inside another program (a test runner, an embedding service) may have its
    stderr swapped and closed afterwards; later log lines must not go to the closed stream.
    """

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # the stream is always the current sys.stderr


class _LineWriter:
    """structlog's final logger: writes each rendered line to ``stream`` (else the current
    stderr) and flushes, so a container's log follows the worker line by line."""

    def __init__(self, name: str, stream: TextIO | None) -> None:
        self.name = name  # for add_logger_name
        self._stream = stream

    def msg(self, line: str) -> None:
        stream = self._stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = msg


def configure_logging(
    *, log_format: str = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    """Set up structlog and the standard ``logging`` module to write to ``stream`` (stderr).

    The service's own events go through structlog's processors straight to the stream; the
    standard-library route costs several times more per line, and a busy worker logs a line
    per message. Other libraries' ``logging`` records get the same processors on their way.
    """
    if stream is sys.stderr:
        stream = None  # follow sys.stderr, should it be replaced later
    as_json = log_format == "json" or (log_format == "auto" and not (stream or sys.stderr).isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=(stream or sys.stderr).isatty())
    )
    final: list[Processor] = [_render_exception_then_redact, renderer]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    structlog.configure(
        processors=[*shared, *final],
        logger_factory=lambda name="", *_args: _LineWriter(name, stream),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=False,
    )
