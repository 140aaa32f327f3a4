"""Development only: a local SMTP server that keeps each message as an ``.eml`` file.

``mailworker run --dev-smtp`` (what ``make run`` starts) uses it so that a fresh checkout can
send without any mail account: while the database has no profile, the worker starts a capture
server on ``127.0.0.1`` and a profile named ``local`` that sends to it (no encryption, no
login). Every message that server accepts is written to ``<data_dir>/devmail/`` and goes
nowhere else. While ``local`` is the only profile it is also the default one, so a message
that names no profile (the README's SQL example) is captured too; the first real profile
added takes the default over, so real mail is never captured by mistake. Once real profiles
exist, the server runs only as long as that ``local`` profile is kept.
``mailworker migrate --dev-profile`` makes the profile ahead of the first ``run --dev-smtp``.

aiosmtpd is the optional extra ``local`` (``make run`` installs it; the image does not): this
module imports it only when a server starts, so ``mailworker`` works without it and only
``--dev-smtp`` refuses, in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.errors import ConfigurationError
from worker.presets import load_presets
from worker.profiles import Profile, ProfileFields, ensure_valid
from worker.repository import Repository

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = [
    "DEV_FOLDER",
    "DEV_HOST",
    "DEV_PORT",
    "DEV_PROFILE",
    "CaptureServer",
    "dev_profile_fields",
    "dev_smtp",
    "ensure_dev_profile",
    "is_dev_profile",
    "start_capture_server",
]

log = structlog.get_logger("worker.devmail")

DEV_PROFILE = "local"
DEV_HOST = "127.0.0.1"  # loopback only: the capture server is never reachable from outside
DEV_PORT = 2525
DEV_FOLDER = "devmail"
DEV_FROM = "mailworker@localhost.localdomain"  # a bare "localhost" domain is not an address
# Marks the profile as this module's own: only such a profile is kept in step with the server.
DEV_DESCRIPTION = (
    "Development capture server of `mailworker run --dev-smtp`:"
    " messages are kept as .eml files, never delivered."
)
_NOTE = "development only: messages are kept as .eml files in the folder and never delivered"
# aiosmtpd's DATA_SIZE_DEFAULT (32 MiB), here so that importing this module needs no aiosmtpd.
_DATA_SIZE_DEFAULT = 33_554_432
_NOT_INSTALLED = (
    "--dev-smtp needs the capture server's package aiosmtpd, which is not installed; install"
    " the local extra (pip install 'mail-outbox-worker[local]'; make run does), or run without"
    " --dev-smtp"
)


def _smtp_class() -> type[SMTP]:
    """aiosmtpd's server class, imported on first use (it is optional)."""
    try:
        from aiosmtpd.smtp import SMTP  # noqa: PLC0415 - see the module docstring
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "aiosmtpd":
            raise  # installed but broken: a traceback is the useful answer
        raise ConfigurationError(_NOT_INSTALLED) from None
    return SMTP


