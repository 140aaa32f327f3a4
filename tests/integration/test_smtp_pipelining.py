"""A message in one flight: PIPELINING and CHUNKING against a real server, and every refusal.

Each test runs in three modes of the same aiosmtpd test server with implicit TLS and AUTH: one
that offers neither extension (the classic MAIL, RCPT, DATA, each after the reply before it),
one that offers PIPELINING (MAIL, RCPT ... DATA in one write, then the message), and one that
offers CHUNKING too (MAIL, RCPT ... and ``BDAT <size> LAST`` with the message in one write).
Whatever the mode, the result and the exception are those of aiosmtplib's ``sendmail()``, and
the connection stays in step for the next message. The server's journal says what went over
the wire and whether a command came in a group (``Command.pipelined``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiosmtplib
import pytest

from tests.kit.factories import server_profile
from tests.kit.smtp_fixtures import SMTP_LOGIN, SMTP_PASSWORD, SmtpServerFactory
from tests.kit.smtp_server import SmtpTestServer
from worker.smtp import ConnectionPool
from worker.smtp_pipelining import ChunkingRefused

pytestmark = pytest.mark.timeout(30)

MODES: dict[str, dict[str, bool]] = {
    "classic": {},
    "pipelining": {"pipelining": True},
    "chunking": {"pipelining": True, "chunking": True},
}
# The last command of the transaction, as the server sees it, in each mode.
LAST_VERB = {"classic": "DATA", "pipelining": "DATA", "chunking": "BDAT"}

SENDER = "jankowalski@wp.pl"
ANNA, PIOTR = "anna@example.com", "piotr@example.com"
BAD = "nobody@example.com"
# Lines that begin with a dot: DATA stuffs them and the server unstuffs them; BDAT sends as is.
MESSAGE = (
    b"From: jankowalski@wp.pl\r\nTo: anna@example.com\r\nSubject: Raport\r\n\r\n"
    b"Pierwsza linia\r\n.kropka na poczatku\r\n..dwie kropki\r\n.\r\nkoniec\r\n"
)


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _server(factory: SmtpServerFactory, mode: str, **options: Any) -> SmtpTestServer:
    accounts = {SMTP_LOGIN: SMTP_PASSWORD}
    return factory(tls="implicit", accounts=accounts, **MODES[mode], **options)


@pytest.fixture
async def pools() -> AsyncIterator[list[ConnectionPool]]:
    """Pools a test opens; closed at its end, and their connections seen closed."""
    opened: list[ConnectionPool] = []
    yield opened
    for pool in opened:
        await pool.close()  # which waits until the TLS sockets are closed


def _pool(
    pools: list[ConnectionPool], server: SmtpTestServer, *, pipelining: bool = True
) -> ConnectionPool:
    profile = server_profile(server, timeout_seconds=2, max_connections=1)
    pool = ConnectionPool(profile, SMTP_PASSWORD, pipelining=pipelining)
    pools.append(pool)
    return pool


async def _send(
    pool: ConnectionPool, recipients: Sequence[str], message: bytes = MESSAGE
) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    async with pool.session() as session:
        return await session.send(SENDER, recipients, message)


def _transaction(server: SmtpTestServer) -> list[tuple[str, bool]]:
    """The first transaction's commands: (verb, came in a group), from MAIL on."""
    verbs = [(c.verb, c.pipelined) for c in server.commands]
    start = next(i for i, (verb, _) in enumerate(verbs) if verb == "MAIL")
    end = next(i for i, (verb, _) in enumerate(verbs) if i > start and verb in {"DATA", "BDAT"})
    return verbs[start : end + 1]


