"""Passwords at rest: Fernet tokens under the configured keys, which can be rotated.

Keys come from ``MAILWORKER_SECRET_KEY`` (comma-separated, newest first) or from the file that
``MAILWORKER_SECRET_KEY_FILE`` names. Without either, a development key file is made once under
the data folder and used with a warning, but only where a development key is allowed (by
default: with the embedded database); elsewhere no key is an error. The newest key encrypts and
every key decrypts, so a new key goes in front of the old ones and
:meth:`PasswordCipher.reencrypt` moves each stored password to it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from worker.errors import SecretKeyError
from worker.logs import register_secret
from worker.sentences import N_
from worker.settings import Settings

__all__ = ["DEVELOPMENT_KEY_FILE", "PasswordCipher", "configured_keys", "load_cipher", "parse_keys"]

DEVELOPMENT_KEY_FILE = "secret.key"

log = structlog.get_logger(__name__)

_KEY_SEPARATOR = re.compile(r"[,\s]+")
_GENERATE_HINT = (
    "make one with: python -c 'from cryptography.fernet import Fernet;"
    " print(Fernet.generate_key().decode())'"
)


class PasswordCipher:
    """Encrypts passwords under the newest key; decrypts with any configured key."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise SecretKeyError("no secret key is configured")
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self.key_count = len(keys)

    def __repr__(self) -> str:
        return f"PasswordCipher(key_count={self.key_count})"

    def encrypt(self, password: str) -> bytes:
        """A Fernet token of ``password`` under the newest key."""
        return self._fernet.encrypt(password.encode())

    def decrypt(self, token: bytes, *, profile: str) -> str:
        """The password in ``token``, from now on scrubbed from every log line."""
        try:
            password = self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise SecretKeyError(_cannot_decrypt(profile)) from None
        register_secret(password)
        return password

    def reencrypt(self, token: bytes, *, profile: str) -> bytes:
        """``token``'s password encrypted under the newest key (key rotation)."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            raise SecretKeyError(_cannot_decrypt(profile)) from None


def _cannot_decrypt(profile: str) -> str:
    return N_(
        "stored password of profile %(name)s cannot be decrypted with the configured keys;"
        " was MAILWORKER_SECRET_KEY changed?"
    ) % {"name": repr(profile)}


def parse_keys(text: str, *, origin: str) -> list[bytes]:
    """The Fernet keys in ``text`` (separated by commas or blanks), newest first."""
    candidates = [part for part in _KEY_SEPARATOR.split(text) if part]
    if not candidates:
        raise SecretKeyError(f"{origin} holds no key; {_GENERATE_HINT}")
    keys = []
    for position, candidate in enumerate(candidates, start=1):
        register_secret(candidate)
        key = candidate.encode()
        try:
            Fernet(key)
        except ValueError:
            message = (
                f"key {position} of {origin} is not a Fernet key"
                f" (32 url-safe base64-encoded bytes); {_GENERATE_HINT}"
            )
            raise SecretKeyError(message) from None
        keys.append(key)
    return keys


def configured_keys(settings: Settings) -> list[bytes]:
    """The keys from the settings, or the development key file's when none are set.

    Raises :class:`SecretKeyError` when none are set and a development key is not allowed.
    """
    secret = settings.secret_key.get_secret_value().strip() if settings.secret_key else ""
    if secret and settings.secret_key_file is not None:
        raise SecretKeyError("set MAILWORKER_SECRET_KEY or MAILWORKER_SECRET_KEY_FILE, not both")
    if secret:
        return parse_keys(secret, origin="MAILWORKER_SECRET_KEY")
    if settings.secret_key_file is not None:
        path = settings.secret_key_file
        return parse_keys(_read_key_file(path), origin=f"secret key file {path}")
    if not settings.development_key_allowed:
        raise SecretKeyError(_no_key(settings))
    path = settings.data_dir / DEVELOPMENT_KEY_FILE
    return parse_keys(_development_key(path), origin=f"development key file {path}")


def _no_key(settings: Settings) -> str:
    """One line: what to set, how to make a key, and why no development key is made."""
    why = (
        "MAILWORKER_ALLOW_DEVELOPMENT_KEY=false"
        if settings.allow_development_key is False
        else "DATABASE_URL is set"
    )
    return (
        "no secret key is configured: set MAILWORKER_SECRET_KEY or MAILWORKER_SECRET_KEY_FILE;"
        f" {_GENERATE_HINT}. No development key is made since {why};"
        " MAILWORKER_ALLOW_DEVELOPMENT_KEY=true allows one, kept under the data folder"
        " (not for production)"
    )


def load_cipher(settings: Settings) -> PasswordCipher:
    """The cipher for stored passwords under the configured keys."""
    return PasswordCipher(configured_keys(settings))


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        message = f"cannot read secret key file {path} (MAILWORKER_SECRET_KEY_FILE): {exc.strerror}"
        raise SecretKeyError(message) from None


def _development_key(path: Path) -> str:
    """The development key file's text; the file is made, readable by its owner only, once."""
    try:
        if not path.exists():
            _create_key_file(path)
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        message = f"cannot use development key file {path}: {exc.strerror}"
        raise SecretKeyError(message) from None
    log.warning(
        "development_secret_key", path=str(path), hint="set MAILWORKER_SECRET_KEY in production"
    )
    return text


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0600; linking it into place fails if another process
    # made a key meanwhile, and then that key wins instead of being overwritten.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(Fernet.generate_key() + b"\n")
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
