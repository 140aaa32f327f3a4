"""The outbox contract in Python: check a message, then put it into ``mail.outbox``.

Other services call :func:`enqueue` inside their own SQLAlchemy transaction, so the message
exists exactly when their data does; :func:`enqueue_and_commit` is for code that has no
transaction of its own, and :func:`enqueue_many` puts a batch in at once. All check every
field first and raise :class:`~worker.errors.InvalidMessage` listing all problems at once.
``docs/outbox.md`` is the reference for service developers.
"""

from __future__ import annotations

import dataclasses
import mimetypes
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import getaddresses
from pathlib import Path
from typing import Any, TypeAlias

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from worker.addresses import address_problem, count_recipients, recipient_problem
from worker.errors import InvalidMessage, ProfileNotFound
from worker.mime import SERVICE_HEADERS
from worker.models import MESSAGE_KINDS, PRODUCER_TIMES_END
from worker.profiles import Profile
from worker.repository import Repository
from worker.sentences import N_
from worker.settings import Settings

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "SERVICE_HEADERS",
    "Attachment",
    "Enqueued",
    "OutboxMessage",
    "enqueue",
    "enqueue_and_commit",
    "enqueue_many",
    "enqueue_message",
    "recipient_count",
    "recipient_limit_problems",
]

DEFAULT_MAX_MESSAGE_BYTES: int = Settings.model_fields["max_message_bytes"].default

_SMALLINT_MAX = 32767
# RFC 5322 field name: printable US-ASCII except the colon; longer could not start a line.
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")
# Everything str.splitlines() breaks on, plus NUL: any of them could end a header line.
_LINE_BREAKS_AND_NUL = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\0")
_CONTENT_TYPE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# How a problem names a recipient field (a sentence of its own, said in a person's language).
_RECIPIENT_FIELDS = {"to": N_("to address"), "cc": N_("cc address"), "bcc": N_("bcc address")}

# One address may be given as a plain string.
Recipients: TypeAlias = str | Sequence[str]


@dataclasses.dataclass(frozen=True)
class Attachment:
    """A file attached to a message; ``content_type`` is guessed from the name when empty."""

    filename: str
    content: bytes = dataclasses.field(repr=False)
    content_type: str = ""

    def __post_init__(self) -> None:
        if not self.content_type:
            guessed, _encoding = mimetypes.guess_type(self.filename, strict=False)
            object.__setattr__(self, "content_type", guessed or "application/octet-stream")

    @classmethod
    def from_path(
        cls, path: str | Path, *, filename: str | None = None, content_type: str = ""
    ) -> Attachment:
        """The file at ``path``, attached under its own name unless ``filename`` is given."""
        path = Path(path)
        return cls(filename or path.name, path.read_bytes(), content_type)


