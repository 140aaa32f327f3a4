"""Console users' passwords: Argon2id hashes (argon2-cffi's defaults, RFC 9106's low-memory
choice), checked in constant time; the password itself is never kept or logged."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["MIN_PASSWORD_LENGTH", "hash_password", "password_problem", "verify_password"]

MIN_PASSWORD_LENGTH = 12

_hasher = PasswordHasher()
# Checked when the user name is unknown, so a wrong name takes as long as a wrong password
# and the answer's timing does not tell which names exist.
_DUMMY_HASH = _hasher.hash("no such user: this hash only spends the same time")


def password_problem(password: str) -> str | None:
    """Why ``password`` cannot be a console password, or None when it can."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
    if password != password.strip():
        return "the password must not start or end with a blank"
    return None


def hash_password(password: str) -> str:
    """The Argon2id hash of ``password``, in PHC string form (salt and parameters inside)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (None: no such user; always False)."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False
