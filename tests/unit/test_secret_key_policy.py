"""With no secret key, a development key is made only where development is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from structlog.testing import capture_logs

from worker.crypto import DEVELOPMENT_KEY_FILE, configured_keys
from worker.errors import SecretKeyError
from worker.settings import Settings

SHARED_SERVER = "postgresql://mailworker@db.example.pl/poczta"


@pytest.fixture(autouse=True)
def _no_key_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The environment wins over arguments: the settings under test must come from the test.
    for name in (
        "DATABASE_URL",
        "MAILWORKER_DATABASE_URL",
        "MAILWORKER_SECRET_KEY",
        "MAILWORKER_SECRET_KEY_FILE",
        "MAILWORKER_ALLOW_DEVELOPMENT_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("database_url", "allow", "expected"),
    [
        (None, None, True),
        (SHARED_SERVER, None, False),
        (None, False, False),
        (SHARED_SERVER, True, True),
        (None, True, True),
        (SHARED_SERVER, False, False),
    ],
)
def test_a_development_key_is_allowed_by_default_only_with_the_embedded_database(
    database_url: str | None, allow: bool | None, expected: bool
) -> None:
    """Unset, MAILWORKER_ALLOW_DEVELOPMENT_KEY allows one exactly when DATABASE_URL is empty;
    true and false decide whatever the database."""
    settings = Settings(database_url=database_url, allow_development_key=allow)
    assert expected == settings.development_key_allowed


@pytest.mark.parametrize(
    ("database_url", "allow", "why"),
    [
        (SHARED_SERVER, None, "DATABASE_URL is set"),
        (None, False, "MAILWORKER_ALLOW_DEVELOPMENT_KEY=false"),
    ],
)
def test_no_key_where_no_development_key_is_allowed_is_one_clear_line(
    tmp_path: Path, database_url: str | None, allow: bool | None, why: str
) -> None:
    """The error is one line that names both key settings, how to make a key, why no
    development key was made and how to allow one; and no key file appears."""
    settings = Settings(
        database_url=database_url, allow_development_key=allow, data_dir=tmp_path / "data"
    )
    with pytest.raises(SecretKeyError) as caught:
        configured_keys(settings)
    message = str(caught.value)
    assert [message] == message.splitlines()
    wanted = [
        "MAILWORKER_SECRET_KEY ",
        "MAILWORKER_SECRET_KEY_FILE",
        "Fernet.generate_key()",
        f"since {why}",
        "MAILWORKER_ALLOW_DEVELOPMENT_KEY=true",
    ]
    assert [] == [part for part in wanted if part not in message]
    assert not (tmp_path / "data").exists()


def test_an_explicit_allowance_makes_the_development_key_beside_a_server(tmp_path: Path) -> None:
    """MAILWORKER_ALLOW_DEVELOPMENT_KEY=true with DATABASE_URL set: the key file is made and
    used, and the usual warning is logged."""
    settings = Settings(
        database_url=SHARED_SERVER, allow_development_key=True, data_dir=tmp_path / "data"
    )
    with capture_logs() as events:
        keys = configured_keys(settings)
    key_file = tmp_path / "data" / DEVELOPMENT_KEY_FILE
    assert [key_file.read_text(encoding="utf-8").strip().encode()] == keys
    assert ["development_secret_key"] == [event["event"] for event in events]


def test_a_configured_key_needs_no_allowance(tmp_path: Path) -> None:
    """A set key is used where a development key is forbidden: the refusal is only about
    having no key."""
    key = Fernet.generate_key()
    settings = Settings(
        database_url=SHARED_SERVER,
        allow_development_key=False,
        secret_key=SecretStr(key.decode()),
        data_dir=tmp_path,
    )
    assert [key] == configured_keys(settings)


@pytest.mark.parametrize(("value", "expected"), [("", None), ("true", True), ("false", False)])
def test_the_allowance_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool | None
) -> None:
    """MAILWORKER_ALLOW_DEVELOPMENT_KEY reads true/false; empty (as compose writes an unset
    variable) means unset, the default."""
    monkeypatch.setenv("MAILWORKER_ALLOW_DEVELOPMENT_KEY", value)
    assert expected == Settings().allow_development_key
