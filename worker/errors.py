"""The service's exceptions: one small tree, each class's docstring is its meaning."""

from __future__ import annotations

__all__ = [
    "AppRefused",
    "ConfigurationError",
    "InvalidMessage",
    "InvalidProfile",
    "MailWorkerError",
    "OAuthError",
    "ProfileNotFound",
    "SecretKeyError",
    "SignInInvalid",
    "TokenEndpointUnavailable",
    "first_line",
]


class MailWorkerError(Exception):
    """Base of every error this service raises on purpose; its text is meant for a person."""


class ConfigurationError(MailWorkerError):
    """The settings (environment or settings file) are missing or wrong."""


class SecretKeyError(MailWorkerError):
    """A stored password cannot be encrypted or decrypted with the configured keys."""


class InvalidProfile(MailWorkerError):
    """An SMTP profile's fields do not make a usable mail account; ``problems`` lists why."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class ProfileNotFound(MailWorkerError):
    """No SMTP profile has the given account name (or no profile is marked default)."""


class OAuthError(MailWorkerError):
    """No OAuth 2.0 access token could be had; the text is the provider's error, never a
    token or secret. ``profile`` names the profile, for the hint."""

    def __init__(self, message: str, *, profile: str | None = None) -> None:
        super().__init__(message)
        self.profile = profile


class SignInInvalid(OAuthError):
    """The OAuth sign-in is no longer valid (revoked, expired, declined): a person must
    authorise the profile again."""


class AppRefused(OAuthError):
    """The provider refuses the profile's app: its client id, secret, certificate, key or
    permissions."""


class TokenEndpointUnavailable(OAuthError):
    """The provider's sign-in service could not be reached or failed: passing trouble."""


class InvalidMessage(MailWorkerError):
    """A message cannot be put into the outbox as given; ``problems`` lists why."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s text (its class name if it has none): what a log line or
    a one-line message quotes of an exception from a library."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
