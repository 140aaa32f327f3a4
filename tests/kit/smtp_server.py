"""Real SMTP servers for tests: aiosmtpd in a thread of its own, trustme TLS, AUTH, scripted faults.

A server runs its own event loop in its own thread and listens on ``127.0.0.1``, port 0, so
it serves an async test and a worker started as a subprocess alike. Clients connect to
``server.hostname`` (``"localhost"``) and ``server.port``, and trust ``server.cert_bundle``.

``host=`` and ``port=`` choose another address, e.g. port 465 (where ``encryption=auto`` means
implicit TLS) on a loopback address of its own, so several such servers run at once::

    SmtpTestServer(ca=ca, tls="implicit", host="127.0.0.2", port=465)   # needs root (or a
                                                   # lowered net.ipv4.ip_unprivileged_port_start)

Such a server's certificate also names its address, and ``server.hostname`` is then that
address (``localhost`` resolves to 127.0.0.1 only). The ``port_465_server_factory`` fixture
hands out the addresses and skips a test when port 465 cannot be bound.

Modes and certificates::

    ca = SmtpTestCA(tmp_path)                       # one per session: the smtp_ca fixture
    with SmtpTestServer(ca=ca, tls="implicit", accounts={"me@x.test": "pw"}) as server:
        ...                                         # SMTPS, like port 465; AUTH required
    SmtpTestServer(ca=ca, tls="starttls")           # STARTTLS offered and required (587)
    SmtpTestServer(ca=ca, tls="starttls", require_starttls=False)   # offered, optional
    SmtpTestServer(tls="none")                      # plain relay: no TLS, no AUTH
    SmtpTestServer(tls="none", accounts={...})      # AUTH required but never offered
    SmtpTestServer(tls="none", accounts={...}, offer_auth_without_tls=True)  # a leaky server
    SmtpTestServer(ca=ca, tls="implicit", certificate="expired")  # or "self_signed", "wrong_host"
    SmtpTestServer(ca=ca, tls="implicit", size_limit=100_000)   # SIZE 100000; larger mail: 552
    SmtpTestServer(tls="none", smtputf8=True)       # offers SMTPUTF8: UTF-8 in addresses and
                                                    # headers (without it: 501 at MAIL ... SMTPUTF8)
    SmtpTestServer(tls="none", pipelining=True, chunking=True)  # offers PIPELINING, CHUNKING

    client = aiosmtplib.SMTP(**server.client_options(), timeout=2)  # verifying client options

AUTH (PLAIN and LOGIN; a plain ``def`` authenticator, because aiosmtpd never awaits it)::

    SmtpTestServer(
        ca=ca, tls="implicit",
        accounts={"me@x.test": "pw"},
        auth_replies={"2sv@x.test": "534-5.7.9 Application-specific password required.\\n"
                                    "534 5.7.9 Learn more at ... - gsmtp"},   # whatever password
        bad_credentials_reply="535 5.7.3 Authentication unsuccessful",    # instead of 535 5.7.8
    )
    server.auth_attempts   # (AuthAttempt(connection=1, mechanism="PLAIN", login=..., success=...),)

Passwords are never recorded. Note that aiosmtplib's ``login()`` tries every mechanism the
server offers, so one failed ``login()`` is two attempts here unless ``auth_mechanisms=("PLAIN",)``.

XOAUTH2 (OAuth 2.0 access tokens, checked by an ``OAuthTestServer`` from oauth_server.py)::

    SmtpTestServer(ca=ca, tls="starttls", oauth=oauth_server, oauth_style="microsoft")
    SmtpTestServer(ca=ca, tls="implicit", oauth=oauth_server, oauth_style="google")
    SmtpTestServer(ca=ca, tls="implicit", accounts={...}, oauth=oauth_server)  # + LOGIN, PLAIN
    await client.auth_xoauth2("anna@contoso.test", access_token)   # aiosmtplib
    server.auth_attempts   # (AuthAttempt(connection=1, mechanism="XOAUTH2", login=..., ...),)

The token must be valid, speak for the login and carry the provider's SMTP scope. Refusals as
the providers send them: Outlook ``535 5.7.3 Authentication unsuccessful [host time id]``;
Gmail first ``334`` with base64 JSON ``{"status":"401"|"400","schemes":"Bearer","scope":...}``
(401: expired, revoked or unknown token; 400: another user's, or the wrong scope), then, after
the client's empty line, its two-line ``535 5.7.8 Username and Password not accepted``. Tokens
are never recorded. aiosmtplib's ``login()`` never tries XOAUTH2.

Recording (thread-safe snapshots)::

    server.messages          # ReceivedMessage(mail_from, rcpt_tos, data, login, tls_version, ...)
    server.commands          # Command(connection, verb, arg, pipelined); an AUTH arg is the
                             # mechanism only; pipelined: it came with more bytes behind it;
                             # a line no command knows is recorded with its first word as verb
    server.connection_count, server.open_connection_count, server.auth_attempts
    server.peak_open_connection_count   # the most connections that were open at one time
    server.wait_for_messages(3, timeout=5)   # blocks; from async code use asyncio.to_thread

Faults (``server.script``). A rule names a stage and what to do there; the first rule that
matches an event is used and every other event is served normally::

    server.script.on("RCPT", reply="550 5.1.1 No such user", rcpt="bad@example.com")
    server.script.on("RCPT", reply="450 4.2.1 Slow down", match=lambda e: e.rcpt.endswith(".pl"))
    server.script.once("DATA_END", reply="451 4.3.0 Try later")      # first message only
    server.script.on("MAIL", reply="452 4.5.3 Too many", message=2)  # the 2nd transaction only
    server.script.on("DATA_END", reply="550-5.4.5 Daily user sending limit exceeded.\\n"
                                       "550 5.4.5 For more information ... - gsmtp")
    server.script.on("MAIL", reply="421 4.7.0 Try again later, closing connection.")
    server.script.on("MAIL", action="stall", seconds=5)  # no reply for 5 s, then drop
    server.script.on("DATA", action="drop")               # close without a reply
    server.script.on("DATA_END", action="drop")           # data received, NOT recorded, no reply
    server.script.on("DATA_END", action="accept_then_drop")   # recorded, then no 250: duplicates
    server.script.on("DATA_END", action="accept_then_stall")  # recorded, then silence
    server.script.on("AUTH", reply="454 4.7.0 Too many login attempts, please try again later.")
    server.script.on("CONNECT", reply="421 4.3.0 Temporary System Problem. Try again later")

Stages: ``CONNECT`` (the greeting), ``EHLO`` (and HELO), ``STARTTLS``, ``AUTH``, ``MAIL``,
``RCPT`` (once per recipient), ``DATA`` (before ``354``), ``DATA_END`` (after the final dot,
or after the chunk of ``BDAT ... LAST``), ``BDAT`` (once per chunk), ``PIPELINED`` (see
below), ``RSET``, ``NOOP``, ``QUIT``. A rule may narrow itself with ``rcpt=`` (exact address),
``message=`` (transaction number: the server counts MAIL commands from 1) and ``match=`` (a
callable taking an ``Event``), and may fire a limited number of ``times``.

What a rule does: a ``reply`` is sent instead of running the command (so a refused RCPT adds
no recipient and a refused ``DATA_END`` records nothing, while a ``2xx`` one records the
message); a reply may hold bytes that are not UTF-8, written as Latin-1 characters
(``"250 Przyj\\xea\\x00to"``); a ``421`` reply, and any reply to
``CONNECT``, then closes the connection. ``drop`` closes the transport at once, without a TLS
close_notify, as a crash or a cut line would; ``stall`` waits ``seconds`` first. Reply text
may separate lines with ``\\n`` or ``\\r\\n``; the continuation dashes are put right for you.

PIPELINING (RFC 2920) and CHUNKING (RFC 3030), offered with ``pipelining=True`` and
``chunking=True``. aiosmtpd reads commands line by line, so a group sent in one packet is
always answered in order, one reply per command; ``pipelining=`` adds the advertisement.
With ``chunking=``, ``BDAT <size> [LAST]`` reads exactly ``size`` octets after its line (no
dot-stuffing: the octets are the message) and answers ``250 2.0.0 <size> octets received``;
after the ``LAST`` chunk the joined chunks are the message, recorded and answered as after
DATA's dot (the ``DATA_END`` stage). As RFC 3030 wants: BDAT without MAIL or RCPT gets ``503``
(its chunk is still read, so the line stays in step), DATA after a BDAT of the same
transaction ``503``, a missing or malformed size ``501`` (nothing read), RSET forgets the
chunks, and chunks over ``size_limit`` are read and acknowledged, then ``LAST`` gets ``552``
(``MAIL ... SIZE=`` over it gets ``552`` at once). Without ``chunking=``, BDAT is an unknown
command (``500``) and its chunk is read as commands, as at a server without the extension.
Servers that offer them and misbehave::

    server.script.on("BDAT", reply="451 4.3.0 Try later")     # to every chunk; a refused
                # chunk is read first and ends the transaction (BDAT after it: 503 until MAIL)
    server.script.once("BDAT", reply="554 5.6.0 No", match=lambda e: e.chunk == 2)
    server.script.on("BDAT", reply="452 4.3.1 Full", match=lambda e: e.last_chunk)
    server.script.on("BDAT", action="drop", after_bytes=100)  # cut the line 100 octets into it
    server.script.on("BDAT", action="unrecognised")  # CHUNKING offered, yet "500 ... not
                # recognized", and the chunk's octets are then read as commands
    server.script.on("PIPELINED", action="drop")      # hang up on a command that came with
                # others behind it (some old servers do); Event.command names it
    server.script.on("RCPT", reply="550 5.1.1 No such user", rcpt="bad@example.com")  # in a
                # pipelined group too: each command keeps its own reply, in order

A ``PIPELINED`` rule always ends the connection (a reply is sent first, then the line closed).
A BDAT command line is judged after its chunk: only commands behind the chunk make it pipelined.
``tests/kit/smtp_wire.py`` writes such groups and chunks byte for byte and reads the replies.

Clients in async tests: close aiosmtplib clients with ``close_smtp_client(client)``, or use
``smtp_client``; both wait until the socket is really closed. A TLS socket still closing when
the test's event loop ends is a ResourceWarning that fails some later test::

    async with smtp_client(server, username="me@x.test", password="pw") as client:
        await client.send_message(message)      # on exit: QUIT if still connected, close, wait

A provider preset is just these pieces together: accounts, ``auth_replies`` or
``bad_credentials_reply`` (or ``oauth`` and ``oauth_style``), and a few ``script`` rules
applied after the server starts.
"""

