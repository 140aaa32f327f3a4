"""SMTP test servers that behave like the guide's providers, as far as that is publicly known.

Each factory starts an ``SmtpTestServer`` (see ``tests/kit/smtp_server.py``) set up with the kit's
own features — ``accounts``, ``bad_credentials_reply``, ``script`` rules and port 465 on a
loopback address of its own — so that a profile made from the provider's preset meets what
the provider's real server would answer (sources: ``providers-and-libs.md`` and
``config/providers.toml``):

- **WP** (``wp``): implicit TLS on port 465, or STARTTLS on another port (the guide's 587).
  The login is the part of the address before the @ (``jankowalski``); the full address as
  login is refused with ``535``. WP's own reply texts are not public, so refusals use
  aiosmtpd's standard ``535 5.7.8 Authentication credentials invalid``.
- **Onet** (``onet``): implicit TLS on port 465; the login is the full address.
- **Gmail** (``gmail``): implicit TLS on port 465; the login is the full address. Only the
  app password ``pvlianprlvvrnrrn`` logs in; the account's normal password gets Google's
  ``534 5.7.9`` (2-Step Verification is on), any other password ``535 5.7.8``. With
  ``daily_limit=N`` the N+1st message is refused with ``550 5.4.5`` at the end of DATA or at
  MAIL (Google has been seen doing both). Google's refusals end with ``- gsmtp``; the kit's
  greeting and its ``250`` replies are the kit's own.

The fixture ``provider_servers`` is registered for every test by listing this module in
``pytest_plugins`` of ``tests/conftest.py``::

    def test_x(provider_servers: ProviderServers) -> None:
        server = provider_servers.wp()                    # 465, implicit TLS
        server = provider_servers.wp(tls="starttls")      # any free port, STARTTLS required
        server = provider_servers.gmail(daily_limit=2, limit_at="MAIL")

Every account's facts (address, login, password as typed and as the server checks it) are
in :data:`WP`, :data:`ONET` and :data:`GMAIL`. Port 465 needs root (or a lowered
``net.ipv4.ip_unprivileged_port_start``); without it a test that asks for an implicit-TLS
server is skipped (failed under ``CI``), as ``port_465_server_factory`` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

import pytest
from aiosmtpd.smtp import AuthResult

from tests.kit.smtp_fixtures import SmtpServerFactory
from tests.kit.smtp_server import Event, SmtpTestServer, _Accounts, normalise_reply

__all__ = [
    "GMAIL",
    "GMAIL_ACCOUNT_PASSWORD",
    "GMAIL_APP_PASSWORD_REQUIRED",
    "GMAIL_BAD_CREDENTIALS",
    "GMAIL_DAILY_LIMIT",
    "ONET",
    "WP",
    "LimitStage",
    "ProviderAccount",
    "ProviderServers",
    "ProviderTls",
    "gmail_daily_limit",
    "provider_servers_fixture",
]

ProviderTls = Literal["implicit", "starttls"]
LimitStage = Literal["DATA_END", "MAIL"]


@dataclasses.dataclass(frozen=True)
class ProviderAccount:
    """One mailbox of the guide, as a person types it and as the provider's server checks it."""

    preset: str
    address: str
    login: str
    typed_password: str = dataclasses.field(repr=False)  # what the person gives the CLI
    password: str = dataclasses.field(repr=False)  # what the server accepts


WP = ProviderAccount(
    preset="wp",
    address="jankowalski@wp.pl",
    login="jankowalski",
    typed_password="Konwalia369!",
    password="Konwalia369!",
)
ONET = ProviderAccount(
    preset="onet",
    address="annanowak@op.pl",
    login="annanowak@op.pl",
    typed_password="Pierwiosnek479%",
    password="Pierwiosnek479%",
)
# Google shows app passwords in groups of four; the server wants the 16 letters alone.
GMAIL = ProviderAccount(
    preset="gmail",
    address="jan.kowalski@gmail.com",
    login="jan.kowalski@gmail.com",
    typed_password="pvli anpr lvvr nrrn",
    password="pvlianprlvvrnrrn",
)
# The Google account's own password: right, but with 2-Step Verification on, not for SMTP.
GMAIL_ACCOUNT_PASSWORD = "Kowalski-Gmail-2024"

