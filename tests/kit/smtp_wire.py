"""A raw SMTP line for tests: write exact bytes (a pipelined group, a BDAT chunk), read replies.

aiosmtplib waits for each reply before the next command, so it cannot send a group in one
packet nor cut a chunk short; this client can::

    async with SmtpWire.open(server) as wire:          # greeting read; EHLO is up to the test
        await wire.command("EHLO client.test")        # -> Reply(250, [...lines])
        await wire.send(b"MAIL FROM:<a@x.test>\\r\\nRCPT TO:<b@x.test>\\r\\n")  # one write
        first, second = await wire.replies(2)         # in the order the commands went
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tests.kit.smtp_server import SmtpTestServer

__all__ = ["Reply", "SmtpWire"]

TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: its code and the text of each line (after the code and separator)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class SmtpWire:
    """One connection to a server, spoken byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, server: SmtpTestServer) -> AsyncIterator[SmtpWire]:
        """Connect (over TLS for an implicit-TLS server), read the greeting; close on exit."""
        context: ssl.SSLContext | None = None
        if server.tls == "implicit" and server.ca is not None:
            context = server.ca.client_context()
        reader, writer = await asyncio.open_connection(
            server.hostname,
            server.port,
            ssl=context,
            server_hostname=server.hostname if context else None,
        )
        wire = cls(reader, writer)
        try:
            greeting = await wire.reply()
            assert greeting.code == 220, greeting
            yield wire
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def send(self, data: bytes) -> None:
        """Write ``data`` at once, as one packet on loopback."""
        self._writer.write(data)
        await self._writer.drain()

    async def reply(self) -> Reply:
        """The next reply; EOFError when the server closed the line instead."""
        code, lines = 0, []
        async with asyncio.timeout(TIMEOUT_SECONDS):
            while True:
                line = await self._reader.readline()
                if not line:
                    raise EOFError(f"the server closed the line after {lines!r}")
                text = line.decode("latin-1").rstrip("\r\n")
                code = int(text[:3])
                lines.append(text[4:])
                if text[3:4] != "-":
                    return Reply(code, tuple(lines))

    async def replies(self, count: int) -> list[Reply]:
        return [await self.reply() for _ in range(count)]

    async def command(self, line: str) -> Reply:
        """Send one command line and read its reply."""
        await self.send(line.encode() + b"\r\n")
        return await self.reply()

    async def closed(self) -> bool:
        """Whether the server has closed the line (it reads EOF, or the reset of a drop)."""
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                return await self._reader.read(1) == b""
        except ConnectionResetError:
            return True