async def test_each_mode_goes_over_the_wire_as_the_server_offers(
    smtp_server_factory: SmtpServerFactory, pools: list[ConnectionPool], mode: str
) -> None:
    """Two recipients: the envelope goes in one group where PIPELINING is offered, the message
    with BDAT where CHUNKING is, and the server receives the same bytes in every mode."""
    server = _server(smtp_server_factory, mode)

    refused, reply = await _send(_pool(pools, server), [ANNA, PIOTR])

    assert ({}, "2.0.0 OK: queued") == (refused, reply)
    grouped = mode != "classic"
    assert [
        ("MAIL", grouped),
        ("RCPT", grouped),
        ("RCPT", grouped),
    ] == _transaction(server)[:3]
    assert LAST_VERB[mode] == _transaction(server)[-1][0]
    verbs = {c.verb for c in server.commands}
    assert (mode == "chunking", mode != "chunking") == ("BDAT" in verbs, "DATA" in verbs)
    [received] = server.messages
    assert (SENDER, (ANNA, PIOTR)) == (received.mail_from, received.rcpt_tos)
    assert MESSAGE == received.data


async def test_pipelining_off_sends_the_classic_way_to_a_server_offering_both(
    smtp_server_factory: SmtpServerFactory, pools: list[ConnectionPool]
) -> None:
    """MAILWORKER_SMTP_PIPELINING=false: each command waits for the reply before it."""
    server = _server(smtp_server_factory, "chunking")

    await _send(_pool(pools, server, pipelining=False), [ANNA])

    assert [("MAIL", False), ("RCPT", False), ("DATA", False)] == _transaction(server)
    assert MESSAGE == server.messages[0].data


async def test_a_refused_recipient_in_a_group_is_reported_and_the_others_get_it(
    smtp_server_factory: SmtpServerFactory, pools: list[ConnectionPool], mode: str
) -> None:
    server = _server(smtp_server_factory, mode)
    server.script.on("RCPT", reply="550 5.1.1 No such user", rcpt=BAD)

    refused, _ = await _send(_pool(pools, server), [ANNA, BAD, PIOTR])

    assert {BAD: (550, "5.1.1 No such user")} == {a: tuple(r) for a, r in refused.items()}
    assert (ANNA, PIOTR) == server.messages[0].rcpt_tos


async def test_every_recipient_refused_raises_as_sendmail_and_keeps_the_connection(
    smtp_server_factory: SmtpServerFactory, pools: list[ConnectionPool], mode: str
) -> None:
    """SMTPRecipientsRefused with each reply; the envelope is reset, and the next message goes
    over the same connection."""
    server = _server(smtp_server_factory, mode)
    server.script.on("RCPT", reply="550 5.1.1 No such user", rcpt=BAD)
    server.script.on("RCPT", reply="450 4.2.1 Mailbox busy", rcpt=PIOTR)
    pool = _pool(pools, server)

    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await _send(pool, [BAD, PIOTR])
    await _send(pool, [ANNA])

    assert [(BAD, 550), (PIOTR, 450)] == [(e.recipient, e.code) for e in refused.value.recipients]
    assert "RSET" in [c.verb for c in server.commands]
    assert [(ANNA,)] == [m.rcpt_tos for m in server.messages]
    assert 1 == server.connection_count


async def test_data_answered_354_after_every_recipient_was_refused_gets_a_lone_dot(
    smtp_server_factory: SmtpServerFactory, pools: list[ConnectionPool]
) -> None:
    """RFC 2920: a server may say 354 to a pipelined DATA though no RCPT was accepted; the
    client then ends the empty transaction with a dot alone, and stays in step."""
    server = _server(smtp_server_factory, "pipelining")
    server.script.on("RCPT", reply="550 5.1.1 No such user", rcpt=BAD)
    server.script.once("DATA", reply="354 End data with <CR><LF>.<CR><LF>")
    pool = _pool(pools, server)

    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await _send(pool, [BAD])
    await _send(pool, [ANNA])

    first = [c.verb for c in server.commands if c.verb not in {"EHLO", "AUTH"}]
    # The server answered DATA by script and never read a message, so the dot, and no line of
    # the message, reaches it as a line of its own.
    assert ["MAIL", "RCPT", "DATA", ".", "RSET"] == first[:5]
    assert [(ANNA,)] == [m.rcpt_tos for m in server.messages]
    assert 1 == server.connection_count


