"""The accounts page: every profile's address, server, state and cap use, as ``status`` reads
them (:meth:`Repository.profile_overview`), with the address and server beside each."""

from __future__ import annotations

import dataclasses

from worker.operations import ProfileStatus
from worker.repository import Repository

__all__ = ["AccountRow", "CapUse", "account_rows"]


@dataclasses.dataclass(frozen=True)
class CapUse:
    """One cap and how much of it the last 24 h (or the last minute) used."""

    kind: str  # "messages_24h", "recipients_24h" or "messages_minute"
    used: int
    cap: int


@dataclasses.dataclass(frozen=True)
class AccountRow:
    """One profile as the accounts page shows it; nothing secret is in it."""

    status: ProfileStatus
    from_address: str
    display_name: str
    host: str
    port: int
    encryption: str

    @property
    def caps(self) -> list[CapUse]:
        item = self.status
        pairs = (
            ("messages_24h", item.sent_24h, item.daily_cap),
            ("recipients_24h", item.recipients_24h, item.daily_recipient_cap),
            ("messages_minute", item.sent_last_minute, item.per_minute_cap),
        )
        return [CapUse(kind, used, cap) for kind, used, cap in pairs if cap is not None]


async def account_rows(repository: Repository) -> list[AccountRow]:
    """Every profile, by name, with its state and its caps' use."""
    profiles = {profile.name: profile for profile in await repository.list_profiles()}
    rows = []
    for item in await repository.profile_overview():
        profile = profiles.get(item.name)
        if profile is None:  # removed between the two reads
            continue
        rows.append(
            AccountRow(
                status=item,
                from_address=profile.from_address,
                display_name=profile.display_name,
                host=profile.host,
                port=profile.port,
                encryption=profile.encryption,
            )
        )
    return rows
