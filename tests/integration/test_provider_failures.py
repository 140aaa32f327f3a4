"""What the providers' refusals do to a profile made from their preset: pause it, lose nothing.

Each profile is added with the real CLI (``profiles add --preset``, the test server's host, the
test CA, ``--password-env``); the message is inserted as a producer would; the in-process
worker runs until nothing is due. The servers answer as WP and Gmail do
(``tests/kit/provider_servers.py``).

The tests are plain functions: every CLI command runs its own ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from click.testing import CliRunner, Result

from tests.kit.database import sql
from tests.kit.delivery import attempts_of, enqueue, fast_settings, row, run_until_empty
from tests.kit.provider_servers import (
    GMAIL,
    GMAIL_ACCOUNT_PASSWORD,
    ONET,
    WP,
    ProviderAccount,
    ProviderServers,
    ProviderTls,
)
from tests.kit.smtp_fixtures import IMPLICIT_TLS_PORT
from tests.kit.smtp_server import SmtpTestCA, SmtpTestServer
from worker.cli import main
from worker.presets import load_presets
from worker.settings import Settings

pytestmark = pytest.mark.timeout(60)

PRESETS = load_presets()
TIMEOUT_SECONDS = 5


def _mailworker(env: Mapping[str, str], *args: str, **extra_env: str) -> Result:
    """Run a ``mailworker`` command, which must succeed, and give the test its logging back."""
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


def _add_profile(
    env: Mapping[str, str],
    account: ProviderAccount,
    server: SmtpTestServer,
    ca: SmtpTestCA,
    *,
    password: str,
) -> str:
    """A profile from the account's preset that reaches ``server``; its name (the preset's)."""
    port = [] if server.port == IMPLICIT_TLS_PORT else ["--port", str(server.port)]
    _mailworker(
        env,
        *["profiles", "add", account.preset, "--preset", account.preset],
        *["--from", account.address, "--host", server.hostname, *port],
        *["--ca-bundle", ca.cert_bundle, "--timeout", str(TIMEOUT_SECONDS)],
        *["--password-env", "PROVIDER_PASSWORD"],
        PROVIDER_PASSWORD=password,
    )
    return account.preset


def _deliver(settings: Settings, name: str, count: int = 1) -> list[int]:
    """Enqueue ``count`` messages through profile ``name`` and run a worker until none is due."""
    ids = asyncio.run(enqueue(settings, count, profile=name))
    # One attempt each: a failure that spent an attempt would fail the message at once.
    asyncio.run(run_until_empty(fast_settings(settings, max_attempts=1), limit=30))
    return ids


def _profile_row(settings: Settings, name: str) -> Any:
    [found] = asyncio.run(
        sql(
            settings,
            "SELECT paused_until, pause_reason, pause_hint, pause_count FROM mail.profile"
            " WHERE name = :name",
            name=name,
        )
    )
    return found


def _rows(settings: Settings, ids: list[int]) -> list[Mapping[str, Any]]:
    return [asyncio.run(row(settings, message_id)) for message_id in ids]


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _auth_failure_hint(preset: str) -> str:
    """The preset's advice on a refused login, on one line, as the worker passes it on."""
    return " ".join(PRESETS[preset].auth_failure_hint.split())


def _waiting_reason(name: str, profile: Any) -> str:
    """What a message of a paused profile says, from the profile's pause."""
    return (
        f"waiting: profile {name} paused until {_utc(profile.paused_until)}:"
        f" {profile.pause_reason} (hint: {profile.pause_hint})"
    )


def _shown(env: Mapping[str, str], name: str) -> dict[str, Any]:
    view: dict[str, Any] = json.loads(_mailworker(env, "profiles", "show", name, "--json").stdout)
    return view


# --- the right password: each server and preset agree ----------------------------------------


@pytest.mark.parametrize(
    "case",
    [(WP, "implicit"), (WP, "starttls"), (ONET, "implicit"), (GMAIL, "implicit")],
    ids=["wp-465", "wp-starttls", "onet-465", "gmail-465"],
)
def test_the_presets_profile_sends_with_the_right_password(
    cli_env: dict[str, str],
    settings: Settings,
    smtp_ca: SmtpTestCA,
    provider_servers: ProviderServers,
    case: tuple[ProviderAccount, ProviderTls],
) -> None:
    """A profile from the preset and the password as the person types it is sent at once,
    logged in with the provider's login form (WP: the local part; Onet, Gmail: the address)."""
    account, tls = case
    start = {"wp": provider_servers.wp, "onet": provider_servers.onet}.get(account.preset)
    server = start(tls=tls) if start is not None else provider_servers.gmail(tls=tls)
    name = _add_profile(cli_env, account, server, smtp_ca, password=account.typed_password)

    [message_id] = _deliver(settings, name)

    stored = asyncio.run(row(settings, message_id))
    assert ("sent", 1) == (stored["status"], stored["attempts"])
    assert [account.login] == [received.login for received in server.messages]


