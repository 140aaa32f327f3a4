"""Each profile's SMTP side in a worker: its connections, its password, this worker's pause.

The loop asks :meth:`Accounts.of` for the account of a claimed message's profile. An account
serves one version of the profile's connection settings: an edit (a new password, another
host) gets a fresh account, with new connections and without the old one's pause, which the
edit also ended in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from worker.classify import ProfileUnusable
from worker.crypto import PasswordCipher
from worker.errors import SecretKeyError
from worker.profiles import Profile
from worker.retry import PauseProfile
from worker.smtp import ConnectionPool, SmtpSession, TokenSource

# Makes the token source of an OAuth profile (worker.oauth_tokens, which reaches the database).
TokensOf = Callable[[Profile], TokenSource]

__all__ = ["Account", "Accounts", "TokensOf"]

# The loop's logger: these events are steps of a message's path through the worker.
log = structlog.get_logger("worker")


class Account:
    """One profile as this worker sends through it: its connection pool (which keeps the
    pause) and its password, decrypted once, or the reason it cannot be."""

    def __init__(
        self,
        profile: Profile,
        cipher: PasswordCipher,
        *,
        idle_check_after: float,
        tokens_of: TokensOf | None = None,
        pipelining: bool = True,
    ) -> None:
        self.profile = profile
        password, self._unusable = _password(profile, cipher)
        tokens = None
        if profile.auth_method == "oauth2" and tokens_of is not None:
            tokens = tokens_of(profile)
        self._pool = ConnectionPool(
            profile,
            password,
            idle_check_after=idle_check_after,
            tokens=tokens,
            pipelining=pipelining,
        )
        self._resumed = False  # a probe succeeded since the last pause

    def serves(self, profile: Profile) -> bool:
        """Whether this account's connections are right for ``profile`` as it is now."""
        return self._pool.serves(profile)

    def paused(self) -> PauseProfile | None:
        """This worker's pause of the profile, while it lasts."""
        return self._pool.paused()

    def pause(self, pause: PauseProfile) -> None:
        """No new connection until ``pause`` ends; said once per pause."""
        already = self._pool.paused()
        self._pool.pause = pause
        self._resumed = False
        if already is None:
            log.warning(
                "profile_paused",
                profile=self.profile.name,
                until=pause.until.isoformat(),
                reason=pause.reason,
                hint=pause.hint,
            )

    def resumed(self) -> None:
        """A probe message went out after a pause; said once, though several may succeed."""
        if not self._resumed:
            self._resumed = True
            log.info("profile_resumed", profile=self.profile.name)

    def session(self) -> contextlib.AbstractAsyncContextManager[SmtpSession]:
        """A ready connection (see :meth:`ConnectionPool.session`).

        Raises :class:`ProfileUnusable` if the password cannot be decrypted, and
        :class:`worker.smtp.ProfilePaused` while the profile is paused.
        """
        if self._unusable is not None:
            raise ProfileUnusable(self._unusable)
        return self._pool.session()

    async def close(self) -> None:
        """Close the idle connections; those in use close when their send ends."""
        await self._pool.close()


class Accounts:
    """This worker's accounts, one per profile name."""

    def __init__(
        self,
        cipher: PasswordCipher,
        *,
        idle_check_after: float,
        tokens_of: TokensOf | None = None,
        pipelining: bool = True,
    ) -> None:
        self._cipher = cipher
        self._idle_check_after = idle_check_after
        self._pipelining = pipelining
        self._tokens_of = tokens_of
        self._accounts: dict[str, Account] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def of(self, profile: Profile) -> Account:
        """The account of ``profile``; a fresh one if its connection settings changed."""
        account = self._accounts.get(profile.name)
        if account is not None and account.serves(profile):
            return account
        if account is not None:
            # In the background: sends still using its connections must not wait for this.
            closing = asyncio.create_task(account.close(), name=f"close-pool-{profile.name}")
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        account = Account(
            profile,
            self._cipher,
            idle_check_after=self._idle_check_after,
            tokens_of=self._tokens_of,
            pipelining=self._pipelining,
        )
        self._accounts[profile.name] = account
        return account

    async def close(self) -> None:
        """Close every account's connections (at shutdown, once no send is in flight)."""
        await asyncio.gather(
            *(account.close() for account in self._accounts.values()), *self._closing
        )


def _password(profile: Profile, cipher: PasswordCipher) -> tuple[str | None, str | None]:
    """``(password, None)``, or ``(None, why it cannot be decrypted)``."""
    if profile.auth_method == "none" or profile.password_encrypted is None:
        return None, None
    try:
        return cipher.decrypt(profile.password_encrypted, profile=profile.name), None
    except SecretKeyError as exc:
        return None, str(exc)
