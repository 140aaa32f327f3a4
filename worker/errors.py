"""The service's exceptions: one small tree, each class's docstring is its meaning."""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "InvalidMessage",
    "InvalidProfile",
    "MailWorkerError",
    "ProfileNotFound",
    "SecretKeyError",
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


class InvalidMessage(MailWorkerError):
    """A message cannot be put into the outbox as given; ``problems`` lists why."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))
