"""SMTP connections of one profile: opened exactly as its encryption setting says, then pooled.

Encryption, exactly:

* ``ssl``: implicit TLS from the first byte.
* ``starttls``: plain connect, then STARTTLS is required; no STARTTLS offered → failure.
* ``auto``: implicit TLS on port 465; otherwise STARTTLS, required when the profile logs in
  (never a password over an unencrypted connection), opportunistic when it does not.
* ``none``: plain, for local relays without authentication.

Whatever the setting says, a profile that logs in never sends AUTH over a connection that is
not encrypted (a row changed with SQL to ``none`` and a password is refused before AUTH).

Certificates and host names are verified unless the profile turns that off, which logs a
warning on every connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import aiosmtplib
import structlog
from aiosmtplib.protocol import SMTPProtocol

from worker.classify import OAuthTokenRefused, Stage, StartTlsUnavailable, UnencryptedLogin
from worker.profiles import Profile
from worker.retry import PauseProfile
from worker.sentences import N_
from worker.smtp_pipelining import ChunkingRefused, send_transaction, transfer_for

__all__ = [
    "ConnectFailed",
    "ConnectionPool",
    "ProfilePaused",
    "SmtpSession",
    "TlsPlan",
    "TokenSource",
    "open_connection",
    "quit_and_close",
    "tls_plan",
]

log = structlog.get_logger("worker.smtp")


@dataclasses.dataclass(frozen=True)
class TlsPlan:
    implicit: bool  # TLS from the first byte
    starttls: bool | None  # True: required, None: if offered, False: never


def tls_plan(profile: Profile) -> TlsPlan:
    """How to encrypt a connection for this profile (pure)."""
    logs_in = profile.auth_method != "none"
    match profile.encryption:
        case "ssl":
            return TlsPlan(implicit=True, starttls=False)
        case "starttls":
            return TlsPlan(implicit=False, starttls=True)
        case "auto" if profile.port == 465:
            return TlsPlan(implicit=True, starttls=False)
        case "auto":
            return TlsPlan(implicit=False, starttls=True if logs_in else None)
        case _:
            return TlsPlan(implicit=False, starttls=False)


class TokenSource(Protocol):
    """Where an OAuth profile's access tokens come from (:mod:`worker.oauth_tokens`)."""

    async def current(self) -> str:
        """A fresh access token."""
        ...

    async def renew(self, refused: str) -> str:
        """Another token than ``refused``, which the server did not accept."""
        ...


class ConnectFailed(Exception):
    """Opening a connection failed at ``stage``; ``__cause__`` holds the original error."""

    def __init__(self, stage: Stage) -> None:
        super().__init__(f"connection failed at the {stage} stage")
        self.stage = stage


class ProfilePaused(Exception):
    """The profile is paused: no connection is opened for it until ``pause.until``."""

    def __init__(self, pause: PauseProfile) -> None:
        super().__init__(pause.reason)
        self.pause = pause


@dataclasses.dataclass(eq=False)
class SmtpSession:
    """One open, authenticated connection and what we know about it."""

    client: aiosmtplib.SMTP
    tls_version: str | None
    last_used: float = dataclasses.field(default_factory=time.monotonic)
    # Whether a message may go with PIPELINING, and with CHUNKING, where the server offers them.
    pipelining: bool = True
    chunking: bool = True

    async def send(
        self,
        sender: str,
        recipients: Sequence[str],
        data: bytes,
        *,
        mail_options: Iterable[str] = (),
    ) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        """Send one message as ``sendmail()`` does, in as few round trips as the server allows
        (:mod:`worker.smtp_pipelining`): the refused recipients and the server's last reply."""
        await self._greeted()
        transfer = transfer_for(self.client, pipelining=self.pipelining, chunking=self.chunking)
        return await send_transaction(
            self.client, sender, recipients, data, mail_options=mail_options, transfer=transfer
        )

    async def offers(self, extension: str) -> bool:
        """Whether the server offers ``extension`` (such as ``smtputf8``) on this connection."""
        await self._greeted()
        return self.client.supports_extension(extension)

    async def _greeted(self) -> None:
        if self.client.is_ehlo_or_helo_needed:  # a plain relay without login: no EHLO yet
            await _greet(self.client)