GMAIL_APP_PASSWORD_REQUIRED = (
    "534-5.7.9 Application-specific password required. Learn more at\n"
    "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor - gsmtp"
)
GMAIL_BAD_CREDENTIALS = (
    "535-5.7.8 Username and Password not accepted. For more information, go to\n"
    "535 5.7.8  https://support.google.com/mail/?p=BadCredentials - gsmtp"
)
GMAIL_DAILY_LIMIT = (
    "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\n"
    "550 5.4.5 sending limits go to https://support.google.com/a/answer/166852 - gsmtp"
)


@dataclasses.dataclass(frozen=True)
class _AccountsWithPasswordReplies(_Accounts):
    """The kit's accounts, plus a reply of its own for a given login and (wrong) password.

    The kit answers a login the same whatever the password; Google tells the account's
    normal password (``534 5.7.9``) from a wrong one (``535 5.7.8``). The server thread
    calls ``check`` as it calls the kit's.
    """

    password_replies: Mapping[tuple[str, str], str] = dataclasses.field(
        default_factory=dict, repr=False
    )

    def check(self, login: str, password: str) -> AuthResult:
        reply = self.password_replies.get((login, password))
        if reply is not None:
            return AuthResult(success=False, handled=False, message=reply)
        return super().check(login, password)


def _answer_password(server: SmtpTestServer, login: str, password: str, reply: str) -> None:
    """From now on ``server`` answers ``login`` with ``password`` by ``reply``."""
    accounts = server.accounts
    if accounts is None:
        raise ValueError("the server has no accounts")
    server.accounts = _AccountsWithPasswordReplies(
        passwords=accounts.passwords,
        failure_replies=accounts.failure_replies,
        bad_credentials_reply=accounts.bad_credentials_reply,
        password_replies={(login, password): normalise_reply(reply)},
    )


def gmail_daily_limit(server: SmtpTestServer, *, after: int, at: LimitStage = "DATA_END") -> None:
    """Refuse every message after the first ``after`` with Google's ``550 5.4.5``.

    At ``DATA_END`` the data is received and refused (nothing recorded); at ``MAIL`` the
    transaction is refused before any recipient.
    """

    def over_limit(_event: Event) -> bool:
        # Decided and recorded on the server's one thread, so no two messages race past.
        return len(server.messages) >= after

    server.script.on(at, reply=GMAIL_DAILY_LIMIT, match=over_limit)


class ProviderServers:
    """Starts provider-shaped servers through the kit's factories (stopped at teardown)."""

    def __init__(self, *, any_port: SmtpServerFactory, port_465: SmtpServerFactory) -> None:
        self._any_port = any_port
        self._port_465 = port_465

    def _start(self, tls: ProviderTls, **options: object) -> SmtpTestServer:
        if tls == "implicit":
            return self._port_465(tls="implicit", **options)
        return self._any_port(tls="starttls", **options)

    def wp(self, *, tls: ProviderTls = "implicit") -> SmtpTestServer:
        """Poczta WP: only the local part logs in; ``jankowalski@wp.pl`` gets ``535``."""
        return self._start(tls, accounts={WP.login: WP.password})

    def onet(self, *, tls: ProviderTls = "implicit") -> SmtpTestServer:
        """Onet Poczta: only the full address logs in; ``annanowak`` gets ``535``."""
        return self._start(tls, accounts={ONET.login: ONET.password})

    def gmail(
        self,
        *,
        tls: ProviderTls = "implicit",
        daily_limit: int | None = None,
        limit_at: LimitStage = "DATA_END",
    ) -> SmtpTestServer:
        """Gmail: the app password logs in, the account password gets ``534 5.7.9``."""
        server = self._start(
            tls,
            accounts={GMAIL.login: GMAIL.password},
            bad_credentials_reply=GMAIL_BAD_CREDENTIALS,
        )
        _answer_password(server, GMAIL.login, GMAIL_ACCOUNT_PASSWORD, GMAIL_APP_PASSWORD_REQUIRED)
        if daily_limit is not None:
            gmail_daily_limit(server, after=daily_limit, at=limit_at)
        return server


# Named apart from the fixture, so a test module can import it without shadowing it (F811).
@pytest.fixture(name="provider_servers")
def provider_servers_fixture(
    smtp_server_factory: SmtpServerFactory, port_465_server_factory: SmtpServerFactory
) -> ProviderServers:
    """Start servers that answer like WP, Onet and Gmail; all are stopped when the test ends."""
    return ProviderServers(any_port=smtp_server_factory, port_465=port_465_server_factory)
