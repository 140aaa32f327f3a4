"""A connection that failed is closed for real, even when the server never finishes the TLS
shutdown.

Closing a TLS connection sends close_notify and waits for the server's. A server that hangs
(or a middlebox that swallows the packet) would keep the socket open for asyncio's shutdown
timeout, 30 s, after the attempt already failed. The worker gives it a second, then aborts:
the socket is gone when the failure is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest

from tests.kit.factories import make_profile
from tests.kit.smtp_server import HOST, SmtpTestCA
from worker.smtp import ConnectFailed, open_connection

WAIT_SECONDS = 5.0


class _MuteAfterGreeting:
    """A TLS server for one connection: it greets, then never reads or answers again, so
    neither the client's EHLO nor its close_notify gets a reply. TLS runs over memory
    buffers, so :meth:`closed_by_client` can watch the TCP stream itself."""

    def __init__(self, ca: SmtpTestCA) -> None:
        self._context = ca.server_context()
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._greeted = threading.Event()
        self._connection: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self._listener.settimeout(WAIT_SECONDS)
        connection, _ = self._listener.accept()
        connection.settimeout(WAIT_SECONDS)
        self._connection = connection
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self._context.wrap_bio(incoming, outgoing, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                connection.sendall(outgoing.read())
                incoming.write(connection.recv(4096))
        tls.write(b"220 mute.test ESMTP\r\n")
        connection.sendall(outgoing.read())
        self._greeted.set()

    def closed_by_client(self, within: float) -> bool:
        """Whether the client's socket goes away (end of stream or reset) within ``within``
        seconds; what it sends before (EHLO, close_notify) is read and left unanswered."""
        assert self._greeted.wait(WAIT_SECONDS), "the client never connected"
        assert self._connection is not None
        self._connection.settimeout(within)
        try:
            while self._connection.recv(4096):
                pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True

    def __enter__(self) -> _MuteAfterGreeting:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(OSError):
            if self._connection is not None:
                self._connection.close()
        self._listener.close()
        self._thread.join(WAIT_SECONDS)


@pytest.fixture
def mute_server(smtp_ca: SmtpTestCA) -> Iterator[_MuteAfterGreeting]:
    with _MuteAfterGreeting(smtp_ca) as server:
        yield server


async def test_a_server_that_never_finishes_the_tls_shutdown_is_cut_off(
    mute_server: _MuteAfterGreeting, smtp_ca: SmtpTestCA
) -> None:
    """EHLO before the login times out; the client's close_notify gets no answer either.
    When the failure is reported, the socket is already closed, not left waiting 30 s for
    the TLS shutdown."""
    profile = make_profile(
        host=HOST,
        port=mute_server.port,
        encryption="ssl",
        auth_method="login",
        login="jankowalski",
        ca_bundle=smtp_ca.cert_bundle,
        timeout_seconds=1,
    )

    with pytest.raises(ConnectFailed):
        await open_connection(profile, "not-sent")

    # At once: a second is what the client allows the shutdown, and that has passed.
    assert await asyncio.to_thread(mute_server.closed_by_client, 0.5)