class ConnectionPool:
    """Up to ``profile.max_connections`` reusable connections to the profile's server.

    Connections are opened one at a time, so a wrong password costs one login attempt, not
    one per waiting message: while :attr:`pause` lasts, no connection is opened
    (:class:`ProfilePaused`). An idle connection is checked with NOOP before reuse.

    With ``pipelining``, messages go with PIPELINING and CHUNKING where the server offers them;
    a server that offers CHUNKING and then does not know BDAT is sent to without it from then on.
    """

    def __init__(
        self,
        profile: Profile,
        password: str | None,
        *,
        idle_check_after: float = 30.0,
        tokens: TokenSource | None = None,
        pipelining: bool = True,
    ) -> None:
        self.profile = profile
        # This worker's pause of the profile, set after a failure such as a refused login.
        self.pause: PauseProfile | None = None
        self._password = password
        self._tokens = tokens
        self._idle_check_after = idle_check_after
        self._pipelining = pipelining
        self._chunking = pipelining
        self._slots = asyncio.Semaphore(profile.max_connections)
        self._open_lock = asyncio.Lock()
        self._idle: list[SmtpSession] = []
        self._dropped: set[SMTPProtocol] = set()  # connections dropped, perhaps still closing
        self._closed = False

    def __repr__(self) -> str:
        return f"<ConnectionPool {self.profile.name} idle={len(self._idle)}>"

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[SmtpSession]:
        """A ready connection; dropped instead of returned if the block raises."""
        async with self._slots:
            session = await self._take_or_open()
            session.pipelining, session.chunking = self._pipelining, self._chunking
            # Kept here: a failed send may have closed the client, which then forgets it.
            protocol = session.client.protocol
            try:
                yield session
            except ChunkingRefused as exc:
                self._chunking = False
                log.warning("chunking_refused", profile=self.profile.name, reason=exc.message)
                self._drop(session, protocol)
                raise
            except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused) as exc:
                # A refused message leaves a healthy connection (the client sent RSET): keep it,
                # or the next message pays another login. 421 means the server is closing.
                if getattr(exc, "code", None) == 421 or not session.client.is_connected:
                    self._drop(session, protocol)
                    raise
                session.last_used = 0.0  # check it with NOOP before the next use
                await self._give_back(session)
                raise
            except BaseException:
                self._drop(session, protocol)
                raise
            session.last_used = time.monotonic()
            await self._give_back(session)

    def paused(self) -> PauseProfile | None:
        """:attr:`pause` while it lasts; None once it ended."""
        if self.pause is not None and self.pause.until <= datetime.now(UTC):
            self.pause = None
        return self.pause

    def serves(self, profile: Profile) -> bool:
        """Whether this pool's connections are right for ``profile`` (its settings may change)."""
        return _connection_settings(self.profile) == _connection_settings(profile)

    async def close(self) -> None:
        """QUIT the idle connections, and wait until those and the dropped ones are closed."""
        self._closed = True
        idle, self._idle = self._idle, []
        dropped, self._dropped = self._dropped, set()
        await asyncio.gather(
            *(quit_and_close(session.client) for session in idle),
            *(_closed(protocol) for protocol in dropped),
        )

    def _drop(self, session: SmtpSession, protocol: SMTPProtocol | None) -> None:
        """Close a connection that is not given back; :meth:`close` waits until it is closed.

        (A TLS connection finishes closing later; the send that failed does not wait for it.)
        """
        session.client.close()
        self._dropped = {dropped for dropped in self._dropped if dropped.transport is not None}
        if protocol is not None and protocol.transport is not None:
            self._dropped.add(protocol)

    async def _give_back(self, session: SmtpSession) -> None:
        if self._closed:
            await quit_and_close(session.client)
        else:
            self._idle.append(session)

    async def _take_or_open(self) -> SmtpSession:
        while self._idle:
            session = self._idle.pop()
            if await self._still_usable(session):
                return session
        async with self._open_lock:
            # Checked after the wait: the connection opened before this one may have just
            # failed to log in and paused the profile.
            pause = self.paused()
            if pause is not None:
                raise ProfilePaused(pause)
            return await self._open()

    async def _still_usable(self, session: SmtpSession) -> bool:
        if not session.client.is_connected:
            return False
        if time.monotonic() - session.last_used < self._idle_check_after:
            return True
        protocol = session.client.protocol
        try:
            await session.client.noop()
        except (aiosmtplib.SMTPException, OSError):
            self._drop(session, protocol)
            return False
        return True

    async def _open(self) -> SmtpSession:
        return await open_connection(self.profile, self._password, tokens=self._tokens)


