"""What the overview page shows, as ``mailworker status`` reads it: messages by status, the
backlog and what it waits for, each account's state and cap use, and the recent failures."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from worker.console.accounts import AccountRow, account_rows
from worker.moments import duration_parts
from worker.operations import Backlog, FailureGroup, MessageFilter
from worker.repository import Repository

__all__ = ["RECENT_FAILED", "Overview", "age_words", "read_overview"]

# How many of the latest failed messages the page lists; the queue page has the rest.
RECENT_FAILED = 5

# The units of :func:`worker.moments.duration_parts`, as the page says them.
_UNIT_WORDS = {"d": "%(count)s d", "h": "%(count)s h", "m": "%(count)s min", "s": "%(count)s s"}


@dataclasses.dataclass(frozen=True)
class Overview:
    """Everything the overview page shows, read in one transaction."""

    counts: list[tuple[str, int]]  # every status, in the order of the outbox's life
    backlog: Backlog
    accounts: list[AccountRow]
    failures: list[FailureGroup]  # the last 24 h, by account and reason, most first
    recent_failed: list[dict[str, Any]]  # the latest failed messages, newest first

    @property
    def not_sending(self) -> list[AccountRow]:
        """Accounts that send nothing now: paused or disabled."""
        return [row for row in self.accounts if row.status.state != "active"]


async def read_overview(repository: Repository) -> Overview:
    accounts = await account_rows(repository)
    pending = await repository.pending_by_profile()
    return Overview(
        counts=await repository.messages_by_status(),
        backlog=Backlog.of([row.status for row in accounts], pending),
        accounts=accounts,
        failures=await repository.failures_by_reason(),
        recent_failed=await repository.search_messages(
            MessageFilter(statuses=["failed"], limit=RECENT_FAILED)
        ),
    )


def age_words(age: timedelta, gettext: Callable[[str], str]) -> str:
    """``timedelta(minutes=3, seconds=20)`` → ``3 min 20 s`` in the page's language."""
    return " ".join(
        gettext(_UNIT_WORDS[unit]) % {"count": count} for count, unit in duration_parts(age)
    )