# --- refused logins --------------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_a_wrong_wp_password_pauses_the_profile_with_wps_advice(
    cli_env: dict[str, str],
    settings: Settings,
    smtp_ca: SmtpTestCA,
    provider_servers: ProviderServers,
    tls: ProviderTls,
) -> None:
    """WP refuses the password with 535: the profile is paused with WP's advice (switch on
    access for mail programs), the message waits with its attempt not counted, nothing fails."""
    server = provider_servers.wp(tls=tls)
    name = _add_profile(cli_env, WP, server, smtp_ca, password="Zle-Haslo-1")
    before = datetime.now(UTC)

    [message_id] = _deliver(settings, name)

    profile = _profile_row(settings, name)
    hint = _auth_failure_hint("wp")
    assert "access for mail programs" in hint
    reason = "535 5.7.8 Authentication credentials invalid"
    assert (reason, hint, 1) == (profile.pause_reason, profile.pause_hint, profile.pause_count)
    assert before < profile.paused_until
    stored = asyncio.run(row(settings, message_id))
    assert ("pending", 0, _waiting_reason(name, profile)) == (
        stored["status"],
        stored["attempts"],
        stored["status_reason"],
    )
    assert [("deferred", 535)] == [
        (attempt["outcome"], attempt["smtp_code"])
        for attempt in asyncio.run(attempts_of(settings, message_id))
    ]
    assert ((), {(WP.login, False)}) == (
        server.messages,
        {(attempt.login, attempt.success) for attempt in server.auth_attempts},
    )
    shown = _shown(cli_env, name)
    assert ("paused", _utc(profile.paused_until), reason, hint) == (
        shown["state"],
        shown["paused_until"],
        shown["pause_reason"],
        shown["pause_hint"],
    )


def test_gmails_account_password_pauses_the_profile_asking_for_an_app_password(
    cli_env: dict[str, str],
    settings: Settings,
    smtp_ca: SmtpTestCA,
    provider_servers: ProviderServers,
) -> None:
    """Gmail answers the account's normal password with 534 5.7.9: the profile is paused with
    the advice to create an app password; the message waits, its attempt not counted."""
    server = provider_servers.gmail()
    name = _add_profile(cli_env, GMAIL, server, smtp_ca, password=GMAIL_ACCOUNT_PASSWORD)

    [message_id] = _deliver(settings, name)

    profile = _profile_row(settings, name)
    hint = _auth_failure_hint("gmail")
    assert "534 5.7.9 means an app password is required" in hint
    reason = (
        "534 5.7.9 Application-specific password required. Learn more at 5.7.9"
        " https://support.google.com/mail/?p=InvalidSecondFactor - gsmtp"
    )
    assert (reason, hint, 1) == (profile.pause_reason, profile.pause_hint, profile.pause_count)
    stored = asyncio.run(row(settings, message_id))
    assert ("pending", 0, _waiting_reason(name, profile)) == (
        stored["status"],
        stored["attempts"],
        stored["status_reason"],
    )
    assert () == server.messages


# --- the provider's daily limit --------------------------------------------------------------


@pytest.mark.parametrize("stage", ["DATA_END", "MAIL"])
def test_gmails_daily_limit_pauses_the_profile_and_loses_nothing(
    cli_env: dict[str, str],
    settings: Settings,
    smtp_ca: SmtpTestCA,
    provider_servers: ProviderServers,
    stage: str,
) -> None:
    """Gmail takes 2 messages, then answers 550 5.4.5 (at DATA's end or at MAIL): the profile
    pauses for the rolling 24 h (until the first send turns a day old, at most a day from now),
    the other 2 messages wait without a counted attempt; none fails, none is lost."""
    server = provider_servers.gmail(
        daily_limit=2, limit_at="MAIL" if stage == "MAIL" else "DATA_END"
    )
    name = _add_profile(cli_env, GMAIL, server, smtp_ca, password=GMAIL.typed_password)

    ids = _deliver(settings, name, count=4)
    finished = datetime.now(UTC)

    rows = _rows(settings, ids)
    assert {"sent": 2, "pending": 2} == {
        status: sum(stored["status"] == status for stored in rows) for status in ("sent", "pending")
    }
    assert 2 == len(server.messages)
    profile = _profile_row(settings, name)
    assert (
        "the provider's sending limit was reached: 550 5.4.5 Daily user sending limit exceeded."
        " For more information on Gmail 5.4.5 sending limits go to"
        " https://support.google.com/a/answer/166852 - gsmtp"
    ) == profile.pause_reason
    first_sent = min(stored["sent_at"] for stored in rows if stored["sent_at"] is not None)
    day = timedelta(hours=24)
    assert first_sent + day <= profile.paused_until <= finished + day
    waiting = [stored for stored in rows if stored["status"] == "pending"]
    assert [(0, _waiting_reason(name, profile))] * 2 == [
        (stored["attempts"], stored["status_reason"]) for stored in waiting
    ]
    assert "paused" == _shown(cli_env, name)["state"]