# PLAIN and LOGIN are what providers support; both only ever travel inside TLS here.
_AUTH_PREFERENCE = ("plain", "login", "cram-md5")


async def open_connection(
    profile: Profile, password: str | None, *, tokens: TokenSource | None = None
) -> SmtpSession:
    """Connect, encrypt and log in exactly as the profile says; :class:`ConnectFailed` if not.

    An OAuth profile logs in with an access token from ``tokens``.
    """
    plan = tls_plan(profile)
    if not profile.verify_tls:
        log.warning("tls_verification_disabled", profile=profile.name, host=profile.host)
    client = aiosmtplib.SMTP(
        hostname=profile.host,
        port=profile.port,
        timeout=profile.timeout_seconds,
        use_tls=plan.implicit,
        start_tls=False,  # done below, so a missing STARTTLS gets its own clear error
        validate_certs=profile.verify_tls,
        cert_bundle=profile.ca_bundle,
    )
    stage = Stage.CONNECT
    protocol: SMTPProtocol | None = None
    try:
        await client.connect()
        # Kept: a command that times out closes the client, which then forgets its protocol,
        # and the socket must still be seen closed below.
        protocol = client.protocol
        stage = Stage.TLS
        await _starttls(client, profile, plan)
        stage = Stage.AUTH
        if profile.auth_method == "oauth2":
            await _login_with_token(client, profile, tokens)
        else:
            await _login(client, profile, password)
    except Exception as exc:
        # The socket is closed before the failure is told: a command such as ``profiles
        # check`` ends its event loop right after, and a transport still closing then is a
        # ResourceWarning.
        client.close()
        await _closed(protocol)
        raise ConnectFailed(stage) from exc
    return SmtpSession(client=client, tls_version=_tls_version(client))


async def _closed(protocol: SMTPProtocol | None, limit: float = 1.0) -> None:
    """Until the connection of ``protocol`` is really closed (its TLS shutdown done); after
    ``limit`` seconds it is aborted, for a peer that never finishes the shutdown."""
    try:
        async with asyncio.timeout(limit):
            # aiosmtplib drops the transport in connection_lost() and offers no event for it.
            while protocol is not None and protocol.transport is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        transport = None if protocol is None else protocol.transport
        if isinstance(transport, asyncio.WriteTransport):  # as TCP and TLS transports are
            transport.abort()
            await asyncio.sleep(0)  # the socket closes in the callback abort() schedules


async def _starttls(client: aiosmtplib.SMTP, profile: Profile, plan: TlsPlan) -> None:
    if plan.starttls is False:
        return
    await client.ehlo()
    if client.supports_extension("starttls"):
        await client.starttls()
    elif plan.starttls:
        raise StartTlsUnavailable(
            N_(
                "%(server)s offers no STARTTLS; "
                "the password will not be sent over an unencrypted connection"
            )
            % {"server": f"{profile.host}:{profile.port}"}
        )


