"""How the operator commands print: aligned tables, JSON for scripts, ages, progress bars."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import click

from worker.moments import duration_parts, utc_iso

__all__ = [
    "age_text",
    "echo_json",
    "json_text",
    "moment_text",
    "on_terminal",
    "printable",
    "progress",
    "table",
]


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# Characters a terminal obeys instead of showing: C0 controls (ESC starts the sequences that
# retitle the window, move the cursor or write to the clipboard), DEL, C1 controls (0x9b is
# a one-byte CSI) and the bidi overrides and isolates, which reorder what is seen.
_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES = {code: _escape(code) for code in _CONTROLS}
# Multi-line text keeps its line breaks, and tabs, which only move the cursor forward.
_ESCAPES_KEEPING_LINES = {
    code: escape for code, escape in _ESCAPES.items() if code not in {ord("\n"), ord("\t")}
}


def printable(text: str, *, lines: bool = False) -> str:
    r"""``text`` safe to show on a terminal: each control character as a visible escape.

    Python's ``"\x1b]0;x\x07"`` becomes ``"\\x1b]0;x\\x07"``: what was an escape sequence is
    shown, not obeyed. Text from producers and servers (subjects, addresses, SMTP replies)
    goes through this before a command prints it for a person. ``lines=True``, for text shown
    as a block of lines, keeps its line breaks (``\n``, ``\r\n``) and tabs.
    """
    if lines:
        return text.replace("\r\n", "\n").translate(_ESCAPES_KEEPING_LINES)
    return text.translate(_ESCAPES)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; numbers are not right-aligned."""
    widths = [max(len(row[column]) for row in [headers, *rows]) for column in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    )


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | memoryview):
        return f"<{len(value)} bytes>"
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def echo_json(value: Any) -> None:
    """``value`` as indented JSON; times as ISO 8601 UTC, non-ASCII text as it is.

    JSON itself escapes only C0 controls; DEL, C1 controls and the bidi overrides are
    escaped here too (``\\u009b``), so the output is as safe on a terminal as a table.
    """
    click.echo(json_text(value, indent=2))


def json_text(value: Any, *, indent: int | None = None) -> str:
    """``value`` as JSON, readable non-ASCII text, no character a terminal would obey."""
    text = json.dumps(value, indent=indent, ensure_ascii=False, default=_plain)
    return text.translate(_JSON_ESCAPES)


# json.dumps escapes the C0 controls itself; a \uXXXX escape is valid JSON for the rest.
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in _CONTROLS if code >= 0x7F}


def moment_text(moment: datetime | None) -> str:
    return utc_iso(moment) or "-"


def age_text(age: timedelta | None) -> str:
    """``timedelta(hours=26, minutes=5)`` → ``1d 2h``: the two largest units, for a table."""
    if age is None:
        return "-"
    return " ".join(f"{count}{unit}" for count, unit in duration_parts(age))


def on_terminal() -> bool:
    """Whether a person watches: progress bars go to standard error only if it is a terminal."""
    return sys.stderr.isatty()


@contextlib.contextmanager
def progress(length: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on the terminal's standard error; ``advance(n)`` moves it on.

    Off a terminal (a script, a log file) nothing is drawn, so standard output stays clean.
    """
    if not on_terminal() or length <= 0:
        yield lambda _n: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update
