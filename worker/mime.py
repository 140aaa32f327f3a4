"""Build the bytes of one outgoing message from a profile's sender and an outbox row.

``render`` is pure (no I/O; the clock only for a missing ``Date``) and returns the SMTP
envelope with the message ready for ``DATA``: CRLF line endings, no line over 998 octets and
7-bit clean, so neither 8BITMIME nor SMTPUTF8 is needed — unless an address has a local part
that is not ASCII (``zażółć@example.pl``): such a message has that address in UTF-8 in its
headers (RFC 6532) and needs the server's SMTPUTF8 (``RenderedMessage.utf8_address``).

Decisions:

- Headers the service owns (From, Sender, To, Cc, Bcc, Subject, Date, Message-ID,
  MIME-Version, Content-*) cannot come from the row's extra headers. Such a row raises
  ``MessageBuildError`` naming the header: a caller's mistake shows up in ``last_error``
  instead of being dropped quietly. So do a header name that is not 1 to 76 printable ASCII
  characters without ":" and a name given twice (ignoring case).
- A ``Reply-To`` among the row's extra headers replaces the profile's: the service that wrote
  the message knows where answers belong (a case handler, say); the profile only gives the
  default.
- Header values are sanitised, not rejected: every run of line breaks, NUL and other control
  characters (TAB excepted) becomes one space, as mail programs do, and the value is stripped.
  No value can therefore start a header of its own. Bodies keep their line breaks (written as
  CRLF) and lose NUL characters.
- Addresses are read by ``worker.addresses``, the parser the outbox API uses too, so a row
  inserted with SQL is read as the API reads it. A To, Cc or Bcc entry is an address, alone,
  in ``<>`` or after a display name (``Jan Kowalski <jan@example.pl>``,
  ``"Kowalski, Jan" <jan@example.pl>``): the display name goes into the header (RFC 2047
  words when it is not ASCII, as the From name), the bare address into the envelope. A
  Unicode domain is sent in its IDNA 2008 ASCII form (``anna@zażółć.pl`` is
  ``anna@xn--za-6ja4f8n1l.pl``) in the envelope and the header alike; an ASCII address is
  sent as written. A local part that is not ASCII (of a recipient, the sender or a Reply-To
  address) is written as UTF-8 and only there: the message is ASCII but for those addresses,
  and ``utf8_address`` names the first one, so the worker sends it with SMTPUTF8 or fails it
  when the server does not offer that.
- An address that no SMTP command can carry raises ``MessageBuildError`` with the reason, here
  and not when the message is sent: a control character (a TAB in a quoted local part, say;
  such an entry is refused whole, display name included), a domain that IDNA refuses, a domain
  literal with '"', '<' or '>' (aiosmtplib refuses those), over 254 octets, two addresses in
  one entry.
- Without To addresses the message says ``To: undisclosed-recipients:;``; Bcc entries are
  only in the envelope, their display names nowhere. The same address in several entries
  (any letter case, any display name) is one envelope recipient. A naive ``date`` is taken
  as UTC.
- Text is 7bit when it is ASCII with lines of at most 998 octets, otherwise quoted-printable
  or base64, whichever is shorter. An empty text body with HTML sends the HTML alone.
  Attachments are base64; a malformed content type, or a multipart/message one (those may not
  be base64-encoded), becomes application/octet-stream.

How: the email package builds the tree (``EmailMessage``, ``MIMEPart``) and writes it with
the SMTP policy (with ``utf8=True`` for a message that needs SMTPUTF8, and only then); it also
parses Reply-To lists, unusual ASCII addresses (for ``worker.addresses``) and content-type
parameters, and formats the date. Header values are folded here, though, and
non-ASCII ones encoded here (RFC 2047 base64 words, RFC 2231 file names), because Python
3.11's header folder loses the space at some encoded-word boundaries (about one long Polish
subject in a hundred comes back changed), turns long URLs (List-Unsubscribe) into encoded
words, needs milliseconds for a long Polish file name, and is the costliest step per message
anyway. Headers reach the email package already folded, through the documented header-object
protocol (a value with ``name`` and ``fold``). A sender's From and Reply-To are built once and
cached; bodies are encoded once, by the C codecs of ``binascii`` and ``base64``. About 10,000
messages a second of 1 KB Polish text on one core.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email import policy as email_policy
from email.errors import HeaderParseError, NonASCIILocalPartDefect
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message, MIMEPart
from email.policy import Policy
from email.utils import format_datetime, quote
from functools import lru_cache
from typing import Any
from urllib.parse import quote as url_quote

from worker.addresses import AddressError, Mailbox, parse_address, parse_mailbox
from worker.errors import MailWorkerError
from worker.sentences import N_

__all__ = [
    "SERVICE_HEADERS",
    "MessageBuildError",
    "MessageContent",
    "OutgoingAttachment",
    "RenderedMessage",
    "Sender",
    "render",
]

_MAX_LINE = 998  # RFC 5322 2.1.1: a line MUST be at most 998 characters ...
_SOFT_LINE = 78  # ... and SHOULD be at most 78.
_BASE64_LINE = 76  # RFC 2045 6.8: base64 lines of at most 76 characters

# Line breaks of any kind (str.splitlines() would split on \x1c-\x1e, \x85, \u2028 too, and
# the email package refuses values it can split), NUL and the other control characters.
_CONTROL_RUNS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]+")
# A display name with any of these is quoted (the specials of email.utils.formataddr).
_NAME_SPECIALS = re.compile(r'[][\\()<>@,:;".]')
# Characters that may not stand alone in a Reply-To address; without them it is one address.
_LIST_SYNTAX = frozenset('<>,;:()"')
# RFC 5322 field-name: printable ASCII except ":"; longer names could not start a line.
_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}")
# RFC 6838 type/subtype names (lower-cased before matching).
_RESTRICTED_NAME = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_MIME_TYPE = re.compile(rf"({_RESTRICTED_NAME})/{_RESTRICTED_NAME}")
# <left@right> in printable ASCII without spaces, "<", ">" or a second "@".
_MESSAGE_ID = re.compile(r"<[!-;=?A-~]+@[!-;=?A-~]+>")
_HIGH_BYTES = bytes(range(0x80, 0x100))
# Bytes per encoded word: 56 base64 characters, so "=?utf-8?b?" + 56 + "?=" is 68 long and a
# continuation line " " + word stays within 78.
_WORD_BYTES = 42
# Percent-encoded characters per RFC 2231 section: " filename*0*=utf-8''" + 56 + ";" is 77.
_SECTION_WIDTH = 56
# One character of a percent-encoded UTF-8 string: a lead byte and its continuation bytes.
_ENCODED_CHAR = re.compile(r"%[0-9A-F]{2}(?:%[89AB][0-9A-F])*|[^%]")
# Headers the service writes itself; an extra header of the row may not set them. Any
# ``Content-*`` header belongs to the MIME structure too. worker.outbox refuses the same.
SERVICE_HEADERS = frozenset(
    {"from", "sender", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version"}
)


class MessageBuildError(MailWorkerError, ValueError):
    """The content cannot become an e-mail message; the text says which field and why."""


@dataclass(frozen=True, kw_only=True)
class Sender:
    """Who sends, from the profile: the outgoing address, its display name, the Reply-To."""

    address: str
    display_name: str
    reply_to: str | None


@dataclass(frozen=True, kw_only=True)
class OutgoingAttachment:
    """One attached file, as stored in ``mail.attachment``."""

    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True, kw_only=True)
class MessageContent:
    """What to send, from the outbox row; ``message_id`` is kept across retries."""

    to: Sequence[str]
    cc: Sequence[str]
    bcc: Sequence[str]
    subject: str
    body_text: str
    body_html: str | None
    headers: Mapping[str, str]
    message_id: str
    attachments: Sequence[OutgoingAttachment]
    date: datetime | None = None


@dataclass(frozen=True)
class RenderedMessage:
    """The SMTP envelope (MAIL FROM, RCPT TO) and the bytes for DATA.

    ``utf8_address`` names the first address (as written) whose local part is not ASCII: the
    message then needs the server's SMTPUTF8 and goes with ``mail_options``. None for an
    ASCII message, which any server takes.
    """

    sender: str
    recipients: list[str]
    data: bytes
    utf8_address: str | None = None

    @property
    def mail_options(self) -> tuple[str, ...]:
        """The MAIL FROM parameters the message needs: ``SMTPUTF8`` or none."""
        return () if self.utf8_address is None else ("SMTPUTF8",)


class _HeaderClasses(HeaderRegistry):
    """The stdlib registry, except that each header class is made once, not on every lookup.

    ``EmailMessage.__setitem__`` looks a class up for every header it stores; the stdlib makes
    a new class each time, which alone more than doubles the time of a small message.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[type[Any], type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        # The class made depends only on the registered class, so at most one per entry.
        registered = self.registry.get(name.lower(), self.default_class)
        made = self._made.get(registered)
        if made is None:
            made = self._made[registered] = super().__getitem__(name)
        return made


# SMTP = CRLF lines and RFC 2047 headers (utf8=False); cte_type="7bit" because every part is
# encoded to 7 bits here, whatever the server's 8BITMIME support.
_POLICY = email_policy.SMTP.clone(cte_type="7bit", header_factory=_HeaderClasses())
# For a message with a non-ASCII local part only (RFC 6532): headers written as UTF-8, for the
# address alone, as display names and other text are encoded words all the same.
_UTF8_POLICY = _POLICY.clone(utf8=True)


class _FoldedHeader(str):
    """A header value whose folded lines are worked out before the message is written.

    The email policy stores a value that has a matching ``name`` as it is and writes it by
    calling its ``fold``: the documented protocol of header objects.
    """

    name: str
    lines: tuple[str, ...]

    def __new__(cls, name: str, value: str, lines: Iterable[str]) -> _FoldedHeader:
        header = super().__new__(cls, value)
        header.name = name
        header.lines = tuple(lines)
        return header

    def fold(self, *, policy: Policy[Any]) -> str:
        return policy.linesep.join(self.lines) + policy.linesep


def _one_line(value: str) -> str:
    """``value`` with each run of line breaks and control characters as one space, stripped."""
    return _CONTROL_RUNS.sub(" ", value).strip()


def _file_name(filename: str) -> str:
    """An attachment's name on one line, without the double quotes around it.

    Quotes around a name are a producer's quoting mistake (``'"faktura.pdf"'``), and readers
    disagree on them: Python's email package drops one pair, other mail programs show them.
    """
    name = _one_line(filename)
    while name != (unquoted := name.strip('"').strip()):
        name = unquoted
    return name


def _plain_header(name: str, value: str) -> _FoldedHeader:
    """An ASCII value folded before its spaces (the caller keeps words short enough)."""
    words = value.split(" ")
    lines: list[str] = []
    line = f"{name}: {words[0]}"
    for word in words[1:]:
        # Break only before a word, so that no continuation line is blank.
        if word and len(line) + 1 + len(word) > _SOFT_LINE:
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return _FoldedHeader(name, value, lines)


def _fits_plain(name: str, value: str) -> bool:
    """Whether ``value`` can be written as it is: ASCII, and each word fits on a line."""
    longest_word = max(len(word) for word in value.split(" "))
    return value.isascii() and len(name) + 2 + longest_word <= _MAX_LINE


def _encoded_words(text: str, name: str) -> str:
    """``text`` as RFC 2047 base64 words of whole characters, the first fitting after ``name``.

    Written here rather than by the email package: its folder (Python 3.11) can drop the
    space where it splits an encoded word, which changes a Polish subject or display name.
    """
    data = text.encode("utf-8")
    # A word of n bytes takes 4n/3 characters besides its chrome; "Name: " and the first word
    # should fit in 78. At least 6 bytes, so that a word always holds a whole character.
    room = _SOFT_LINE - len(f"{name}: =?utf-8?b??=")
    width = max(6, room // 4 * 3)
    words: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + min(width, _WORD_BYTES), len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a UTF-8 continuation byte
            end -= 1
        words.append(f"=?utf-8?b?{base64.b64encode(data[start:end]).decode('ascii')}?=")
        start, width = end, _WORD_BYTES
    return " ".join(words)


def _text_header(name: str, value: str) -> _FoldedHeader:
    """A header for a free-text value (Subject, extra headers), sanitised first."""
    value = _one_line(value)
    if not _fits_plain(name, value):
        value = _encoded_words(value, name)
    return _plain_header(name, value)


def _folded(name: str, header: BaseHeader) -> _FoldedHeader:
    """A header the email package built, folded now; its lines are checked, not trusted."""
    lines = header.fold(policy=_POLICY).split(_POLICY.linesep)[:-1]
    for number, line in enumerate(lines):
        starts_header = number > 0 and line[:1] not in (" ", "\t")
        if starts_header or len(line) > _MAX_LINE or "\r" in line or "\n" in line:
            raise MessageBuildError(f"header {name!r} cannot be folded into valid lines")
    return _FoldedHeader(name, str(header), lines)


# What the email package's header parser raises on input it cannot read. AttributeError: Python
# 3.11's parser trips over its own defect object on an unterminated domain literal ("a@[").
_PARSER_ERRORS = (ValueError, IndexError, HeaderParseError, AttributeError)
# A profile's or row's Reply-To: its header and the addresses in it.
_ReplyTo = tuple[_FoldedHeader, tuple[Mailbox, ...]]
# How a problem names the field an address came from (a sentence of its own, translated).
_ADDRESS_FIELDS = {
    "To": N_("To address"),
    "Cc": N_("Cc address"),
    "Bcc": N_("Bcc address"),
    "Reply-To": N_("Reply-To address"),
    "sender": N_("sender address"),
}


def _parsed(name: str, value: str) -> Any:
    """The email package's header object for ``value`` (an address list, a content type)."""
    try:
        return _POLICY.header_factory(name, value)
    except _PARSER_ERRORS as exc:
        raise MessageBuildError(f"{name} {value!r} cannot be read: {exc}") from exc


def _address(raw: str, field: str) -> Mailbox:
    """``raw`` as a bare address (worker.addresses reads it), usable in envelope and header."""
    try:
        return parse_address(raw)
    except AddressError as exc:
        raise MessageBuildError(exc.words(_ADDRESS_FIELDS[field], raw.strip())) from None


def _recipients(raw: Sequence[str], field: str) -> list[Mailbox]:
    """The row's entries of ``field``: addresses, alone or after a display name."""
    mailboxes = []
    for entry in raw:
        try:
            mailboxes.append(parse_mailbox(entry))
        except AddressError as exc:
            raise MessageBuildError(exc.words(_ADDRESS_FIELDS[field], entry.strip())) from None
    return mailboxes


def _phrase(display_name: str) -> str:
    """An ASCII display name as written, or quoted when it has specials (as formataddr does)."""
    return f'"{quote(display_name)}"' if _NAME_SPECIALS.search(display_name) else display_name


def _mailbox(header_name: str, mailbox: Mailbox) -> str:
    """One mailbox as header text: ``a@b.pl``, ``"Kowalski, Jan" <a@b.pl>`` or encoded."""
    if not mailbox.display_name:
        return mailbox.address
    phrase = _phrase(mailbox.display_name) if mailbox.display_name.isascii() else ""
    if not phrase or not _fits_plain(header_name, phrase):
        phrase = _encoded_words(mailbox.display_name, header_name)
    return f"{phrase} <{mailbox.address}>"


def _address_header(name: str, mailboxes: Iterable[Mailbox]) -> _FoldedHeader:
    """An address-list header of mailboxes read by worker.addresses."""
    return _plain_header(name, ", ".join(_mailbox(name, mailbox) for mailbox in mailboxes))


def _reply_to(raw: str) -> _ReplyTo:
    """Reply-To from an address list such as ``Biuro <biuro@wp.pl>, a@b.pl``."""
    value = _one_line(raw)
    if _LIST_SYNTAX.isdisjoint(value):
        mailboxes: tuple[Mailbox, ...] = (_address(value, "Reply-To"),)
        return _address_header("Reply-To", mailboxes), mailboxes
    header = _parsed("Reply-To", value)
    # A non-ASCII local part is a defect to the email package, not here: SMTPUTF8 carries it.
    defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    if defects or not header.addresses:
        raise MessageBuildError(
            N_("Reply-To %(value)s is not a list of valid addresses") % {"value": repr(value)}
        )
    mailboxes = tuple(
        replace(_address(mailbox.addr_spec, "Reply-To"), display_name=mailbox.display_name)
        for mailbox in header.addresses
    )
    return _address_header("Reply-To", mailboxes), mailboxes


@lru_cache(maxsize=256)
def _sender_headers(sender: Sender) -> tuple[Mailbox, _FoldedHeader, _ReplyTo | None]:
    """The envelope sender, From and the profile's Reply-To; the same for all its messages."""
    address = _address(sender.address, "sender")
    from_mailbox = replace(address, display_name=_one_line(sender.display_name))
    from_header = _address_header("From", [from_mailbox])
    reply_to = _one_line(sender.reply_to or "")
    return address, from_header, _reply_to(reply_to) if reply_to else None


def _unique(addresses: Iterable[str]) -> list[str]:
    """``addresses`` without later case-insensitive repeats, in their first order."""
    first: dict[str, str] = {}
    for address in addresses:
        first.setdefault(address.lower(), address)
    return list(first.values())


def _utf8_address(mailboxes: Iterable[Mailbox]) -> str | None:
    """The first address (as written) that needs SMTPUTF8, if any does."""
    return next((mailbox.written for mailbox in mailboxes if mailbox.needs_smtputf8), None)


def _date_header(date: datetime | None) -> _FoldedHeader:
    if date is None:
        return _plain_header("Date", _date_now(int(time.time())))
    if date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    return _plain_header("Date", format_datetime(date))


@lru_cache(maxsize=1)  # a busy worker builds many messages within one second
def _date_now(second: int) -> str:
    return format_datetime(datetime.fromtimestamp(second, UTC))


def _message_id_header(message_id: str) -> _FoldedHeader:
    value = message_id.strip()
    if len(value) > _MAX_LINE - len("Message-ID: ") or not _MESSAGE_ID.fullmatch(value):
        raise MessageBuildError(
            f"Message-ID {message_id!r} is not <left@right> in printable ASCII without spaces"
        )
    return _plain_header("Message-ID", value)


def _check_extra_name(name: str) -> None:
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        raise MessageBuildError(
            f"extra header name {name!r} is not 1 to 76 printable ASCII characters"
            " without ':' or spaces"
        )
    lowered = name.lower()
    if lowered in SERVICE_HEADERS or lowered.startswith("content-"):
        raise MessageBuildError(
            f"extra header {name!r} is set by the service and cannot be overridden"
        )


def _extra_headers(headers: Mapping[str, str]) -> tuple[_ReplyTo | None, list[_FoldedHeader]]:
    """The row's Reply-To, if it has one, and its other extra headers, in the row's order."""
    reply_to: _ReplyTo | None = None
    extra: list[_FoldedHeader] = []
    seen: set[str] = set()
    for name, value in headers.items():
        _check_extra_name(name)
        lowered = name.lower()
        if lowered in seen:
            raise MessageBuildError(f"extra header {name!r} is given more than once (any case)")
        seen.add(lowered)
        if not isinstance(value, str):
            kind = type(value).__name__
            raise MessageBuildError(f"extra header {name!r} must be a string, not {kind}")
        if lowered == "reply-to":
            reply_to = _reply_to(value)
        else:
            extra.append(_text_header(name, value))
    return reply_to, extra


def _encode_text(text: str) -> tuple[str, str]:
    """The transfer encoding and payload of a UTF-8 text body (LF ends, written as CRLF)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "")
    if not text.endswith("\n"):
        text += "\n"
    if text.isascii() and max(len(line) for line in text.split("\n")) <= _MAX_LINE:
        return "7bit", text
    data = text.encode("utf-8")
    high = len(data) - len(data.translate(None, _HIGH_BYTES))
    # Quoted-printable spends 3 characters on each high byte, base64 4 on every 3 bytes.
    if 6 * high > len(data):
        return "base64", base64.encodebytes(data).decode("ascii")
    return "quoted-printable", binascii.b2a_qp(data, istext=True).decode("ascii")


_MIME_VERSION = _plain_header("MIME-Version", "1.0")
_TRANSFER_ENCODINGS = {
    name: _plain_header("Content-Transfer-Encoding", name)
    for name in ("7bit", "quoted-printable", "base64")
}
_TEXT_TYPES = {
    subtype: _plain_header("Content-Type", f'text/{subtype}; charset="utf-8"')
    for subtype in ("plain", "html")
}
_OCTET_STREAM = _plain_header("Content-Type", "application/octet-stream")
_UNNAMED_ATTACHMENT = _plain_header("Content-Disposition", "attachment")
# RFC 5322 allows no To; an empty group says so to readers and spam filters.
_NO_TO = _plain_header("To", "undisclosed-recipients:;")


def _fill_text(target: Message, text: str, subtype: str) -> None:
    encoding, payload = _encode_text(text)
    target["Content-Type"] = _TEXT_TYPES[subtype]
    target["Content-Transfer-Encoding"] = _TRANSFER_ENCODINGS[encoding]
    target.set_payload(payload)


def _fill_multipart(target: Message, subtype: str, parts: list[Message | str]) -> None:
    # 128 random bits: nobody can predict the boundary to put it in a 7bit part, and
    # quoted-printable or base64 text never contains "=_".
    boundary = f"=_{secrets.token_hex(16)}"
    value = f'multipart/{subtype}; boundary="{boundary}"'
    target["Content-Type"] = _plain_header("Content-Type", value)
    target.set_payload(parts)


def _text_part(text: str, subtype: str) -> MIMEPart:
    part = MIMEPart(policy=_POLICY)
    _fill_text(part, text, subtype)
    return part


def _fill_main_body(target: Message, text: str, html: str | None) -> None:
    """The text, the HTML alone when there is no text, or both as alternatives."""
    if not html:
        _fill_text(target, text, "plain")
    elif not text.strip():
        _fill_text(target, html, "html")
    else:
        parts: list[Message | str] = [_text_part(text, "plain"), _text_part(html, "html")]
        _fill_multipart(target, "alternative", parts)


def _attachment_type(content_type: str) -> _FoldedHeader:
    """Content-Type of an attachment; application/octet-stream when it is malformed."""
    value = _one_line(content_type)
    mime_type, has_parameters, _ = value.partition(";")
    mime_type = mime_type.strip().lower()
    match = _MIME_TYPE.fullmatch(mime_type)
    if match is None or match[1] in ("multipart", "message"):
        return _OCTET_STREAM
    if has_parameters:
        header = _parsed("Content-Type", value)
        if not header.defects and header.content_type == mime_type:
            return _folded("Content-Type", header)
    # Unreadable parameters are dropped; the type itself is still right.
    return _plain_header("Content-Type", mime_type)


def _percent_sections(name: str) -> list[str]:
    """``name`` percent-encoded as UTF-8 (RFC 2231) in sections of whole characters."""
    sections = [""]
    for char in _ENCODED_CHAR.findall(url_quote(name, safe="")):
        if len(sections[-1]) + len(char) > _SECTION_WIDTH:
            sections.append("")
        sections[-1] += char
    return sections


def _disposition(filename: str) -> _FoldedHeader:
    """Content-Disposition naming the file; non-ASCII or long names as RFC 2231 ``filename*``.

    Encoded here: the email package's folder (3.11) needs milliseconds for a long Polish name.
    """
    name = _file_name(filename)
    if not name:
        return _UNNAMED_ATTACHMENT
    value = f'attachment; filename="{quote(name)}"'
    if name.isascii() and len(value) + len("Content-Disposition: ") <= _SOFT_LINE:
        return _plain_header("Content-Disposition", value)
    sections = _percent_sections(name)
    if len(sections) == 1:
        value = f"attachment; filename*=utf-8''{sections[0]}"
    else:
        first, *rest = sections
        numbered = [f"filename*{number}*={section}" for number, section in enumerate(rest, 1)]
        value = "; ".join([f"attachment; filename*0*=utf-8''{first}", *numbered])
    return _plain_header("Content-Disposition", value)


def _attachment_part(attachment: OutgoingAttachment, bodies: dict[bytes, bytes]) -> MIMEPart:
    """The attachment's part; its base64 body waits in ``bodies`` under a placeholder line.

    The email package writes a body line by line in Python (a 100 KB file is 1,800 calls);
    the placeholder is swapped for the encoded bytes, made in one pass, once written.
    """
    part = MIMEPart(policy=_POLICY)
    part["Content-Type"] = _attachment_type(attachment.content_type)
    part["Content-Transfer-Encoding"] = _TRANSFER_ENCODINGS["base64"]
    part["Content-Disposition"] = _disposition(attachment.filename)
    if attachment.content:
        placeholder = f"attachment-{secrets.token_hex(16)}"
        bodies[placeholder.encode("ascii")] = _base64_lines(attachment.content)
        part.set_payload(placeholder)
    else:
        part.set_payload("")
    return part


def _base64_lines(data: bytes) -> bytes:
    """Base64 in lines of 76 characters joined by CRLF (RFC 2045), without a final CRLF."""
    encoded = binascii.b2a_base64(data, newline=False)
    return b"\r\n".join(
        encoded[start : start + _BASE64_LINE] for start in range(0, len(encoded), _BASE64_LINE)
    )


def _fill_body(message: EmailMessage, content: MessageContent, bodies: dict[bytes, bytes]) -> None:
    """The body as the message's own content, or inside multipart/mixed with attachments."""
    if not content.attachments:
        _fill_main_body(message, content.body_text, content.body_html)
        return
    main = MIMEPart(policy=_POLICY)
    _fill_main_body(main, content.body_text, content.body_html)
    parts: list[Message | str] = [main]
    parts.extend(_attachment_part(attachment, bodies) for attachment in content.attachments)
    _fill_multipart(message, "mixed", parts)


@dataclass(frozen=True)
class _Headers:
    """What ``render`` needs besides the body: the envelope, the headers, SMTPUTF8 or not."""

    sender: str
    recipients: list[str]
    headers: list[_FoldedHeader]
    utf8_address: str | None


def _headers(sender: Sender, content: MessageContent) -> _Headers:
    """The envelope sender and recipients, and the message's headers in writing order."""
    envelope_sender, from_header, profile_reply_to = _sender_headers(sender)
    to, cc = _recipients(content.to, "To"), _recipients(content.cc, "Cc")
    bcc = _recipients(content.bcc, "Bcc")
    # Only the address of each entry goes into the envelope; Bcc entries go nowhere else.
    recipients = _unique([mailbox.address for mailbox in (*to, *cc, *bcc)])
    if not recipients:
        raise MessageBuildError(N_("the message has no recipients: To, Cc and Bcc are all empty"))
    row_reply_to, extra = _extra_headers(content.headers)
    reply_to = profile_reply_to if row_reply_to is None else row_reply_to
    headers = [_date_header(content.date), from_header]
    if reply_to is not None:
        headers.append(reply_to[0])
    headers.append(_address_header("To", to) if to else _NO_TO)
    if cc:
        headers.append(_address_header("Cc", cc))
    headers += [_text_header("Subject", content.subject), _message_id_header(content.message_id)]
    reply_to_mailboxes = reply_to[1] if reply_to is not None else ()
    utf8 = _utf8_address([envelope_sender, *reply_to_mailboxes, *to, *cc, *bcc])
    return _Headers(
        sender=envelope_sender.address,
        recipients=recipients,
        headers=[*headers, *extra, _MIME_VERSION],
        utf8_address=utf8,
    )


def render(sender: Sender, content: MessageContent) -> RenderedMessage:
    """The envelope and the bytes of ``content`` sent as ``sender``.

    Raises ``MessageBuildError`` when the content cannot become a message (bad address,
    Message-ID or extra header; no recipients). A message that needs SMTPUTF8 is rendered all
    the same; ``utf8_address`` says so.
    """
    built = _headers(sender, content)
    message = EmailMessage(policy=_POLICY)
    for header in built.headers:
        message[header.name] = header
    bodies: dict[bytes, bytes] = {}
    _fill_body(message, content, bodies)
    data = message.as_bytes(policy=_POLICY if built.utf8_address is None else _UTF8_POLICY)
    for placeholder, body in bodies.items():
        data = data.replace(placeholder, body, 1)
    return RenderedMessage(
        sender=built.sender,
        recipients=built.recipients,
        data=data,
        utf8_address=built.utf8_address,
    )
