"""The parts of the console's test-message pages that need no I/O: what the follow page says
about each state of the row, and which form field each of the CLI's problems belongs to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.kit.factories import make_profile
from worker.console.following import follow_state
from worker.console.i18n import translations
from worker.console.test_form import SendTestForm, problem_field
from worker.message_status import AttemptSummary, MessageStatus
from worker.test_message import FOLLOW_SECONDS, RECIPIENT_HINT

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
ENGLISH = translations("en").gettext
POLISH = translations("pl").gettext


def status(**changes: Any) -> MessageStatus:
    """A test message queued just now through an enabled, unpaused profile 'wp'."""
    values: dict[str, Any] = {
        "id": 12, "kind": "test", "profile": "wp", "status": "pending",
        "status_reason": "queued", "attempts": 0, "next_attempt_at": NOW, "last_error": None,
        "smtp_response": None, "sent_at": None, "claimed_by": None, "claimed_at": None,
        "queued_at": NOW, "recorded_attempts": 0, "checked_at": NOW, "latest_attempt": None,
        "profile_enabled": True, "profile_paused_until": None, "profile_pause_reason": None,
        "profile_pause_hint": None,
    }  # fmt: skip
    return MessageStatus(**(values | changes))


def attempt(outcome: str, **changes: Any) -> AttemptSummary:
    values: dict[str, Any] = {
        "attempt_no": 1, "outcome": outcome, "worker_id": "host:1", "started_at": NOW,
        "finished_at": NOW, "smtp_code": None, "smtp_text": None, "tls_version": "TLSv1.3",
        "error": None,
    }  # fmt: skip
    return AttemptSummary(**(values | changes))


def say(row: MessageStatus, gettext: Any = ENGLISH) -> Any:
    return follow_state(row, make_profile(name="wp"), gettext=gettext, explain=lambda text: text)


def test_queued_sending_and_retrying_are_progress_not_answers() -> None:
    """Before an answer the page says how far the message got, and keeps following it."""
    queued = say(status())
    queued_pl = say(status(), POLISH)
    sending = say(status(status="sending", claimed_by="host:7", attempts=1))
    retrying = say(status(attempts=1, last_error="451 4.3.0 Try later",
                          next_attempt_at=NOW + timedelta(seconds=5),
                          latest_attempt=attempt("retry")))  # fmt: skip

    assert [("in_progress", False)] * 3 == [
        (state.verdict, state.final) for state in (queued, sending, retrying)
    ]
    assert "Queued: waiting for a worker to pick it up" == queued.headline
    assert "W kolejce: czeka, aż proces wysyłający ją podejmie" == queued_pl.headline
    assert ("Sending: a worker is sending it now", (("Worker", "host:7"),)) == (
        sending.headline, sending.details
    )  # fmt: skip
    assert (
        "Waiting to be tried again",
        (("Last error", "451 4.3.0 Try later"), ("Next attempt", "2026-12-06T08:00:05Z")),
    ) == (retrying.headline, retrying.details)


def test_untouched_past_the_patience_asks_whether_a_worker_runs_and_keeps_following() -> None:
    """After send-test's default wait, nobody has picked it up: the CLI's words, not final
    (a worker started later still sends it)."""
    late = say(status(checked_at=NOW + timedelta(seconds=FOLLOW_SECONDS + 1)))

    assert ("still_waiting", False, "No answer yet") == (late.verdict, late.final, late.headline)
    [(label, why)] = late.details
    assert "Why" == label
    assert why.startswith("no worker picked the message up within 60 s")


def test_delivered_says_the_reply_the_server_and_the_tls_version() -> None:
    """A sent row is final: the server's reply first, then where and how it went."""
    sent = say(status(status="sent", smtp_response="250 2.0.0 OK id=7", sent_at=NOW,
                      attempts=1, latest_attempt=attempt("sent")))  # fmt: skip

    assert ("delivered", True, "Delivered") == (sent.verdict, sent.final, sent.headline)
    assert (
        ("Server's reply", "250 2.0.0 OK id=7"), ("Server", "smtp.wp.pl:465"),
        ("TLS version", "TLSv1.3"), ("Sent at", "2026-12-06T08:00:00Z"),
    ) == sent.details  # fmt: skip
    assert {"id": 12, "profile": "wp", "status": "sent", "final": True} == {
        key: sent.as_json()[key] for key in ("id", "profile", "status", "final")
    }


def test_a_refused_login_is_final_with_the_hint_and_the_pause() -> None:
    """The attempt was deferred by a pause: not delivered at once, with the pause's hint and
    until when the account is paused."""
    until = NOW + timedelta(minutes=15)
    paused = say(
        status(
            latest_attempt=attempt("deferred", error="535 5.7.8 Bad credentials"),
            profile_paused_until=until,
            profile_pause_reason="535 5.7.8 Bad",
            profile_pause_hint="check the login and password of the profile",
        )
    )

    assert ("not_delivered", True, "Not delivered") == (paused.verdict, paused.final,
                                                        paused.headline)  # fmt: skip
    assert (
        ("Reason", "535 5.7.8 Bad credentials"),
        ("What to do", "check the login and password of the profile"),
        ("Account paused until", "2026-12-06T08:15:00Z"),
    ) == paused.details


def test_a_refused_recipient_is_told_to_check_the_address() -> None:
    """Every recipient refused for good: the server's words and the advice to check them."""
    reason = "every recipient was refused: nikt@example.com: 550 5.1.1 No such user"
    failed = say(status(status="failed", last_error=reason, attempts=1))

    assert (("Reason", reason), ("What to do", RECIPIENT_HINT)) == failed.details


def test_each_problem_of_the_message_goes_beside_its_field() -> None:
    """The CLI's own problem sentences are placed by how they begin; others go on top."""
    form = SendTestForm(to="jan@", subject="a\nb", body="")
    assert not form.check(max_bytes=100)

    assert ["to", "subject"] == list(form.problems)
    assert "subject contains a line break or NUL character" == form.problems["subject"][0]
    assert "attachment" == problem_field("message is 120 bytes (bodies and attachments), ...")
    assert "attachment" == problem_field("attachment 1 has an empty file name")
    assert "" == problem_field("more recipients than the account may send to")
    assert form.request().body is None  # an empty body: the default one, as in send-test
