"""Each profile's SMTP side: an account keeps its pool, its pause and its password (no I/O).

A paused account refuses a connection before opening one, an edit of the connection settings
gets a fresh account without the old pause, and a password no key opens is named when a
connection is asked for. The host is a documentation address no test could reach: every
refusal here comes before a connection is tried.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from structlog.testing import capture_logs

from tests.kit.factories import make_profile
from worker.accounts import Accounts
from worker.classify import ProfileUnusable
from worker.crypto import PasswordCipher
from worker.retry import PauseProfile
from worker.smtp import ProfilePaused

UNREACHABLE = "192.0.2.1"  # TEST-NET-1 (RFC 5737)


def _pause(seconds: float) -> PauseProfile:
    until = datetime.now(UTC) + timedelta(seconds=seconds)
    return PauseProfile(until=until, reason="535 5.7.8 Authentication failed", hint=None)


def _accounts(cipher: PasswordCipher | None = None) -> Accounts:
    cipher = cipher or PasswordCipher([Fernet.generate_key()])
    return Accounts(cipher, idle_check_after=30.0)


async def test_a_paused_account_opens_no_connection_and_says_its_pause_once() -> None:
    """While the pause lasts a session is refused before any connection (ProfilePaused with
    the pause); a second pause meanwhile is not logged again; an ended pause is forgotten."""
    account = _accounts().of(make_profile(auth_method="none", host=UNREACHABLE))
    first, second = _pause(60), _pause(120)

    with capture_logs() as events:
        account.pause(first)
        account.pause(second)
    with pytest.raises(ProfilePaused) as refused:
        async with account.session():
            pass  # pragma: no cover - never reached
    account.pause(_pause(-1))

    assert ["profile_paused"] == [event["event"] for event in events]
    assert second == refused.value.pause
    assert None is account.paused()


async def test_an_edit_of_the_connection_settings_ends_this_workers_pause() -> None:
    """A new password gets a fresh account without the pause (the edit ended the pause in the
    database too); a new display name shapes no connection and keeps account and pause."""
    cipher = PasswordCipher([Fernet.generate_key()])
    accounts = _accounts(cipher)
    profile = make_profile(host=UNREACHABLE, password_encrypted=cipher.encrypt("Stare-Haslo-1"))
    pause = _pause(60)
    accounts.of(profile).pause(pause)

    renamed = dataclasses.replace(profile, display_name="Biuro")
    new_password = dataclasses.replace(profile, password_encrypted=cipher.encrypt("Nowe-Haslo-2"))

    assert pause == accounts.of(renamed).paused()
    assert None is accounts.of(new_password).paused()
    await accounts.close()


def test_a_password_no_configured_key_opens_is_named_when_a_connection_is_asked_for() -> None:
    """The account exists (it can hold the pause that follows); asking it for a connection
    raises ProfileUnusable, saying the stored password cannot be decrypted."""
    saved_with = PasswordCipher([Fernet.generate_key()])
    profile = make_profile(host=UNREACHABLE, password_encrypted=saved_with.encrypt("Haslo-1"))
    account = _accounts().of(profile)

    with pytest.raises(ProfileUnusable, match="cannot be decrypted"):
        account.session()
