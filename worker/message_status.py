"""One message's delivery state as a single read shows it, and what it means to someone waiting.

:class:`MessageStatus` is a row of :func:`worker.queries.message_status`: the outbox row, its
latest attempt and its profile's pause. :func:`judge` (pure) says whether a person waiting for
the message — ``mailworker send-test`` — has an answer yet: delivered, not delivered, or still
waiting when the time is up.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime

from worker.moments import utc_iso
from worker.sentences import N_

__all__ = [
    "UNTOUCHED_REASON",
    "AttemptSummary",
    "Judgement",
    "MessageStatus",
    "Verdict",
    "judge",
]


# What an untouched row says (the column's default): no worker has looked at it yet.
UNTOUCHED_REASON = N_("queued")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttemptSummary:
    """The latest ``mail.attempt`` record of a message."""

    attempt_no: int
    outcome: str | None  # sent, partial, retry, failed, deferred or interrupted
    worker_id: str | None
    started_at: datetime
    finished_at: datetime | None
    smtp_code: int | None
    smtp_text: str | None
    tls_version: str | None
    error: str | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class MessageStatus:
    """An outbox message's state, its latest attempt and its profile's state, read at once."""

    id: int
    kind: str  # notification, or test (send-test and the console's test page)
    profile: str | None
    status: str
    status_reason: str | None
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    smtp_response: str | None
    sent_at: datetime | None
    claimed_by: str | None
    claimed_at: datetime | None
    queued_at: datetime  # when the message was put into the outbox
    recorded_attempts: int  # rows in mail.attempt
    checked_at: datetime  # the database's clock at the read, so no local clock is compared
    latest_attempt: AttemptSummary | None
    profile_enabled: bool | None  # None: the profile does not exist
    profile_paused_until: datetime | None
    profile_pause_reason: str | None
    profile_pause_hint: str | None

    @property
    def picked_up(self) -> bool:
        """Whether a worker has ever taken the message (an attempt, or one in progress)."""
        return self.status == "sending" or self.attempts > 0 or self.recorded_attempts > 0

    @property
    def profile_paused(self) -> bool:
        paused_until = self.profile_paused_until
        return paused_until is not None and paused_until > self.checked_at

    def seconds_until(self, moment: datetime) -> float:
        return (moment - self.checked_at).total_seconds()


class Verdict(enum.StrEnum):
    DELIVERED = "delivered"  # the server accepted it
    NOT_DELIVERED = "not_delivered"  # a final answer, or the account does not work now
    STILL_WAITING = "still_waiting"  # no answer before the time ran out


@dataclasses.dataclass(frozen=True, kw_only=True)
class Judgement:
    """The answer for a person waiting on a message: the verdict, why, what to do."""

    verdict: Verdict
    reason: str
    hint: str | None = None
    account_problem: bool = False  # the profile (account, settings) is why it was not sent


def judge(status: MessageStatus, *, remaining: float, timeout: float) -> Judgement | None:
    """The answer about ``status`` now, or ``None`` while waiting longer may still give one.

    ``remaining`` is how many seconds the person still waits, of ``timeout`` in all.
    A refused login (the attempt was deferred by a profile pause), a disabled profile, or a
    pause that outlasts the wait is an answer at once: waiting would not change it.
    """
    final = _final_answer(status)
    if final is not None:
        return final
    account = _account_answer(status, remaining)
    if account is not None:
        return account
    if status.status == "pending" and status.seconds_until(status.next_attempt_at) > remaining:
        return Judgement(verdict=Verdict.STILL_WAITING, reason=_not_yet(status, timeout))
    if remaining <= 0:
        return Judgement(verdict=Verdict.STILL_WAITING, reason=_not_yet(status, timeout))
    return None


def _final_answer(status: MessageStatus) -> Judgement | None:
    if status.status == "sent":
        reply = status.smtp_response or N_("accepted")
        return Judgement(verdict=Verdict.DELIVERED, reason=reply)
    if status.status == "failed":
        reason = status.last_error or (status.status_reason or N_("failed")).removeprefix(
            "failed: "
        )
        return Judgement(verdict=Verdict.NOT_DELIVERED, reason=reason)
    if status.status == "cancelled":
        reason = status.status_reason or N_("the message was cancelled")
        return Judgement(verdict=Verdict.NOT_DELIVERED, reason=reason)
    return None


def _account_answer(status: MessageStatus, remaining: float) -> Judgement | None:
    """The profile is why the message waits, and waiting will not change that."""
    if status.status != "pending":
        return None
    name = status.profile
    latest = status.latest_attempt
    if latest is not None and latest.outcome == "deferred":
        reason = latest.error or status.profile_pause_reason or N_("the profile was paused")
        return _account_problem(reason, status.profile_pause_hint)
    if status.profile_enabled is None:
        return _account_problem(N_("profile %(profile)s does not exist") % {"profile": name}, None)
    if not status.profile_enabled:
        hint = N_("enable it with `mailworker profiles edit %(profile)s --enable`") % {
            "profile": name
        }
        return _account_problem(N_("profile %(profile)s is disabled") % {"profile": name}, hint)
    paused_until = status.profile_paused_until
    if (
        paused_until is not None
        and status.profile_paused
        and (status.seconds_until(paused_until) > remaining)
    ):
        values = {"profile": name, "until": utc_iso(paused_until)}
        reason = N_("profile %(profile)s is paused until %(until)s") % values
        if status.profile_pause_reason:
            reason = N_("profile %(profile)s is paused until %(until)s: %(reason)s") % {
                **values,
                "reason": status.profile_pause_reason,
            }
        return _account_problem(reason, status.profile_pause_hint)
    return None


def _account_problem(reason: str, hint: str | None) -> Judgement:
    return Judgement(
        verdict=Verdict.NOT_DELIVERED, reason=reason, hint=hint or None, account_problem=True
    )


def _not_yet(status: MessageStatus, timeout: float) -> str:
    """Why the message is not sent yet, told apart: never picked up, being sent, retrying."""
    if status.status == "sending":
        values = {"worker": status.claimed_by or "?", "attempt": status.attempts}
        if status.claimed_at:
            return N_(
                "worker %(worker)s is sending it right now (attempt %(attempt)s, since %(since)s)"
            ) % {**values, "since": utc_iso(status.claimed_at)}
        return N_("worker %(worker)s is sending it right now (attempt %(attempt)s)") % values
    next_attempt = _next_attempt(status)
    if status.picked_up:
        last = status.last_error or (status.latest_attempt and status.latest_attempt.error)
        return N_(
            "picked up, but not sent after %(attempts)s attempt(s); last error: %(reason)s;"
            " %(next)s"
        ) % {
            "attempts": status.attempts,
            "reason": last or status.status_reason,
            "next": next_attempt,
        }
    if (status.status_reason or UNTOUCHED_REASON) != UNTOUCHED_REASON:
        return N_("not sent yet: %(reason)s; %(next)s") % {
            "reason": status.status_reason,
            "next": next_attempt,
        }
    return N_(
        "no worker picked the message up within %(seconds)s s — is `mailworker run` running?"
    ) % {"seconds": f"{timeout:g}"}


def _next_attempt(status: MessageStatus) -> str:
    seconds = max(0.0, status.seconds_until(status.next_attempt_at))
    return N_("next attempt at %(at)s (in %(seconds)s s)") % {
        "at": utc_iso(status.next_attempt_at),
        "seconds": _seconds(seconds),
    }


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.3g}"
