"""The chaos run's checks (chaos.verdict): each kind of loss or excess is caught, no I/O."""

from __future__ import annotations

import dataclasses
from typing import Any

from chaos.sink import JournalEntry
from chaos.verdict import CapRule, Fault, HostileReport, OutboxRow, judge

SENDERS = {"chaos": "chaos@example.com", "capped": "capped@example.com"}
CAP = CapRule("capped", "capped@example.com", 1)


def row(id_: int, status: str = "sent", *, profile: str = "chaos", reason: str = "") -> OutboxRow:
    return OutboxRow(
        id=id_,
        profile=profile,
        status=status,
        status_reason=reason,
        attempts=1,
        message_id=f"<m{id_}@example.com>",
        to_addrs=(f"r{id_}@example.com",),
    )


def accepted(id_: int, *, sender: str = "chaos@example.com") -> JournalEntry:
    return JournalEntry(
        event="accepted",
        message_id=f"<m{id_}@example.com>",
        sender=sender,
        recipients=(f"r{id_}@example.com",),
        generation=1,
    )


def capped_pair() -> tuple[list[OutboxRow], list[JournalEntry]]:
    """One capped message sent, one waiting over the cap."""
    waiting = row(11, "pending", profile="capped", reason="waiting: daily cap of 1 messages")
    return [row(10, profile="capped"), waiting], [accepted(10, sender="capped@example.com")]


def test_a_clean_run_passes() -> None:
    """Rows sent once each, the cap held, a tempfail answered: no failure, figures right."""
    capped_rows, capped_journal = capped_pair()
    rows = [row(1), row(2), *capped_rows]
    tempfail = JournalEntry("tempfail", "<m1@example.com>", "chaos@example.com", (), 1)
    journal = [tempfail, accepted(1), accepted(2), *capped_journal]

    verdict = judge(
        committed=[1, 2, 10, 11], rows=rows, journal=journal, faults=[], senders=SENDERS, cap=CAP
    )

    assert [] == verdict.failures
    assert 0 == verdict.figures["lost"]
    assert 3 == verdict.figures["sent"]
    assert 1 == verdict.figures["pending_over_cap"]
    assert 1 == verdict.figures["tempfails_answered"]


def test_a_sent_row_the_server_never_got_is_lost() -> None:
    """The outbox says sent, the journal has no such message: lost."""
    capped_rows, capped_journal = capped_pair()
    verdict = judge(
        committed=[1, 10, 11],
        rows=[row(1), *capped_rows],
        journal=capped_journal,
        faults=[],
        senders=SENDERS,
        cap=CAP,
    )

    assert 1 == verdict.figures["lost"]
    assert ["rows marked sent the server never got: 1"] == verdict.failures


def test_a_committed_row_that_vanished_is_lost() -> None:
    capped_rows, capped_journal = capped_pair()
    verdict = judge(
        committed=[1, 2, 10, 11],
        rows=[row(1), *capped_rows],
        journal=[accepted(1), *capped_journal],
        faults=[],
        senders=SENDERS,
        cap=CAP,
    )

    assert 1 == verdict.figures["lost"]
    assert ["committed rows missing from the outbox: 2"] == verdict.failures


def test_duplicates_are_allowed_only_for_rows_in_flight_at_a_kill() -> None:
    """Row 1 (in flight at a kill) may arrive twice; row 2 (in flight at none) may not."""
    capped_rows, capped_journal = capped_pair()
    kill = Fault("worker_kill", 1.0, frozenset({1}), "chaos-0-1")
    restart = Fault("postgres_restart", 2.0, frozenset({2}))
    journal = [accepted(1), accepted(1), accepted(2), accepted(2), *capped_journal]

    verdict = judge(
        committed=[1, 2, 10, 11],
        rows=[row(1), row(2), *capped_rows],
        journal=journal,
        faults=[kill, restart],
        senders=SENDERS,
        cap=CAP,
    )

    assert 2 == verdict.figures["duplicates_observed"]
    assert 1 == verdict.figures["duplicates_bound"]
    assert 1 == verdict.figures["duplicates_of_rows_in_flight_at_postgres_restart"]
    assert ["duplicates of rows in flight at no kill: 2"] == verdict.failures


def test_a_message_the_server_got_that_matches_no_row_fails() -> None:
    capped_rows, capped_journal = capped_pair()
    stranger = JournalEntry("accepted", "<x@example.com>", "chaos@example.com", ("x@x.pl",), 1)

    verdict = judge(
        committed=[10, 11],
        rows=capped_rows,
        journal=[*capped_journal, stranger],
        faults=[],
        senders=SENDERS,
        cap=CAP,
    )

    assert ["accepted messages that match no row: <x@example.com>"] == verdict.failures


