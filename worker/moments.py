"""Moments as people and logs read them: UTC, ISO 8601, to the second, with a ``Z``.

One form everywhere a time is shown: status reasons (``paused until 2026-12-01T08:00:00Z``),
the CLI's tables and JSON, and the worker's log lines.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import overload

__all__ = ["duration_parts", "utc_iso"]


@overload
def utc_iso(moment: datetime) -> str: ...
@overload
def utc_iso(moment: None) -> None: ...
@overload
def utc_iso(moment: datetime | None) -> str | None: ...
def utc_iso(moment: datetime | None) -> str | None:
    """``moment`` as ``2026-12-01T08:00:00Z`` (in UTC, whatever its zone); ``None`` stays."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def duration_parts(age: timedelta) -> list[tuple[int, str]]:
    """``timedelta(hours=26, minutes=5)`` → ``[(1, "d"), (2, "h")]``: the two largest units
    (d, h, m, s), for the CLI's tables and the console's words alike."""
    seconds = max(0, int(age.total_seconds()))
    parts: list[tuple[int, str]] = []
    for unit, size in _UNITS:
        if seconds >= size or (unit == "s" and not parts):
            parts.append((seconds // size, unit))
            seconds %= size
    return parts[:2]
