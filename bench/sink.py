"""An SMTP sink in a process of its own: accepts every message, counts it, keeps nothing.

With a round trip (``rtt``), clients reach it through a :class:`bench.delay.DelayProxy` in
the same process; with an acceptance time (``accept``), it answers a message's end that much
later, as a server that writes the message to disk and hands it on before it says 250.
Asked to (``Extensions``), it offers PIPELINING and CHUNKING, as Gmail, Microsoft 365 and
Postfix do: a message sent with ``BDAT ... LAST`` waits the same acceptance time after its
last chunk, and is counted in ``chunked`` too.

The parent reads the count and the time of the last acceptance from shared memory
(``multiprocessing.Value``), so reading them costs the sink nothing. Times are
``time.monotonic()``, which on Linux is one clock for every process of the machine.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import multiprocessing.sharedctypes
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from bench.delay import DelayProxy

__all__ = ["Delay", "Extensions", "SmtpSink"]

_HOST = "127.0.0.1"
# Above the memory measurement's messages (10 MB attached, 14.4 MB once base64-encoded), so
# the sink never refuses one for its size.
_DATA_SIZE_LIMIT = 64 * 1024 * 1024


class _Counter:
    """aiosmtpd handler: counts messages and recipients, notes when the last one was accepted."""

    def __init__(
        self,
        messages: Any,
        recipients: Any,
        last_at: Any,
        accept: float,
        extensions: tuple[str, ...],
        *,
        chunked: Any,
    ) -> None:
        self._messages = messages
        self._chunked = chunked
        self._recipients = recipients
        self._last_at = last_at
        self._accept = accept
        self._extensions = extensions

    async def handle_EHLO(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to the hook once one exists
        *offered, last = responses  # the last line is aiosmtpd's "250 HELP"
        return [*offered, *(f"250-{extension}" for extension in self._extensions), last]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        if self._accept:
            # Only this connection waits: aiosmtpd serves each one in a task of its own.
            await asyncio.sleep(self._accept)
        now = time.monotonic()
        # The only writer is this process's one thread, so no lock is needed.
        self._recipients.value += len(envelope.rcpt_tos)
        self._last_at.value = now
        self._messages.value += 1
        self._chunked.value += envelope.came_in_chunks
        return "250 OK"


@dataclass(frozen=True)
class Delay:
    """The network between the clients and the sink: its round trip and the sink's time to
    accept a message after its last byte, in seconds."""

    rtt: float = 0.0
    accept: float = 0.0


@dataclass(frozen=True)
class Extensions:
    """The SMTP extensions the sink offers beside aiosmtpd's own (SIZE, 8BITMIME)."""

    pipelining: bool = False
    chunking: bool = False

    @property
    def keywords(self) -> tuple[str, ...]:
        """The EHLO keywords, as the sink advertises them."""
        return ("PIPELINING",) * self.pipelining + ("CHUNKING",) * self.chunking


def _serve(
    messages: Any,
    recipients: Any,
    last_at: Any,
    ready: multiprocessing.connection.Connection,
    *,
    chunked: Any,
    delay: Delay,
    extensions: Extensions,
) -> None:
    """The child process: serve on 127.0.0.1, port 0, until terminated."""
    from bench.sink_smtp import SinkSMTP  # noqa: PLC0415 - imported in the child only

    async def main() -> None:
        handler = _Counter(
            messages, recipients, last_at, delay.accept, extensions.keywords, chunked=chunked
        )
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SinkSMTP(
                handler,
                chunking=extensions.chunking,
                hostname="bench-sink",
                ident="bench-sink",
                data_size_limit=_DATA_SIZE_LIMIT,
            ),
            _HOST,
            0,
        )
        front = server
        if delay.rtt:
            port = server.sockets[0].getsockname()[1]
            front = await DelayProxy(_HOST, port, delay.rtt).serve(_HOST)
        ready.send(front.sockets[0].getsockname()[1])
        ready.close()
        await front.serve_forever()  # the sink's server serves on while ``server`` lives

    asyncio.run(main())


class SmtpSink:
    """Starts the sink process; ``port``, ``count``, ``recipients`` and ``last_at`` read it.

    With a ``delay``, ``port`` is its proxy's, so every client pays the round trips. With
    ``extensions``, it offers PIPELINING and CHUNKING (BDAT) as they say.
    """

    def __init__(self, delay: Delay = Delay(), extensions: Extensions = Extensions()) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._messages = context.Value("q", 0, lock=False)
        self._recipients = context.Value("q", 0, lock=False)
        self._last_at = context.Value("d", 0.0, lock=False)
        self._chunked = context.Value("q", 0, lock=False)
        receiving, sending = context.Pipe(duplex=False)
        self._receiving = receiving
        self._process = context.Process(
            target=_serve,
            args=(self._messages, self._recipients, self._last_at, sending),
            kwargs={"chunked": self._chunked, "delay": delay, "extensions": extensions},
            name="bench-smtp-sink",
            daemon=True,
        )
        self.host = _HOST
        self.port = 0
        self.delay = delay
        self.extensions = extensions

    def start(self, timeout: float = 30.0) -> SmtpSink:
        self._process.start()
        if not self._receiving.poll(timeout):
            self.stop()
            raise RuntimeError("the SMTP sink did not start")
        self.port = int(self._receiving.recv())
        return self

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(10)

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The sink process's id (its CPU time is read from ``/proc``)."""
        pid = self._process.pid
        if pid is None:
            raise RuntimeError("the SMTP sink has not started")
        return pid

    @property
    def count(self) -> int:
        """Messages accepted so far."""
        return int(self._messages.value)

    @property
    def recipients(self) -> int:
        """Recipients accepted so far (RCPT TO of accepted messages)."""
        return int(self._recipients.value)

    @property
    def chunked(self) -> int:
        """Of the messages accepted, those sent with ``BDAT ... LAST`` (CHUNKING)."""
        return int(self._chunked.value)

    @property
    def last_at(self) -> float:
        """``time.monotonic()`` of the last acceptance; 0.0 before the first."""
        return float(self._last_at.value)

    def reset(self) -> None:
        """Start counting from zero (between measurements, while nothing is being sent)."""
        self._messages.value = 0
        self._recipients.value = 0
        self._chunked.value = 0
        self._last_at.value = 0.0
