"""``mailworker profiles check``: a login as the worker would make it, against real test servers.

The command runs in this process through CliRunner (plain ``def`` tests: each command runs
its own ``asyncio.run``); the SMTP test servers record every command they receive, so the
tests see that nothing was sent and, where it matters, that no password was offered.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import Mapping
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509

from tests.kit.delivery import add_profile
from tests.kit.smtp_fixtures import SMTP_LOGIN, SMTP_PASSWORD, SmtpServerFactory
from tests.kit.smtp_server import SmtpTestServer
from worker.cli import main
from worker.cli.exits import ExitCode
from worker.settings import Settings

pytestmark = pytest.mark.timeout(60)

WRONG_PASSWORD = "zle-haslo-123"
WP_AUTH_HINT = (
    "Check that access for mail programs is switched on in WP Poczta's settings, that the login"
    " is the part of the address before the @, and, with two-step login on, that an app"
    " password is used."
)
# aiosmtpd's default data_size_limit, announced as SIZE in its EHLO reply.
AIOSMTPD_SIZE = 33554432


def check(env: Mapping[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["profiles", "check", *args], env=dict(env))


def field(output: str, label: str) -> str:
    """The value of the ``  label: value`` line of the report."""
    match = re.search(rf"^  {re.escape(label)}:\s+(.*)$", output, re.MULTILINE)
    assert match is not None, f"no {label!r} line in:\n{output}"
    return match[1]


def verbs(server: SmtpTestServer) -> list[str]:
    return [command.verb for command in server.commands]


def served_certificate(server: SmtpTestServer) -> x509.Certificate:
    """The certificate an implicit-TLS server presents, fetched by the test itself."""
    pem = ssl.get_server_certificate((server.host, server.port))
    return x509.load_pem_x509_certificate(pem.encode())


def iso(certificate: x509.Certificate) -> str:
    return certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_implicit_tls_profile_works_and_shows_what_the_server_offers(
    settings: Settings, cli_env: dict[str, str], smtps_server: SmtpTestServer
) -> None:
    """Against implicit TLS: exit 0, the TLS version, the certificate's subject and expiry, the
    AUTH mechanisms and the SIZE limit; the server saw a login and QUIT, and no message."""
    asyncio.run(add_profile(settings, smtps_server, encryption="ssl"))
    certificate = served_certificate(smtps_server)

    result = check(cli_env, "test")

    assert ExitCode.OK == result.exit_code, result.output
    out = result.stdout
    server = f"{smtps_server.hostname}:{smtps_server.port}"
    assert out.startswith(f"profile 'test' works: {server} accepted the connection and the login")
    assert f"{server} (implicit TLS)" == field(out, "server")
    assert "TLSv1.3; STARTTLS used: no" == field(out, "TLS")
    assert f"{certificate.subject.rfc4514_string()} (verified)" == field(out, "certificate")
    assert field(out, "expires").startswith(f"{iso(certificate)} (in ")
    assert {"LOGIN", "PLAIN"} == set(field(out, "AUTH offered").split())
    assert field(out, "SIZE limit").startswith(f"{AIOSMTPD_SIZE} bytes")
    assert "neither PIPELINING nor CHUNKING: 4 round trips a message" == field(out, "sending")
    assert f"{SMTP_LOGIN} (accepted)" == field(out, "login")
    assert [True] == [attempt.success for attempt in smtps_server.auth_attempts]
    assert "QUIT" in verbs(smtps_server)
    assert not {"MAIL", "RCPT", "DATA"} & set(verbs(smtps_server))
    assert () == smtps_server.messages
    assert SMTP_PASSWORD not in result.output


def test_starttls_profile_works_and_says_starttls_was_used(
    settings: Settings, cli_env: dict[str, str], starttls_server: SmtpTestServer
) -> None:
    """Against a STARTTLS server with encryption auto: exit 0, STARTTLS used, the encrypted
    session's offer (certificate, AUTH, SIZE) as JSON; the login came after STARTTLS."""
    asyncio.run(add_profile(settings, starttls_server, encryption="auto"))

    result = check(cli_env, "test", "--json")

    assert ExitCode.OK == result.exit_code, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    offer = report["offer"]
    assert (True, None) == (report["works"], report["failure"])
    assert "STARTTLS, required" == report["encryption"]
    assert ("TLSv1.3", True) == (offer["tls_version"], offer["starttls_used"])
    assert offer["certificate"]["verified"] is True
    assert "localhost" in offer["certificate"]["names"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", offer["certificate"]["not_after"])
    assert {"LOGIN", "PLAIN"} == set(offer["auth_mechanisms"])
    assert AIOSMTPD_SIZE == offer["size_limit"]
    assert ["TLSv1.3"] == [attempt.tls_version for attempt in starttls_server.auth_attempts]
    assert verbs(starttls_server).index("STARTTLS") < verbs(starttls_server).index("AUTH")
    assert () == starttls_server.messages


# What the server offers (PIPELINING, CHUNKING) -> the round trips and the report's words.
ROUND_TRIPS = {
    (True, True): (1, "PIPELINING and CHUNKING: 1 round trip a message"),
    (True, False): (2, "PIPELINING: 2 round trips a message"),
    (False, True): (4, "CHUNKING: 4 round trips a message"),
}


@pytest.mark.parametrize("offered", list(ROUND_TRIPS), ids=str)
def test_the_check_says_how_many_round_trips_a_message_costs(
    settings: Settings,
    cli_env: dict[str, str],
    smtp_server_factory: SmtpServerFactory,
    offered: tuple[bool, bool],
) -> None:
    """What the server offers decides how the worker sends: one round trip a message with
    PIPELINING and CHUNKING, two with PIPELINING alone, four without PIPELINING (CHUNKING
    alone is not used: the message would still wait for each command's reply)."""
    pipelining, chunking = offered
    trips, sending = ROUND_TRIPS[offered]
    server = smtp_server_factory(tls="none", pipelining=pipelining, chunking=chunking)
    asyncio.run(add_profile(settings, server, encryption="none", login=None, password=None))

    text = check(cli_env, "test")
    as_json = check(cli_env, "test", "--json")

    assert ExitCode.OK == text.exit_code, text.output
    assert sending == field(text.stdout, "sending")
    assert trips == json.loads(as_json.stdout)["offer"]["round_trips"]


def test_the_round_trips_follow_the_workers_setting_too(
    settings: Settings, cli_env: dict[str, str], smtp_server_factory: SmtpServerFactory
) -> None:
    """With MAILWORKER_SMTP_PIPELINING=false the workers send the classic way whatever the
    server offers, and the check says so."""
    server = smtp_server_factory(tls="none", pipelining=True, chunking=True)
    asyncio.run(add_profile(settings, server, encryption="none", login=None, password=None))
    classic = {**cli_env, "MAILWORKER_SMTP_PIPELINING": "false"}

    text = check(classic, "test")
    as_json = check(classic, "test", "--json")

    assert ExitCode.OK == text.exit_code, text.output
    assert (
        "PIPELINING and CHUNKING: 4 round trips a message"
        " (the workers do not use them: MAILWORKER_SMTP_PIPELINING=false)"
    ) == field(text.stdout, "sending")
    assert 4 == json.loads(as_json.stdout)["offer"]["round_trips"]


def test_wrong_password_fails_at_auth_with_the_providers_hint(
    settings: Settings, cli_env: dict[str, str], smtps_server: SmtpTestServer
) -> None:
    """A refused login: exit 1, stage auth, the 535 reply and the wp preset's advice; one
    login attempt; neither the wrong nor the right password appears in the output."""
    asyncio.run(
        add_profile(settings, smtps_server, encryption="ssl", password=WRONG_PASSWORD, preset="wp")
    )

    result = check(cli_env, "test")

    assert ExitCode.NOT_OK == result.exit_code, result.output
    out = result.stdout
    assert out.startswith("profile 'test' does NOT work")
    assert "auth" == field(out, "stage")
    assert field(out, "reason").startswith("535 5.7.8")
    assert WP_AUTH_HINT == field(out, "hint")
    assert f"{SMTP_LOGIN} (refused by the server)" == field(out, "login")
    assert [False] == [attempt.success for attempt in smtps_server.auth_attempts]
    assert WRONG_PASSWORD not in result.output
    assert SMTP_PASSWORD not in result.output


def test_auto_without_starttls_refuses_to_send_the_password(
    settings: Settings, cli_env: dict[str, str], smtp_server_factory: SmtpServerFactory
) -> None:
    """encryption auto on a server that offers no STARTTLS: exit 1 at the TLS stage, saying the
    password is not sent unencrypted; the server recorded no AUTH command at all."""
    server = smtp_server_factory(tls="none", accounts={SMTP_LOGIN: SMTP_PASSWORD})
    asyncio.run(add_profile(settings, server, encryption="auto"))

    result = check(cli_env, "test")

    assert ExitCode.NOT_OK == result.exit_code, result.output
    out = result.stdout
    assert "tls" == field(out, "stage")
    assert field(out, "reason").endswith(
        "offers no STARTTLS; the password will not be sent over an unencrypted connection"
    )
    assert "use port 465 with encryption ssl, or a server that offers STARTTLS" == field(
        out, "hint"
    )
    assert f"{SMTP_LOGIN} (not tried)" == field(out, "login")
    assert () == server.auth_attempts
    assert "AUTH" not in verbs(server)
    assert SMTP_PASSWORD not in result.output


def test_certificate_is_shown_even_when_verification_is_off(
    settings: Settings, cli_env: dict[str, str], smtp_server_factory: SmtpServerFactory
) -> None:
    """With verify_tls off (a self-signed server) the certificate is still shown, marked as
    not verified: the check reads it in binary form, which is there even unverified."""
    server = smtp_server_factory(
        tls="implicit", certificate="self_signed", accounts={SMTP_LOGIN: SMTP_PASSWORD}
    )
    asyncio.run(add_profile(settings, server, encryption="ssl", verify_tls=False, ca_bundle=None))
    certificate = served_certificate(server)

    result = check(cli_env, "test")

    assert ExitCode.OK == result.exit_code, result.output
    expected = f"{certificate.subject.rfc4514_string()} (NOT verified: verify_tls is off)"
    assert expected == field(result.stdout, "certificate")
    assert certificate.subject.rfc4514_string() == field(result.stdout, "issuer")


def test_unknown_profile_is_a_usage_mistake(cli_env: dict[str, str]) -> None:
    """No such profile: exit 2 with the name, not the "does not work" code."""
    result = check(cli_env, "nie-ma")

    assert ExitCode.USAGE == result.exit_code, result.output
    assert "no profile is named 'nie-ma'" in result.output
