"""A claimed message and what became of it: the data that flows through the worker.

:class:`Claimed` is a row the worker holds a lease on, with its profile's settings.
:class:`Outcome` is everything one attempt writes back: the row's new state and the attempt
record. The functions here turn a send result or a :mod:`worker.retry` decision into an
outcome; they do no I/O.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from worker.classify import Failure, FailureKind, Stage
from worker.moments import utc_iso
from worker.profiles import Profile
from worker.retry import Decision, Fail, PauseProfile, Retry
from worker.sentences import N_

__all__ = [
    "AttemptContext",
    "Claimed",
    "Outcome",
    "deferred_outcome",
    "failed_outcome",
    "interrupted_outcome",
    "paused_reason",
    "released_outcome",
    "sent_outcome",
    "set_aside_outcome",
    "storable",
]

Status = Literal["pending", "sent", "failed"]
AttemptOutcome = Literal["sent", "partial", "retry", "failed", "deferred", "interrupted"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Claimed:
    """An outbox row this worker holds a lease on, with the settings of its profile."""

    id: int
    profile: Profile
    to_addrs: Sequence[str]
    cc_addrs: Sequence[str]
    bcc_addrs: Sequence[str]
    subject: str
    body_text: str
    body_html: str | None
    headers: Mapping[str, Any]
    priority: int
    expires_at: datetime | None
    kind: str
    attempts: int  # including this one
    message_id: str
    created_at: datetime
    claimed_at: datetime
    attachment_bytes: int  # 0: no attachments
    message_bytes: int  # bodies and attachments; over the limit, the bodies were not loaded
    profile_pause_count: int  # > 0: the profile was paused and this message is its probe

    @property
    def recipients(self) -> tuple[str, ...]:
        """To, Cc and Bcc together, as stored."""
        return (*self.to_addrs, *self.cc_addrs, *self.bcc_addrs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outcome:
    """The result of one attempt, as the result writer stores it."""

    message_id: int
    profile: str
    attempt_no: int
    worker: str
    started_at: datetime
    finished_at: datetime
    attempt_outcome: AttemptOutcome
    # the row
    status: Status
    status_reason: str
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    smtp_response: str | None = None
    sent_at: datetime | None = None
    uncount_attempt: bool = False  # the attempt did not happen through the message's fault
    force: bool = False  # written even if the row is no longer 'sending' (a delivery is a fact)
    # the attempt record
    smtp_code: int | None = None
    smtp_text: str | None = None
    tls_version: str | None = None
    error: str | None = None
    recipients: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    # profile effects
    pause: PauseProfile | None = None
    resume_profile: bool = False

    def in_plain_text(self) -> Outcome:
        """This outcome with every text in printable ASCII (escapes for the rest), for a
        database that refused it as it was."""
        return dataclasses.replace(
            self,
            status_reason=_plain(self.status_reason),
            last_error=_plain(self.last_error),
            smtp_response=_plain(self.smtp_response),
            smtp_text=_plain(self.smtp_text),
            error=_plain(self.error),
            recipients={
                _plain(address): {key: _plain(value) for key, value in result.items()}
                for address, result in self.recipients.items()
            },
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttemptContext:
    """Who tried which message when: the part every outcome of one attempt shares."""

    claimed: Claimed
    worker: str
    started_at: datetime

    def base(self, finished_at: datetime) -> dict[str, Any]:
        return {
            "message_id": self.claimed.id,
            "profile": self.claimed.profile.name,
            "attempt_no": self.claimed.attempts,
            "worker": self.worker,
            "started_at": self.started_at,
            "finished_at": finished_at,
        }


def sent_outcome(
    context: AttemptContext,
    *,
    finished_at: datetime,
    reply: str,
    refused: Mapping[str, tuple[int, str]],
    recipients: Sequence[str],
    tls_version: str | None,
) -> Outcome:
    """The server accepted the message for at least one recipient."""
    reply = storable(reply)
    refused = {address: (code, storable(text)) for address, (code, text) in refused.items()}
    results: dict[str, dict[str, Any]] = {
        address: {"code": 250, "text": "accepted"} for address in recipients
    }
    for address, (code, text) in refused.items():
        results[address] = {"code": code, "text": text}
    reason = N_("sent")
    if refused:
        listed = "; ".join(f"{a}: {code} {text}" for a, (code, text) in refused.items())
        reason = N_("sent; %(refused)s of %(all)s recipients refused: %(replies)s") % {
            "refused": len(refused),
            "all": len(recipients),
            "replies": listed,
        }
    return Outcome(
        **context.base(finished_at),
        attempt_outcome="partial" if refused else "sent",
        status="sent",
        status_reason=reason,
        smtp_response=f"250 {reply}",
        sent_at=finished_at,
        force=True,
        smtp_code=250,
        smtp_text=reply,
        tls_version=tls_version,
        recipients=results,
        resume_profile=context.claimed.profile_pause_count > 0,
    )


def failed_outcome(
    context: AttemptContext,
    *,
    finished_at: datetime,
    failure: Failure,
    decision: Decision,
    tls_version: str | None,
) -> Outcome:
    """The attempt failed; ``decision`` says what happens next."""
    common: dict[str, Any] = {
        **context.base(finished_at),
        "last_error": failure.reason,
        "smtp_code": failure.code,
        "smtp_text": failure.reason if failure.code else None,
        "tls_version": tls_version,
        "error": failure.reason,
    }
    match decision:
        case Retry(at=at, reason=reason):
            return Outcome(
                **common,
                attempt_outcome="retry",
                status="pending",
                status_reason=N_("waiting to retry at %(at)s: %(reason)s")
                % {"at": utc_iso(at), "reason": reason},
                next_attempt_at=at,
            )
        case Fail(reason=reason):
            return Outcome(
                **common,
                attempt_outcome="failed",
                status="failed",
                status_reason=N_("failed: %(reason)s") % {"reason": reason},
                force=True,
            )
        case PauseProfile(until=until, reason=reason, hint=hint):
            return Outcome(
                **common,
                attempt_outcome="deferred",
                status="pending",
                status_reason=paused_reason(context.claimed.profile.name, until, reason, hint),
                next_attempt_at=until,
                uncount_attempt=True,
                pause=decision,
            )
    raise AssertionError(f"unknown decision {decision!r}")  # pragma: no cover


def released_outcome(context: AttemptContext, *, finished_at: datetime, why: str) -> Outcome:
    """The message goes back to the queue untouched; the attempt does not count."""
    return Outcome(
        **context.base(finished_at),
        attempt_outcome="interrupted",
        status="pending",
        status_reason=N_("waiting: %(why)s") % {"why": why},
        next_attempt_at=finished_at,
        uncount_attempt=True,
        error=why,
    )


def deferred_outcome(
    context: AttemptContext, pause: PauseProfile, *, finished_at: datetime
) -> Outcome:
    """The profile is paused: the message waits for the pause's end, its attempt not counted."""
    failure = Failure(
        kind=FailureKind.PROFILE, stage=Stage.CONNECT, reason=pause.reason, hint=pause.hint
    )
    outcome = failed_outcome(
        context, finished_at=finished_at, failure=failure, decision=pause, tls_version=None
    )
    return dataclasses.replace(outcome, pause=None)  # the pause is written once, by its cause


