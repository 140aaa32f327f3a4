"""The guide's three example accounts, added with the real CLI, deliver its test e-mail.

The mail-settings guide fills in the account page for Poczta WP (port 587), Onet Poczta and
Gmail (port 465), each with encryption "Automatyczne", then sends "Wiadomość testowa 1" with
an attachment. Here each account gets a local test server with TLS and AUTH that accepts only
the guide's login and password, and a profile made by ``mailworker profiles add --preset``
that differs from the guide only where it must: the server's address (and WP's port, any port
but 465 meaning STARTTLS), the test CA to trust and a short timeout.

The guide test is a plain function: every CLI command runs its own ``asyncio.run``, so the
enqueue and the worker run through ``asyncio.run`` as well.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import structlog
from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.kit.delivery import (
    add_profile,
    attempts_of,
    enqueue,
    fast_settings,
    row,
    run_until_empty,
)
from tests.kit.outbox_samples import minimal_pdf
from tests.kit.smtp_fixtures import IMPLICIT_TLS_PORT, SMTP_LOGIN, SMTP_PASSWORD, SmtpServerFactory
from tests.kit.smtp_server import ACCEPTED_REPLY, ReceivedMessage, SmtpTestCA, SmtpTestServer
from worker.cli import main
from worker.settings import Settings

DISPLAY_NAME = "Comarch DMS - powiadomienia"
DESCRIPTION = "Konto do wysyłania powiadomień Comarch DMS"
SUBJECT = "Wiadomość testowa 1"
BODY = "Wiadomość testowa - treść"
ATTACHMENT = "Faktura zakupu FZ4 23.pdf"
TLS_VERSIONS = frozenset({"TLSv1.2", "TLSv1.3"})
# Not a field of the guide's page; short, so a server that never answers fails the test soon.
TIMEOUT_SECONDS = 5


@dataclasses.dataclass(frozen=True)
class GuideAccount:
    """One example account of the guide, and the password its provider's server expects."""

    name: str
    preset: str
    address: str
    port: int  # as in the guide; 587 stands for "not 465", so its test server takes any port
    login: str
    typed_password: str
    server_password: str  # Gmail shows app passwords in groups, but wants them without spaces


WP = GuideAccount(
    name="comarch-dms-wp",
    preset="wp",
    address="jankowalski@wp.pl",
    port=587,
    login="jankowalski",
    typed_password="Konwalia369!",
    server_password="Konwalia369!",
)
ONET = GuideAccount(
    name="comarch-dms-onet",
    preset="onet",
    address="annanowak@op.pl",
    port=IMPLICIT_TLS_PORT,
    login="annanowak@op.pl",
    typed_password="Pierwiosnek479%",
    server_password="Pierwiosnek479%",
)
GMAIL = GuideAccount(
    name="comarch-dms-gmail",
    preset="gmail",
    address="jan.kowalski@gmail.com",
    port=IMPLICIT_TLS_PORT,
    login="jan.kowalski@gmail.com",
    typed_password="pvli anpr lvvr nrrn",
    server_password="pvlianprlvvrnrrn",
)
GUIDE_ACCOUNTS = (WP, ONET, GMAIL)

# The guide's test e-mail, enqueued as a producer service would: the message and its
# attachment in one statement, so one transaction.
TEST_EMAIL_WITH_PDF = text(
    """
    WITH m AS (
        INSERT INTO mail.outbox (profile, to_addrs, subject, body_text)
        VALUES (:profile, ARRAY[:to], :subject, :body)
        RETURNING id
    )
    INSERT INTO mail.attachment (outbox_id, filename, content_type, content)
    SELECT id, :filename, 'application/pdf', :pdf FROM m
    RETURNING outbox_id
    """
)


