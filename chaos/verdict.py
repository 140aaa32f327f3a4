"""The chaos run's checks: what the outbox says, beside what the SMTP server recorded. No I/O.

A row is expected at the server once if it is ``sent`` and never otherwise. Any copy beyond
that is a duplicate, and a duplicate is allowed only for a row that was in flight at a fault
that can cause one: the SIGKILL of its worker (sent, result not yet written) or the kill of
the SMTP server (accepted, ``250`` never delivered). Each such fault allows one extra copy,
so a row in flight at two kills may arrive three times; the bound is the number of
(row, fault) pairs.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chaos.sink import JournalEntry

__all__ = ["CapRule", "Fault", "HostileReport", "OutboxRow", "Verdict", "judge"]

# The prefix of status_reason of a message that waits because its profile's cap is full.
CAP_WAIT = "waiting: daily cap"
# Reasons a message may end failed in this run: its attempts ran out. Nothing in the run is
# permanent, so any other failure is a finding.
ALLOWED_FAILURES = ("gave up after", "failed: its worker stopped during every attempt")


@dataclass(frozen=True)
class OutboxRow:
    id: int
    profile: str
    status: str
    status_reason: str
    attempts: int
    message_id: str | None
    to_addrs: tuple[str, ...]
    idempotency_key: str | None = None


@dataclass(frozen=True)
class HostileReport:
    """What the hostile producer (chaos.hostile) tried, and what it saw."""

    key_prefix: str  # the idempotency keys of the rows it inserted begin so
    expected_failures: Mapping[str, str]  # kind -> a part of the reason it must fail with
    acknowledged: Mapping[str, str]  # key -> kind, of the inserts the database answered
    refused: Mapping[str, int]  # attack kind -> times refused as it must be
    surprises: Sequence[str]  # an attack that got through, or was refused for another reason
    rounds: int

    def kind_of(self, row: OutboxRow) -> str | None:
        """The attack kind of one of its rows (``hostile-<kind>-<round>``); None: not its row."""
        key = row.idempotency_key or ""
        if not key.startswith(self.key_prefix):
            return None
        return key.removeprefix(self.key_prefix).rsplit("-", 1)[0]

    def must_fail(self, row: OutboxRow) -> bool:
        return self.kind_of(row) in self.expected_failures


@dataclass(frozen=True)
class Fault:
    """A fault of the run and the outbox rows in flight when it struck."""

    kind: str  # "worker_kill", "smtp_kill" (may cause duplicates) or "postgres_restart"
    at: float  # seconds since the start of the run
    in_flight: frozenset[int]
    detail: str = ""

    @property
    def may_duplicate(self) -> bool:
        return self.kind in {"worker_kill", "smtp_kill"}


@dataclass(frozen=True)
class CapRule:
    profile: str
    sender: str
    daily_cap: int


@dataclass
class Verdict:
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, failure: str) -> None:
        if not ok:
            self.failures.append(failure)


def judge(
    *,
    committed: Iterable[int],
    rows: Sequence[OutboxRow],
    journal: Sequence[JournalEntry],
    faults: Sequence[Fault],
    senders: Mapping[str, str],
    cap: CapRule,
    hostile: HostileReport | None = None,
) -> Verdict:
    """Every check of the run; ``senders`` maps each profile to its From address.

    The hostile producer's rows count as committed; those it made to fail must fail with
    their reason, and its forged rows, reset by the database, are judged as every other row.
    """
    verdict = Verdict()
    by_id = {row.id: row for row in rows}
    accepted = [entry for entry in journal if entry.event == "accepted"]
    copies = collections.Counter(entry.message_id for entry in accepted)
    committed = set(committed)
    if hostile is not None:
        committed |= {row.id for row in rows if hostile.kind_of(row) is not None}
        _hostile(verdict, rows, hostile)
    _account(verdict, committed, by_id, copies)
    must_fail = frozenset(r.id for r in rows if hostile is not None and hostile.must_fail(r))
    _statuses(verdict, rows, cap, must_fail)
    _match_server_to_rows(verdict, accepted, rows, senders)
    _duplicates(verdict, rows, copies, faults)
    _caps(verdict, rows, accepted, cap)
    verdict.figures["tempfails_answered"] = sum(1 for e in journal if e.event == "tempfail")
    verdict.figures["accepted_total"] = len(accepted)
    return verdict


def _account(
    verdict: Verdict,
    committed: set[int],
    by_id: Mapping[int, OutboxRow],
    copies: Mapping[str, int],
) -> None:
    """Every committed row is still there, and every row marked sent reached the server."""
    missing_rows = committed - set(by_id)
    unexpected_rows = set(by_id) - committed
    sent_unseen = [
        row.id
        for row in by_id.values()
        if row.status == "sent" and (row.message_id is None or copies[row.message_id] == 0)
    ]
    lost = len(missing_rows) + len(sent_unseen)
    verdict.figures.update(messages=len(committed), lost=lost)
    verdict.check(
        not missing_rows, f"committed rows missing from the outbox: {_some(missing_rows)}"
    )
    verdict.check(not unexpected_rows, f"rows nobody committed: {_some(unexpected_rows)}")
    verdict.check(not sent_unseen, f"rows marked sent the server never got: {_some(sent_unseen)}")


def _statuses(
    verdict: Verdict, rows: Sequence[OutboxRow], cap: CapRule, must_fail: frozenset[int]
) -> None:
    """Sent; failed only because attempts ran out (or made to fail: ``must_fail``, checked
    by ``_hostile``); pending only over the cap; none sending."""
    statuses = collections.Counter(row.status for row in rows)
    failed_by_reason = collections.Counter(
        _reason_head(row.status_reason) for row in rows if row.status == "failed"
    )
    bad_failures = [
        row.id
        for row in rows
        if row.status == "failed"
        and row.id not in must_fail
        and not row.status_reason.startswith(ALLOWED_FAILURES)
    ]
    waiting = [row for row in rows if row.status == "pending"]
    over_cap = [
        r for r in waiting if r.profile == cap.profile and r.status_reason.startswith(CAP_WAIT)
    ]
    stray_pending = sorted({row.id for row in waiting} - {row.id for row in over_cap})
    others = [r.id for r in rows if r.status not in {"sent", "failed", "pending"}]
    verdict.figures.update(
        sent=statuses["sent"],
        failed=statuses["failed"],
        failed_by_reason=dict(failed_by_reason),
        pending_over_cap=len(over_cap),
        left_sending=statuses["sending"],
        most_attempts=max((row.attempts for row in rows), default=0),
    )
    verdict.check(
        not bad_failures, f"rows failed for a reason the run does not allow: {_some(bad_failures)}"
    )
    verdict.check(not stray_pending, f"rows still pending, not over a cap: {_some(stray_pending)}")
    verdict.check(not others, f"rows left sending (or cancelled): {_some(others)}")


def _hostile(verdict: Verdict, rows: Sequence[OutboxRow], hostile: HostileReport) -> None:
    """Each attack was refused, each forged row was reset, each bad row failed in words."""
    found = {row.idempotency_key: row for row in rows if hostile.kind_of(row) is not None}
    missing = sorted(set(hostile.acknowledged) - set(found))
    wrong_failures = [
        f"{row.idempotency_key}: {row.status} {row.status_reason[:80]!r}"
        for row in found.values()
        if hostile.must_fail(row)
        and (
            row.status != "failed"
            or hostile.expected_failures[hostile.kind_of(row) or ""] not in row.status_reason
        )
    ]
    kept_forged_id = [
        row.idempotency_key
        for row in found.values()
        if row.message_id is not None and row.message_id.startswith("<forged-")
    ]
    verdict.figures.update(
        hostile_rounds=hostile.rounds,
        hostile_refused=dict(hostile.refused),
        hostile_rows=len(found),
        hostile_failed_in_words=sum(1 for row in found.values() if hostile.must_fail(row))
        - len(wrong_failures),
    )
    verdict.check(not hostile.surprises, f"attacks not refused: {_some(hostile.surprises)}")
    verdict.check(not missing, f"hostile rows the database answered but lost: {_some(missing)}")
    verdict.check(
        not wrong_failures, f"bad rows that did not fail in words: {_some(wrong_failures)}"
    )
    verdict.check(not kept_forged_id, f"forged Message-IDs kept: {_some(kept_forged_id)}")


def _match_server_to_rows(
    verdict: Verdict,
    accepted: Sequence[JournalEntry],
    rows: Sequence[OutboxRow],
    senders: Mapping[str, str],
) -> None:
    """Every message the server accepted is a row: its Message-ID, sender and recipients."""
    by_message_id = {row.message_id: row for row in rows if row.message_id is not None}
    unmatched = []
    for entry in accepted:
        row = by_message_id.get(entry.message_id)
        if (
            row is None
            or senders.get(row.profile) != entry.sender
            or tuple(row.to_addrs) != entry.recipients
        ):
            unmatched.append(entry.message_id)
    verdict.figures["unmatched_accepted"] = len(unmatched)
    verdict.check(not unmatched, f"accepted messages that match no row: {_some(unmatched)}")


def _duplicates(
    verdict: Verdict,
    rows: Sequence[OutboxRow],
    copies: Mapping[str, int],
    faults: Sequence[Fault],
) -> None:
    """Copies beyond the expected one, against the faults each row was in flight at."""
    allowed = collections.Counter(
        row_id for fault in faults if fault.may_duplicate for row_id in fault.in_flight
    )
    at_postgres = {
        row_id for fault in faults if fault.kind == "postgres_restart" for row_id in fault.in_flight
    }
    observed, beyond, at_postgres_restart = 0, [], 0
    for row in rows:
        expected = 1 if row.status == "sent" else 0
        extra = max(0, (copies.get(row.message_id, 0) if row.message_id else 0) - expected)
        observed += extra
        at_postgres_restart += extra if row.id in at_postgres else 0
        if extra > allowed[row.id]:
            beyond.append(row.id)
    verdict.figures.update(
        duplicates_observed=observed,
        duplicates_bound=sum(allowed.values()),
        duplicates_beyond_bound=len(beyond),
        duplicates_of_rows_in_flight_at_postgres_restart=at_postgres_restart,
    )
    verdict.check(not beyond, f"duplicates of rows in flight at no kill: {_some(beyond)}")


def _caps(
    verdict: Verdict, rows: Sequence[OutboxRow], accepted: Sequence[JournalEntry], cap: CapRule
) -> None:
    """The capped profile sent exactly its cap, and the server got no more distinct messages."""
    capped = [row for row in rows if row.profile == cap.profile]
    sent = sum(1 for row in capped if row.status == "sent")
    distinct = len({entry.message_id for entry in accepted if entry.sender == cap.sender})
    verdict.figures.update(
        cap=cap.daily_cap,
        capped_messages=len(capped),
        capped_sent=sent,
        capped_distinct_at_server=distinct,
    )
    expected = min(cap.daily_cap, len(capped))
    verdict.check(sent == expected, f"capped profile: {sent} sent, the cap allows {expected}")
    verdict.check(
        distinct <= cap.daily_cap,
        f"capped profile: the server got {distinct} messages, over the cap of {cap.daily_cap}",
    )


def _reason_head(reason: str) -> str:
    """The kind of a failure reason, without the reply text that follows it."""
    return reason.split(";", maxsplit=1)[0].strip()


def _some(ids: Iterable[Any]) -> str:
    listed = sorted(ids, key=str)
    more = f" and {len(listed) - 10} more" if len(listed) > 10 else ""
    return ", ".join(str(i) for i in listed[:10]) + more