def interrupted_outcome(
    context: AttemptContext, *, finished_at: datetime, during_send: bool
) -> Outcome:
    """The worker stopped before the attempt ended: the message goes back to the queue.

    Stopped ``during_send`` (the SMTP transaction began), the attempt counts: the server may
    have taken the message.
    """
    if during_send:
        why = N_("the worker stopped during the send; it will be retried")
        released = released_outcome(context, finished_at=finished_at, why=why)
        return dataclasses.replace(released, uncount_attempt=False)
    why = N_("returned to the queue at worker shutdown")
    return released_outcome(context, finished_at=finished_at, why=why)


def set_aside_outcome(context: AttemptContext, exc: Exception, *, finished_at: datetime) -> Outcome:
    """The outcome of a message whose handling raised what nobody foresaw: failed, with why.

    Retrying would most likely raise again; a failed row with the reason is what a person
    can look at (and requeue once the cause is fixed).
    """
    reason = storable(
        N_("the worker could not handle this message (%(error)s); it was set aside, not retried")
        % {"error": f"{type(exc).__name__}: {exc}"}
    )
    failure = Failure(kind=FailureKind.PERMANENT, stage=Stage.BUILD, reason=reason)
    return failed_outcome(
        context, finished_at=finished_at, failure=failure, decision=Fail(reason), tls_version=None
    )


def paused_reason(profile: str, until: datetime, reason: str, hint: str | None) -> str:
    """Why a paused profile's message waits (:func:`worker.queries.explain_waiting` writes the
    same words in SQL)."""
    values = {"profile": profile, "until": utc_iso(until), "reason": reason, "hint": hint}
    if hint:
        return (
            N_("waiting: profile %(profile)s paused until %(until)s: %(reason)s (hint: %(hint)s)")
            % values
        )
    return N_("waiting: profile %(profile)s paused until %(until)s: %(reason)s") % values


def storable(text: str) -> str:
    """``text`` as PostgreSQL can store it: no NUL, no surrogate.

    aiosmtplib decodes a reply as UTF-8 and keeps the bytes that are not (a legacy server's
    Latin-2 text) as surrogates; each comes back as the escape of its byte (``\\xb3``), NUL
    as ``\\x00``.
    """
    return _SURROGATE.sub(_escape_surrogate, text).replace("\x00", "\\x00")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    code = ord(match[0])
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, as surrogateescape keeps it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


_NOT_PRINTABLE_ASCII = re.compile(r"[^ -~]")


def _plain(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return _NOT_PRINTABLE_ASCII.sub(lambda match: match[0].encode("unicode_escape").decode(), value)
