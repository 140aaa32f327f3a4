"""OAuth 2.0 profiles end to end: authorise with the CLI, then the worker sends with XOAUTH2.

A real authorisation server (tests/kit/oauth_server.py, HTTPS) and a real SMTP server that
takes only a valid, unexpired token of the right user; the worker and the CLI run in this
process against this test's database. Covered: each flow, a token expiring between sends,
a rotated refresh token surviving a restart, a revoked sign-in (pause, hint, authorise
again, the waiting messages go), two workers making one refresh, and the token endpoint
down for a while.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import requests
from click.testing import Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from tests.kit.commands import cli, ok
from tests.kit.database import run_sql, sql
from tests.kit.delivery import attempts_of, enqueue, fast_settings, row, run_until_empty
from tests.kit.live_worker import http_get, parse_metrics, running_worker
from tests.kit.oauth_profiles import refreshes, server_options
from tests.kit.oauth_server import OAuthTestServer
from tests.kit.roles import Roles
from tests.kit.smtp_server import SmtpTestServer
from worker.crypto import load_cipher
from worker.settings import Settings

pytestmark = pytest.mark.timeout(90)

MAILBOX = "anna@contoso.com"
CLIENT_ID = "5f1c0c4e-2f4b-4b1e-9d57-0a0b9f0e8c11"
TENANT = "contoso.onmicrosoft.com"


def _add_microsoft(
    env: dict[str, str],
    server: SmtpTestServer,
    oauth: OAuthTestServer,
    *options: str,
    name: str = "biuro",
    **extra_env: str,
) -> None:
    ok(
        env,
        *["profiles", "add", name, "--from", MAILBOX, *server_options(server)],
        *["--auth", "oauth2", "--oauth-provider", "microsoft", "--oauth-client-id", CLIENT_ID],
        *["--oauth-authority", oauth.base_url, *options],
        **extra_env,
    )


def _authorize_with_device_code(
    env: dict[str, str], oauth: OAuthTestServer, *, user: str = MAILBOX, name: str = "biuro"
) -> Result:
    """`profiles authorize` waits for the sign-in while the person enters the code."""
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(cli, env, "profiles", "authorize", name)
        code = oauth.wait_for_device_code(timeout=20)
        oauth.approve_device_code(code, user=user)
        result = waiting.result(timeout=30)
    assert 0 == result.exit_code, result.output
    assert code in result.output  # the code the person is told to enter
    return result


def _signed_in_microsoft(
    env: dict[str, str], server: SmtpTestServer, oauth: OAuthTestServer, name: str = "biuro"
) -> None:
    oauth.register_public_client(CLIENT_ID)
    _add_microsoft(env, server, oauth, "--oauth-tenant", "organizations", name=name)
    _authorize_with_device_code(env, oauth, name=name)


def _profile(database_url: str) -> tuple[object, ...]:
    [profile] = run_sql(
        database_url,
        "SELECT paused_until IS NOT NULL, pause_reason, pause_hint FROM mail.profile",
    )
    return tuple(profile)


# --- each flow: authorise, then send ------------------------------------------------------------


def test_device_code_sign_in_then_the_worker_sends_with_xoauth2(
    cli_env: dict[str, str],
    settings: Settings,
    microsoft_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
) -> None:
    """Microsoft, a person's mailbox: the code is printed, the person signs in, the message
    goes out logged in as the mailbox with XOAUTH2; show says who authorised it."""
    _signed_in_microsoft(cli_env, microsoft_smtp, oauth_server)
    [message] = asyncio.run(enqueue(settings, profile="biuro"))

    asyncio.run(run_until_empty(fast_settings(settings)))

    assert "sent" == asyncio.run(row(settings, message))["status"]
    [received] = microsoft_smtp.messages
    assert MAILBOX == received.login
    assert ["XOAUTH2"] == [attempt.mechanism for attempt in microsoft_smtp.auth_attempts]
    shown = ok(cli_env, "profiles", "show", "biuro").stdout
    assert f"by {MAILBOX} at" in shown
    assert "https://outlook.office.com/SMTP.Send" in shown
    status = ok(cli_env, "status").stdout
    assert f"biuro: OAuth 2.0 as {MAILBOX}, authorised" in status


@pytest.mark.parametrize("credential", ["secret", "certificate"])
def test_app_only_sign_in_sends_as_the_mailbox_without_a_person(  # noqa: PLR0917 - pytest passes fixtures positionally
    cli_env: dict[str, str],
    settings: Settings,
    microsoft_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
    tmp_path: Path,
    credential: str,
) -> None:
    """Client credentials with a secret or a certificate: authorize only checks the app
    gets a token; the worker sends as the mailbox the app may use."""
    options = ["--oauth-tenant", TENANT]
    secret = "Sekret~aplikacji~Entra~9"
    if credential == "secret":
        oauth_server.register_confidential_client(CLIENT_ID, secret=secret, mailboxes=[MAILBOX])
        options += ["--oauth-client-secret-env", "APP_SECRET"]
    else:
        pem, certificate = _key_and_certificate()
        oauth_server.register_confidential_client(
            CLIENT_ID, certificate_pem=certificate, mailboxes=[MAILBOX]
        )
        (tmp_path / "app.pem").write_bytes(pem)
        options += ["--oauth-certificate", str(tmp_path / "app.pem")]
    _add_microsoft(cli_env, microsoft_smtp, oauth_server, *options, APP_SECRET=secret)
    assert "client_credentials" in ok(cli_env, "profiles", "show", "biuro").stdout

    ok(cli_env, "profiles", "authorize", "biuro")
    asyncio.run(enqueue(settings, profile="biuro"))
    asyncio.run(run_until_empty(fast_settings(settings)))

    assert [MAILBOX] == [message.login for message in microsoft_smtp.messages]


def test_google_consent_comes_back_to_the_loopback_and_the_worker_sends(
    cli_env: dict[str, str],
    settings: Settings,
    google_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
) -> None:
    """Google, a person's account: authorize prints the consent page and listens on
    127.0.0.1; the browser (here: requests) comes back with the code; Gmail takes the token."""
    oauth_server.register_google_client("1234.apps.googleusercontent.com", "GOCSPX-sekret-77")
    oauth_server.sign_in_as("jan.kowalski@gmail.com")
    ok(
        cli_env,
        *[
            "profiles",
            "add",
            "gmail",
            "--from",
            "jan.kowalski@gmail.com",
            *server_options(google_smtp),
        ],
        *["--auth", "oauth2", "--oauth-provider", "google"],
        *["--oauth-client-id", "1234.apps.googleusercontent.com"],
        *["--oauth-client-secret-env", "GOOGLE_SECRET"],
        *["--oauth-token-url", oauth_server.google_token_url],
        *["--oauth-auth-url", oauth_server.google_auth_url],
        GOOGLE_SECRET="GOCSPX-sekret-77",
    )
    # A process of its own: the test reads the consent page's address while it waits.
    command = [str(Path(sys.executable).with_name("mailworker")), "profiles", "authorize"]
    with subprocess.Popen(
        [*command, "gmail", "--wait", "30"],
        env={**os.environ, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as authorizing:
        assert authorizing.stdout is not None
        url = next(line.strip() for line in authorizing.stdout if line.startswith("https://"))
        _browse_consent(oauth_server, url)
        output, errors = authorizing.communicate(timeout=40)
    assert 0 == authorizing.returncode, errors
    assert "authorised profile 'gmail' as jan.kowalski@gmail.com" in output

    asyncio.run(enqueue(settings, profile="gmail"))
    asyncio.run(run_until_empty(fast_settings(settings)))

    assert ["jan.kowalski@gmail.com"] == [message.login for message in google_smtp.messages]


def test_a_workspace_service_account_sends_for_its_delegated_mailbox(
    cli_env: dict[str, str],
    settings: Settings,
    google_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
    tmp_path: Path,
) -> None:
    """Domain-wide delegation: the key file is given once and stored encrypted; the worker
    gets tokens for the mailbox with the JWT bearer grant."""
    key = oauth_server.register_service_account(
        "mailer@projekt.iam.gserviceaccount.test", delegated_mailboxes=["biuro@firma.pl"]
    )
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(key), encoding="utf-8")
    ok(
        cli_env,
        *["profiles", "add", "firma", "--from", "biuro@firma.pl", *server_options(google_smtp)],
        *["--auth", "oauth2", "--oauth-provider", "google"],
        *["--oauth-service-account-key", str(key_file)],
        *["--oauth-token-url", oauth_server.google_token_url],
    )
    key_file.unlink()  # stored encrypted: the file is no longer needed

    ok(cli_env, "profiles", "authorize", "firma")
    asyncio.run(enqueue(settings, profile="firma"))
    asyncio.run(run_until_empty(fast_settings(settings)))

    assert ["biuro@firma.pl"] == [message.login for message in google_smtp.messages]


def test_a_token_gmail_refuses_is_renewed_once_and_the_message_goes(
    cli_env: dict[str, str],
    settings: Settings,
    google_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
    tmp_path: Path,
) -> None:
    """The stored token still looks fresh, but Gmail refuses it (334 with its JSON error,
    then 535): the worker gets a new one once, logs in with it, and the message goes; no
    attempt is spent and the profile does not pause."""
    key = oauth_server.register_service_account(
        "mailer@projekt.iam.gserviceaccount.test", delegated_mailboxes=["biuro@firma.pl"]
    )
    (tmp_path / "key.json").write_text(json.dumps(key), encoding="utf-8")
    ok(
        cli_env,
        *["profiles", "add", "firma", "--from", "biuro@firma.pl", *server_options(google_smtp)],
        *["--auth", "oauth2", "--oauth-provider", "google"],
        *["--oauth-service-account-key", str(tmp_path / "key.json")],
        *["--oauth-token-url", oauth_server.google_token_url],
    )
    ok(cli_env, "profiles", "authorize", "firma")
    oauth_server.revoke("biuro@firma.pl")  # the stored token dies; a new one will work
    [message] = asyncio.run(enqueue(settings, profile="firma"))

    asyncio.run(run_until_empty(fast_settings(settings)))

    stored = asyncio.run(row(settings, message))
    assert ("sent", 1) == (stored["status"], stored["attempts"])
    assert [False, True] == [attempt.success for attempt in google_smtp.auth_attempts]
    [(paused,)] = run_sql(
        settings_url(settings), "SELECT paused_until IS NOT NULL FROM mail.profile"
    )
    assert paused is False


# --- the worker keeps the sign-in alive -----------------------------------------------------------


def test_an_expired_token_is_renewed_and_the_rotated_refresh_token_survives_a_restart(
    cli_env: dict[str, str],
    settings: Settings,
    microsoft_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
) -> None:
    """Short-lived tokens and strict rotation: each run after an expiry renews the token
    with the refresh token the previous run stored; an old refresh token would be refused."""
    oauth_server.access_token_lifetime = 2
    oauth_server.rotate_refresh_tokens = True
    _signed_in_microsoft(cli_env, microsoft_smtp, oauth_server)
    fast = fast_settings(settings)

    for run in range(3):  # each run is a worker started afresh
        time.sleep(2.1)  # the token stored by the previous step has expired
        asyncio.run(enqueue(fast, profile="biuro", subject=f"run {run}"))
        asyncio.run(run_until_empty(fast))

    assert 3 == len(microsoft_smtp.messages)
    assert 3 == refreshes(oauth_server)
    [(count,)] = run_sql(settings_url(settings), "SELECT refresh_count FROM mail.oauth_grant")
    assert 3 == count


def test_two_workers_make_one_refresh(
    cli_env: dict[str, str],
    settings: Settings,
    microsoft_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
) -> None:
    """Both workers find the stored token expired; one renews it while holding the grant,
    the other waits and takes the new one: one request to the token endpoint, not two."""
    oauth_server.access_token_lifetime = 3
    _signed_in_microsoft(cli_env, microsoft_smtp, oauth_server)
    asyncio.run(enqueue(settings, count=20, profile="biuro"))
    time.sleep(3.1)

    async def two_workers() -> None:
        await asyncio.gather(
            run_until_empty(fast_settings(settings, worker_name="w1")),
            run_until_empty(fast_settings(settings, worker_name="w2")),
        )

    asyncio.run(two_workers())

    assert 20 == len(microsoft_smtp.messages)
    assert 1 == refreshes(oauth_server)


def test_a_revoked_sign_in_pauses_with_the_hint_and_authorising_again_sends_the_rest(
    cli_env: dict[str, str],
    settings: Settings,
    microsoft_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
) -> None:
    """Consent revoked: the SMTP server refuses the token, the renewal is refused too, so the
    profile pauses with "authorise again" and the message keeps its attempts; a new sign-in
    ends the pause and the message goes at once."""
    _signed_in_microsoft(cli_env, microsoft_smtp, oauth_server)
    oauth_server.revoke(MAILBOX)
    [message] = asyncio.run(enqueue(settings, profile="biuro"))
    fast = fast_settings(settings)

    asyncio.run(run_until_empty(fast))

    paused, reason, hint = _profile(settings_url(settings))
    assert (True, "pending") == (paused, asyncio.run(row(settings, message))["status"])
    assert "the OAuth 2.0 sign-in was refused" in str(reason)
    assert "authorise again: mailworker profiles authorize biuro" in str(hint)
    assert 0 == asyncio.run(row(settings, message))["attempts"]
    assert () == microsoft_smtp.messages

    _authorize_with_device_code(cli_env, oauth_server)
    asyncio.run(run_until_empty(fast))

    assert "sent" == asyncio.run(row(settings, message))["status"]
    assert (False, None, None) == _profile(settings_url(settings))


def test_the_token_endpoint_down_pauses_without_spending_attempts(
    cli_env: dict[str, str],
    settings: Settings,
    microsoft_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
) -> None:
    """The provider answers 503 when the token must be renewed: passing trouble. The profile
    pauses briefly (no attempt spent); once the provider is back the message goes."""
    oauth_server.access_token_lifetime = 2
    _signed_in_microsoft(cli_env, microsoft_smtp, oauth_server)
    time.sleep(2.1)
    oauth_server.outage("503")
    [message] = asyncio.run(enqueue(settings, profile="biuro"))
    fast = fast_settings(settings, pause_base=0.5, pause_cap=1.0)

    asyncio.run(run_until_empty(fast))

    paused, reason, _hint = _profile(settings_url(settings))
    assert paused is True
    assert "cannot reach the provider's sign-in service" in str(reason)
    assert 0 == asyncio.run(row(settings, message))["attempts"]

    oauth_server.end_outage()
    time.sleep(1.1)  # the pause ends
    asyncio.run(run_until_empty(fast))

    assert "sent" == asyncio.run(row(settings, message))["status"]
    assert [] != asyncio.run(attempts_of(settings, message))


async def test_the_worker_role_of_the_security_page_renews_tokens(
    cli_env: dict[str, str],
    settings: Settings,
    microsoft_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
    roles: Roles,
) -> None:
    """A worker logged in as docs/security.md's worker role locks the grant, renews the
    token and stores it: the page grants what OAuth needs, and producers get none of it."""
    oauth_server.access_token_lifetime = 2
    await asyncio.to_thread(
        _signed_in_microsoft, cli_env, microsoft_smtp, oauth_server, "konto-oauth"
    )
    await asyncio.sleep(2.1)
    await enqueue(settings, profile="konto-oauth")
    as_worker = settings.model_copy(update={"database_url": SecretStr(roles.url("mailworker_app"))})

    await run_until_empty(fast_settings(as_worker))

    assert [MAILBOX] == [message.login for message in microsoft_smtp.messages]
    assert 1 == refreshes(oauth_server)
    shop = await roles.connect("shop_app")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await shop.fetch("SELECT refresh_token_encrypted FROM mail.oauth_grant")


# --- helpers ------------------------------------------------------------------------------------


def settings_url(settings: Settings) -> str:
    assert settings.database_url is not None
    return settings.database_url.get_secret_value()


def _browse_consent(oauth: OAuthTestServer, url: str) -> None:
    """What a browser does: open the consent page, follow it back to the loopback listener."""
    consent = requests.get(url, verify=oauth.ca_bundle, allow_redirects=False, timeout=10)
    assert 302 == consent.status_code, consent.text
    back = requests.get(consent.headers["Location"], timeout=10)
    assert 200 == back.status_code


def _key_and_certificate() -> tuple[bytes, bytes]:
    """An app's private key and self-signed certificate: one PEM for the profile (both), the
    certificate alone for the provider's app registration."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailworker-app")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem + certificate_pem, certificate_pem


