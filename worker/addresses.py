"""E-mail address checks shared by profiles and the outbox (syntax only, never DNS)."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

__all__ = ["address_problem", "local_part"]


def address_problem(address: str, *, field: str) -> str | None:
    """Why ``address`` cannot be used, in words; ``None`` when it can."""
    if not address or not address.strip():
        return f"{field} is empty"
    if any(char in address for char in "\r\n\0"):
        return f"{field} {address!r} contains a line break or NUL character"
    try:
        validate_email(address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        return f"{field} {address!r} is not a valid e-mail address: {exc}"
    return None


def local_part(address: str) -> str:
    """``jankowalski@wp.pl`` → ``jankowalski``."""
    return address.rsplit("@", 1)[0]
