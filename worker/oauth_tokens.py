"""Access tokens for OAuth profiles, shared by every worker through the database.

A worker asks :meth:`ProfileTokens.current` before it logs in. The token comes from memory
while it is fresh, else from ``mail.oauth_grant`` where another worker may have just stored a
new one, else from the provider. Only one process refreshes a profile at a time: it holds the
profile's grant row (``SELECT … FOR UPDATE``) while it asks the provider, and stores the new
tokens, a rotated refresh token included, before it lets go. The others wait on the row and
then read the new token: ten workers make one refresh, not ten.

A token the SMTP server refused is renewed once (:meth:`ProfileTokens.renew`); whether that
helps is for the caller to see.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from worker.classify import ProfileUnusable
from worker.crypto import PasswordCipher
from worker.errors import SecretKeyError
from worker.oauth_app import OAuthApp, StoredGrant
from worker.oauth_flows import Tokens, renew
from worker.profiles import Profile
from worker.repository import Repository
from worker.sentences import N_

__all__ = ["OAuthTokens", "ProfileTokens", "RepositoryOpener", "fresh_until"]

log = structlog.get_logger("worker.oauth")

# A token is renewed this long before it expires, or after three quarters of its life when it
# lives shorter than four times this: a send must never start with a token about to lapse.
RENEW_BEFORE = timedelta(minutes=5)

RepositoryOpener = Callable[..., contextlib.AbstractAsyncContextManager[Repository]]


def fresh_until(expires_at: datetime, issued_at: datetime | None) -> datetime:
    """When a token that expires at ``expires_at`` is due for renewal (pure)."""
    margin = RENEW_BEFORE
    if issued_at is not None and issued_at < expires_at:
        margin = min(margin, (expires_at - issued_at) / 4)
    return expires_at - margin


@dataclasses.dataclass(frozen=True)
class _Cached:
    value: str = dataclasses.field(repr=False)
    renew_at: datetime


class OAuthTokens:
    """This process's token sources, one per OAuth profile (a new one for an edited profile)."""

    def __init__(self, open_repository: RepositoryOpener, cipher: PasswordCipher) -> None:
        self._open_repository = open_repository
        self._cipher = cipher

    def of(self, profile: Profile) -> ProfileTokens:
        return ProfileTokens(profile, self._open_repository, self._cipher)


class ProfileTokens:
    """The access token of one profile, as this process uses it."""

    def __init__(
        self, profile: Profile, open_repository: RepositoryOpener, cipher: PasswordCipher
    ) -> None:
        self.profile = profile
        self.app = OAuthApp.of(profile)
        self._open_repository = open_repository
        self._cipher = cipher
        self._cached: _Cached | None = None
        self._lock = asyncio.Lock()  # one renewal at a time in this process

    def __repr__(self) -> str:
        return f"<ProfileTokens {self.profile.name}>"

    async def current(self) -> str:
        """A fresh access token; raises an :class:`worker.oauth_flows.OAuthError` if none
        can be had, or :class:`ProfileUnusable` if the stored secrets cannot be decrypted."""
        cached = self._cached
        if cached is not None and datetime.now(UTC) < cached.renew_at:
            return cached.value
        return await self._renewed(refused=None)

    async def renew(self, refused: str) -> str:
        """Another access token than ``refused``, which the SMTP server did not accept."""
        return await self._renewed(refused=refused)

    async def _renewed(self, *, refused: str | None) -> str:
        async with self._lock:
            cached = self._cached
            fresh = cached is not None and datetime.now(UTC) < cached.renew_at
            if cached is not None and fresh and cached.value != refused:
                return cached.value  # renewed while this call waited for the lock
            async with self._open_repository(transaction=True) as repository:
                grant = await repository.oauth_grant(self.profile.id, lock=True)
                stored = self._usable(grant, refused)
                if stored is None:
                    stored = await self._from_provider(repository, grant)
            self._cached = stored
            return stored.value

    def _usable(self, grant: StoredGrant | None, refused: str | None) -> _Cached | None:
        """The stored access token, if it is fresh and not the one refused."""
        if grant is None or grant.access_token_encrypted is None:
            return None
        if grant.access_expires_at is None:
            return None
        renew_at = fresh_until(grant.access_expires_at, grant.refreshed_at or grant.authorized_at)
        if datetime.now(UTC) >= renew_at:
            return None
        token = self._decrypt(grant.access_token_encrypted)
        return None if token == refused else _Cached(token, renew_at)

    async def _from_provider(self, repository: Repository, grant: StoredGrant | None) -> _Cached:
        credential = self._decrypt_optional(self.profile.oauth_credential_encrypted)
        refresh_token = self._decrypt_optional(grant.refresh_token_encrypted if grant else None)
        tokens = await asyncio.to_thread(
            renew, self.app, credential=credential, refresh_token=refresh_token
        )
        now = datetime.now(UTC)
        values = self._stored_values(tokens, grant, now)
        await repository.store_oauth_grant(self.profile.id, values)
        log.info(
            "oauth_token_renewed",
            profile=self.profile.name,
            expires_at=tokens.expires_at.isoformat(),
            refresh_token_rotated=tokens.refresh_token is not None and refresh_token is not None,
        )
        return _Cached(tokens.access_token, fresh_until(tokens.expires_at, now))

    def _stored_values(
        self, tokens: Tokens, grant: StoredGrant | None, now: datetime
    ) -> dict[str, object]:
        values: dict[str, object] = {
            "access_token_encrypted": self._cipher.encrypt(tokens.access_token),
            "access_expires_at": tokens.expires_at,
            "refreshed_at": now,
            "refresh_count": (grant.refresh_count if grant else 0) + 1,
        }
        if tokens.scopes:
            values["scopes"] = tokens.scopes
        if tokens.refresh_token is not None:  # rotated: the old one may work no more
            values["refresh_token_encrypted"] = self._cipher.encrypt(tokens.refresh_token)
        if grant is None or grant.authorized_at is None:
            # App-only and service accounts need no person: their first token authorises them.
            values |= {"authorized_by": tokens.account or self.app.mailbox, "authorized_at": now}
        return values

    def _decrypt(self, token: bytes) -> str:
        try:
            return self._cipher.decrypt(token, profile=self.profile.name)
        except SecretKeyError:
            raise ProfileUnusable(
                N_(
                    "the OAuth secrets of profile %(profile)s cannot be decrypted with the"
                    " configured keys: restore the old key, or give the app's credential again"
                    " (profiles edit) and authorise again (profiles authorize)"
                )
                % {"profile": self.profile.name}
            ) from None

    def _decrypt_optional(self, token: bytes | None) -> str | None:
        return None if token is None else self._decrypt(token)
