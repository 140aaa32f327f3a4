"""The worker keeps SMTP connections per profile: reused, capped, checked and renewed.

Providers count logins and connections, so one login should carry many messages, a profile
must never hold more connections than it allows, a connection the server closed while it sat
idle must not cost a message an attempt, and a profile whose settings change must stop using
connections made with the old ones. The worker runs in this process against a real
aiosmtpd server with TLS and AUTH; the server's journal says what happened on the wire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiosmtplib
import pytest

from tests.kit.database import sql
from tests.kit.delivery import add_profile, attempts_of, enqueue, fast_settings, run_until_empty
from tests.kit.factories import server_profile
from tests.kit.live_worker import running_worker
from tests.kit.smtp_fixtures import SMTP_LOGIN, SMTP_PASSWORD, SmtpServerFactory
from tests.kit.smtp_server import SmtpTestServer
from worker.crypto import load_cipher
from worker.settings import Settings
from worker.smtp import ConnectionPool

WAIT_SECONDS = 10.0  # the longest any step may take before the test fails
IDLE_CHECK_AFTER = 0.1  # seconds; the worker's idle_check_after in the idle tests
NEW_PASSWORD = "Nowe-Haslo-2026!"


async def _arrived(server: SmtpTestServer, count: int) -> None:
    """Wait until the server has received ``count`` messages (TimeoutError after a while)."""
    await asyncio.to_thread(server.wait_for_messages, count, WAIT_SECONDS)


async def _eventually(condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` became true within WAIT_SECONDS (checked every few ms)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _logins(server: SmtpTestServer) -> list[tuple[int, str | None, bool]]:
    """Each AUTH the server saw: (connection, login, success)."""
    return [(a.connection, a.login, a.success) for a in server.auth_attempts]


def _verbs(server: SmtpTestServer, connection: int) -> list[str]:
    return [c.verb for c in server.commands if c.connection == connection]


async def _attempt_outcomes(settings: Settings, ids: list[int]) -> list[list[str]]:
    return [[a["outcome"] for a in await attempts_of(settings, i)] for i in ids]


async def test_one_connection_and_one_login_carry_ten_messages(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """Ten messages through a profile allowing one connection: one connection, one AUTH, and
    a connection used moments ago is reused without a NOOP check."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl", max_connections=1)
    ids = await enqueue(settings, count=10)

    await run_until_empty(settings, limit=30)

    assert [["sent"]] * 10 == await _attempt_outcomes(settings, ids)
    assert (1, 1) == (smtps_server.connection_count, smtps_server.peak_open_connection_count)
    assert [(1, SMTP_LOGIN, True)] == _logins(smtps_server)
    assert [1] * 10 == [received.connection for received in smtps_server.messages]
    assert 0 == _verbs(smtps_server, 1).count("NOOP")