async def test_metrics_show_the_tokens_expiry_and_the_renewals_never_the_token(
    cli_env: dict[str, str],
    settings: Settings,
    microsoft_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
) -> None:
    """Scraped from a running worker that renewed the expired token: the stored token's
    expiry and one renewal for the profile; the token itself is nowhere in the scrape."""
    oauth_server.access_token_lifetime = 2
    await asyncio.to_thread(_signed_in_microsoft, cli_env, microsoft_smtp, oauth_server)
    await asyncio.sleep(2.1)
    await enqueue(settings, profile="biuro")
    settings = fast_settings(settings, http_address="127.0.0.1:0")

    async with running_worker(settings) as worker:
        await asyncio.to_thread(microsoft_smtp.wait_for_messages, 1, 20)
        assert worker.http_port is not None
        _, _, body = await http_get(worker.http_port, "/metrics")
    [(expires, token)] = await sql(
        settings,
        "SELECT extract(epoch FROM access_expires_at), access_token_encrypted"
        " FROM mail.oauth_grant",
    )

    samples = parse_metrics(body)
    profile = (("profile", "biuro"),)
    expiry = samples[("mailworker_oauth_access_token_expiry_timestamp_seconds", profile)]
    assert float(expires) == pytest.approx(expiry)
    assert 1 == samples[("mailworker_oauth_token_renewals", profile)]
    plain = load_cipher(settings).decrypt(bytes(token), profile="biuro")
    assert plain not in body.decode()


