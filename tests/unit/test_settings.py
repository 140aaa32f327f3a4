"""Settings come from the environment and a file, are validated, and never show secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ConfigurationError
from worker.settings import load_settings


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing configured the service uses the embedded database and the mail schema."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = load_settings()
    assert settings.database_url is None
    assert settings.db_schema == "mail"
    assert Path(".data") == settings.data_dir


def test_environment_wins_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A value in the environment overrides the same value in the settings file."""
    file = tmp_path / "mailworker.toml"
    file.write_text('db_schema = "from_file"\nlog_level = "debug"\n')
    monkeypatch.setenv("MAILWORKER_DB_SCHEMA", "from_env")
    settings = load_settings(file)
    assert settings.db_schema == "from_env"
    assert settings.log_level == "debug"


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MAILWORKER_CONFIG_FILE names the settings file when none is passed."""
    file = tmp_path / "mailworker.toml"
    file.write_text('log_format = "json"\n')
    monkeypatch.setenv("MAILWORKER_CONFIG_FILE", str(file))
    assert load_settings().log_format == "json"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MAILWORKER_DB_SCHEMA", "Mail-Schema", "db_schema (MAILWORKER_DB_SCHEMA): Value error"),
        ("DATABASE_URL", "mysql://x@y/z", "must be a postgresql:// URL, not a mysql:// one"),
        ("MAILWORKER_LOG_FORMAT", "xml", "log_format (MAILWORKER_LOG_FORMAT)"),
        ("MAILWORKER_MAX_MESSAGE_BYTES", "-1", "max_message_bytes"),
        ("MAILWORKER_CONSOLE_TRUSTED_PROXIES", "127.0.0.1, proxy.local", "'proxy.local'"),
    ],
)
def test_each_mistake_is_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    """A wrong value fails at start with the setting's name and environment variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert expected in str(caught.value)


def test_unknown_setting_in_file(tmp_path: Path) -> None:
    """A misspelt key in the settings file is an error, not silently ignored."""
    file = tmp_path / "mailworker.toml"
    file.write_text('db_shema = "x"\n')
    with pytest.raises(ConfigurationError, match="db_shema: unknown setting"):
        load_settings(file)


def test_broken_file_is_named(tmp_path: Path) -> None:
    """A settings file that is not TOML fails with its path in the message."""
    file = tmp_path / "mailworker.toml"
    file.write_text("db_schema = \n")
    with pytest.raises(ConfigurationError, match="is not valid TOML"):
        load_settings(file)


def test_effective_settings_mask_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """config show's data holds neither the database password nor the secret key."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://svc:Hunter2-db@db.example:5432/app")
    monkeypatch.setenv("MAILWORKER_SECRET_KEY", "c2VjcmV0LWtleS1tYXRlcmlhbC0xMjM0NTY3ODkwMTI=")
    shown = load_settings().effective()
    assert shown["database_url"] == "postgresql://svc:***@db.example:5432/app"
    assert shown["secret_key"] == "**********"
    assert "Hunter2-db" not in repr(shown)
    assert "c2VjcmV0" not in repr(shown)


def test_invalid_secret_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A validation error about the database URL does not repeat the URL's password."""
    monkeypatch.setenv("DATABASE_URL", "mysql://svc:Hunter2-db@db/app")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "Hunter2-db" not in str(caught.value)