async def _login(client: aiosmtplib.SMTP, profile: Profile, password: str | None) -> None:
    """Log in with one mechanism only, so a wrong password costs one failed attempt.

    (aiosmtplib's ``login()`` tries every mechanism the server offers in turn, and
    providers lock accounts after a few failures.)
    """
    if profile.auth_method == "none":
        return
    _require_tls(client, profile)
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    offered = client.server_auth_methods if client.supports_extension("auth") else []
    mechanism = next((m for m in _AUTH_PREFERENCE if m in offered), None)
    if mechanism is None:
        raise aiosmtplib.SMTPException("The SMTP AUTH extension is not supported by this server.")
    login, secret = profile.login or "", password or ""
    match mechanism:
        case "plain":
            await client.auth_plain(login, secret)
        case "login":
            await client.auth_login(login, secret)
        case _:
            await client.auth_crammd5(login, secret)


async def _login_with_token(
    client: aiosmtplib.SMTP, profile: Profile, tokens: TokenSource | None
) -> None:
    """XOAUTH2 with a fresh access token; a refused token is renewed once, then given up.

    (A token may be revoked or cut short before its expiry; one refusal does not mean the
    sign-in is gone, two in a row with a new token do.)
    """
    _require_tls(client, profile)
    if tokens is None:
        raise OAuthTokenRefused(
            N_("profile %(profile)s has no source of OAuth 2.0 tokens") % {"profile": profile.name},
            profile=profile.name,
        )
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    offered = client.server_auth_methods if client.supports_extension("auth") else []
    if "xoauth2" not in offered:
        raise aiosmtplib.SMTPException(
            "The SMTP AUTH extension is not supported by this server."
            if not offered
            else N_("the server offers no XOAUTH2 login (it offers %(offered)s)")
            % {"offered": ", ".join(offered)}
        )
    login = profile.login or profile.from_address
    token = await tokens.current()
    try:
        await client.auth_xoauth2(login, token)
    except aiosmtplib.SMTPAuthenticationError:
        token = await tokens.renew(token)
        try:
            await client.auth_xoauth2(login, token)
        except aiosmtplib.SMTPAuthenticationError as exc:
            reply = f"{exc.code} {' '.join(exc.message.split())}"
            app_only = profile.oauth_flow in {"client_credentials", "service_account"}
            raise OAuthTokenRefused(reply, profile=profile.name, app_only=app_only) from exc


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO for a server that refuses it, as ``sendmail()`` would have said."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not client.is_connected:
            raise
        await client.helo()


def _require_tls(client: aiosmtplib.SMTP, profile: Profile) -> None:
    # Checked on the connection itself, not on the settings that should have encrypted it:
    # a password or token goes inside TLS or not at all.
    if client.get_transport_info("ssl_object") is None:
        raise UnencryptedLogin(
            N_(
                "refusing to send the password of profile %(profile)s over an unencrypted"
                " connection to %(server)s (encryption %(encryption)s)"
            )
            % {
                "profile": profile.name,
                "server": f"{profile.host}:{profile.port}",
                "encryption": profile.encryption,
            }
        )


def _connection_settings(profile: Profile) -> tuple[object, ...]:
    """The fields that shape a connection; other edits (display name, caps) keep the pool."""
    return (
        profile.host,
        profile.port,
        profile.encryption,
        profile.auth_method,
        profile.login,
        profile.password_encrypted,
        profile.oauth_provider,
        profile.oauth_flow,
        profile.oauth_client_id,
        profile.oauth_tenant,
        profile.oauth_authority,
        profile.oauth_token_url,
        profile.oauth_credential_encrypted,
        profile.oauth_authorized_at,  # a new sign-in: a fresh account, without the old pause
        profile.verify_tls,
        profile.ca_bundle,
        profile.timeout_seconds,
        profile.max_connections,
    )


def _tls_version(client: aiosmtplib.SMTP) -> str | None:
    ssl_object = client.get_transport_info("ssl_object")
    return None if ssl_object is None else str(ssl_object.version())


async def quit_and_close(client: aiosmtplib.SMTP) -> None:
    """QUIT, and wait until the socket is closed: a worker that stops, or a command that
    ends its event loop, must not leave a TLS socket to the garbage collector."""
    protocol = client.protocol
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
    await _closed(protocol)