class _KeepAsFile:
    """aiosmtpd handler: every accepted message becomes one ``.eml`` file in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(  # noqa: N802 - the hook's name is aiosmtpd's
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        sender, data = envelope.mail_from or "", envelope.original_content or b""
        path = await asyncio.to_thread(self._write, sender, envelope.rcpt_tos, data)
        log.info("dev_smtp_captured", path=str(path), recipients=len(envelope.rcpt_tos))
        return f"250 2.0.0 Kept as {path.name} (development capture, not delivered)"

    def _write(self, mail_from: str, rcpt_tos: Sequence[str], data: bytes) -> Path:
        # The envelope goes in front, as a delivering server adds it: Bcc recipients appear
        # nowhere else. SMTP commands are single lines, so the addresses hold no line break.
        envelope = f"Return-Path: <{mail_from}>\r\nX-Original-To: {', '.join(rcpt_tos)}\r\n"
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.folder / f"{stamp}-{secrets.token_hex(3)}.eml"
        # Written under a temporary name, then renamed: a reader never sees half a message.
        descriptor, temporary = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".part")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(envelope.encode() + data)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        return path


class CaptureServer:
    """A running capture server: its address and the folder the messages land in."""

    def __init__(self, server: asyncio.Server, folder: Path) -> None:
        self._server = server
        self.folder = folder
        self.host, self.port = server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()


async def start_capture_server(
    folder: Path,
    *,
    host: str = DEV_HOST,
    port: int = DEV_PORT,
    max_bytes: int | None = _DATA_SIZE_DEFAULT,
) -> CaptureServer:
    """Listen on ``host:port`` (0: any free port) in the running loop; messages go to ``folder``.

    ``max_bytes`` limits one message (``None``: no limit).
    """
    smtp = _smtp_class()
    folder = await asyncio.to_thread(_made_folder, folder)
    handler = _KeepAsFile(folder)
    loop = asyncio.get_running_loop()
    # aiosmtpd logs every connection at INFO ("mail.log"); the capture log line is enough.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    server = await loop.create_server(
        lambda: smtp(
            handler,
            hostname="localhost",
            ident="mailworker devmail (development capture)",
            enable_SMTPUTF8=True,
            data_size_limit=max_bytes,
            loop=loop,
        ),
        host=host,
        port=port,
    )
    return CaptureServer(server, folder)


def _made_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve()


def dev_profile_fields(port: int) -> ProfileFields:
    """The ``local`` profile: the capture server on ``127.0.0.1:port``, no TLS, no login."""
    return ProfileFields(
        name=DEV_PROFILE,
        from_address=DEV_FROM,
        display_name="mailworker (development)",
        description=DEV_DESCRIPTION,
        host=DEV_HOST,
        port=port,
        encryption="none",
        auth_method="none",
    )


def is_dev_profile(profile: Profile) -> bool:
    """Whether ``profile`` is the ``local`` profile this module made (not a person's own)."""
    return profile.name == DEV_PROFILE and profile.description == DEV_DESCRIPTION


def _why_not(profiles: Sequence[Profile]) -> str | None:
    """Why the capture server should not run, or ``None`` when it should.

    It runs when there is no profile at all, and whenever this module's ``local`` profile
    exists (messages may name it). Otherwise the service has real profiles only.
    """
    if not profiles or any(is_dev_profile(profile) for profile in profiles):
        return None
    if any(profile.name == DEV_PROFILE for profile in profiles):
        return f"a profile named {DEV_PROFILE!r} exists that is not the development one"
    return "profiles exist; the capture server runs only while there is none but 'local'"


async def _keep_profile_in_step(repository: Repository, port: int) -> str:
    """Create the ``local`` profile, or point it at ``port``; what was done."""
    fields = dev_profile_fields(port)
    ensure_valid(fields, has_password=False, presets=load_presets())
    current = await repository.get_profile(DEV_PROFILE)
    if current is None:
        # The only profile: the default too, until a real one takes it over (profiles add).
        only = not await repository.list_profiles()
        await repository.create_profile(
            {**fields.as_row(), "password_encrypted": None, "is_default": only}
        )
        return "created"
    if not is_dev_profile(current):  # made by a person meanwhile: theirs to keep
        return "kept"
    if (current.host, current.port) != (fields.host, fields.port):
        await repository.update_profile(DEV_PROFILE, {"host": fields.host, "port": fields.port})
        return "updated"
    return "unchanged"


async def ensure_dev_profile(engine: AsyncEngine, *, port: int = DEV_PORT) -> str:
    """Make the ``local`` profile now, while there is no profile; what was done.

    ``mailworker migrate --dev-profile`` (``make setup``): the profile exists before the
    first worker starts, so a test message can name it at once.
    """
    async with engine.begin() as connection:
        repository = Repository(connection)
        reason = _why_not(await repository.list_profiles())
        if reason is not None:
            return f"not made: {reason}"
        return await _keep_profile_in_step(repository, port)


@contextlib.asynccontextmanager
async def dev_smtp(
    engine: AsyncEngine,
    *,
    data_dir: Path,
    port: int = DEV_PORT,
    max_bytes: int | None = _DATA_SIZE_DEFAULT,
) -> AsyncIterator[CaptureServer | None]:
    """Run the capture server and its ``local`` profile while the block runs, if wanted.

    Yields the server, or ``None`` when the database has real profiles (see :func:`_why_not`)
    or the port is taken; the worker runs either way. Without aiosmtpd installed it refuses
    at once, before it looks at the database (:class:`ConfigurationError`).
    """
    _smtp_class()
    async with engine.connect() as connection:
        reason = _why_not(await Repository(connection).list_profiles())
    if reason is not None:
        log.info("dev_smtp_skipped", reason=reason)
        yield None
        return
    try:
        server = await start_capture_server(data_dir / DEV_FOLDER, port=port, max_bytes=max_bytes)
    except OSError as exc:  # the port is taken, most likely by another `run --dev-smtp`
        log.warning(
            "dev_smtp_not_started",
            reason=f"cannot listen on {DEV_HOST}:{port}: {exc.strerror or exc}",
            hint="another `mailworker run --dev-smtp` may be capturing already;"
            " --dev-smtp-port chooses another port",
        )
        yield None
        return
    try:
        async with engine.begin() as connection:
            profile = await _keep_profile_in_step(Repository(connection), server.port)
        log.warning(
            "dev_smtp_started",
            folder=str(server.folder),
            host=server.host,
            port=server.port,
            profile=DEV_PROFILE,
            profile_change=profile,
            note=_NOTE,
        )
        yield server
    finally:
        await server.close()
        log.info("dev_smtp_stopped", folder=str(server.folder))
