"""A TCP proxy on loopback that puts a network's round trip between its clients and a server.

Every chunk read from one side reaches the other half a round trip after it was read, in
order. Chunks in flight overlap in time, as packets on a wire do: two commands written
together are both answered one round trip after they were sent, not one after the other.
A new connection reaches the server one round trip after it was accepted (the TCP
handshake), so the greeting arrives 1.5 round trips after ``connect``, as over a network.
Bandwidth is not limited: a chunk of any size takes the same half round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

__all__ = ["DelayProxy", "round_trip_bounds"]

_CHUNK = 64 * 1024


def round_trip_bounds(connections: int, rtt: float, accept: float) -> tuple[float, float]:
    """The most messages a second ``connections`` can send when every message waits for one
    round trip and the server's acceptance time (MAIL, RCPT and the message in one flight),
    and when it waits for four (MAIL, RCPT, DATA, then the message with its dot)."""
    return connections / (rtt + accept), connections / (4 * rtt + accept)


@dataclass(frozen=True)
class DelayProxy:
    """Forwards each connection to ``target_host``:``target_port``, ``rtt`` seconds a round
    trip."""

    target_host: str
    target_port: int
    rtt: float

    async def handle(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        """One client connection, until either side closes it."""
        try:
            await asyncio.sleep(self.rtt)  # SYN, SYN-ACK and ACK
            server_in, server_out = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            client_out.close()
            return
        try:
            async with asyncio.TaskGroup() as flows:
                flows.create_task(self._flow(client_in, server_out))
                flows.create_task(self._flow(server_in, client_out))
        except* OSError:
            pass  # a side went away mid-chunk; the other is closed below
        finally:
            for writer in (client_out, server_out):
                writer.close()

    async def _flow(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """One direction: each chunk is stamped when read and written half a round trip later."""
        loop = asyncio.get_running_loop()
        in_flight: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        deliver = asyncio.create_task(self._deliver(in_flight, sink))
        try:
            while chunk := await source.read(_CHUNK):
                in_flight.put_nowait((loop.time() + self.rtt / 2, chunk))
            in_flight.put_nowait((loop.time() + self.rtt / 2, b""))  # the end of the stream
            await deliver
        finally:
            deliver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deliver

    async def _deliver(
        self, in_flight: asyncio.Queue[tuple[float, bytes]], sink: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, chunk = await in_flight.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not chunk:
                if sink.can_write_eof():
                    sink.write_eof()
                return
            sink.write(chunk)
            await sink.drain()

    async def serve(self, host: str) -> asyncio.Server:
        """Listening on ``host`` and a free port (``server.sockets[0]``)."""
        return await asyncio.start_server(self.handle, host, 0)