@dataclasses.dataclass(frozen=True)
class Enqueued:
    """What enqueue did: the message's id, and ``created=False`` for a duplicate key."""

    id: int
    created: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class OutboxMessage:
    """One message as it will be stored in ``mail.outbox``; :meth:`problems` checks it."""

    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = ""
    body_text: str = ""
    body_html: str | None = None
    profile: str | None = None
    attachments: tuple[Attachment, ...] = ()
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    priority: int = 0
    not_before: datetime | None = None
    expires_at: datetime | None = None
    idempotency_key: str | None = None
    kind: str = "notification"

    @property
    def recipients(self) -> tuple[str, ...]:
        """To, Cc and Bcc together, as written."""
        return (*self.to, *self.cc, *self.bcc)

    def problems(self, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[str]:
        """Every reason this message cannot be enqueued, in words; empty when it can."""
        return [
            *_recipient_problems(self),
            *_text_problems(self),
            *_field_problems(self),
            *_header_problems(self.headers),
            *_attachment_problems(self.attachments),
            *_size_problems(self, max_bytes),
            *_schedule_problems(self),
        ]

    def check(self, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        """Raise :class:`InvalidMessage` listing every problem, if there is any."""
        problems = self.problems(max_bytes=max_bytes)
        if problems:
            raise InvalidMessage(problems)

    def outbox_row(self) -> dict[str, Any]:
        """The ``mail.outbox`` columns this message sets; the rest keep their defaults."""
        return {
            "profile": self.profile,
            "to_addrs": list(self.to),
            "cc_addrs": list(self.cc),
            "bcc_addrs": list(self.bcc),
            "subject": self.subject,
            "body_text": self.body_text,
            "body_html": self.body_html,
            "headers": dict(self.headers),
            "priority": self.priority,
            "not_before": self.not_before,
            "expires_at": self.expires_at,
            "idempotency_key": self.idempotency_key,
            "kind": self.kind,
        }

    def attachment_rows(self) -> list[dict[str, Any]]:
        """The ``mail.attachment`` rows of this message, without their ``outbox_id``."""
        return [
            {"filename": item.filename, "content_type": item.content_type, "content": item.content}
            for item in self.attachments
        ]


async def enqueue(
    conn_or_session: AsyncConnection | AsyncSession,
    *,
    to: Recipients,
    cc: Recipients = (),
    bcc: Recipients = (),
    subject: str,
    body_text: str = "",
    body_html: str | None = None,
    profile: str | None = None,
    attachments: Iterable[Attachment] = (),
    headers: Mapping[str, str] | None = None,
    priority: int = 0,
    not_before: datetime | None = None,
    expires_at: datetime | None = None,
    idempotency_key: str | None = None,
    kind: str = "notification",
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Enqueued:
    """Put a message into the outbox inside the caller's transaction; never commits.

    A recipient is an address, alone or with a display name (``jan@example.pl``,
    ``Jan Kowalski <jan@example.pl>``, ``anna@zażółć.pl``); one may be passed as a string.
    ``profile=None`` sends through the default profile. A taken ``idempotency_key`` inserts
    nothing and returns the earlier message's id with ``created=False``. Raises
    :class:`InvalidMessage` (all problems at once) or :class:`ProfileNotFound`.
    """
    message = OutboxMessage(
        to=_address_tuple(to),
        cc=_address_tuple(cc),
        bcc=_address_tuple(bcc),
        subject=subject,
        body_text=body_text,
        body_html=body_html,
        profile=profile,
        attachments=tuple(attachments),
        headers=dict(headers or {}),
        priority=priority,
        not_before=not_before,
        expires_at=expires_at,
        idempotency_key=idempotency_key,
        kind=kind,
    )
    connection = await _connection_of(conn_or_session)
    return await enqueue_message(Repository(connection), message, max_bytes=max_bytes)


async def enqueue_and_commit(
    engine: AsyncEngine,
    *,
    to: Recipients,
    cc: Recipients = (),
    bcc: Recipients = (),
    subject: str,
    body_text: str = "",
    body_html: str | None = None,
    profile: str | None = None,
    attachments: Iterable[Attachment] = (),
    headers: Mapping[str, str] | None = None,
    priority: int = 0,
    not_before: datetime | None = None,
    expires_at: datetime | None = None,
    idempotency_key: str | None = None,
    kind: str = "notification",
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Enqueued:
    """:func:`enqueue` in a transaction of its own, committed before it returns."""
    async with engine.begin() as connection:
        return await enqueue(
            connection,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=subject,
            body_text=body_text,
            body_html=body_html,
            profile=profile,
            attachments=attachments,
            headers=headers,
            priority=priority,
            not_before=not_before,
            expires_at=expires_at,
            idempotency_key=idempotency_key,
            kind=kind,
            max_bytes=max_bytes,
        )


async def enqueue_many(
    conn_or_session: AsyncConnection | AsyncSession,
    messages: Iterable[OutboxMessage],
    *,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> list[Enqueued]:
    """Put many messages into the outbox inside the caller's transaction; never commits.

    For batch jobs (a night's invoices, a newsletter): every message is checked before any is
    inserted, each profile is looked up once, and the caller commits once for all of them.
    Raises :class:`InvalidMessage` listing the problems of every message by its position
    (``message 3: ...``), or :class:`ProfileNotFound`; then nothing was inserted.
    """
    batch = list(messages)
    problems = [
        f"message {position}: {problem}"
        for position, message in enumerate(batch, start=1)
        for problem in message.problems(max_bytes=max_bytes)
    ]
    repository = Repository(await _connection_of(conn_or_session))
    profiles: dict[str | None, Profile] = {}
    for position, message in enumerate(batch, start=1):
        if message.profile not in profiles:
            profiles[message.profile] = await _require_profile(repository, message.profile)
        limits = recipient_limit_problems(message, profiles[message.profile])
        problems += [f"message {position}: {problem}" for problem in limits]
    if problems:
        raise InvalidMessage(problems)
    enqueued = []
    for message in batch:
        message_id, created = await repository.insert_message(
            message.outbox_row(), message.attachment_rows()
        )
        enqueued.append(Enqueued(id=message_id, created=created))
    return enqueued


async def _connection_of(conn_or_session: AsyncConnection | AsyncSession) -> AsyncConnection:
    if isinstance(conn_or_session, AsyncSession):
        return await conn_or_session.connection()
    return conn_or_session


async def enqueue_message(
    repository: Repository, message: OutboxMessage, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> Enqueued:
    """Check ``message`` and its profile, then insert it through ``repository``."""
    message.check(max_bytes=max_bytes)
    profile = await _require_profile(repository, message.profile)
    problems = recipient_limit_problems(message, profile)
    if problems:
        raise InvalidMessage(problems)
    message_id, created = await repository.insert_message(
        message.outbox_row(), message.attachment_rows()
    )
    return Enqueued(id=message_id, created=created)


async def _require_profile(repository: Repository, name: str | None) -> Profile:
    # Checked now; a profile deleted (or changed) later is the worker's to report.
    if name is None:
        profile = await repository.get_default_profile()
        if profile is None:
            raise ProfileNotFound(
                "no profile is marked as the default one: name a profile for the message"
                " or mark one as the default"
            )
        return profile
    found = await repository.get_profile(name)
    if found is None:
        raise ProfileNotFound(f"there is no profile with the account name {name!r}")
    return found


def recipient_count(message: OutboxMessage) -> int:
    """The distinct addresses of To, Cc and Bcc, ignoring case and display names: one RCPT each."""
    return count_recipients(message.recipients)


def recipient_limit_problems(message: OutboxMessage, profile: Profile) -> list[str]:
    """Why the profile could never send ``message`` to so many recipients; empty if it can
    (:meth:`Profile.recipient_limit`, the rule the worker applies too)."""
    limit = profile.recipient_limit(message.recipients)
    return [] if limit is None else [limit.refusal()]


def _address_tuple(addresses: Recipients) -> tuple[str, ...]:
    return (addresses,) if isinstance(addresses, str) else tuple(addresses)


def _has_line_break_or_nul(value: str) -> bool:
    return not _LINE_BREAKS_AND_NUL.isdisjoint(value)


def _recipient_problems(message: OutboxMessage) -> list[str]:
    if not (message.to or message.cc or message.bcc):
        return [N_("no recipients: give at least one address in to, cc or bcc")]
    problems = []
    for field, addresses in (("to", message.to), ("cc", message.cc), ("bcc", message.bcc)):
        label = _RECIPIENT_FIELDS[field]
        for address in addresses:
            if not isinstance(address, str):
                problems.append(f"{label} {address!r} is not text")
                continue
            # The worker's own parser and rules, and email-validator's stricter syntax.
            problem = recipient_problem(address, field=label)
            if problem is not None:
                problems.append(problem)
    return problems


def _text_problems(message: OutboxMessage) -> list[str]:
    problems = []
    if _has_line_break_or_nul(message.subject):
        problems.append(N_("subject contains a line break or NUL character"))
    # Line breaks are fine in bodies, but PostgreSQL text cannot hold NUL.
    bodies = (
        (message.body_text, N_("body_text contains a NUL character")),
        (message.body_html, N_("body_html contains a NUL character")),
    )
    problems.extend(problem for value, problem in bodies if value is not None and "\0" in value)
    return problems


def _field_problems(message: OutboxMessage) -> list[str]:
    problems = []
    if message.profile is not None and (not message.profile or "\0" in message.profile):
        problems.append("profile must be an account name, or None for the default profile")
    key = message.idempotency_key
    if key is not None and (not key or "\0" in key):
        problems.append("idempotency_key must be non-empty text without NUL, or None")
    if message.kind not in MESSAGE_KINDS:
        problems.append(f"kind {message.kind!r} is not one of: {', '.join(MESSAGE_KINDS)}")
    return problems


def _header_problems(headers: Mapping[str, str]) -> list[str]:
    problems = []
    seen: set[str] = set()
    for name, value in headers.items():
        lowered = str(name).lower()
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            problems.append(
                f"header name {name!r} is not 1-76 printable ASCII characters without spaces or ':'"
            )
        elif lowered in SERVICE_HEADERS or lowered.startswith("content-"):
            problems.append(f"header {name} is set by the mail service and cannot be given")
        elif lowered in seen:
            problems.append(f"header {name} is given twice (header names ignore case)")
        seen.add(lowered)
        problems.extend(_header_value_problems(name, value))
    return problems


def _header_value_problems(name: str, value: object) -> list[str]:
    if not isinstance(value, str):
        return [f"header {name} value must be text, not {type(value).__name__}"]
    if _has_line_break_or_nul(value):
        return [f"header {name} value contains a line break or NUL character"]
    if str(name).lower() == "reply-to":
        return _reply_to_problems(value)
    return []


def _reply_to_problems(value: str) -> list[str]:
    # A per-message Reply-To overrides the profile's; it may carry display names.
    addresses = [address for _name, address in getaddresses([value])]
    if not addresses or not all(addresses):
        return [f"header Reply-To {value!r} does not list e-mail addresses"]
    label = N_("header Reply-To address")
    problems = (address_problem(item, field=label) for item in addresses)
    return [problem for problem in problems if problem is not None]


def _attachment_problems(attachments: Sequence[Attachment]) -> list[str]:
    problems = []
    for number, item in enumerate(attachments, start=1):
        if not item.filename.strip():
            problems.append(N_("attachment %(number)s has an empty file name") % {"number": number})
        elif _has_line_break_or_nul(item.filename):
            problems.append(
                N_("attachment %(number)s name %(name)s has a line break or NUL")
                % {"number": number, "name": repr(item.filename)}
            )
        if not _CONTENT_TYPE.match(item.content_type):
            problems.append(
                N_("attachment %(number)s content type %(value)s is not like type/subtype")
                % {"number": number, "value": repr(item.content_type)}
            )
        if not isinstance(item.content, bytes):
            problems.append(N_("attachment %(number)s content must be bytes") % {"number": number})
    return problems


def _size_problems(message: OutboxMessage, max_bytes: int) -> list[str]:
    size = len(message.body_text.encode()) + len((message.body_html or "").encode())
    size += sum(len(item.content) for item in message.attachments)
    if size > max_bytes:
        return [
            N_("message is %(size)s bytes (bodies and attachments), above the %(limit)s limit")
            % {"size": size, "limit": max_bytes}
        ]
    return []


def _schedule_problems(message: OutboxMessage) -> list[str]:
    problems = []
    if not isinstance(message.priority, int) or not 0 <= message.priority <= _SMALLINT_MAX:
        problems.append(
            f"priority must be a whole number from 0 to {_SMALLINT_MAX}, not {message.priority}"
        )
    moments = {"not_before": message.not_before, "expires_at": message.expires_at}
    naive = [name for name, moment in moments.items() if moment and moment.utcoffset() is None]
    problems.extend(f"{name} must carry a time zone (e.g. datetime.now(UTC))" for name in naive)
    start, end = message.not_before, message.expires_at
    # Aware and naive datetimes cannot be compared; the naive one is reported above.
    if not naive and start is not None and end is not None and end <= start:
        problems.append("expires_at must be later than not_before")
    problems.extend(
        f"{name} must lie in the years 1970 to {PRODUCER_TIMES_END - 1}, not {moment.isoformat()}"
        for name, moment in moments.items()
        if moment is not None
        and name not in naive
        and not _EARLIEST <= moment < datetime(PRODUCER_TIMES_END, 1, 1, tzinfo=UTC)
    )
    return problems


_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
