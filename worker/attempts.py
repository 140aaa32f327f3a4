"""One attempt at one claimed message, from the local checks to what happens next.

:meth:`Attempts.make` turns a claimed message into an :class:`~worker.outcomes.Outcome`, in
this order: refuse what cannot be sent whatever the server says (expired, too large, too many
recipients) and defer what waits for its profile's pause; then wait for one of the profile's
connections, build the message and send it; after a failure, classify it and decide
(:func:`worker.retry.decide`): retry, fail, or pause the profile. Nothing the message does
makes it raise; only a cancellation passes through.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, datetime

import structlog

from worker.accounts import Account, Accounts
from worker.budget import ByteBudget
from worker.classify import Failure, FailureKind, ProfileUnusable, Stage, classify
from worker.database import Database
from worker.hints import provider_hint
from worker.mime import (
    MessageBuildError,
    MessageContent,
    OutgoingAttachment,
    RenderedMessage,
    Sender,
    render,
)
from worker.outcomes import (
    AttemptContext,
    Claimed,
    Outcome,
    deferred_outcome,
    failed_outcome,
    sent_outcome,
    set_aside_outcome,
    storable,
)
from worker.presets import load_presets
from worker.profiles import Profile
from worker.retry import Fail, PauseProfile, RetryPolicy, decide
from worker.sentences import N_
from worker.settings import Settings
from worker.smtp import ConnectFailed, ProfilePaused, SmtpSession

__all__ = ["Attempts", "InFlight"]

# The loop's logger: an attempt's events are the steps of a message's path through the worker.
log = structlog.get_logger("worker")

# A stored password that no configured key opens: the key changed, or the token is damaged.
_UNUSABLE_HINT = N_(
    "configure the key the password was saved with (MAILWORKER_SECRET_KEY, older keys after"
    " the newest, comma-separated), or save the password again: mailworker profiles edit"
)
# Messages smaller than this are built in the event loop (a fraction of a millisecond); larger
# ones in a thread, as building tens of megabytes would stall every other send.
_RENDER_IN_LOOP_BELOW = 256 * 1024


@dataclasses.dataclass(eq=False)
class InFlight:
    """A message the loop is attempting: its task, and whether its send began."""

    task: asyncio.Task[None]
    started: bool = False  # the SMTP transaction began: the message can no longer be put back


class Attempts:
    """How this worker attempts messages: through its profiles' accounts, within the
    attachment budget, deciding after a failure by its retry policy."""

    def __init__(self, *, settings: Settings, database: Database, accounts: Accounts) -> None:
        self._settings = settings
        self._database = database
        self._accounts = accounts
        self._attachment_budget = ByteBudget(settings.attachment_budget)
        self._policy = RetryPolicy.from_settings(settings)
        self._rng = random.Random()  # noqa: S311 - retry jitter, not security
        self._presets = load_presets()

    async def make(self, context: AttemptContext, in_flight: InFlight) -> Outcome:
        """The outcome of one attempt at ``context.claimed``, logged."""
        try:
            outcome = await self._attempt(context, in_flight)
        except Exception as exc:  # unforeseen: set this message aside, go on
            log.exception("attempt_crashed")
            outcome = set_aside_outcome(context, exc, finished_at=_now())
        _log_outcome(outcome)
        if outcome.resume_profile:
            self._accounts.of(context.claimed.profile).resumed()
        return outcome

    async def _attempt(self, context: AttemptContext, in_flight: InFlight) -> Outcome:
        message = context.claimed
        now = _now()
        if message.expires_at is not None and message.expires_at <= now:
            return failed_outcome(
                context,
                finished_at=now,
                failure=Failure(
                    kind=FailureKind.PERMANENT, stage=Stage.BUILD, reason=N_("expired")
                ),
                decision=Fail(N_("expired: not sent before expires_at")),
                tls_version=None,
            )
        account = self._accounts.of(message.profile)
        if message.message_bytes > self._settings.max_message_bytes:
            reason = N_(
                "the message is %(size)s bytes with its attachments, more than"
                " the limit of %(limit)s bytes (MAILWORKER_MAX_MESSAGE_BYTES)"
            ) % {"size": message.message_bytes, "limit": self._settings.max_message_bytes}
            return await self._after_failure(context, account, _unsendable(reason))
        paused = account.paused()
        if paused is not None:
            return deferred_outcome(context, paused, finished_at=_now())
        too_many = message.profile.recipient_limit(message.recipients)
        if too_many is not None:
            return await self._after_failure(context, account, _unsendable(too_many.failure()))
        return await self._send(context, account, in_flight)

    async def _send(
        self, context: AttemptContext, account: Account, in_flight: InFlight
    ) -> Outcome:
        """Build the message once a connection is free, and send it.

        Built only then: a claim holds many rows that wait for the profile's few
        connections, and a built message with its attachments can be tens of megabytes.
        """
        message = context.claimed
        tls_version: str | None = None
        try:
            async with (
                self._attachment_budget.hold(message.attachment_bytes),
                account.session() as session,
            ):
                tls_version = session.tls_version
                try:
                    rendered = await self._render(message, session)
                except MessageBuildError as exc:
                    return await self._after_failure(context, account, classify(exc, Stage.BUILD))
                in_flight.started = True
                refused, reply = await session.send(
                    rendered.sender,
                    rendered.recipients,
                    rendered.data,
                    mail_options=rendered.mail_options,
                )
        except ProfilePaused as exc:
            return deferred_outcome(context, exc.pause, finished_at=_now())
        except ConnectFailed as exc:
            failure = classify(exc.__cause__ or exc, exc.stage)
            return await self._after_failure(context, account, failure, tls_version=tls_version)
        except ProfileUnusable as exc:
            failure = classify(exc, Stage.CONNECT)
            if failure.hint is None:
                failure = dataclasses.replace(failure, hint=_UNUSABLE_HINT)
            return await self._after_failure(context, account, failure)
        except Exception as exc:  # noqa: BLE001 - every send error is classified, none escapes
            failure = classify(exc, Stage.SEND)
            return await self._after_failure(context, account, failure, tls_version=tls_version)
        return sent_outcome(
            context,
            finished_at=_now(),
            reply=reply,
            refused={address: (r.code, r.message) for address, r in refused.items()},
            recipients=rendered.recipients,
            tls_version=tls_version,
        )

    async def _render(self, message: Claimed, session: SmtpSession) -> RenderedMessage:
        """The message's bytes; a large one is built in a thread, so no send waits for it.

        A message with an address that needs SMTPUTF8 cannot be built for a server that does
        not offer it: :class:`MessageBuildError`, and the message fails with that reason.
        """
        content = await self._content(message)
        if message.message_bytes < _RENDER_IN_LOOP_BELOW:
            rendered = render(_sender(message.profile), content)
        else:
            rendered = await asyncio.to_thread(render, _sender(message.profile), content)
        if rendered.utf8_address is not None and not await session.offers("smtputf8"):
            raise MessageBuildError(
                N_(
                    "the server does not offer SMTPUTF8, needed for the address"
                    " %(address)s (its part before the @ is not ASCII)"
                )
                % {"address": repr(rendered.utf8_address)}
            )
        return rendered

    async def _content(self, message: Claimed) -> MessageContent:
        attachments: list[OutgoingAttachment] = []
        if message.attachment_bytes:
            # Not a step of its own: a database error here fails this attempt, to be retried.
            async with self._database.repository() as repository:
                rows = await repository.load_attachments(message.id)
            attachments = [
                OutgoingAttachment(filename=name, content_type=kind, content=content)
                for name, kind, content in rows
            ]
        return MessageContent(
            to=message.to_addrs,
            cc=message.cc_addrs,
            bcc=message.bcc_addrs,
            subject=message.subject,
            body_text=message.body_text,
            body_html=message.body_html,
            headers={str(k): str(v) for k, v in message.headers.items()},
            message_id=message.message_id,
            attachments=attachments,
        )

    async def _after_failure(
        self,
        context: AttemptContext,
        account: Account,
        failure: Failure,
        *,
        tls_version: str | None = None,
    ) -> Outcome:
        """What happens after ``failure``: a retry, a failure, or a pause of the profile."""
        message = context.claimed
        now = _now()
        # The server's words are stored: no byte PostgreSQL refuses may reach it.
        failure = dataclasses.replace(failure, reason=storable(failure.reason))
        failure = provider_hint(failure, message.profile, self._presets)
        frees_at = None
        if failure.daily_limit:
            frees_at = await self._database.run(
                "daily_window_check",
                lambda repository: repository.daily_window_frees_at(message.profile.name),
                default=None,
            )
        decision = decide(
            failure,
            attempt=message.attempts,
            age=now - message.created_at,
            pause_count=message.profile_pause_count,
            now=now,
            policy=self._policy,
            rng=self._rng,
            daily_window_frees_at=frees_at,
        )
        if isinstance(decision, PauseProfile):
            account.pause(decision)
        return failed_outcome(
            context, finished_at=now, failure=failure, decision=decision, tls_version=tls_version
        )


def _unsendable(reason: str) -> Failure:
    """A failure of the message itself, found before any connection: it fails at once."""
    return Failure(kind=FailureKind.PERMANENT, stage=Stage.BUILD, reason=reason)


def _sender(profile: Profile) -> Sender:
    return Sender(
        address=profile.from_address,
        display_name=profile.display_name,
        reply_to=profile.reply_to,
    )


def _log_outcome(outcome: Outcome) -> None:
    fields = {
        "outcome": outcome.attempt_outcome,
        "smtp_code": outcome.smtp_code,
        "tls_version": outcome.tls_version,
        "duration_ms": round((outcome.finished_at - outcome.started_at).total_seconds() * 1000),
    }
    if outcome.status == "sent":
        refused = [a for a, r in outcome.recipients.items() if r.get("code") != 250]
        log.info("mail_sent", **fields, refused=refused or None)
    elif outcome.status == "failed":
        log.warning("mail_failed", **fields, reason=outcome.status_reason)
    elif outcome.attempt_outcome == "retry":
        at = _iso(outcome.next_attempt_at)
        log.info("retry_scheduled", **fields, at=at, reason=outcome.last_error)
    else:
        until = _iso(outcome.next_attempt_at)
        log.info("mail_deferred", **fields, until=until, reason=outcome.status_reason)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _now() -> datetime:
    return datetime.now(UTC)
