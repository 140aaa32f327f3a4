"""E-mail addresses as people write them, read one way by the outbox API, profiles and the worker.

:func:`parse_mailbox` reads one recipient the way a mail program does — ``jan@example.pl``,
``Jan Kowalski <jan@example.pl>``, ``"Kowalski, Jan" <jan@example.pl>``, ``<jan@example.pl>``,
``anna@zażółć.pl``, ``zażółć@example.pl`` — into its display name and the address to send to:
the domain converted to its ASCII form with IDNA 2008 (UTS #46 mapping first, so
``Zażółć.PL`` works; an ASCII domain is kept as written), the local part as written. A local
part that is not ASCII can only travel with the server's SMTPUTF8 extension
(:attr:`Mailbox.needs_smtputf8`). It refuses, in words, what no SMTP command can carry:
control characters, a domain that IDNA refuses, a domain literal with '"', '<' or '>', an
address over 254 octets, two addresses in one entry.

worker.mime reads every address of a message with it, so a row inserted with plain SQL is read
as the Python API reads it. The API (:func:`recipient_problem`, :func:`address_problem`) adds
email-validator's stricter syntax checks on top: whatever it accepts, the worker can send.
Syntax only, never DNS.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.utils import quote

import idna
from email_validator import EmailNotValidError, validate_email

from worker.sentences import N_

__all__ = [
    "AddressError",
    "Mailbox",
    "address_forms",
    "address_problem",
    "count_recipients",
    "local_part",
    "parse_address",
    "parse_mailbox",
    "recipient_key",
    "recipient_problem",
]

_MAX_ADDRESS = 254  # RFC 5321 4.5.3.1.3: a path is at most 256 octets with its "<>"
# An addr-spec that needs no quoting anywhere: dot-atom "@" dot-atom.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*")
# C0 (TAB included), DEL and C1: no SMTP command may carry them, even in a quoted local part.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# PostgreSQL text cannot hold them and UTF-8 cannot encode them.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# RFC 6531 local part: atext plus any non-ASCII character but white space (aiosmtplib refuses
# white space outside quotes on the command line), as a dot-atom or a quoted string.
_UTF8_ATEXT = r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]|(?!\s)[^\x00-\x7f])"
_UTF8_DOT_ATOM = re.compile(rf"{_UTF8_ATEXT}+(?:\.{_UTF8_ATEXT}+)*")
_QUOTED_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
# RFC 5321 dcontent (printable ASCII but "[", "\", "]") without '"', "<" and ">", which
# aiosmtplib refuses outside a quoted local part; an IP address literal needs none of them.
_DOMAIN_LITERAL = re.compile(r"\[[!#-;=?-Z^-~]+\]")
# RFC 5322 specials a display name may hold only inside double quotes; "." is allowed
# unquoted, as in "Jan K. Kowalski" (RFC 5322 obs-phrase, which every reader accepts).
_NAME_SPECIALS = frozenset('"(),:;<>@[\\]')
_ESCAPED = re.compile(r"\\(.)")
# What the email package's parser raises on input it cannot read. AttributeError: Python
# 3.11's parser trips over its own defect object on an unterminated domain literal ("a@[").
_PARSER_ERRORS = (ValueError, IndexError, HeaderParseError, AttributeError)
_VALIDATOR_VERDICT = "is not a valid e-mail address"  # N_ below gives its whole sentence
# email-validator's own words, which a problem carries as it said them ("... is not a valid
# e-mail address: An email address must have an @-sign."): the usual ones are marked here
# only so that the catalogue says them in a person's language too.
_VALIDATOR_SENTENCES = (
    N_("An email address must have an @-sign."),
    N_("There must be something before the @-sign."),
    N_("There must be something after the @-sign."),
    N_("The email address contains invalid characters before the @-sign: %(characters)s."),
    N_("The part after the @-sign contains invalid characters: %(characters)s."),
    N_("The part after the @-sign is not valid. It should have a period."),
    N_("An email address cannot have two periods in a row."),
    N_("An email address cannot start with a period."),
    N_("An email address cannot end with a period."),
    N_("An email address cannot have a period immediately before the @-sign."),
    N_("An email address cannot have a period immediately after the @-sign."),
)


class AddressError(ValueError):
    """A text is not an address that can be sent to; :meth:`words` says why in a sentence."""

    def __init__(
        self, problem: str, *, invalid: bool = True, values: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(problem)
        self.problem = problem
        # False: ``problem`` is a whole sentence of its own about %(field)s and ``values``
        # (N_("%(field)s is empty")), not why the address is invalid.
        self.invalid = invalid
        self.values = dict(values or {})

    def words(self, field: str, text: str, *, verdict: str = "is not valid") -> str:
        """``To address 'jan@' is not valid: nothing comes after the @``, for ``field``."""
        if not self.invalid:
            return self.problem % {"field": field, **self.values}
        if verdict == _VALIDATOR_VERDICT:
            return _invalid_address(field, text, self.problem)
        return N_("%(field)s %(value)s is not valid: %(reason)s") % {
            "field": field,
            "value": repr(text),
            "reason": self.problem,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Mailbox:
    """One address as read from an entry: its display name and the address to send to."""

    display_name: str  # "" without one
    address: str  # for RCPT TO and the header: the domain in ASCII, the local part as written
    written: str  # the address as the entry has it (a Unicode domain stays Unicode)

    @property
    def needs_smtputf8(self) -> bool:
        """Whether the local part is not ASCII, so only a server with SMTPUTF8 takes it."""
        return not self.address.isascii()


def parse_mailbox(text: str) -> Mailbox:
    """``text`` as one recipient: an address, alone, in ``<>`` or after a display name.

    Raises :class:`AddressError` saying what is wrong.
    """
    text = text.strip()
    if _SIMPLE_ADDRESS.fullmatch(text) and len(text) <= _MAX_ADDRESS:
        return Mailbox(display_name="", address=text, written=text)  # the usual case, quickly
    _check_characters(text)
    display_name, written = _split(text)
    return dataclasses.replace(parse_address(written), display_name=display_name)


def parse_address(text: str) -> Mailbox:
    """``text`` as a bare address (no display name, no ``<>``); :class:`AddressError` if not."""
    text = text.strip()
    if _SIMPLE_ADDRESS.fullmatch(text) and len(text) <= _MAX_ADDRESS:
        return Mailbox(display_name="", address=text, written=text)
    _check_characters(text)
    if len(text) > _MAX_ADDRESS:
        raise AddressError(
            N_("%(field)s %(value)s... is over 254 characters"),
            invalid=False,
            values={"value": repr(text[:40])},
        )
    local, at, domain = text.rpartition("@")
    if not at:
        raise AddressError(N_("there is no @ in it"))
    if domain and not domain.isascii():
        domain = _ascii_domain(domain)
    address = (
        _ascii_address(f"{local}@{domain}") if local.isascii() else _utf8_address(local, domain)
    )
    if len(address.encode("utf-8")) > _MAX_ADDRESS:
        raise AddressError(
            N_(
                "it is %(size)s octets as sent (the domain in its xn-- form), over the limit"
                " of %(limit)s"
            )
            % {"size": len(address.encode("utf-8")), "limit": _MAX_ADDRESS}
        )
    return Mailbox(display_name="", address=address, written=text)


def recipient_key(text: str) -> str:
    """What makes two entries one recipient: the address sent to, ignoring case.

    ``Jan <JAN@example.pl>`` and ``jan@example.pl`` are one recipient; an entry that is no
    address counts as itself.
    """
    try:
        return parse_mailbox(text).address.lower()
    except AddressError:
        return text.strip().lower()


def count_recipients(entries: Iterable[str]) -> int:
    """How many recipients ``entries`` name: each address once (:func:`recipient_key`)."""
    return len({recipient_key(entry) for entry in entries})


def address_forms(text: str) -> list[str]:
    """The forms, lower-cased, in which a row may hold the address of ``text``: as written,
    and with the domain in its xn-- and in its Unicode form (``messages list --recipient``).

    ``Jan <jan@zażółć.pl>``, ``jan@xn--za-6ja4f8n1l.pl`` and ``JAN@Zażółć.pl`` all find a row
    stored with any of them.
    """
    try:
        mailbox = parse_mailbox(text)
    except AddressError:
        return [text.strip().lower()]
    local, _, domain = mailbox.address.lower().rpartition("@")
    forms = {mailbox.written.lower(), f"{local}@{domain}", f"{local}@{_unicode_domain(domain)}"}
    return sorted(forms)


def _unicode_domain(domain: str) -> str:
    try:
        return idna.decode(domain)
    except idna.IDNAError:  # a domain literal, or one IDNA 2008 would not write
        return domain


def recipient_problem(text: str, *, field: str) -> str | None:
    """Why ``text`` cannot be a recipient, in words; ``None`` when it can.

    A recipient is an address, alone or with a display name: ``Jan Kowalski <jan@example.pl>``.
    """
    problem = _text_problem(text, field)
    if problem is not None:
        return problem
    try:
        _check_characters(text.strip())
        _display_name, written = _split(text.strip())
    except AddressError as exc:
        return exc.words(field, text, verdict=_VALIDATOR_VERDICT)
    return _written_address_problem(written, text, field)


def address_problem(address: str, *, field: str) -> str | None:
    """Why the bare ``address`` (no display name) cannot be used, in words; ``None`` if it can."""
    return _text_problem(address, field) or _written_address_problem(address, address, field)


def local_part(address: str) -> str:
    """``jankowalski@wp.pl`` → ``jankowalski``."""
    return address.rsplit("@", 1)[0]


def _text_problem(text: str, field: str) -> str | None:
    if not text or not text.strip():
        return N_("%(field)s is empty") % {"field": field}
    if any(char in text for char in "\r\n\0"):
        return N_("%(field)s %(value)s contains a line break or NUL character") % {
            "field": field,
            "value": repr(text),
        }
    return None


def _invalid_address(field: str, text: str, reason: str) -> str:
    """``outgoing address 'jan@' is not a valid e-mail address: <why>``; ``why`` may be
    email-validator's words, kept as they are, or our own."""
    return N_("%(field)s %(value)s is not a valid e-mail address: %(reason)s") % {
        "field": field,
        "value": repr(text),
        "reason": reason,
    }