async def test_never_more_connections_than_the_profile_allows(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """Twenty messages, a worker that could send 32 at once and a profile allowing two
    connections: the server never sees more than two open, and both carry messages."""
    settings = fast_settings(settings)
    assert settings.concurrency > 2  # so only the profile's limit can hold the worker back
    await add_profile(settings, smtps_server, encryption="ssl", max_connections=2)
    ids = await enqueue(settings, count=20)

    await run_until_empty(settings, limit=30)

    assert [["sent"]] * 20 == await _attempt_outcomes(settings, ids)
    assert (2, 2) == (smtps_server.peak_open_connection_count, smtps_server.connection_count)
    assert {1, 2} == {received.connection for received in smtps_server.messages}
    assert [(1, SMTP_LOGIN, True), (2, SMTP_LOGIN, True)] == sorted(_logins(smtps_server))


async def test_connection_the_server_closed_while_idle_is_replaced(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """A pooled connection that the server closed after its idle timeout is noticed before
    use: the next message goes over a new connection and costs no failed attempt."""
    server = smtp_server_factory(
        tls="implicit", accounts={SMTP_LOGIN: SMTP_PASSWORD}, idle_timeout=0.5
    )
    settings = fast_settings(settings, idle_check_after=IDLE_CHECK_AFTER)
    await add_profile(settings, server, encryption="ssl")

    async with running_worker(settings):
        [first] = await enqueue(settings)
        await _arrived(server, 1)
        assert await _eventually(lambda: server.open_connection_count == 0), "not closed"
        [second] = await enqueue(settings)
        await _arrived(server, 2)

    assert [["sent"], ["sent"]] == await _attempt_outcomes(settings, [first, second])
    assert [1, 2] == [received.connection for received in server.messages]
    assert [(1, SMTP_LOGIN, True), (2, SMTP_LOGIN, True)] == _logins(server)


async def test_idle_connection_is_checked_with_noop_before_reuse(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """After idle_check_after seconds unused, a connection is checked with NOOP before the
    next message; a server that answers 421 and hangs up costs that message no attempt."""
    smtps_server.script.on("NOOP", reply="421 4.4.2 Idle too long, closing connection")
    settings = fast_settings(settings, idle_check_after=IDLE_CHECK_AFTER)
    await add_profile(settings, smtps_server, encryption="ssl")

    async with running_worker(settings):
        [first] = await enqueue(settings)
        await _arrived(smtps_server, 1)
        await asyncio.sleep(IDLE_CHECK_AFTER * 3)  # the passing of idle time is the subject
        [second] = await enqueue(settings)
        await _arrived(smtps_server, 2)

    assert [["sent"], ["sent"]] == await _attempt_outcomes(settings, [first, second])
    assert [1, 2] == [received.connection for received in smtps_server.messages]
    assert 1 == _verbs(smtps_server, 1).count("NOOP")


async def test_changed_password_gets_a_fresh_pool(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """After the password changes at the provider and in the profile, the next message goes
    over a new connection that logs in with the new password, though the old connection is
    still logged in and usable; the old connection is closed with QUIT."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")

    async with running_worker(settings):
        [first] = await enqueue(settings)
        await _arrived(smtps_server, 1)
        smtps_server.change_password(SMTP_LOGIN, NEW_PASSWORD)
        token = load_cipher(settings).encrypt(NEW_PASSWORD)
        await sql(
            settings,
            "UPDATE mail.profile SET password_encrypted = :token WHERE name = 'test'",
            token=token,
        )
        [second] = await enqueue(settings)
        await _arrived(smtps_server, 2)
    closed = await _eventually(lambda: smtps_server.open_connection_count == 0)

    assert [["sent"], ["sent"]] == await _attempt_outcomes(settings, [first, second])
    assert [1, 2] == [received.connection for received in smtps_server.messages]
    assert [(1, SMTP_LOGIN, True), (2, SMTP_LOGIN, True)] == _logins(smtps_server)
    assert (True, "QUIT") == (closed, _verbs(smtps_server, 1)[-1])


async def test_closing_a_pool_waits_until_its_tls_sockets_are_closed(
    smtps_server: SmtpTestServer,
) -> None:
    """A worker that stops, or a command that ends its event loop, closes its pools: each
    TLS connection is closed (QUIT, the TLS shutdown, the socket) when close() returns, not
    left to the garbage collector with a ResourceWarning."""
    profile = server_profile(smtps_server)
    # The server answers QUIT and leaves the closing to the client, so the client's TLS
    # shutdown is what close() has to wait for.
    smtps_server.script.on("QUIT", reply="221 2.0.0 Bye")
    pool = ConnectionPool(profile, SMTP_PASSWORD)
    async with pool.session() as session:
        protocol = session.client.protocol
        await session.send("jankowalski@wp.pl", ["anna@example.com"], b"Subject: x\r\n\r\nx\r\n")

    await pool.close()

    assert protocol is not None
    assert protocol.transport is None  # connection_lost() has run: nothing is left open
    assert "QUIT" in [c.verb for c in smtps_server.commands]


async def test_closing_a_pool_waits_for_a_connection_a_failed_send_dropped(
    smtps_server: SmtpTestServer,
) -> None:
    """A send that times out drops its connection without waiting for the TLS shutdown;
    the pool's close() still waits until that socket is closed."""
    smtps_server.script.once("RCPT", action="stall", seconds=5)
    pool = ConnectionPool(server_profile(smtps_server, timeout_seconds=1), SMTP_PASSWORD)
    protocols = []

    async def send() -> None:
        async with pool.session() as session:
            protocols.append(session.client.protocol)
            await session.send(
                "jankowalski@wp.pl", ["anna@example.com"], b"Subject: x\r\n\r\nx\r\n"
            )

    with pytest.raises(aiosmtplib.SMTPReadTimeoutError):
        await send()
    await pool.close()

    [protocol] = protocols
    assert protocol is not None
    assert protocol.transport is None  # connection_lost() has run: nothing is left open