async def test_a_refused_sender_raises_sender_refused_and_keeps_the_connection(
    smtp_server_factory: SmtpServerFactory, pools: list[ConnectionPool], mode: str
) -> None:
    server = _server(smtp_server_factory, mode)
    server.script.once("MAIL", reply="553 5.7.1 Sender address rejected")
    pool = _pool(pools, server)

    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await _send(pool, [ANNA])
    await _send(pool, [ANNA])

    assert (553, SENDER) == (refused.value.code, refused.value.sender)
    assert 1 == len(server.messages)
    assert 1 == server.connection_count


async def test_a_message_over_the_servers_size_is_refused_at_mail(
    smtp_server_factory: SmtpServerFactory, pools: list[ConnectionPool], mode: str
) -> None:
    """SIZE is declared in every mode, so the server refuses before any byte of the message."""
    server = _server(smtp_server_factory, mode, size_limit=1000)
    large = MESSAGE + b"x" * 2000 + b"\r\n"

    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await _send(_pool(pools, server), [ANNA], large)

    assert 552 == refused.value.code
    [mail] = [c for c in server.commands if c.verb == "MAIL"]
    assert f"SIZE={len(large)}" in (mail.arg or "").upper()
    assert () == server.messages


@pytest.mark.parametrize(
    ("stage", "reply"),
    [("DATA_END", "451 4.3.0 Try again later"), ("DATA_END", "554 5.6.0 Content rejected")],
)
async def test_the_reply_to_the_message_raises_data_error_and_keeps_the_connection(
    smtp_server_factory: SmtpServerFactory,
    pools: list[ConnectionPool],
    mode: str,
    stage: str,
    reply: str,
) -> None:
    """The reply after DATA's dot or after ``BDAT ... LAST`` is SMTPDataError in every mode."""
    server = _server(smtp_server_factory, mode)
    server.script.once(stage, reply=reply)
    pool = _pool(pools, server)

    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await _send(pool, [ANNA])
    await _send(pool, [ANNA])

    assert reply == f"{refused.value.code} {refused.value.message}"
    assert 1 == len(server.messages)
    assert 1 == server.connection_count


async def test_a_refused_chunk_raises_data_error(
    smtp_server_factory: SmtpServerFactory, pools: list[ConnectionPool]
) -> None:
    """A 4xx to BDAT itself (not to the message): SMTPDataError, as DATA's own refusal."""
    server = _server(smtp_server_factory, "chunking")
    server.script.once("BDAT", reply="452 4.3.1 Insufficient system storage")
    pool = _pool(pools, server)

    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await _send(pool, [ANNA])
    await _send(pool, [ANNA])

    assert 452 == refused.value.code
    assert 1 == len(server.messages)


@pytest.mark.parametrize(
    ("stage", "options"),
    [
        ("DATA_END", {"action": "drop"}),
        ("PIPELINED", {"action": "drop"}),
        ("BDAT", {"action": "drop", "after_bytes": 40}),
    ],
    ids=["after-the-message", "on-a-group", "mid-chunk"],
)
async def test_a_dropped_line_raises_disconnected_and_closes_the_connection(
    smtp_server_factory: SmtpServerFactory,
    pools: list[ConnectionPool],
    mode: str,
    stage: str,
    options: dict[str, Any],
) -> None:
    if (stage == "PIPELINED" and mode == "classic") or (stage == "BDAT" and mode != "chunking"):
        pytest.skip(f"no {stage} stage in the {mode} mode")
    server = _server(smtp_server_factory, mode)
    server.script.once(stage, **options)
    pool = _pool(pools, server)

    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await _send(pool, [ANNA])
    await _send(pool, [ANNA])  # on a new connection

    assert (1, 2) == (len(server.messages), server.connection_count)


async def test_a_silent_server_raises_a_read_timeout(
    smtp_server_factory: SmtpServerFactory, pools: list[ConnectionPool], mode: str
) -> None:
    server = _server(smtp_server_factory, mode)
    server.script.once("RCPT", action="stall", seconds=5)

    with pytest.raises(aiosmtplib.SMTPReadTimeoutError):
        await _send(_pool(pools, server), [ANNA])


