"""Who may sign in to the web console: the stored user as a typed object, and the roles."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Literal, get_args

__all__ = ["ROLES", "ConsoleUser", "Role"]

Role = Literal["admin", "viewer"]
# admin: may change things (later pages); viewer: may look at every page, change nothing.
ROLES: tuple[str, ...] = get_args(Role)


@dataclasses.dataclass(frozen=True)
class ConsoleUser:
    """A row of ``mail.console_user``; the hash is never shown (``repr`` leaves it out)."""

    name: str
    role: Role
    password_hash: str = dataclasses.field(repr=False)
    created_at: datetime
    last_login_at: datetime | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
