"""OAuth 2.0 profiles with worker processes: several workers share one token, send-test and
profiles check tell the truth for an OAuth profile, a headless consent, a token expiring
while a worker runs, and a CA file that REQUESTS_CA_BUNDLE cannot override."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner, Result

from tests.kit.commands import cli, ok
from tests.kit.delivery import enqueue, fast_settings
from tests.kit.oauth_profiles import refreshes, server_options
from tests.kit.oauth_server import OAuthTestServer
from tests.kit.processes import WorkerProcesses
from tests.kit.smtp_fixtures import SmtpServerFactory
from tests.kit.smtp_server import SmtpTestServer
from worker.cli import main
from worker.cli.exits import ExitCode
from worker.settings import Settings

pytestmark = pytest.mark.timeout(90)

MAILBOX = "anna@contoso.com"
CLIENT_ID = "5f1c0c4e-2f4b-4b1e-9d57-0a0b9f0e8c11"


def _authorised(env: dict[str, str], server: SmtpTestServer, oauth: OAuthTestServer) -> None:
    """Profile ``biuro`` signed in by its person with the device code."""
    oauth.register_public_client(CLIENT_ID)
    ok(
        env,
        *["profiles", "add", "biuro", "--from", MAILBOX, *server_options(server)],
        *["--auth", "oauth2", "--oauth-provider", "microsoft", "--oauth-client-id", CLIENT_ID],
        *["--oauth-authority", oauth.base_url, "--oauth-tenant", "organizations"],
    )
    with _mailworker(env, "profiles", "authorize", "biuro") as authorizing:
        code = oauth.wait_for_device_code(timeout=20)
        oauth.approve_device_code(code, user=MAILBOX)
        _output, errors = authorizing.communicate(timeout=40)
    assert 0 == authorizing.returncode, errors


def _mailworker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    command = str(Path(sys.executable).with_name("mailworker"))
    return subprocess.Popen(
        [command, *args],
        env={**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _send_test(env: dict[str, str]) -> Result:
    return CliRunner().invoke(
        main, ["send-test", "--profile", "biuro", "--to", "odbiorca@example.com"], env=env
    )


def test_three_worker_processes_share_one_renewed_token_and_send_test_is_delivered(
    cli_env: dict[str, str],
    settings: Settings,
    microsoft_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
    workers: WorkerProcesses,
) -> None:
    """The token lapses while three workers wait with 30 messages: one renewal across the
    processes, every message sent once, and send-test reports DELIVERED for the profile."""
    oauth_server.access_token_lifetime = 3
    _authorised(cli_env, microsoft_smtp, oauth_server)
    time.sleep(3.1)  # the stored token has expired
    asyncio.run(enqueue(settings, count=30, profile="biuro"))

    for name in ("a", "b", "c"):
        workers.start(name)
    microsoft_smtp.wait_for_messages(30, timeout=60)
    result = _send_test(cli_env)

    assert ExitCode.OK == result.exit_code, result.output + workers.report()
    assert result.stdout.startswith("DELIVERED"), result.stdout
    assert 31 == len(microsoft_smtp.messages)
    assert 1 == refreshes(oauth_server), workers.report()


def test_a_revoked_profile_is_not_delivered_and_says_authorise_again(
    cli_env: dict[str, str],
    microsoft_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
    workers: WorkerProcesses,
) -> None:
    """send-test of a profile whose consent was revoked: not delivered, the profile paused,
    and the hint is the command that fixes it; profiles check says the same."""
    _authorised(cli_env, microsoft_smtp, oauth_server)
    oauth_server.revoke(MAILBOX)
    worker = workers.start("a")
    asyncio.run(worker.wait_logged("worker_started"))

    result = _send_test(cli_env)
    check = cli(cli_env, "profiles", "check", "biuro")

    assert ExitCode.NOT_OK == result.exit_code, result.output + workers.report()
    assert "authorise again: mailworker profiles authorize biuro" in result.output
    assert ExitCode.NOT_OK == check.exit_code, check.output
    assert "authorise again: mailworker profiles authorize biuro" in check.output
    assert () == microsoft_smtp.messages


def test_profiles_check_signs_in_with_the_token_a_worker_would_use(
    cli_env: dict[str, str], microsoft_smtp: SmtpTestServer, oauth_server: OAuthTestServer
) -> None:
    """An authorised profile checks out: XOAUTH2 over TLS, accepted, nothing sent."""
    _authorised(cli_env, microsoft_smtp, oauth_server)

    check = ok(cli_env, "profiles", "check", "biuro")

    assert ["XOAUTH2"] == [attempt.mechanism for attempt in microsoft_smtp.auth_attempts]
    assert [True] == [attempt.success for attempt in microsoft_smtp.auth_attempts]
    assert () == microsoft_smtp.messages
    assert "biuro" in check.stdout


def test_a_headless_google_consent_takes_the_pasted_address(
    cli_env: dict[str, str],
    smtp_server_factory: SmtpServerFactory,
    oauth_server: OAuthTestServer,
) -> None:
    """--no-browser: the command prints the consent page; the person opens it elsewhere and
    pastes the address the browser was sent to (where nothing listens); the code in it
    authorises the profile."""
    google = smtp_server_factory(tls="implicit", oauth=oauth_server, oauth_style="google")
    oauth_server.register_google_client("1234.apps.googleusercontent.com", "GOCSPX-sekret-77")
    oauth_server.sign_in_as("jan.kowalski@gmail.com")
    ok(
        cli_env,
        *["profiles", "add", "gmail", "--from", "jan.kowalski@gmail.com"],
        *server_options(google),
        *["--auth", "oauth2", "--oauth-provider", "google"],
        *["--oauth-client-id", "1234.apps.googleusercontent.com"],
        *["--oauth-client-secret-env", "GOOGLE_SECRET"],
        *["--oauth-token-url", oauth_server.google_token_url],
        *["--oauth-auth-url", oauth_server.google_auth_url],
        GOOGLE_SECRET="GOCSPX-sekret-77",
    )

    with _mailworker(cli_env, "profiles", "authorize", "gmail", "--no-browser") as authorizing:
        assert authorizing.stdout is not None
        url = next(line.strip() for line in authorizing.stdout if line.startswith("https://"))
        consent = requests.get(
            url, verify=oauth_server.ca_bundle, allow_redirects=False, timeout=10
        )
        output, errors = authorizing.communicate(consent.headers["Location"] + "\n", timeout=40)

    assert 0 == authorizing.returncode, errors
    assert "authorised profile 'gmail' as jan.kowalski@gmail.com" in output
    assert ExitCode.OK == cli(cli_env, "profiles", "check", "gmail").exit_code


def test_a_token_expiring_while_the_worker_runs_is_renewed_before_the_next_send(
    cli_env: dict[str, str],
    settings: Settings,
    microsoft_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
    workers: WorkerProcesses,
) -> None:
    """One worker, running all along: a message now, another after the token lapsed and the
    server closed the idle connection (as Exchange does). The new connection logs in with a
    token renewed once. (A slow start may renew the first token too: the renewals are counted
    from the first message on.)"""
    oauth_server.access_token_lifetime = 2
    _authorised(cli_env, microsoft_smtp, oauth_server)
    microsoft_smtp.script.on("NOOP", reply="421 4.4.2 Connection dropped due to idle timeout")
    worker = workers.start("a", env={"MAILWORKER_IDLE_CHECK_AFTER": "0.5"})
    asyncio.run(worker.wait_logged("worker_started"))
    fast = fast_settings(settings)

    asyncio.run(enqueue(fast, profile="biuro", subject="pierwsza"))
    microsoft_smtp.wait_for_messages(1, timeout=20)
    renewed_before = refreshes(oauth_server)
    time.sleep(2.5)
    asyncio.run(enqueue(fast, profile="biuro", subject="druga"))
    microsoft_smtp.wait_for_messages(2, timeout=20)

    assert renewed_before + 1 == refreshes(oauth_server), workers.report()
    assert worker.logged("oauth_token_renewed")
    assert 2 == microsoft_smtp.connection_count


def test_the_profiles_ca_file_wins_over_requests_ca_bundle(
    cli_env: dict[str, str],
    settings: Settings,
    microsoft_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With REQUESTS_CA_BUNDLE pointing at the system's CAs (as many hosts set it), the
    profile's --ca-bundle still verifies the token endpoint: the sign-in works."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")

    _authorised(cli_env, microsoft_smtp, oauth_server)

    assert f"by {MAILBOX} at" in cli(cli_env, "profiles", "show", "biuro").output