def _written_address_problem(written: str, text: str, field: str) -> str | None:
    """email-validator's stricter syntax first (its words are good), then what SMTP can carry."""
    try:
        validate_email(written, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        return _invalid_address(field, text, str(exc))
    try:
        parse_address(written)
    except AddressError as exc:
        return exc.words(field, text, verdict=_VALIDATOR_VERDICT)
    return None


def _check_characters(text: str) -> None:
    if not text:
        raise AddressError(N_("%(field)s is empty"), invalid=False)
    if _CONTROL.search(text):
        raise AddressError(
            N_("%(field)s %(value)s contains a control character"),
            invalid=False,
            values={"value": repr(text)},
        )
    if _SURROGATE.search(text):
        raise AddressError(N_("it contains a lone surrogate, which is not a character"))


def _split(text: str) -> tuple[str, str]:
    """The display name and the address of ``Name <address>``, ``<address>`` or ``address``."""
    separator = _unquoted(text, ",;")
    if separator is not None:
        raise AddressError(
            N_(
                "it has %(value)s outside double quotes: an entry holds one address, and a"
                " display name with %(value)s is written in double quotes"
            )
            % {"value": repr(separator)}
        )
    start = _unquoted_index(text, "<")
    if start < 0:
        if text.endswith(">"):
            raise AddressError(N_("it ends with '>' but has no '<' before the address"))
        return "", text
    if not text.endswith(">"):
        raise AddressError(N_("the '<' before the address has no '>' at the end"))
    written = text[start + 1 : -1].strip()
    if not written:
        raise AddressError(N_("there is no address between '<' and '>'"))
    if _unquoted_index(written, "<>") >= 0:
        raise AddressError(N_("it has more than one '<' or '>' around the address"))
    return _display_name(text[:start].strip()), written


def _display_name(name: str) -> str:
    quoted = _QUOTED_STRING.fullmatch(name)
    if quoted is not None:
        return _ESCAPED.sub(r"\1", quoted[1]).strip()
    specials = sorted(_NAME_SPECIALS.intersection(name))
    if specials:
        listed = ", ".join(repr(char) for char in specials)
        raise AddressError(
            N_(
                "its display name %(name)s has %(characters)s, which only a name in double"
                ' quotes may have ("..." <address>)'
            )
            % {"name": repr(name), "characters": listed}
        )
    return name


def _unquoted(text: str, characters: str) -> str | None:
    """The first of ``characters`` in ``text`` outside double quotes, if any."""
    index = _unquoted_index(text, characters)
    return None if index < 0 else text[index]


def _unquoted_index(text: str, characters: str) -> int:
    """The index of the first of ``characters`` outside double quotes and domain literals."""
    quoted = escaped = literal = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            escaped = char == "\\"
            quoted = char != '"'
        elif literal:
            literal = char != "]"
        elif char in characters:
            return index
        else:
            quoted, literal = char == '"', char == "["
    return -1


def _ascii_domain(domain: str) -> str:
    """An international domain in its ASCII (xn--) form, by IDNA 2008 with UTS #46 mapping."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise AddressError(
            N_(
                "its domain %(value)s is not a valid international domain name"
                " (IDNA 2008: %(error)s)"
            )
            % {"value": repr(domain), "error": str(exc)}
        ) from exc


def _ascii_address(text: str) -> str:
    """An ASCII addr-spec read by the email package's parser, which quotes the local part
    where needed and drops comments."""
    try:
        parsed = Address(addr_spec=text)
    except _PARSER_ERRORS as exc:
        local, _, domain = text.rpartition("@")
        raise AddressError(_syntax_words(local, domain) or str(exc)) from exc
    _check_domain_literal(parsed.domain)
    return str(parsed.addr_spec)


def _utf8_address(local: str, domain: str) -> str:
    """An addr-spec with a non-ASCII local part (RFC 6531); its ASCII domain is checked by the
    email package's parser, which cannot read the local part itself."""
    quoted = _QUOTED_STRING.fullmatch(local)
    if quoted is not None:
        # Quoted only where needed and escaped minimally, as the email package does for an
        # ASCII local part; aiosmtplib would otherwise rewrite it on the command line.
        content = _ESCAPED.sub(r"\1", quoted[1])
        local = content if _UTF8_DOT_ATOM.fullmatch(content) else f'"{quote(content)}"'
    elif not _UTF8_DOT_ATOM.fullmatch(local):
        raise AddressError(_syntax_words(local, domain) or _local_part_words(local))
    try:
        parsed = Address(addr_spec=f"x@{domain}")
    except _PARSER_ERRORS as exc:
        raise AddressError(_syntax_words(local, domain) or str(exc)) from exc
    _check_domain_literal(parsed.domain)
    return f"{local}@{parsed.domain}"


def _check_domain_literal(domain: str) -> None:
    if domain.startswith("[") and not _DOMAIN_LITERAL.fullmatch(domain):
        raise AddressError(
            N_(
                "a domain literal may not contain '\"', '<' or '>' (it holds an IP address, such"
                " as [192.0.2.1])"
            )
        )


def _syntax_words(local: str, domain: str) -> str | None:
    """The usual mistakes, said plainly; None to leave it to the parser's own words."""
    mistakes = []
    if not local:
        mistakes.append(N_("nothing comes before the @"))
    elif not local.startswith('"') and any(char.isspace() for char in local):
        mistakes.append(N_("the part before the @ contains a space"))
    if not domain:
        mistakes.append(N_("nothing comes after the @"))
    elif any(char.isspace() for char in domain):
        mistakes.append(N_("the part after the @ contains a space"))
    elif domain.startswith(".") or domain.endswith(".") or ".." in domain:
        mistakes.append(N_("the part after the @ has a dot at its start or end, or two in a row"))
    return "; ".join(mistakes) or None


def _local_part_words(local: str) -> str:
    if local.startswith('"'):
        return N_("the part before the @ opens a double quote it does not close")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return N_("the part before the @ has a dot at its start or end, or two dots in a row")
    bad = sorted({char for char in local if not re.fullmatch(_UTF8_ATEXT, char) and char != "."})
    return N_("the part before the @ contains %(characters)s") % {
        "characters": ", ".join(repr(char) for char in bad)
    }
