"""The queue page's filter: the query string read into the CLI's :class:`MessageFilter`.

The same rules as ``mailworker messages list``: statuses read by :func:`parse_statuses`, a
profile name, an address among the recipients, a ``since`` read by :func:`parse_since`.
What a person typed is kept to show again, with a problem beside each field it was wrong in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlencode

from worker.operations import MessageFilter, MessageKey, parse_since, parse_statuses

__all__ = ["FIELDS", "PAGE_SIZE", "QueueFilter"]

PAGE_SIZE = 50
FIELDS = ("status", "profile", "recipient", "since")

# The problems, in English as the page's message ids (translated by the page).
UNKNOWN_STATUS = "Choose one of the statuses in the list."
BAD_SINCE = "Give an age like 2h or 3d, or a time like 2026-12-01T08:00."
BAD_POSITION = "This page link is not valid any more; start again from the first page."


@dataclasses.dataclass(frozen=True, kw_only=True)
class QueueFilter:
    """The filter as typed (``values``), its problems by field, and the selection it makes."""

    values: Mapping[str, str]
    problems: Mapping[str, str]
    after: MessageKey | None = None

    @classmethod
    def read(cls, params: Mapping[str, str], *, now: datetime) -> QueueFilter:
        """The filter of a query string; a field left empty filters nothing."""
        values = {field: params.get(field, "").strip() for field in FIELDS}
        problems: dict[str, str] = {}
        if values["status"]:
            try:
                parse_statuses(values["status"])
            except ValueError:
                problems["status"] = UNKNOWN_STATUS
        if values["since"]:
            try:
                parse_since(values["since"], now=now)
            except ValueError:
                problems["since"] = BAD_SINCE
        after = None
        if params.get("after"):
            try:
                after = MessageKey.parse(params["after"])
            except ValueError:
                problems["after"] = BAD_POSITION
        return cls(values=values, problems=problems, after=after)

    def selection(self, *, now: datetime) -> MessageFilter:
        """What the filter selects: one page (and one row more, to know if another follows)."""
        if self.problems:
            raise ValueError(f"the filter has problems: {sorted(self.problems)}")
        values = self.values
        return MessageFilter(
            statuses=parse_statuses(values["status"]) if values["status"] else (),
            profile=values["profile"] or None,
            recipient=values["recipient"] or None,
            since=parse_since(values["since"], now=now) if values["since"] else None,
            limit=PAGE_SIZE + 1,
            after=self.after,
        )

    def query(self, *, after: MessageKey | None = None) -> str:
        """The query string of this filter, from the start or ``after`` a row."""
        pairs = [(field, value) for field, value in self.values.items() if value]
        if after is not None:
            pairs.append(("after", after.token))
        return urlencode(pairs)

    @property
    def profile(self) -> str | None:
        return self.values["profile"] or None