def test_authorize_stops_waiting_for_a_device_code_sign_in_after_wait(
    cli_env: dict[str, str], microsoft_smtp: SmtpTestServer, oauth_server: OAuthTestServer
) -> None:
    """Nobody enters the code: after --wait seconds the command says so and exits 1; the
    profile stays unauthorised."""
    oauth_server.register_public_client(CLIENT_ID)
    _add_microsoft(cli_env, microsoft_smtp, oauth_server, "--oauth-tenant", "organizations")

    result = cli(cli_env, "profiles", "authorize", "biuro", "--wait", "2")

    assert 1 == result.exit_code, result.output
    assert "nobody signed in for profile biuro within 2 s" in result.output
    assert "not yet" in ok(cli_env, "profiles", "show", "biuro").stdout


def test_the_first_app_only_token_is_asked_for_once_by_two_workers(
    cli_env: dict[str, str],
    settings: Settings,
    microsoft_smtp: SmtpTestServer,
    oauth_server: OAuthTestServer,
) -> None:
    """An app-only profile nobody ran `authorize` for: there is no grant row to lock yet, so
    the first worker makes one and the other waits for it; one token request, not two."""
    oauth_server.register_confidential_client(CLIENT_ID, secret="Sekret~9", mailboxes=[MAILBOX])
    _add_microsoft(
        cli_env,
        microsoft_smtp,
        oauth_server,
        *["--oauth-tenant", TENANT, "--oauth-client-secret-env", "APP_SECRET"],
        APP_SECRET="Sekret~9",
    )
    asyncio.run(enqueue(settings, count=20, profile="biuro"))

    async def two_workers() -> None:
        await asyncio.gather(
            # A few messages each: both start sending, and so need a token, at once.
            run_until_empty(fast_settings(settings, worker_name="w1", concurrency=2)),
            run_until_empty(fast_settings(settings, worker_name="w2", concurrency=2)),
        )

    asyncio.run(two_workers())

    assert 20 == len(microsoft_smtp.messages)
    tokens = [r for r in oauth_server.token_requests if r.grant_type == "client_credentials"]
    assert 1 == len(tokens)
    assert f"by {MAILBOX} at" in ok(cli_env, "profiles", "show", "biuro").stdout
