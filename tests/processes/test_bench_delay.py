"""The benchmark's delayed sink: its proxy puts a round trip between the client and the sink,
overlapping chunks in flight, and the sink answers a message's end after its acceptance time.

The bounds below are correctness checks of the delay, not speed assertions: each is a
lower bound the delay must add, or an upper bound many round trips above what it adds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiosmtplib
import pytest

from bench.sink import Delay, Extensions, SmtpSink

RTT = 0.2
ACCEPT = 0.1


@pytest.fixture(scope="module")
def delayed() -> Iterator[SmtpSink]:
    with SmtpSink(Delay(rtt=RTT, accept=ACCEPT)) as sink:
        yield sink


@pytest.fixture(scope="module")
def chunking() -> Iterator[SmtpSink]:
    """The delayed sink offering PIPELINING and CHUNKING."""
    extensions = Extensions(pipelining=True, chunking=True)
    with SmtpSink(Delay(rtt=RTT, accept=ACCEPT), extensions) as sink:
        yield sink


async def _exchange(
    sink: SmtpSink, flight: bytes, replies: int
) -> tuple[list[bytes], list[bytes], float]:
    """EHLO, then ``flight`` in one write; the EHLO lines, the replies read and the seconds
    from the write to the last reply."""
    reader, writer = await asyncio.open_connection(sink.host, sink.port)
    try:
        assert (await reader.readline()).startswith(b"220 ")
        writer.write(b"EHLO bench.test\r\n")
        ehlo = [await reader.readline()]
        while ehlo[-1][3:4] == b"-":
            ehlo.append(await reader.readline())
        began = time.monotonic()
        writer.write(flight)
        answers = [await reader.readline() for _ in range(replies)]
        return ehlo, answers, time.monotonic() - began
    finally:
        writer.close()


async def test_a_message_waits_for_each_of_its_round_trips_and_the_acceptance(
    delayed: SmtpSink,
) -> None:
    """aiosmtplib's classic sequence (MAIL, RCPT, DATA, the message) costs at least four
    round trips and the acceptance time, and the message arrives once."""
    delayed.reset()
    smtp = aiosmtplib.SMTP(hostname=delayed.host, port=delayed.port, start_tls=False)
    await smtp.connect()
    await smtp.ehlo()
    try:
        began = time.monotonic()
        errors, reply = await smtp.sendmail(
            "a@example.com", ["b@example.com"], b"Subject: delayed\r\n\r\nBody\r\n"
        )
        took = time.monotonic() - began
    finally:
        await smtp.quit()
    assert ({}, "OK") == (errors, reply)
    assert (1, 1) == (delayed.count, delayed.recipients)
    assert took >= 4 * RTT + ACCEPT


async def test_commands_in_flight_together_are_answered_together(delayed: SmtpSink) -> None:
    """Twenty NOOPs written 10 ms apart, while the first reply is still on its way, get their
    replies about one round trip after the last was sent (2 round trips from the first): each
    chunk is delayed from when it was read, not queued behind the previous chunk's delay,
    which would take at least 20 half round trips."""
    reader, writer = await asyncio.open_connection(delayed.host, delayed.port)
    try:
        assert (await reader.readline()).startswith(b"220 ")
        began = time.monotonic()
        for _ in range(20):
            writer.write(b"NOOP\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
        replies = [await reader.readline() for _ in range(20)]
        took = time.monotonic() - began
    finally:
        writer.close()
    assert [b"250 OK\r\n"] * 20 == replies
    assert RTT <= took < 7 * RTT


async def test_a_close_by_the_server_reaches_the_client(delayed: SmtpSink) -> None:
    """After QUIT the sink closes; the client sees its reply, then the end of the stream."""
    reader, writer = await asyncio.open_connection(delayed.host, delayed.port)
    try:
        await reader.readline()
        writer.write(b"QUIT\r\n")
        assert (await reader.readline()).startswith(b"221 ")
        assert b"" == await asyncio.wait_for(reader.read(), timeout=10 * RTT)
    finally:
        writer.close()


BODY = b"Subject: chunked\r\n\r\n.a line with a dot\r\n"
ONE_FLIGHT = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nBDAT %d LAST\r\n%s" % (
    len(BODY),
    BODY,
)


async def test_a_chunked_message_in_one_flight_waits_for_the_acceptance(
    chunking: SmtpSink,
) -> None:
    """MAIL, RCPT and ``BDAT n LAST`` written together are answered in one round trip plus
    the acceptance time after the last chunk, as after DATA's dot; the message counts once."""
    chunking.reset()
    ehlo, replies, took = await _exchange(chunking, ONE_FLIGHT, 3)

    assert {b"250-PIPELINING\r\n", b"250-CHUNKING\r\n"} <= set(ehlo)
    assert [b"250 OK\r\n", b"250 OK\r\n", b"250 OK\r\n"] == replies
    assert (1, 1) == (chunking.count, chunking.recipients)
    assert RTT + ACCEPT <= took < 3 * RTT + ACCEPT


async def test_chunks_before_the_last_are_acknowledged_without_the_acceptance(
    chunking: SmtpSink,
) -> None:
    """A chunk that is not the LAST is acknowledged at once; only LAST counts a message."""
    chunking.reset()
    flight = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nBDAT 4\r\nab\r\n"
    _, replies, _ = await _exchange(chunking, flight, 3)

    assert b"250 2.0.0 4 octets received\r\n" == replies[2]
    assert 0 == chunking.count


async def test_the_default_sink_offers_neither_extension(delayed: SmtpSink) -> None:
    """Without ``extensions`` the sink is as before: no PIPELINING or CHUNKING, BDAT unknown."""
    ehlo, replies, _ = await _exchange(delayed, b"BDAT 6 LAST\r\n", 1)

    assert not {b"250-PIPELINING\r\n", b"250-CHUNKING\r\n"} & set(ehlo)
    assert replies[0].startswith(b"500 ")
