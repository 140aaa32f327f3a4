"""Moments as people and logs read them: UTC, ISO 8601, to the second, with a ``Z``.

One form everywhere a time is shown: status reasons (``paused until 2026-12-01T08:00:00Z``),
the CLI's tables and JSON, and the worker's log lines.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

__all__ = ["utc_iso"]


@overload
def utc_iso(moment: datetime) -> str: ...
@overload
def utc_iso(moment: None) -> None: ...
@overload
def utc_iso(moment: datetime | None) -> str | None: ...
def utc_iso(moment: datetime | None) -> str | None:
    """``moment`` as ``2026-12-01T08:00:00Z`` (in UTC, whatever its zone); ``None`` stays."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