async def test_chunking_offered_but_bdat_unknown_falls_back_for_the_profile(
    smtp_server_factory: SmtpServerFactory, pools: list[ConnectionPool]
) -> None:
    """The server offers CHUNKING, then answers BDAT ``500`` and reads the message as
    commands: ChunkingRefused, the connection is closed, and the profile's next message goes
    with PIPELINING and DATA on a new connection."""
    server = _server(smtp_server_factory, "chunking")
    server.script.on("BDAT", action="unrecognised")
    pool = _pool(pools, server)

    with pytest.raises(ChunkingRefused) as refused:
        await _send(pool, [ANNA])
    await _send(pool, [ANNA])

    assert 500 == refused.value.code
    assert "offers CHUNKING but did not accept BDAT (500 " in refused.value.message
    assert 2 == server.connection_count
    second = [c.verb for c in server.commands if c.connection == 2]
    assert ("DATA" in second, "BDAT" in second) == (True, False)
    assert MESSAGE == server.messages[0].data


async def test_421_to_a_recipient_in_a_group_is_a_lost_line_as_one_by_one(
    smtp_server_factory: SmtpServerFactory, pools: list[ConnectionPool], mode: str
) -> None:
    """The server says 421 and closes: the replies behind it never come. As when each
    command waits for its reply, the next command finds the line closed."""
    server = _server(smtp_server_factory, mode)
    server.script.once("RCPT", reply="421 4.7.0 Try again later, closing connection.", rcpt=ANNA)

    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await _send(_pool(pools, server), [ANNA, PIOTR])

    assert () == server.messages


async def test_a_large_message_with_bare_line_feeds_arrives_as_sent_the_classic_way(
    smtp_server_factory: SmtpServerFactory, pools: list[ConnectionPool], mode: str
) -> None:
    """200 KB, written after its commands rather than with them, and lines ending in a bare
    LF: the server receives the CRLF form that DATA would have carried, in every mode."""
    server = _server(smtp_server_factory, mode)
    lines = [b".line %d of the report" % number for number in range(8000)]
    loose = MESSAGE + b"\n".join(lines) + b"\n"

    await _send(_pool(pools, server), [ANNA], loose)

    [received] = server.messages
    assert 200_000 < len(received.data)
    assert MESSAGE + b"\r\n".join(lines) + b"\r\n" == received.data


async def test_an_address_that_cannot_go_on_a_command_line_is_refused_before_any_write(
    smtp_server_factory: SmtpServerFactory, pools: list[ConnectionPool], mode: str
) -> None:
    """ValueError, as sendmail() raises, and the server sees no MAIL: a recipient cannot
    smuggle a word into the group (aiosmtplib's check of each parsed address)."""
    server = _server(smtp_server_factory, mode)
    pool = _pool(pools, server)

    with pytest.raises(ValueError, match="not permitted in an SMTP mailbox"):
        await _send(pool, [ANNA, "Piotr <piotr nowak@example.com>"])
    await _send(pool, [ANNA])

    assert 1 == [c.verb for c in server.commands].count("MAIL")
    assert [(ANNA,)] == [m.rcpt_tos for m in server.messages]


def test_a_group_is_read_under_uvloop_too(
    smtp_server_factory: SmtpServerFactory,
) -> None:
    """uvloop's transports keep the protocol's bound methods from the connect on; the
    protocol, made pipelining after the connect, is handed to the transport again, so its
    replies are not read by the method of the class it had at the connect."""
    uvloop = pytest.importorskip("uvloop")
    # A plain relay: uvloop's TLS transport looks the method up on every read, its TCP one not.
    server = smtp_server_factory(tls="none", **MODES["chunking"])
    profile = server_profile(
        server, encryption="none", auth_method="none", login=None, timeout_seconds=2
    )

    async def send_and_close() -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        pool = ConnectionPool(profile, None)
        try:
            return await _send(pool, [ANNA, PIOTR])
        finally:
            await pool.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        refused, reply = runner.run(send_and_close())

    assert ({}, "2.0.0 OK: queued") == (refused, reply)
    assert "BDAT" in [c.verb for c in server.commands]
    assert MESSAGE == server.messages[0].data
