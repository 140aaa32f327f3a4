"""Keys from files: the key file setting, and the development key made under the data folder."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from structlog.testing import capture_logs

from worker.crypto import DEVELOPMENT_KEY_FILE, PasswordCipher, configured_keys, load_cipher
from worker.errors import SecretKeyError
from worker.settings import Settings


def test_without_keys_a_private_development_key_is_made_once(tmp_path: Path) -> None:
    """No key set: a 0600 key file appears under the data folder and is reused next time."""
    settings = Settings(data_dir=tmp_path / "data")
    token = load_cipher(settings).encrypt("Konwalia369!")

    key_file = tmp_path / "data" / DEVELOPMENT_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [key_file] == list(key_file.parent.iterdir())  # no temporary file left behind
    assert load_cipher(settings).decrypt(token, profile="wp") == "Konwalia369!"


def test_the_development_key_warns_each_time_it_is_used(tmp_path: Path) -> None:
    """Every use of the development key logs a warning that says what to set instead."""
    settings = Settings(data_dir=tmp_path)
    with capture_logs() as events:
        configured_keys(settings)
        configured_keys(settings)
    warnings = [event for event in events if event["event"] == "development_secret_key"]
    assert len(warnings) == 2
    assert ("warning", str(tmp_path / DEVELOPMENT_KEY_FILE)) == (
        warnings[0]["log_level"],
        warnings[0]["path"],
    )
    assert "MAILWORKER_SECRET_KEY" in warnings[0]["hint"]


def test_a_key_file_holds_keys_one_a_line_newest_first(tmp_path: Path) -> None:
    """MAILWORKER_SECRET_KEY_FILE (a Docker secret) may list several keys for rotation."""
    new, old = Fernet.generate_key(), Fernet.generate_key()
    key_file = tmp_path / "keys"
    key_file.write_bytes(new + b"\n" + old + b"\n")
    cipher = load_cipher(Settings(secret_key_file=key_file, data_dir=tmp_path))
    assert cipher.decrypt(PasswordCipher([old]).encrypt("pw-old"), profile="wp") == "pw-old"
    assert PasswordCipher([new]).decrypt(cipher.encrypt("pw-new"), profile="wp") == "pw-new"


def test_a_missing_key_file_is_a_clear_error(tmp_path: Path) -> None:
    """A key file that cannot be read is named, with the setting that points at it."""
    settings = Settings(secret_key_file=tmp_path / "absent", data_dir=tmp_path)
    with pytest.raises(SecretKeyError, match=r"cannot read secret key file .*absent"):
        load_cipher(settings)
