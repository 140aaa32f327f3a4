"""Stored passwords are Fernet tokens; keys rotate; a wrong key is a clear error, never a leak."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from worker.crypto import PasswordCipher, configured_keys, parse_keys
from worker.errors import SecretKeyError
from worker.logs import REDACTED, forget_secrets, redact_secrets
from worker.settings import Settings

PASSWORD = "Konwalia369!"


@pytest.fixture(autouse=True)
def _no_known_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


def _key() -> bytes:
    return Fernet.generate_key()


def test_a_password_round_trips_and_the_token_hides_it() -> None:
    """What encrypt stores decrypts to the same password, and the token does not contain it."""
    cipher = PasswordCipher([_key()])
    token = cipher.encrypt(PASSWORD)
    assert PASSWORD.encode() not in token
    assert cipher.decrypt(token, profile="wp") == PASSWORD


def test_an_older_key_still_decrypts() -> None:
    """With a new key in front, passwords stored under the old one still decrypt."""
    old, new = _key(), _key()
    token = PasswordCipher([old]).encrypt(PASSWORD)
    assert PasswordCipher([new, old]).decrypt(token, profile="wp") == PASSWORD


def test_reencrypt_moves_a_password_to_the_newest_key() -> None:
    """After rotation the old key can be dropped: the new key alone decrypts the new token."""
    old, new = _key(), _key()
    token = PasswordCipher([old]).encrypt(PASSWORD)
    rotated = PasswordCipher([new, old]).reencrypt(token, profile="wp")
    assert PasswordCipher([new]).decrypt(rotated, profile="wp") == PASSWORD
    with pytest.raises(SecretKeyError):
        PasswordCipher([old]).decrypt(rotated, profile="wp")


def test_a_password_no_key_decrypts_is_a_clear_error() -> None:
    """A changed key gives the profile's name and the likely cause, never the password."""
    token = PasswordCipher([_key()]).encrypt(PASSWORD)
    with pytest.raises(SecretKeyError) as caught:
        PasswordCipher([_key()]).decrypt(token, profile="wp")
    assert str(caught.value) == (
        "stored password of profile 'wp' cannot be decrypted with the configured keys;"
        " was MAILWORKER_SECRET_KEY changed?"
    )
    with pytest.raises(SecretKeyError, match="profile 'wp'"):
        PasswordCipher([_key()]).reencrypt(token, profile="wp")


def test_a_decrypted_password_is_scrubbed_from_logs() -> None:
    """Once decrypted, the password is replaced in any later log field, whatever its name."""
    cipher = PasswordCipher([_key()])
    event = {"event": "smtp_failed", "detail": f"server said: bad login {PASSWORD}"}
    assert PASSWORD in redact_secrets(None, "info", dict(event))["detail"]
    cipher.decrypt(cipher.encrypt(PASSWORD), profile="wp")
    assert f"server said: bad login {REDACTED}" == redact_secrets(None, "info", event)["detail"]


def test_the_repr_shows_no_key() -> None:
    """A cipher in a traceback or debug print shows how many keys, not which."""
    key = _key()
    assert repr(PasswordCipher([key])) == "PasswordCipher(key_count=1)"


def test_keys_are_split_on_commas_and_blanks_newest_first() -> None:
    """``new, old`` and one key per line both give the keys in the order written."""
    new, old = _key(), _key()
    text = f" {new.decode()} ,{old.decode()}\n"
    assert [new, old] == parse_keys(text, origin="MAILWORKER_SECRET_KEY")


def test_a_malformed_key_is_named_by_position_not_shown() -> None:
    """A bad key says which one is wrong and how to make a good one, without echoing it."""
    bad = "not-a-fernet-key-at-all"
    with pytest.raises(SecretKeyError) as caught:
        parse_keys(f"{_key().decode()},{bad}", origin="MAILWORKER_SECRET_KEY")
    message = str(caught.value)
    assert message.startswith("key 2 of MAILWORKER_SECRET_KEY is not a Fernet key")
    assert "Fernet.generate_key()" in message
    assert bad not in message


def test_an_empty_key_setting_is_refused() -> None:
    """A key setting holding only separators is an error, not an empty key list."""
    with pytest.raises(SecretKeyError, match="holds no key"):
        parse_keys(" , ", origin="MAILWORKER_SECRET_KEY")


def test_the_setting_is_used_before_any_file(tmp_path: Path) -> None:
    """MAILWORKER_SECRET_KEY gives the keys; no development key file is made."""
    key = _key()
    settings = Settings(secret_key=SecretStr(key.decode()), data_dir=tmp_path)
    assert [key] == configured_keys(settings)
    assert list(tmp_path.iterdir()) == []


def test_key_and_key_file_together_are_ambiguous(tmp_path: Path) -> None:
    """Setting both the key and the key file is refused rather than one silently winning."""
    settings = Settings(
        secret_key=SecretStr(_key().decode()), secret_key_file=tmp_path / "keys", data_dir=tmp_path
    )
    with pytest.raises(SecretKeyError, match="not both"):
        configured_keys(settings)
