"""A test e-mail as ``mailworker send-test`` and the console's "Send test e-mail" page queue it,
and what a person following it is told.

Both go through here, so they cannot drift apart: the same profile choice, message (kind
``test``, priority :data:`TEST_PRIORITY`), default body, checks, and the same reading of the
row through :func:`worker.message_status.judge`, with the same advice beside a refusal.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from worker.classify import RECIPIENTS_REFUSED
from worker.hints import preset_of
from worker.message_status import Judgement, MessageStatus, Verdict, judge
from worker.outbox import Attachment, OutboxMessage, enqueue_message
from worker.presets import load_presets
from worker.profile_check import encryption_words
from worker.profiles import Profile
from worker.repository import Repository
from worker.sentences import N_

__all__ = [
    "DEFAULT_SUBJECT",
    "FOLLOW_SECONDS",
    "RECIPIENT_HINT",
    "TEST_KIND",
    "TEST_PRIORITY",
    "SendTestRequest",
    "advice",
    "default_body",
    "follow_judgement",
    "profile_to_test",
    "queue_test_message",
]

DEFAULT_SUBJECT = "Wiadomość testowa – mail-outbox-worker"  # noqa: RUF001 - an en dash, on purpose
TEST_PRIORITY = 100  # ahead of ordinary notifications (0), so a backlog does not hide the test
TEST_KIND = "test"
# How long someone following a test message on a page waits, as send-test's default --timeout.
FOLLOW_SECONDS = 60.0
RECIPIENT_HINT = N_(
    "check the recipient's address for a typing mistake; the server says it has no such mailbox"
    " or does not take mail for it"
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SendTestRequest:
    """What the person asked for: the profile (None: the default one), recipient and content."""

    profile: str | None
    to: str
    subject: str = DEFAULT_SUBJECT
    body: str | None = None  # None: default_body, naming the profile, its server and the time
    attachments: tuple[Attachment, ...] = ()
    console_user: str | None = None  # who sent it from the console; None: the CLI

    def outbox_message(self, body: str, profile: str | None = None) -> OutboxMessage:
        """The message to queue; ``profile`` replaces the requested one once it is chosen."""
        return OutboxMessage(
            profile=profile or self.profile,
            to=(self.to,),
            subject=self.subject,
            body_text=body,
            attachments=self.attachments,
            priority=TEST_PRIORITY,
            kind=TEST_KIND,
        )


def default_body(profile: Profile, queued_at: datetime, console_user: str | None = None) -> str:
    """Says which profile and server sent the message, when it was queued and from where: the
    CLI, or the console and who used it (Polish first)."""
    when = queued_at.strftime("%Y-%m-%d %H:%M:%S %z")
    server = f"{profile.host}:{profile.port} ({encryption_words(profile)})"
    if console_user is None:
        polish_origin, origin = "polecenie mailworker send-test", "mailworker send-test"
    else:
        polish_origin = f"konsola mailworker, użytkownik {console_user}"
        origin = f"the mailworker console, user {console_user}"
    return (
        "Dzień dobry,\n\n"
        f"to jest wiadomość testowa z mail-outbox-worker ({polish_origin}).\n"
        "Skoro dotarła, konto pocztowe działa. Nie trzeba na nią odpowiadać.\n\n"
        f"Profil:  {profile.name} ({profile.from_address})\n"
        f"Serwer:  {server}\n"
        f"Zlecono: {when}\n\n"
        f"This is a test message from mail-outbox-worker ({origin}), sent through\n"
        f"profile {profile.name} ({profile.from_address}) via {server}, queued at {when}.\n"
    )


async def profile_to_test(repository: Repository, name: str | None) -> Profile | None:
    """The profile named ``name``, or the default one for ``None``; None when there is none."""
    if name is None:
        return await repository.get_default_profile()
    return await repository.get_profile(name)


async def queue_test_message(
    repository: Repository, profile: Profile, request: SendTestRequest, *, max_bytes: int
) -> int:
    """Queue the test message through ``profile``; its id. Raises ``InvalidMessage``."""
    body = request.body
    if body is None:
        body = default_body(profile, datetime.now().astimezone(), request.console_user)
    message = request.outbox_message(body, profile.name)
    queued = await enqueue_message(repository, message, max_bytes=max_bytes)
    return queued.id


def follow_judgement(status: MessageStatus) -> Judgement | None:
    """The answer for someone following the message since it was queued, as send-test would
    give it with its default timeout; ``None`` while waiting may still give one."""
    waited = -status.seconds_until(status.queued_at)
    return judge(status, remaining=FOLLOW_SECONDS - waited, timeout=FOLLOW_SECONDS)


def advice(judgement: Judgement, profile: Profile | None) -> str | None:
    """What to do about a refusal: the worker's hint; for an account problem without one, the
    provider's general advice; for a refused recipient, to check the address."""
    hint = judgement.hint
    if hint is None and judgement.account_problem and profile is not None:
        preset = preset_of(profile, load_presets())
        hint = preset.hint if preset is not None else None
    refused = judgement.verdict is Verdict.NOT_DELIVERED and not judgement.account_problem
    if hint is None and refused and judgement.reason.startswith(RECIPIENTS_REFUSED):
        hint = RECIPIENT_HINT
    return None if hint is None else " ".join(hint.split())