def test_the_cap_exceeded_and_rows_left_sending_or_failed_fail() -> None:
    """Both capped rows sent, one row sending, one failed on its first attempt: three failures."""
    rows = [
        row(10, profile="capped"),
        row(11, profile="capped"),
        row(3, "sending"),
        row(4, "failed", reason="554 5.6.0 refused"),
    ]
    journal = [accepted(10, sender="capped@example.com"), accepted(11, sender="capped@example.com")]

    verdict = judge(
        committed=[3, 4, 10, 11], rows=rows, journal=journal, faults=[], senders=SENDERS, cap=CAP
    )

    assert 1 == verdict.figures["left_sending"]
    assert {"554 5.6.0 refused": 1} == verdict.figures["failed_by_reason"]
    assert [
        "rows failed for a reason the run does not allow: 4",
        "rows left sending (or cancelled): 3",
        "capped profile: 2 sent, the cap allows 1",
        "capped profile: the server got 2 messages, over the cap of 1",
    ] == verdict.failures


def _hostile_rows() -> list[OutboxRow]:
    """A forged row reset and sent, and an oversize row failed with its reason."""
    forged = dataclasses.replace(row(20), idempotency_key="hostile-forged_sent-0")
    oversize = OutboxRow(
        id=21,
        profile="chaos",
        status="failed",
        status_reason="failed: the message is 1001024 bytes ... (MAILWORKER_MAX_MESSAGE_BYTES)",
        attempts=1,
        message_id="<m21@example.com>",
        to_addrs=("oversize-0@example.com",),
        idempotency_key="hostile-oversize-0",
    )
    return [forged, oversize]


def _report(**changes: Any) -> HostileReport:
    report = HostileReport(
        key_prefix="hostile-",
        expected_failures={"oversize": "MAILWORKER_MAX_MESSAGE_BYTES"},
        acknowledged={"hostile-forged_sent-0": "forged_sent", "hostile-oversize-0": "oversize"},
        refused={"far_future": 1},
        surprises=[],
        rounds=1,
    )
    return dataclasses.replace(report, **changes)


def _judge_hostile(rows: list[OutboxRow], report: HostileReport) -> list[str]:
    capped_rows, capped_journal = capped_pair()
    return judge(
        committed=[1, 10, 11],
        rows=[row(1), *capped_rows, *rows],
        journal=[accepted(1), accepted(20), *capped_journal],
        faults=[],
        senders=SENDERS,
        cap=CAP,
        hostile=report,
    ).failures


def test_the_hostile_producers_rows_count_and_its_bad_rows_may_fail() -> None:
    """Its rows count as committed; its oversize row failed with its reason passes."""
    assert [] == _judge_hostile(_hostile_rows(), _report())


def test_a_hostile_bad_row_that_was_sent_fails_the_run() -> None:
    """A row that had to fail but was sent is caught, naming its key."""
    forged, oversize = _hostile_rows()
    sent = dataclasses.replace(oversize, status="sent", status_reason="sent")
    failures = _judge_hostile([forged, sent], _report())
    assert ["bad rows that did not fail in words: hostile-oversize-0: sent 'sent'"] == [
        f for f in failures if f.startswith("bad rows")
    ]


def test_an_attack_that_got_through_fails_the_run() -> None:
    """A surprise of the producer (an attack accepted) is a failure of the run."""
    failures = _judge_hostile(_hostile_rows(), _report(surprises=["insert_as_sent: accepted"]))
    assert ["attacks not refused: insert_as_sent: accepted"] == failures


def test_a_hostile_row_the_database_answered_but_lost_fails_the_run() -> None:
    """An acknowledged hostile insert with no row is lost."""
    forged, _ = _hostile_rows()
    failures = _judge_hostile([forged], _report())
    assert ["hostile rows the database answered but lost: hostile-oversize-0"] == failures


def test_a_forged_message_id_kept_fails_the_run() -> None:
    """A forged row still carrying the producer's Message-ID: the reset did not happen."""
    forged, oversize = _hostile_rows()
    kept = dataclasses.replace(forged, message_id="<forged-0@example.com>")
    failures = _judge_hostile([kept, oversize], _report())
    assert "forged Message-IDs kept: hostile-forged_sent-0" in failures


def test_an_innocent_row_failing_like_a_bad_one_still_fails_the_run() -> None:
    """Only the hostile producer's bad rows may fail for their reasons; a feed row may not."""
    capped_rows, capped_journal = capped_pair()
    innocent = row(
        2, "failed", reason="failed: the message is 5 bytes ... (MAILWORKER_MAX_MESSAGE_BYTES)"
    )
    verdict = judge(
        committed=[1, 2, 10, 11],
        rows=[row(1), innocent, *capped_rows, *_hostile_rows()],
        journal=[accepted(1), accepted(20), *capped_journal],
        faults=[],
        senders=SENDERS,
        cap=CAP,
        hostile=_report(),
    )
    assert ["rows failed for a reason the run does not allow: 2"] == verdict.failures