def _mailworker(env: dict[str, str], *args: str, **extra_env: str) -> Result:
    """Run a ``mailworker`` command; it must succeed.

    A command points logging at the runner's stderr, which is gone once the command ends; the
    test's logging is put back, so the worker that runs next logs where pytest captures it.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(main, list(args), env={**env, **extra_env})
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()
    assert 0 == result.exit_code, result.output
    return result


def _add_guide_profile(
    env: dict[str, str], account: GuideAccount, server: SmtpTestServer, ca: SmtpTestCA
) -> None:
    """The account as the guide fills it in; only host (and WP's port) lead to the test server."""
    _mailworker(
        env,
        *["profiles", "add", account.name, "--preset", account.preset],
        *["--from", account.address, "--display-name", DISPLAY_NAME],
        *["--reply-to", account.address, "--description", DESCRIPTION],
        *["--host", server.hostname, "--port", str(server.port), "--encryption", "auto"],
        *["--auth", "login", "--login", account.login, "--password-env", "GUIDE_PASSWORD"],
        *["--ca-bundle", ca.cert_bundle, "--timeout", str(TIMEOUT_SECONDS)],
        GUIDE_PASSWORD=account.typed_password,
    )


def _server_for(
    account: GuideAccount,
    smtp_server_factory: SmtpServerFactory,
    port_465_server_factory: SmtpServerFactory,
) -> SmtpTestServer:
    """Implicit TLS on port 465, STARTTLS required elsewhere; AUTH as the guide's login only."""
    accounts = {account.login: account.server_password}
    if account.port == IMPLICIT_TLS_PORT:
        return port_465_server_factory(tls="implicit", accounts=accounts)
    return smtp_server_factory(tls="starttls", accounts=accounts)


async def _enqueue_test_emails(settings: Settings, pdf: bytes) -> dict[str, int]:
    """The guide's test e-mail through each account, to the account's own address."""
    assert settings.database_url is not None
    engine = create_async_engine(settings.database_url.get_secret_value())
    ids = {}
    try:
        for account in GUIDE_ACCOUNTS:
            async with engine.begin() as connection:
                result = await connection.execute(
                    TEST_EMAIL_WITH_PDF,
                    {
                        "profile": account.name,
                        "to": account.address,
                        "subject": SUBJECT,
                        "body": BODY,
                        "filename": ATTACHMENT,
                        "pdf": pdf,
                    },
                )
                ids[account.name] = result.scalar_one()
    finally:
        await engine.dispose()
    return ids


def _what_arrived(server: SmtpTestServer) -> list[dict[str, Any]]:
    """Each message a server received, and how the client got there, as comparable values."""
    return [_arrival(server, received) for received in server.messages]


def _arrival(server: SmtpTestServer, received: ReceivedMessage) -> dict[str, Any]:
    parsed = received.parsed()
    body = parsed.get_body(preferencelist=("plain",))
    return {
        "envelope": (received.mail_from, received.rcpt_tos),
        "From": str(parsed["From"]),
        "Reply-To": str(parsed["Reply-To"]),
        "Subject": str(parsed["Subject"]),
        "body": None if body is None else body.get_content().strip(),
        "attachments": [
            (attachment.get_filename(), attachment.get_content_type(), attachment.get_content())
            for attachment in parsed.iter_attachments()
        ],
        "logged in as": received.login,
        "message over TLS": received.tls_version in TLS_VERSIONS,
        "logins": [
            (a.login, a.success, a.tls_version in TLS_VERSIONS) for a in server.auth_attempts
        ],
        "STARTTLS used": "STARTTLS" in [command.verb for command in server.commands],
    }


def _expected_arrivals(account: GuideAccount, pdf: bytes) -> list[dict[str, Any]]:
    return [_expected_arrival(account, pdf)]


def _expected_arrival(account: GuideAccount, pdf: bytes) -> dict[str, Any]:
    return {
        "envelope": (account.address, (account.address,)),
        "From": f"{DISPLAY_NAME} <{account.address}>",
        "Reply-To": account.address,
        "Subject": SUBJECT,
        "body": BODY,
        "attachments": [(ATTACHMENT, "application/pdf", pdf)],
        "logged in as": account.login,
        "message over TLS": True,
        "logins": [(account.login, True, True)],
        # auto: implicit TLS on port 465, STARTTLS on any other port
        "STARTTLS used": account.port != IMPLICIT_TLS_PORT,
    }


async def _outcomes(settings: Settings, ids: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Each message's row, and whether each of its attempts records a TLS version."""
    outcomes = {}
    for name, message_id in ids.items():
        stored = await row(settings, message_id)
        history = await attempts_of(settings, message_id)
        outcomes[name] = {
            "status": stored["status"],
            "status_reason": stored["status_reason"],
            "smtp_response": stored["smtp_response"],
            "attempts": [(a["outcome"], a["tls_version"] in TLS_VERSIONS) for a in history],
        }
    return outcomes


def test_the_guide_examples_deliver_the_test_email(
    cli_env: dict[str, str],
    settings: Settings,
    smtp_ca: SmtpTestCA,
    smtp_server_factory: SmtpServerFactory,
    port_465_server_factory: SmtpServerFactory,
) -> None:
    """WP (587, STARTTLS), Onet and Gmail (465, implicit TLS), set up as the guide says with
    encryption auto, each deliver the Polish test e-mail with a byte-exact PDF: the right
    From, Reply-To and subject arrive, the server saw the guide's login over TLS (Gmail's app
    password without its spaces), and each row is 'sent' with the server's reply."""
    servers = {
        account.name: _server_for(account, smtp_server_factory, port_465_server_factory)
        for account in GUIDE_ACCOUNTS
    }
    for account in GUIDE_ACCOUNTS:
        _add_guide_profile(cli_env, account, servers[account.name], smtp_ca)
    pdf = minimal_pdf()
    ids = asyncio.run(_enqueue_test_emails(settings, pdf))

    # One attempt each: a failure shows in the rows at once, with its reason.
    asyncio.run(run_until_empty(fast_settings(settings, max_attempts=1), limit=30))

    sent = {
        "status": "sent",
        "status_reason": "sent",
        "smtp_response": ACCEPTED_REPLY,
        "attempts": [("sent", True)],  # one attempt, which records the TLS version
    }
    outcomes = asyncio.run(_outcomes(settings, ids))
    assert {account.name: sent for account in GUIDE_ACCOUNTS} == outcomes
    assert {account.name: _expected_arrivals(account, pdf) for account in GUIDE_ACCOUNTS} == {
        name: _what_arrived(server) for name, server in servers.items()
    }


async def test_auto_on_port_465_is_implicit_tls(
    settings: Settings, port_465_server_factory: SmtpServerFactory
) -> None:
    """encryption=auto on port 465 speaks TLS from the first byte: an SMTPS server, which
    would never answer a plain-text greeting, gets the message and the login over TLS."""
    server = port_465_server_factory(tls="implicit", accounts={SMTP_LOGIN: SMTP_PASSWORD})
    settings = fast_settings(settings, max_attempts=1)
    await add_profile(settings, server, encryption="auto", timeout_seconds=TIMEOUT_SECONDS)
    [message_id] = await enqueue(settings)

    await run_until_empty(settings, limit=30)

    stored = await row(settings, message_id)
    assert ("sent", "sent") == (stored["status"], stored["status_reason"])
    assert [(SMTP_LOGIN, True)] == [
        (received.login, received.tls_version in TLS_VERSIONS) for received in server.messages
    ]
    assert [] == [command for command in server.commands if command.verb == "STARTTLS"]
    [attempt] = await attempts_of(settings, message_id)
    assert server.messages[0].tls_version == attempt["tls_version"]
