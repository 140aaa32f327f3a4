"""What the service shows and records never holds a password or a secret key.

``profiles show`` and ``messages show`` are covered in ``test_profiles_cli.py`` and
``test_operator_commands.py``, the cipher's errors and repr in ``tests/unit/test_crypto.py``;
the secret-scan plugin (``tests/kit/secret_scan.py``) checks every output of the whole session.
These cover the rest: ``config show`` as a user runs it, a stored profile's repr, and what a
refused login leaves in the database.
"""

from __future__ import annotations

import base64
import json

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import create_async_engine

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
from worker.repository import Repository
from worker.settings import Settings

DATABASE_PASSWORD = "Baza-Haslo-2026"
WRONG_PASSWORD = "Zle-Haslo-Konta-9"


@pytest.mark.parametrize("options", [[], ["--json"]], ids=["text", "json"])
def test_config_show_masks_the_keys_and_the_database_password(options: list[str]) -> None:
    """``config show`` names every setting but prints neither key nor database password."""
    new_key, old_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    env = {
        "DATABASE_URL": f"postgresql://mailworker:{DATABASE_PASSWORD}@db.example.pl:5432/poczta",
        "MAILWORKER_SECRET_KEY": f"{new_key},{old_key}",
    }
    result = CliRunner(env=env).invoke(main, ["config", "show", *options])
    assert 0 == result.exit_code, result.output
    assert [] == [s for s in (DATABASE_PASSWORD, new_key, old_key) if s in result.output]
    assert "postgresql://mailworker:***@db.example.pl:5432/poczta" in result.output
    if options:
        assert "**********" == json.loads(result.output)["secret_key"]


async def test_a_stored_profiles_repr_shows_no_password(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """A profile read from the database shows neither its password nor its token."""
    await add_profile(settings, smtps_server, encryption="ssl")
    assert settings.database_url is not None
    engine = create_async_engine(settings.database_url.get_secret_value())
    try:
        async with engine.connect() as connection:
            profile = await Repository(connection).get_profile("test")
    finally:
        await engine.dispose()
    assert profile is not None
    assert profile.password_encrypted is not None
    shown = f"{profile!r} {profile!s}"
    assert "login='user@example.com'" in shown
    hidden = (SMTP_PASSWORD, profile.password_encrypted.decode())
    assert [] == [secret for secret in hidden if secret in shown]


async def test_a_refused_login_leaves_no_password_in_the_database(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """After a wrong password, reasons, errors and the pause name the refusal, not the password."""
    settings = fast_settings(settings)
    server = smtp_server_factory(tls="implicit", accounts={SMTP_LOGIN: SMTP_PASSWORD})
    await add_profile(settings, server, encryption="ssl", password=WRONG_PASSWORD)
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    assert [False] == [attempt.success for attempt in server.auth_attempts][:1]
    stored = await row(settings, message_id)
    attempts = await attempts_of(settings, message_id)
    [profile] = await sql(settings, "SELECT pause_reason, pause_hint FROM mail.profile")
    recorded = " ".join(
        str(value)
        for value in (*stored.values(), *[a for r in attempts for a in r.values()], *profile)
    )
    assert "535" in recorded
    encoded = base64.b64encode(WRONG_PASSWORD.encode()).decode()
    assert [] == [s for s in (WRONG_PASSWORD, encoded) if s in recorded]
