"""SMTP profiles: a mail program's account page, as stored in ``mail.profile``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["AuthMethod", "Encryption", "Profile"]

Encryption = Literal["auto", "ssl", "starttls", "none"]
AuthMethod = Literal["login", "none", "xoauth2"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Profile:
    """One stored profile. The password stays encrypted; ``repr`` never shows even that."""

    id: int
    name: str
    enabled: bool
    from_address: str
    display_name: str
    reply_to: str | None
    description: str
    server_type: str
    host: str
    port: int
    encryption: Encryption
    auth_method: AuthMethod
    login: str | None
    password_encrypted: bytes | None = dataclasses.field(repr=False)
    verify_tls: bool
    ca_bundle: str | None
    daily_cap: int | None
    max_connections: int
    timeout_seconds: int
    is_default: bool
    preset: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Profile:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in row.items() if name in names})

    @property
    def has_password(self) -> bool:
        return self.password_encrypted is not None
