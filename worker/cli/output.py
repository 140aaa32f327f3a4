"""How the operator commands print: aligned tables, JSON for scripts, ages, progress bars."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import click

from worker.operations import iso_moment

__all__ = ["age_text", "echo_json", "moment_text", "on_terminal", "progress", "table"]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; numbers are not right-aligned."""
    widths = [max(len(row[column]) for row in [headers, *rows]) for column in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    )


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_moment(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | memoryview):
        return f"<{len(value)} bytes>"
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def echo_json(value: Any) -> None:
    """``value`` as indented JSON; times as ISO 8601 UTC, non-ASCII text as it is."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=_plain))


def moment_text(moment: datetime | None) -> str:
    return iso_moment(moment) or "-"


def age_text(age: timedelta | None) -> str:
    """``timedelta(hours=26, minutes=5)`` → ``1d 2h``: the two largest units, for a table."""
    if age is None:
        return "-"
    seconds = int(age.total_seconds())
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])


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
