"""A certificate that does not check out, or a missing STARTTLS, stops a login before AUTH.

``test_delivery.py`` covers bad certificates over implicit TLS and ``auto`` on a server
without STARTTLS; ``test_profile_check.py`` covers ``profiles check`` for ``auto`` without
STARTTLS. These add the rest: bad certificates met during STARTTLS, ``starttls`` on a server
that does not offer it (also when it offers AUTH in the clear), and ``profiles check``
against each bad certificate. The servers record every AUTH: there must be none.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from click.testing import CliRunner

from tests.kit.database import sql
from tests.kit.delivery import add_profile, enqueue, fast_settings, row, run_until_empty
from tests.kit.smtp_fixtures import SMTP_LOGIN, SMTP_PASSWORD, SmtpServerFactory
from tests.kit.smtp_server import SmtpTestServer
from worker.cli import main
from worker.cli.exits import ExitCode
from worker.settings import Settings

# What OpenSSL says about each kind of certificate the test CA can hand out.
REFUSALS = {
    "self_signed": "self-signed certificate",
    "expired": "certificate has expired",
    "wrong_host": "Hostname mismatch, certificate is not valid for 'localhost'",
}
CERTIFICATE_HINT = "check the host name, or name the CA that signs the server's certificate"
NO_STARTTLS = "offers no STARTTLS; the password will not be sent over an unencrypted connection"


def _auth_commands(server: SmtpTestServer) -> list[str]:
    return [command.verb for command in server.commands if command.verb == "AUTH"]


@pytest.mark.parametrize("kind", list(REFUSALS))
async def test_a_bad_certificate_met_at_starttls_is_refused_in_words(
    settings: Settings, smtp_server_factory: SmtpServerFactory, kind: str
) -> None:
    """STARTTLS to a self-signed, expired or wrong-host certificate: no AUTH, a clear pause."""
    settings = fast_settings(settings)
    server = smtp_server_factory(
        tls="starttls", accounts={SMTP_LOGIN: SMTP_PASSWORD}, certificate=kind
    )
    await add_profile(settings, server, encryption="starttls")
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    assert ([], ()) == (_auth_commands(server), server.messages)
    stored = await row(settings, message_id)
    assert ("pending", 0) == (stored["status"], stored["attempts"])
    assert "TLS failed" in stored["status_reason"]
    assert REFUSALS[kind] in stored["status_reason"]
    [profile] = await sql(settings, "SELECT pause_reason, pause_hint FROM mail.profile")
    assert REFUSALS[kind] in profile.pause_reason
    assert CERTIFICATE_HINT == profile.pause_hint


@pytest.mark.parametrize("offer_auth", [False, True], ids=["no AUTH offered", "AUTH in clear"])
async def test_starttls_mode_never_sends_a_password_in_the_clear(
    settings: Settings, smtp_server_factory: SmtpServerFactory, offer_auth: bool
) -> None:
    """encryption starttls on a server without STARTTLS: nothing is sent, no AUTH at all."""
    settings = fast_settings(settings)
    server = smtp_server_factory(
        tls="none", accounts={SMTP_LOGIN: SMTP_PASSWORD}, offer_auth_without_tls=offer_auth
    )
    await add_profile(settings, server, encryption="starttls")
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    assert ([], (), ()) == (_auth_commands(server), server.auth_attempts, server.messages)
    stored = await row(settings, message_id)
    assert ("pending", 0) == (stored["status"], stored["attempts"])
    assert NO_STARTTLS in stored["status_reason"]


@pytest.mark.parametrize("kind", list(REFUSALS))
def test_profiles_check_refuses_a_bad_certificate_in_words(
    settings: Settings, cli_env: dict[str, str], smtp_server_factory: SmtpServerFactory, kind: str
) -> None:
    """``profiles check``: exit 1 at connect (implicit TLS shakes hands there), OpenSSL's
    reason; no AUTH."""
    server = smtp_server_factory(
        tls="implicit", accounts={SMTP_LOGIN: SMTP_PASSWORD}, certificate=kind
    )
    asyncio.run(add_profile(settings, server, encryption="ssl"))

    result = CliRunner().invoke(main, ["profiles", "check", "test"], env=cli_env)

    assert ExitCode.NOT_OK == result.exit_code, result.output
    stage = re.search(r"^  stage:\s+(.*)$", result.stdout, re.MULTILINE)
    reason = re.search(r"^  reason:\s+(.*)$", result.stdout, re.MULTILINE)
    assert stage is not None
    assert reason is not None, result.stdout
    assert "connect" == stage[1]
    assert reason[1].startswith("TLS failed: ")
    assert REFUSALS[kind] in reason[1]
    assert [] == _auth_commands(server)
