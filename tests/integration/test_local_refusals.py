"""What the worker refuses itself, before the server could: unsendable addresses, a bare password.

An address that no SMTP command can carry (a control character, a domain literal with '<')
fails its row on the first attempt, in words; it is not retried as passing trouble. A profile
that logs in over a connection that is not encrypted (``encryption = 'none'`` written with
SQL, on a server that offers AUTH in the clear) is paused before AUTH: the server records no
login, and ``profiles check`` says the same.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from click.testing import CliRunner

from tests.kit.database import sql
from tests.kit.delivery import (
    add_profile,
    attempts_of,
    enqueue,
    fast_settings,
    row,
    run_until_empty,
)
from tests.kit.smtp_fixtures import SMTP_LOGIN, SMTP_PASSWORD, SmtpServerFactory
from tests.kit.smtp_server import SmtpTestServer
from worker.cli import main
from worker.cli.exits import ExitCode
from worker.settings import Settings

UNSENDABLE = {
    "TAB in a quoted local part": (
        '"jan\tkowalski"@example.pl',
        "contains a control character",
    ),
    "'<' in a domain literal": (
        "jan@[192.0.2.<]",
        "is not valid: a domain literal may not contain",
    ),
    "unterminated domain literal": ("jan@[192.0.2.1", "is not valid: "),
}
REFUSAL = (
    "refusing to send the password of profile test over an unencrypted connection to"
    " {server} (encryption none)"
)
REFUSAL_HINT = "set the profile's encryption to ssl, starttls or auto"


def _auth_commands(server: SmtpTestServer) -> list[str]:
    return [command.verb for command in server.commands if command.verb == "AUTH"]


async def test_an_address_no_smtp_command_can_carry_fails_after_one_attempt(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """Rows inserted with SQL whose address aiosmtplib would refuse on the command line end
    ``failed`` after exactly one attempt, naming the address; the good row beside them is sent
    and the profile is not paused."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    bad = {
        case: (await enqueue(settings, to_addrs=["anna@example.com", address]))[0]
        for case, (address, _) in UNSENDABLE.items()
    }
    [good] = await enqueue(settings, to_addrs=["anna@example.com"])

    await run_until_empty(settings)

    outcomes = {}
    for case, message_id in bad.items():
        stored = await row(settings, message_id)
        attempts = await attempts_of(settings, message_id)
        outcomes[case] = (
            stored["status"],
            stored["attempts"],
            [attempt["outcome"] for attempt in attempts],
            stored["status_reason"][: len(_reason(case))],
        )
    expected = {case: ("failed", 1, ["failed"], _reason(case)) for case in UNSENDABLE}
    assert expected == outcomes
    assert "sent" == (await row(settings, good))["status"]
    assert [("anna@example.com",)] == [message.rcpt_tos for message in smtps_server.messages]
    [profile] = await sql(settings, "SELECT paused_until FROM mail.profile")
    assert profile.paused_until is None


def _reason(case: str) -> str:
    address, words = UNSENDABLE[case]
    return f"failed: To address {address!r} {words}"


async def _allow_a_password_without_tls(settings: Settings) -> None:
    """Drop the database's CHECK against a password without TLS, where the schema has one.

    That CHECK is the first guard; these tests are about the second, in the SMTP layer, for a
    row the CHECK does not cover (one written before it existed, or with it dropped).
    """
    names = await sql(
        settings,
        "SELECT conname FROM pg_constraint"
        " WHERE conrelid = 'mail.profile'::regclass AND contype = 'c'"
        " AND pg_get_constraintdef(oid) LIKE '%encryption%'"
        " AND pg_get_constraintdef(oid) ~ 'auth_method|password_encrypted|login'",
    )
    for (name,) in names:
        await sql(settings, f'ALTER TABLE mail.profile DROP CONSTRAINT "{name}"')


def _leaky_server(factory: SmtpServerFactory) -> SmtpTestServer:
    """No TLS at all, yet AUTH offered and the account's password accepted."""
    return factory(tls="none", accounts={SMTP_LOGIN: SMTP_PASSWORD}, offer_auth_without_tls=True)


@pytest.mark.parametrize("written", ["inserted", "changed"])
async def test_a_profile_without_encryption_never_sends_its_password(
    settings: Settings, smtp_server_factory: SmtpServerFactory, written: str
) -> None:
    """A profile with a login and ``encryption = 'none'`` (inserted so, or changed to it with
    SQL) against a server offering AUTH in the clear: no AUTH is sent, the message waits with
    its attempt not counted, and the profile is paused saying why and what to set."""
    settings = fast_settings(settings)
    server = _leaky_server(smtp_server_factory)
    await _allow_a_password_without_tls(settings)
    if written == "inserted":
        await add_profile(settings, server, encryption="none")
    else:
        await add_profile(settings, server, encryption="starttls")
        await sql(settings, "UPDATE mail.profile SET encryption = 'none' WHERE name = 'test'")
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    assert ([], (), ()) == (_auth_commands(server), server.auth_attempts, server.messages)
    stored = await row(settings, message_id)
    assert ("pending", 0) == (stored["status"], stored["attempts"])
    [profile] = await sql(
        settings, "SELECT paused_until, pause_reason, pause_hint FROM mail.profile"
    )
    expected = (True, REFUSAL.format(server=f"{server.hostname}:{server.port}"), REFUSAL_HINT)
    assert expected == (profile.paused_until is not None, profile.pause_reason, profile.pause_hint)


def test_profiles_check_refuses_to_log_in_without_encryption(
    settings: Settings, cli_env: dict[str, str], smtp_server_factory: SmtpServerFactory
) -> None:
    """``profiles check`` of the same profile: exit 1 at the auth stage with the same reason and
    hint, the login not tried; the server recorded no AUTH."""
    server = _leaky_server(smtp_server_factory)
    asyncio.run(_allow_a_password_without_tls(settings))
    asyncio.run(add_profile(settings, server, encryption="none"))

    result = CliRunner().invoke(main, ["profiles", "check", "test"], env=cli_env)

    assert ExitCode.NOT_OK == result.exit_code, result.output
    report = {label: _field(result.stdout, label) for label in ("stage", "reason", "hint", "login")}
    expected = {
        "stage": "auth",
        "reason": REFUSAL.format(server=f"{server.hostname}:{server.port}"),
        "hint": REFUSAL_HINT,
        "login": f"{SMTP_LOGIN} (not tried)",
    }
    assert expected == report
    assert ([], ()) == (_auth_commands(server), server.auth_attempts)


def _field(output: str, label: str) -> str | None:
    """The value of the report's ``  label: value`` line."""
    match = re.search(rf"^  {re.escape(label)}:\s+(.*)$", output, re.MULTILINE)
    return None if match is None else match[1]