# ruff: noqa: N802 - aiosmtpd dispatches to smtp_<VERB> and handle_<VERB> methods by name.

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import email
import email.policy
import functools
import hmac
import ipaddress
import json
import re
import secrets
import ssl
import threading
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, AnyStr, Literal, NoReturn, cast, get_args

import aiosmtplib
import trustme
from aiosmtpd.smtp import (
    DATA_SIZE_DEFAULT,
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    TLSSetupException,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:  # oauth_server imports this module (for HOST and the CA)
    from tests.kit.oauth_server import OAuthTestServer

__all__ = [
    "Action",
    "AuthAttempt",
    "CertificateKind",
    "Command",
    "Event",
    "OAuthStyle",
    "ReceivedMessage",
    "Rule",
    "Script",
    "SmtpTestCA",
    "SmtpTestServer",
    "Stage",
    "TlsMode",
    "close_smtp_client",
    "normalise_reply",
    "smtp_client",
]

TlsMode = Literal["implicit", "starttls", "none"]
CertificateKind = Literal["valid", "self_signed", "expired", "wrong_host"]
OAuthStyle = Literal["microsoft", "google"]
Stage = Literal[
    "CONNECT",
    "EHLO",
    "STARTTLS",
    "AUTH",
    "MAIL",
    "RCPT",
    "DATA",
    "DATA_END",
    "BDAT",
    "PIPELINED",
    "RSET",
    "NOOP",
    "QUIT",
]
Action = Literal["reply", "drop", "stall", "accept_then_drop", "accept_then_stall", "unrecognised"]

STAGES: frozenset[str] = frozenset(get_args(Stage))
ACTIONS: frozenset[str] = frozenset(get_args(Action))
HOST = "127.0.0.1"
HOSTNAME = "localhost"
WRONG_HOSTNAME = "mail.elsewhere.test"
DEFAULT_STALL_SECONDS = 30.0
START_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 5.0
ACCEPTED_REPLY = "250 2.0.0 OK: queued"
BDAT_SYNTAX_REPLY = "501 5.5.4 Syntax: BDAT <size> [LAST]"
# What aiosmtpd answers a command it does not know, for BDAT when CHUNKING is not offered.
UNRECOGNISED_BDAT_REPLY = '500 Error: command "BDAT" not recognized'
# aiosmtpd's reply to a line that names no command it knows (the verb upper-cased)
_UNRECOGNISED = re.compile(r'500 Error: command "(?P<verb>[^"]*)" not recognized')
_BDAT_ARGUMENT = re.compile(r"(?P<size>[0-9]{1,18})(?: +(?P<last>LAST))?", re.IGNORECASE)
MECHANISMS = ("LOGIN", "PLAIN")  # aiosmtpd's built-in ones
XOAUTH2 = "XOAUTH2"  # ours (_ScriptedSMTP.auth_XOAUTH2), offered with oauth=
# The scopes an access token needs for each provider's SMTP server: Microsoft's delegated
# SMTP.Send or an app-only token for Exchange Online; Google's full mail scope.
XOAUTH2_SCOPES: dict[OAuthStyle, frozenset[str]] = {
    "microsoft": frozenset(
        {"https://outlook.office.com/SMTP.Send", "https://outlook.office365.com/.default"}
    ),
    "google": frozenset({"https://mail.google.com/"}),
}
XOAUTH2_ACCEPTED: dict[OAuthStyle, str] = {
    "microsoft": "235 2.7.0 Authentication successful",
    "google": "235 2.7.0 Accepted",
}
GOOGLE_XOAUTH2_REFUSAL = (
    "535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
    "535 5.7.8  https://support.google.com/mail/?p=BadCredentials"
)


# --- Certificates -----------------------------------------------------------------------------


class SmtpTestCA:
    """A trustme CA, the PEM file that clients trust, and server certificates of each kind.

    ``valid`` is issued by this CA for localhost, 127.0.0.1 and the server's own address
    (``host=``); ``expired`` likewise but out of date; ``wrong_host`` is issued by this CA for
    another host only; ``self_signed`` signs itself, so no chain leads to this CA.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._ca = trustme.CA(organization_name="mail-outbox-worker tests")
        self.pem_path = directory / "smtp-test-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.pem_path))
        self._contexts: dict[tuple[CertificateKind, str], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    @property
    def cert_bundle(self) -> str:
        """The CA file as aiosmtplib's ``cert_bundle=`` takes it."""
        return str(self.pem_path)

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this CA."""
        return ssl.create_default_context(cafile=self.cert_bundle)

    def server_context(self, kind: CertificateKind = "valid", host: str = HOST) -> ssl.SSLContext:
        """A server context presenting a certificate of the given kind for a server listening
        on ``host`` (made once per kind and host, then reused)."""
        with self._lock:
            if (kind, host) not in self._contexts:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                self._leaf(kind, host).configure_cert(context)
                self._contexts[kind, host] = context
            return self._contexts[kind, host]

    def _leaf(self, kind: CertificateKind, host: str) -> trustme.LeafCert:
        now = dt.datetime.now(dt.UTC)
        names = _certificate_names(host)
        if kind == "valid":
            return self._ca.issue_cert(*names)
        if kind == "expired":
            return self._ca.issue_cert(
                *names,
                not_before=now - dt.timedelta(days=30),
                not_after=now - dt.timedelta(days=1),
            )
        if kind == "wrong_host":
            return self._ca.issue_cert(WRONG_HOSTNAME)
        if kind == "self_signed":
            return _self_signed_leaf(now, names)
        raise ValueError(f"unknown certificate kind: {kind!r}")


def _certificate_names(host: str) -> tuple[str, ...]:
    """localhost, 127.0.0.1 and the address the server listens on, each once."""
    return tuple(dict.fromkeys((HOSTNAME, HOST, host)))


def _subject_alternative_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _self_signed_leaf(now: dt.datetime, names: tuple[str, ...]) -> trustme.LeafCert:
    """A certificate for ``names`` that is its own issuer (trustme only issues from a CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([_subject_alternative_name(n) for n in names]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return trustme.LeafCert(key_pem, certificate.public_bytes(serialization.Encoding.PEM), [])


# --- Records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMessage:
    """A message the server accepted (or accepted and then dropped the connection on)."""

    number: int  # the transaction number, as in Event.message
    connection: int
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes = field(repr=False)
    login: str | None
    tls_version: str | None

    def parsed(self) -> EmailMessage:
        """The data parsed as a modern ``EmailMessage``."""
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass(frozen=True)
class AuthAttempt:
    """One AUTH command; ``login`` is None when the server answered before reading credentials."""

    connection: int
    mechanism: str
    login: str | None
    success: bool
    tls_version: str | None


@dataclass(frozen=True)
class Command:
    """One command as received; the arguments of AUTH are reduced to the mechanism name."""

    connection: int
    verb: str
    arg: str | None
    # More bytes had already arrived behind the command line: it came in a pipelined group
    # (for BDAT, its chunk counts), not alone after the reply to the command before it.
    pipelined: bool = False


class _Journal:
    """Everything the server saw, written by the server thread and read by the tests."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.messages: list[ReceivedMessage] = []
        self.auth_attempts: list[AuthAttempt] = []
        self.commands: list[Command] = []
        self.errors: list[str] = []
        self.connections = 0
        self.open_connections = 0
        self.peak_open_connections = 0
        self.transactions = 0

    def connected(self) -> int:
        with self._changed:
            self.connections += 1
            self.open_connections += 1
            self.peak_open_connections = max(self.peak_open_connections, self.open_connections)
            return self.connections

    def disconnected(self) -> None:
        with self._changed:
            self.open_connections -= 1

    def next_transaction(self) -> int:
        with self._changed:
            self.transactions += 1
            return self.transactions

    def add(self, records: list[Any], record: object) -> None:
        with self._changed:
            records.append(record)
            self._changed.notify_all()

    def snapshot(self, records: list[Any]) -> tuple[Any, ...]:
        with self._changed:
            return tuple(records)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout)


# --- Script -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """What a rule's ``match`` sees: one stage of one connection."""

    stage: Stage
    connection: int  # 1 for the first connection this server accepted
    message: int | None = None  # transaction number (MAIL commands counted from 1), once MAIL came
    login: str | None = None  # the login this connection authenticated as
    mail_from: str | None = None
    rcpt: str | None = None  # RCPT: the recipient of this command
    rcpt_tos: tuple[str, ...] = ()  # recipients accepted so far in this transaction
    command: str | None = None  # PIPELINED: the verb of the command that came with others
    chunk: int | None = None  # BDAT: the chunk's number in its transaction, from 1
    last_chunk: bool = False  # BDAT: whether it is the LAST one


@dataclass
class Rule:
    """One scripted fault; ``fired`` counts how often it was used."""

    stage: Stage
    action: Action
    reply: str | None = None
    rcpt: str | None = None
    message: int | None = None
    match: Callable[[Event], bool] | None = None
    times: int | None = None
    seconds: float = DEFAULT_STALL_SECONDS
    after_bytes: int | None = None  # BDAT drop/stall: read this much of the chunk first
    fired: int = 0

    @property
    def closes_connection(self) -> bool:
        """Whether this rule ends the connection (a 421 reply does, by RFC 5321 section 3.8)."""
        return self.action not in ("reply", "unrecognised") or (self.reply or "").startswith("421")

    @property
    def accepts(self) -> bool:
        return self.action.startswith("accept_then_")

    def applies_to(self, event: Event) -> bool:
        if event.stage != self.stage or (self.times is not None and self.fired >= self.times):
            return False
        if self.rcpt is not None and event.rcpt != self.rcpt:
            return False
        if self.message is not None and event.message != self.message:
            return False
        return self.match is None or self.match(event)


class Script:
    """The scripted faults of one server; rules may be added while the server runs."""

    def __init__(self) -> None:
        self._rules: list[Rule] = []
        self._lock = threading.Lock()

    def on(
        self,
        stage: Stage,
        *,
        reply: str | None = None,
        action: Action | None = None,
        rcpt: str | None = None,
        message: int | None = None,
        match: Callable[[Event], bool] | None = None,
        times: int | None = None,
        seconds: float = DEFAULT_STALL_SECONDS,
        after_bytes: int | None = None,
    ) -> Rule:
        """Add a rule; ``reply=`` alone means ``action="reply"``. Returns it, to read ``fired``."""
        action = _check_rule(stage, reply, action, rcpt)
        if after_bytes is not None and (stage != "BDAT" or action not in ("drop", "stall")):
            raise ValueError("after_bytes= goes with a BDAT rule that drops or stalls")
        rule = Rule(
            stage=stage,
            action=action,
            reply=None if reply is None else normalise_reply(reply),
            rcpt=rcpt,
            message=message,
            match=match,
            times=times,
            seconds=seconds,
            after_bytes=after_bytes,
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def once(self, stage: Stage, **options: Any) -> Rule:
        """Add a rule that fires for the first matching event only."""
        return self.on(stage, times=1, **options)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> tuple[Rule, ...]:
        with self._lock:
            return tuple(self._rules)

    def decide(self, event: Event) -> Rule | None:
        """The first rule that applies to the event, counted as fired; None to serve normally."""
        with self._lock:
            for rule in self._rules:
                if rule.applies_to(event):
                    rule.fired += 1
                    return rule
        return None


def _check_rule(stage: str, reply: str | None, action: str | None, rcpt: str | None) -> Action:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {sorted(STAGES)}")
    action = action or ("reply" if reply is not None else None)
    if action not in ACTIONS:
        raise ValueError(f"give reply= or one of action={sorted(ACTIONS)}, not {action!r}")
    if (action == "reply") != (reply is not None):
        raise ValueError("reply= goes with action='reply' and with no other action")
    if action.startswith("accept_then_") and stage != "DATA_END":
        raise ValueError(f"{action} only makes sense at DATA_END, not at {stage}")
    if action == "unrecognised" and stage != "BDAT":
        raise ValueError(f"unrecognised only makes sense at BDAT, not at {stage}")
    if rcpt is not None and stage != "RCPT":
        raise ValueError("rcpt= narrows RCPT rules only; use match= on Event.rcpt_tos elsewhere")
    return cast(Action, action)


_REPLY_LINE = re.compile(r"(?P<code>[2-5][0-9][0-9])(?:[ -](?P<text>.*))?")


def normalise_reply(reply: str) -> str:
    """Check an SMTP reply and join its lines with CRLF and the right continuation dashes.

    A reply is ASCII, or bytes written as Latin-1 characters (``"\\xb3"``, ``"\\x00"``) to
    play a legacy server whose replies are not UTF-8: it goes on the wire byte for byte.
    """
    lines = reply.replace("\r\n", "\n").strip("\n").split("\n")
    matches = [_REPLY_LINE.fullmatch(line) for line in lines]
    codes = {match["code"] for match in matches if match}
    if not all(ord(char) < 256 for char in reply) or not all(matches) or len(codes) != 1:
        raise ValueError(f"not an SMTP reply (one 3-digit code on every line, bytes): {reply!r}")
    code = codes.pop()
    last = len(lines) - 1
    return "\r\n".join(
        f"{code}{' ' if index == last else '-'}{match['text'] or ''}"
        for index, match in enumerate(cast(list[re.Match[str]], matches))
    )


def _wire(reply: str | None) -> bytes:
    """A normalised reply as the bytes that go on the wire."""
    return (reply or "").encode("latin-1")


# --- Accounts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Accounts:
    """Who may log in, and what the server answers those who may not."""

    passwords: Mapping[str, str] = field(repr=False)
    failure_replies: Mapping[str, str]
    bad_credentials_reply: str | None

    def check(self, login: str, password: str) -> AuthResult:
        if login in self.failure_replies:
            return AuthResult(success=False, handled=False, message=self.failure_replies[login])
        expected = self.passwords.get(login)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            # message=None makes aiosmtpd answer its standard 535 5.7.8.
            return AuthResult(success=False, handled=False, message=self.bad_credentials_reply)
        # auth_data is what aiosmtpd keeps in the session: the login, never the password.
        return AuthResult(success=True, auth_data=login)


def _parse_xoauth2(blob: bytes) -> tuple[str | None, str | None]:
    """The login and the bearer token of an XOAUTH2 response (None for what is missing)."""
    fields = dict(
        part.split("=", 1) for part in blob.decode("utf-8", "replace").split("\x01") if "=" in part
    )
    auth = fields.get("auth", "")
    token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
    return fields.get("user") or None, token or None


def _microsoft_xoauth2_refusal() -> str:
    """Outlook's refusal, with a front-end host, a time and an id in brackets as it sends them."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    host = f"AM0PR04CA{secrets.randbelow(10000):04d}.EURPRD04.PROD.OUTLOOK.COM"
    return f"535 5.7.3 Authentication unsuccessful [{host} {now} {secrets.token_hex(8).upper()}]"


# --- The aiosmtpd protocol --------------------------------------------------------------------

_ADDRESS = re.compile(r"\s*(?:FROM|TO):\s*<?(?P<address>[^<>\s]*)>?", re.IGNORECASE)


def _address(arg: str | None) -> str | None:
    """The address of a ``FROM:<a>``/``TO:<a>`` argument, for matching only."""
    match = _ADDRESS.match(arg or "")
    return match["address"] if match else None


class _Hooks:
    """The aiosmtpd handler: the hooks that need aiosmtpd's parsed state, and error capture."""

    def __init__(self, journal: _Journal, offers_auth: bool, extensions: tuple[str, ...]) -> None:
        self._journal = journal
        self._offers_auth = offers_auth
        self._extensions = extensions  # offered beside aiosmtpd's own, e.g. PIPELINING

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to the hook once one exists
        *offered, last = responses  # the last line is aiosmtpd's "250 HELP"
        offered += [f"250-{extension}" for extension in self._extensions]
        if not self._offers_auth:
            # aiosmtpd always offers its built-in mechanisms after TLS; a relay offers none.
            offered = [line for line in offered if not line[4:].startswith("AUTH")]
        return [*offered, last]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return await cast(_ScriptedSMTP, server).finish_message(envelope)

    async def handle_exception(self, error: Exception) -> str:
        # A failed STARTTLS handshake and a vanished client are test scenarios, not kit bugs.
        if not isinstance(error, TLSSetupException | ConnectionError):
            self._journal.add(self._journal.errors, "".join(traceback.format_exception(error)))
        return f"500 5.3.0 Test server error: {type(error).__name__}"


class _ScriptedSMTP(SMTP):
    """One connection: aiosmtpd's protocol with recording and the script consulted first."""

    def __init__(self, owner: SmtpTestServer, hooks: _Hooks, loop: asyncio.AbstractEventLoop):
        self._owner = owner
        self._journal = owner.journal
        self._connection_number = 0
        self._login_name: str | None = None
        self._transaction: int | None = None
        self._attempt: AuthAttempt | None = None  # the AUTH command in progress
        self._gone = False
        self._chunks: list[bytes] = []  # BDAT: the chunks of this transaction so far
        self._chunk_count = 0
        self._chunk_bytes = 0
        starttls = owner.tls == "starttls"
        super().__init__(
            hooks,
            hostname=HOSTNAME,
            tls_context=owner.tls_context if starttls else None,
            require_starttls=starttls and owner.require_starttls,
            auth_required=owner.requires_auth,
            auth_exclude_mechanism=owner.excluded_mechanisms,
            authenticator=self._check_credentials,
            timeout=owner.idle_timeout,
            data_size_limit=owner.size_limit,
            enable_SMTPUTF8=owner.smtputf8,
            loop=loop,
        )
        # aiosmtpd knows only STARTTLS as TLS, so with implicit TLS it would never offer AUTH.
        # Passing auth_require_tls=False instead makes aiosmtpd warn(), and filterwarnings=error
        # would turn that into an exception in this thread; so it is set after construction.
        self._auth_require_tls = not (owner.tls == "implicit" or owner.offer_auth_without_tls)

    # Connection life

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._connection_number:  # aiosmtpd calls this again after STARTTLS
            self._connection_number = self._journal.connected()
            self._owner.protocols.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        # aiosmtpd calls this itself after a failed STARTTLS, and asyncio calls it again.
        if not self._gone:
            self._gone = True
            self._journal.disconnected()
            self._owner.protocols.discard(self)
        super().connection_lost(error)

    def hang_up(self) -> None:
        """Close the connection at once: no pending replies, no TLS close_notify."""
        if isinstance(self.transport, asyncio.Transport):
            self.transport.abort()

    async def _handle_client(self) -> None:
        rule = self._owner.script.decide(self._event("CONNECT"))
        if rule is None:
            await super()._handle_client()
        else:
            await self._end_with(rule)  # after a scripted greeting there is nothing more to say

    # Commands: record, consult the script, then let aiosmtpd serve them

    async def smtp_HELO(self, arg: str) -> None:
        await self._serve("EHLO", "HELO", arg, functools.partial(super().smtp_HELO, arg))

    async def smtp_EHLO(self, arg: str) -> None:
        await self._serve("EHLO", "EHLO", arg, functools.partial(super().smtp_EHLO, arg))

    async def smtp_STARTTLS(self, arg: str) -> None:
        await self._serve(
            "STARTTLS", "STARTTLS", arg, functools.partial(super().smtp_STARTTLS, arg)
        )

    async def smtp_AUTH(self, arg: str) -> None:
        mechanism = (arg or "").split(" ")[0].upper()
        self._attempt = AuthAttempt(
            self._connection_number, mechanism, None, False, self._tls_version()
        )
        try:
            await self._serve("AUTH", "AUTH", mechanism, functools.partial(super().smtp_AUTH, arg))
        finally:
            self._finish_auth_attempt()  # if a scripted fault ended the connection without a reply

    async def push(self, status: AnyStr) -> None:
        # The final AUTH reply (not a 334 challenge) ends the attempt. Record it before the
        # client can read that reply, so a test never sees the reply without the record.
        if status[:3] not in ("334", b"334"):
            self._finish_auth_attempt()
        unknown = _UNRECOGNISED.match(
            status if isinstance(status, str) else status.decode("latin-1")
        )
        if unknown is not None and status != UNRECOGNISED_BDAT_REPLY:  # (BDAT is recorded)
            # aiosmtpd answers a line that names no command by itself: record it here
            command = Command(self._connection_number, unknown["verb"], None)
            self._journal.add(self._journal.commands, command)
        if self.transport is None or self.transport.is_closing():
            # aiosmtpd closes the line after too many unknown commands and still answers the
            # next line of its buffer; over TLS that write would raise.
            return
        await super().push(status)

    async def smtp_MAIL(self, arg: str | None) -> None:
        self._transaction = self._journal.next_transaction()
        proceed = functools.partial(super().smtp_MAIL, arg)
        await self._serve("MAIL", "MAIL", arg, proceed, mail_from=_address(arg))

    async def smtp_RCPT(self, arg: str | None) -> None:
        proceed = functools.partial(super().smtp_RCPT, arg)
        await self._serve("RCPT", "RCPT", arg, proceed, rcpt=_address(arg))

    async def smtp_DATA(self, arg: str) -> None:
        await self._serve("DATA", "DATA", arg, functools.partial(self._data, arg))

    async def _data(self, arg: str) -> None:
        if self._chunk_count:  # RFC 3030: BDAT and DATA never mix in one transaction
            await self.push("503 5.5.1 DATA after BDAT in the same transaction")
        else:
            await super().smtp_DATA(arg)

    async def smtp_BDAT(self, arg: str | None) -> None:
        """RFC 3030: ``BDAT <size> [LAST]`` and exactly ``size`` octets, no dot-stuffing."""
        await self._serve("BDAT", "BDAT", arg, functools.partial(self._bdat, arg), scripted=False)

    async def _bdat(self, arg: str | None) -> None:
        argument = _BDAT_ARGUMENT.fullmatch(arg or "")
        if not self._owner.chunking:
            await self.push(UNRECOGNISED_BDAT_REPLY)  # the chunk then reads as commands
            return
        if argument is None:
            await self.push(BDAT_SYNTAX_REPLY)  # no size known, so nothing to read
            return
        size, last = int(argument["size"]), argument["last"] is not None
        refusal = self._bdat_refusal()
        rule = None
        if refusal is None:
            self._chunk_count += 1
            event = self._event("BDAT", chunk=self._chunk_count, last_chunk=last)
            rule = self._owner.script.decide(event)
        if rule is not None and rule.action == "unrecognised":
            await self.push(UNRECOGNISED_BDAT_REPLY)  # and the chunk is read as commands
            return
        if rule is not None and rule.after_bytes is not None:
            await self._reader.readexactly(min(rule.after_bytes, size))
            await self._end_with(rule)
        chunk = await self._reader.readexactly(size)  # read even when refused (RFC 3030)
        await self._pipelined("BDAT")
        if refusal is not None:
            await self.push(refusal)
        elif rule is not None:
            self._set_post_data_state()  # a refused chunk fails the whole transaction
            if rule.closes_connection:
                await self._end_with(rule)
            await self.push(_wire(rule.reply))
        else:
            await self._take_chunk(chunk, last)

    def _bdat_refusal(self) -> str | None:
        envelope = self.envelope
        if envelope is None or not envelope.mail_from:
            return "503 5.5.1 Error: need MAIL command"
        if not envelope.rcpt_tos:
            return "503 5.5.1 Error: need RCPT command"
        return None

    async def _take_chunk(self, chunk: bytes, last: bool) -> None:
        self._chunk_bytes += len(chunk)
        too_big = bool(self.data_size_limit) and self._chunk_bytes > self.data_size_limit
        if not too_big:
            self._chunks.append(chunk)  # over the limit, keep reading but nothing more
        if not last:
            await self.push(f"250 2.0.0 {len(chunk)} octets received")
            return
        envelope = cast(Envelope, self.envelope)
        if too_big:
            reply = "552 5.3.4 Error: too much mail data"
        else:
            envelope.content = envelope.original_content = b"".join(self._chunks)
            reply = await self.finish_message(envelope)  # DATA_END, as after DATA's dot
        self._set_post_data_state()
        await self.push(reply)

    def _set_post_data_state(self) -> None:
        super()._set_post_data_state()  # after a message, RSET, EHLO: a new transaction
        self._chunks, self._chunk_count, self._chunk_bytes = [], 0, 0

    async def smtp_RSET(self, arg: str) -> None:
        await self._serve("RSET", "RSET", arg, functools.partial(super().smtp_RSET, arg))

    async def smtp_NOOP(self, arg: str) -> None:
        await self._serve("NOOP", "NOOP", arg, functools.partial(super().smtp_NOOP, arg))

    async def smtp_QUIT(self, arg: str) -> None:
        await self._serve("QUIT", "QUIT", arg, functools.partial(super().smtp_QUIT, arg))

    async def _serve(
        self,
        stage: Stage,
        verb: str,
        arg: str | None,
        proceed: Callable[[], Awaitable[None]],
        scripted: bool = True,
        **details: Any,
    ) -> None:
        # aiosmtpd itself reaches into the StreamReader's buffer; asyncio offers no peek.
        behind = bool(self._reader._buffer)
        command = Command(self._connection_number, verb, arg, pipelined=behind)
        self._journal.add(self._journal.commands, command)
        if verb != "BDAT":  # a BDAT command line comes with its chunk: judged after reading it
            await self._pipelined(verb)
        rule = self._owner.script.decide(self._event(stage, **details)) if scripted else None
        if rule is None:
            await proceed()
        elif rule.closes_connection:
            await self._end_with(rule)
        else:
            await self.push(_wire(rule.reply))

    async def finish_message(self, envelope: Envelope) -> str:
        """The DATA_END stage: record the message unless the script says otherwise."""
        rule = self._owner.script.decide(self._event("DATA_END"))
        if rule is None or rule.accepts or (rule.reply or "").startswith("2"):
            self._record(envelope)  # a scripted 2xx accepts the message in its own words
        if rule is None:
            return ACCEPTED_REPLY
        if not rule.closes_connection:
            return cast(str, _wire(rule.reply))  # aiosmtpd pushes bytes as they are
        return await self._end_with(rule)  # which never returns: the connection ends

    # AUTH

    def _check_credentials(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        # A plain def on purpose: aiosmtpd calls the authenticator without awaiting it, and an
        # un-awaited coroutine object would count as success.
        if not isinstance(auth_data, LoginPassword) or self._owner.accounts is None:
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        result = self._owner.accounts.check(login, auth_data.password.decode("utf-8", "replace"))
        if self._attempt is not None:
            self._attempt = dataclasses.replace(self._attempt, login=login, success=result.success)
        if result.success:
            self._login_name = login
        return result

    async def auth_XOAUTH2(self, _: SMTP, args: list[str]) -> AuthResult:
        """SASL XOAUTH2 (``user=...\\x01auth=Bearer ...\\x01\\x01``), the token checked by the
        OAuth test server, the refusals worded as Outlook's or Gmail's."""
        blob = await self._xoauth2_response(args)
        if blob is None:
            return AuthResult(success=False, handled=True)  # a 501 was sent
        owner = self._owner
        login, token = _parse_xoauth2(blob)
        if owner.oauth is None or login is None or token is None:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Malformed XOAUTH2")
        check = owner.oauth.check_access_token(
            token, login=login, smtp_scope=XOAUTH2_SCOPES[owner.oauth_style]
        )
        if self._attempt is not None:
            self._attempt = dataclasses.replace(self._attempt, login=login, success=check.valid)
        if check.valid:
            self._login_name = login
            return AuthResult(
                success=True, auth_data=login, message=XOAUTH2_ACCEPTED[owner.oauth_style]
            )
        if owner.oauth_style == "microsoft":
            return AuthResult(success=False, handled=False, message=_microsoft_xoauth2_refusal())
        # Gmail: an error challenge first (401: the token is no good; 400: not for this user or
        # scope), and the final reply after the client's empty line.
        status = "401" if check.reason in {"expired", "revoked", "unknown"} else "400"
        challenge = {"status": status, "schemes": "Bearer", "scope": "https://mail.google.com/"}
        if await self.challenge_auth(json.dumps(challenge, separators=(",", ":"))) is MISSING:
            return AuthResult(success=False, handled=True)  # the client aborted: 501 was sent
        return AuthResult(success=False, handled=False, message=GOOGLE_XOAUTH2_REFUSAL)

    async def _xoauth2_response(self, args: list[str]) -> bytes | None:
        """The client's SASL response: inline after the mechanism (aiosmtplib) or after an
        empty 334 challenge; None once a 501 has been sent for it."""
        if len(args) == 1:
            answer = await self.challenge_auth("")
            return None if answer is MISSING else answer
        try:
            return base64.b64decode(args[1], validate=True)
        except binascii.Error:
            await self.push("501 5.5.2 Can't decode base64")
            return None

    # Helpers

    async def _pipelined(self, verb: str) -> None:
        """The PIPELINED stage: the command came with more bytes already behind it."""
        # aiosmtpd itself reaches into the StreamReader's buffer; asyncio offers no peek.
        if not self._reader._buffer:
            return
        rule = self._owner.script.decide(self._event("PIPELINED", command=verb))
        if rule is not None:
            await self._end_with(rule)  # an old server that cannot take a group hangs up

    def _finish_auth_attempt(self) -> None:
        if self._attempt is not None:
            self._journal.add(self._journal.auth_attempts, self._attempt)
            self._attempt = None

    async def _end_with(self, rule: Rule) -> NoReturn:
        """Carry out a rule that ends the connection: reply and close, drop, or stall."""
        if rule.action == "reply":
            await self.push(_wire(rule.reply))
            if self.transport is not None:
                self.transport.close()  # a graceful close, so the reply gets through
        else:
            if rule.action.endswith("stall"):
                await asyncio.sleep(rule.seconds)
            self.hang_up()
        # connection_lost() cancels this task, as aiosmtpd does on every disconnect (and stop()
        # cancels whatever is left); until then there is nothing more to do.
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable: the task is cancelled when the connection closes")

    def _event(self, stage: Stage, **details: Any) -> Event:
        envelope = self.envelope
        defaults: dict[str, Any] = {
            "mail_from": envelope.mail_from if envelope else None,
            "rcpt_tos": tuple(envelope.rcpt_tos) if envelope else (),
        }
        return Event(
            stage=stage,
            connection=self._connection_number,
            message=self._transaction,
            login=self._login_name,
            **(defaults | details),
        )

    def _record(self, envelope: Envelope) -> None:
        message = ReceivedMessage(
            number=self._transaction or 0,
            connection=self._connection_number,
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=envelope.original_content or b"",
            login=self._login_name,
            tls_version=self._tls_version(),
        )
        self._journal.add(self._journal.messages, message)

    def _tls_version(self) -> str | None:
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        return cast(ssl.SSLObject, ssl_object).version() if ssl_object is not None else None


# --- The server -------------------------------------------------------------------------------


class SmtpTestServer:
    """An aiosmtpd server in a thread of its own; see the module docstring for the whole API.

    Keyword arguments:

    - ``ca``: the ``SmtpTestCA`` whose certificates to present (needed unless ``tls="none"``).
    - ``tls``: ``"implicit"`` (SMTPS), ``"starttls"`` or ``"none"``.
    - ``certificate``: ``"valid"``, ``"self_signed"``, ``"expired"`` or ``"wrong_host"``.
    - ``require_starttls``: refuse everything but EHLO/NOOP/QUIT before STARTTLS (default).
    - ``accounts``: ``{login: password}``; when given, AUTH is required before MAIL.
    - ``auth_replies``: ``{login: reply}`` for logins that always fail with that reply.
    - ``bad_credentials_reply``: the reply to a wrong password (default ``535 5.7.8 ...``).
    - ``auth_mechanisms``: the password mechanisms offered, of ``("LOGIN", "PLAIN")``.
    - ``oauth``: an ``OAuthTestServer``; AUTH XOAUTH2 is then offered (and AUTH required) and
      checks its access tokens, beside LOGIN and PLAIN only when ``accounts`` are given too.
    - ``oauth_style``: whose XOAUTH2 to play, ``"microsoft"`` (Outlook: tokens with SMTP.Send
      or an app-only ``outlook.office365.com/.default``; refusal ``535 5.7.3``) or
      ``"google"`` (Gmail: ``https://mail.google.com/``; a 334 JSON challenge, then 535 5.7.8).
    - ``offer_auth_without_tls``: offer AUTH on an unencrypted connection (a leaky server).
    - ``idle_timeout``: seconds of client silence before the server closes the connection.
    - ``size_limit``: the largest message in bytes, offered as ``SIZE``; a larger one is
      refused with ``552`` (at MAIL when the client declares its size, else after DATA).
    - ``smtputf8``: offer SMTPUTF8 (RFC 6531), so ``MAIL FROM:<...> SMTPUTF8`` may carry
      addresses and headers in UTF-8. Off by default, as at many servers: then MAIL with
      ``SMTPUTF8`` is refused with ``501`` and a non-ASCII command with ``500``.
    - ``pipelining``: offer PIPELINING (RFC 2920). aiosmtpd answers a group of commands in
      order either way; this is the advertisement a pipelining client looks for.
    - ``chunking``: offer CHUNKING (RFC 3030) and serve ``BDAT``; without it BDAT gets ``500``.
    - ``host``: the address to listen on (default ``127.0.0.1``); the certificate names it too,
      and ``hostname`` is this address unless it is 127.0.0.1 (then ``localhost``).
    - ``port``: the port to listen on (default 0: any free one); e.g. 465, which needs root.
    """

    def __init__(
        self,
        *,
        ca: SmtpTestCA | None = None,
        tls: TlsMode = "none",
        certificate: CertificateKind = "valid",
        require_starttls: bool = True,
        accounts: Mapping[str, str] | None = None,
        auth_replies: Mapping[str, str] | None = None,
        bad_credentials_reply: str | None = None,
        auth_mechanisms: tuple[str, ...] = MECHANISMS,
        oauth: OAuthTestServer | None = None,
        oauth_style: OAuthStyle = "microsoft",
        offer_auth_without_tls: bool = False,
        idle_timeout: float = 300.0,
        size_limit: int = DATA_SIZE_DEFAULT,
        smtputf8: bool = False,
        pipelining: bool = False,
        chunking: bool = False,
        host: str = HOST,
        port: int = 0,
    ) -> None:
        if tls not in get_args(TlsMode):
            raise ValueError(f"tls must be one of {get_args(TlsMode)}, not {tls!r}")
        if tls != "none" and ca is None:
            raise ValueError(f"tls={tls!r} needs ca=SmtpTestCA(...)")
        self.tls = tls
        self.ca = ca
        self.tls_context = ca.server_context(certificate, host) if ca and tls != "none" else None
        self.require_starttls = require_starttls
        self.accounts = _accounts(accounts, auth_replies, bad_credentials_reply)
        if not set(auth_mechanisms) <= set(MECHANISMS):
            raise ValueError(f"auth_mechanisms must be taken from {MECHANISMS}")
        if oauth_style not in get_args(OAuthStyle):
            raise ValueError(f"oauth_style must be one of {get_args(OAuthStyle)}")
        self.oauth = oauth
        self.oauth_style = oauth_style
        offered = set(auth_mechanisms) if accounts is not None or oauth is None else set()
        offered |= {XOAUTH2} if oauth is not None else set()
        self.excluded_mechanisms = [m for m in (*MECHANISMS, XOAUTH2) if m not in offered]
        self.offer_auth_without_tls = offer_auth_without_tls
        self.idle_timeout = idle_timeout
        self.size_limit = size_limit
        self.smtputf8 = smtputf8
        self.pipelining = pipelining
        self.chunking = chunking
        self.host = host
        # localhost resolves to 127.0.0.1 only; a server elsewhere is reached by its address.
        self.hostname = HOSTNAME if host == HOST else host
        self._requested_port = port
        self.script = Script()
        self.journal = _Journal()
        self.protocols: set[_ScriptedSMTP] = set()  # touched by the server thread only
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<SmtpTestServer tls={self.tls} {self.host}:{self._port}>"

    # Life cycle

    def start(self) -> SmtpTestServer:
        """Start serving in a new thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("this server was already started")
        self._thread = threading.Thread(target=self._run, name="smtp-test-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_SECONDS):
            raise RuntimeError("the SMTP test server did not start in time")
        if self._startup_error is not None:
            raise RuntimeError("the SMTP test server failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket, and end the thread; idempotent."""
        if self._thread is None or not self._thread.is_alive():
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(START_TIMEOUT_SECONDS)
        if self._thread.is_alive():
            raise RuntimeError("the SMTP test server thread did not stop")

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:
            if self._ready.is_set():
                # After start-up nobody waits for it: re-raising makes pytest report it (as
                # an unhandled thread exception).
                raise
            # start() raises this in the test (e.g. a port that cannot be bound, which a
            # fixture may turn into a skip); raising it here as well would fail the test
            # through the unhandled-thread-exception warning whatever the fixture decides.
            self._startup_error = error
            self._ready.set()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop, self._stopping = loop, asyncio.Event()
        extensions = ("PIPELINING",) * self.pipelining + ("CHUNKING",) * self.chunking
        hooks = _Hooks(self.journal, offers_auth=self.requires_auth, extensions=extensions)
        server = await loop.create_server(
            lambda: _ScriptedSMTP(self, hooks, loop),
            host=self.host,
            port=self._requested_port,
            ssl=self.tls_context if self.tls == "implicit" else None,
            ssl_handshake_timeout=START_TIMEOUT_SECONDS if self.tls == "implicit" else None,
        )
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for protocol in list(self.protocols):
                protocol.hang_up()
            await server.wait_closed()
        # asyncio.run() now cancels the connections' tasks and closes the loop.

    # What clients need

    @property
    def requires_auth(self) -> bool:
        """Whether AUTH is offered and required: with password accounts or an OAuth server."""
        return self.accounts is not None or self.oauth is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def cert_bundle(self) -> str | None:
        """The PEM file of the CA to trust, or None for a server without TLS."""
        return self.ca.cert_bundle if self.ca is not None and self.tls != "none" else None

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``aiosmtplib.SMTP`` that reach this server and verify it."""
        options: dict[str, Any] = {"hostname": self.hostname, "port": self.port}
        if self.tls == "implicit":
            options |= {"use_tls": True, "cert_bundle": self.cert_bundle}
        elif self.tls == "starttls":
            options |= {"start_tls": True, "cert_bundle": self.cert_bundle}
        else:
            options["start_tls"] = False
        return options

    # What the server saw

    @property
    def messages(self) -> tuple[ReceivedMessage, ...]:
        return self.journal.snapshot(self.journal.messages)

    @property
    def auth_attempts(self) -> tuple[AuthAttempt, ...]:
        return self.journal.snapshot(self.journal.auth_attempts)

    @property
    def commands(self) -> tuple[Command, ...]:
        return self.journal.snapshot(self.journal.commands)

    @property
    def errors(self) -> tuple[str, ...]:
        """Tracebacks of exceptions inside the server (a bug in the kit or in a match=)."""
        return self.journal.snapshot(self.journal.errors)

    @property
    def connection_count(self) -> int:
        """Connections accepted so far (after the TLS handshake, for implicit TLS)."""
        return self.journal.connections

    @property
    def open_connection_count(self) -> int:
        return self.journal.open_connections

    @property
    def peak_open_connection_count(self) -> int:
        """The most connections that were open at the same time so far."""
        return self.journal.peak_open_connections

    def change_password(self, login: str, password: str) -> None:
        """Accept only ``password`` for ``login`` from now on, as a provider does after the
        user changes it; connections that already logged in stay logged in."""
        if self.accounts is None:
            raise ValueError("change_password needs a server started with accounts=")
        passwords = {**self.accounts.passwords, login: password}
        self.accounts = dataclasses.replace(self.accounts, passwords=passwords)

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> tuple[ReceivedMessage, ...]:
        """Block until at least ``count`` messages arrived; TimeoutError otherwise."""
        if not self.journal.wait_for(lambda: len(self.journal.messages) >= count, timeout):
            raise TimeoutError(f"{len(self.messages)} of {count} messages after {timeout} s")
        return self.messages


def _accounts(
    passwords: Mapping[str, str] | None,
    failure_replies: Mapping[str, str] | None,
    bad_credentials_reply: str | None,
) -> _Accounts | None:
    if passwords is None:
        if failure_replies or bad_credentials_reply:
            raise ValueError("auth_replies and bad_credentials_reply need accounts=")
        return None
    return _Accounts(
        passwords=dict(passwords),
        failure_replies={
            login: normalise_reply(reply) for login, reply in (failure_replies or {}).items()
        },
        bad_credentials_reply=(
            None if bad_credentials_reply is None else normalise_reply(bad_credentials_reply)
        ),
    )


# --- Client side ------------------------------------------------------------------------------


async def close_smtp_client(client: aiosmtplib.SMTP, *, send_quit: bool = False) -> None:
    """Close an aiosmtplib client (after QUIT, if asked and still connected) and wait for it.

    ``SMTP.close()`` (also inside ``quit()`` and ``async with``) only starts closing; over
    TLS the close_notify exchange takes a few more loop iterations. If the test's event loop
    ends first, the socket is garbage-collected open, and its ResourceWarning fails some
    later test under ``filterwarnings=error``. So async tests close clients through this.
    """
    protocol = client.protocol
    if send_quit and client.is_connected:
        with contextlib.suppress(aiosmtplib.SMTPException):
            await client.quit()
    client.close()
    async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
        # aiosmtplib's protocol drops its transport in connection_lost() and offers no event.
        while protocol is not None and protocol.transport is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def smtp_client(server: SmtpTestServer, **options: Any) -> AsyncIterator[aiosmtplib.SMTP]:
    """An aiosmtplib client connected to ``server`` with verifying options (``timeout`` 5 s);
    ``options`` override them. On exit: QUIT if still connected, then close_smtp_client()."""
    client = aiosmtplib.SMTP(**(server.client_options() | {"timeout": 5.0} | options))
    await client.connect()
    try:
        yield client
    finally:
        await close_smtp_client(client, send_quit=True)
