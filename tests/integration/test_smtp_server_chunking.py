"""The kit's SMTP server speaks PIPELINING and CHUNKING (BDAT), and misbehaves with them on cue."""

from __future__ import annotations

import base64

import pytest

from tests.kit.smtp_fixtures import SMTP_LOGIN, SMTP_PASSWORD, SmtpServerFactory
from tests.kit.smtp_server import SmtpTestServer, smtp_client
from tests.kit.smtp_wire import Reply, SmtpWire

SENDER = "user@example.com"
# Lines that start with a dot: DATA stuffs them, BDAT sends them as they are.
MESSAGE = (
    b"From: user@example.com\r\nTo: a@example.org\r\nSubject: Chunks\r\n\r\n"
    b"Hello.\r\n.\r\n..two dots\r\n.end\r\n"
)
ENVELOPE = b"MAIL FROM:<user@example.com>\r\nRCPT TO:<a@example.org>\r\n"


@pytest.fixture
def server(smtp_server_factory: SmtpServerFactory) -> SmtpTestServer:
    """A plain relay that offers both extensions."""
    return smtp_server_factory(tls="none", pipelining=True, chunking=True)


def bdat(chunk: bytes, *, last: bool = False) -> bytes:
    return f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk


async def hello(wire: SmtpWire) -> Reply:
    reply = await wire.command("EHLO client.test")
    assert reply.code == 250, reply
    return reply


def codes(replies: list[Reply]) -> list[int]:
    return [reply.code for reply in replies]


# --- What is offered --------------------------------------------------------------------------


@pytest.mark.parametrize("offered", [False, True])
async def test_ehlo_offers_the_extensions_only_when_asked(
    smtp_server_factory: SmtpServerFactory, offered: bool
) -> None:
    """PIPELINING and CHUNKING are in the EHLO reply exactly when the options are on."""
    server = smtp_server_factory(tls="none", pipelining=offered, chunking=offered)
    async with SmtpWire.open(server) as wire:
        reply = await hello(wire)

    assert offered == ("PIPELINING" in reply.lines)
    assert offered == ("CHUNKING" in reply.lines)
    assert reply.lines[-1] == "HELP"


async def test_aiosmtplib_sees_the_extensions(server: SmtpTestServer) -> None:
    """A real client reads both extensions from the server's EHLO."""
    async with smtp_client(server) as client:
        await client.ehlo()
        assert client.supports_extension("pipelining")
        assert client.supports_extension("chunking")


# --- PIPELINING -------------------------------------------------------------------------------


async def test_pipelined_group_is_answered_in_order_with_a_refused_rcpt(
    server: SmtpTestServer,
) -> None:
    """MAIL, three RCPT (one refused) and DATA in one packet get their replies in order."""
    server.script.on("RCPT", reply="550 5.1.1 No such user", rcpt="bad@example.org")
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(
            b"MAIL FROM:<user@example.com>\r\nRCPT TO:<a@example.org>\r\n"
            b"RCPT TO:<bad@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
        )
        replies = await wire.replies(5)
        await wire.send(b"Subject: P\r\n\r\nHi.\r\n.\r\n")
        accepted = await wire.reply()

    assert [250, 250, 550, 250, 354] == codes(replies)
    assert "5.1.1" in replies[2].text
    assert accepted.code == 250
    [message] = server.messages
    assert ("a@example.org", "b@example.org") == message.rcpt_tos
    assert b"Subject: P\r\n\r\nHi.\r\n" == message.data


async def test_pipelined_group_whose_every_rcpt_is_refused(server: SmtpTestServer) -> None:
    """MAIL, a refused RCPT and ``BDAT n LAST`` in one flight: the chunk gets 503 (no
    recipient) and is read all the same, so the next command is answered in step."""
    server.script.on("RCPT", reply="550 5.1.1 No such user")
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(ENVELOPE + bdat(MESSAGE, last=True) + b"RSET\r\n")
        replies = await wire.replies(4)

    assert [250, 550, 503, 250] == codes(replies)
    assert () == server.messages


async def test_server_that_hangs_up_on_a_pipelined_group(server: SmtpTestServer) -> None:
    """A PIPELINED rule closes the line when commands come together; one by one they pass."""
    rule = server.script.on("PIPELINED", action="drop")
    async with SmtpWire.open(server) as wire:
        await hello(wire)  # alone in its packet
        await wire.send(ENVELOPE)
        assert await wire.closed()

    assert 1 == rule.fired
    assert ["EHLO", "MAIL"] == [command.verb for command in server.commands]
    assert () == server.messages


async def test_pipelined_rule_sees_the_command(server: SmtpTestServer) -> None:
    """The PIPELINED event names the command that came with others; a 421 reply then closes."""
    server.script.on(
        "PIPELINED", reply="421 4.3.2 No pipelining here", match=lambda e: e.command == "RCPT"
    )
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(ENVELOPE + b"DATA\r\n")
        mail, refusal = await wire.replies(2)
        assert await wire.closed()

    assert (250, 421) == (mail.code, refusal.code)


# --- CHUNKING ---------------------------------------------------------------------------------


async def test_bdat_message_arrives_byte_for_byte_as_via_data(server: SmtpTestServer) -> None:
    """A message in two BDAT chunks is recorded exactly as the same message sent with DATA."""
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(ENVELOPE + bdat(MESSAGE[:50]) + bdat(MESSAGE[50:], last=True))
        replies = await wire.replies(4)
    async with smtp_client(server) as client:
        await client.sendmail(SENDER, ["a@example.org"], MESSAGE)

    assert [250, 250, 250, 250] == codes(replies)
    assert "50 octets" in replies[2].text
    by_bdat, by_data = server.messages
    assert MESSAGE == by_bdat.data == by_data.data
    assert (SENDER, ("a@example.org",)) == (by_bdat.mail_from, by_bdat.rcpt_tos)
    assert (1, 2) == (by_bdat.number, by_data.number)
    assert "Chunks" == by_bdat.parsed()["Subject"]
    assert ("BDAT", "50") == (server.commands[3].verb, server.commands[3].arg)


async def test_bdat_over_implicit_tls_with_auth(smtp_server_factory: SmtpServerFactory) -> None:
    """Over SMTPS, after AUTH, BDAT delivers with the login and the TLS version recorded."""
    smtps_server = smtp_server_factory(
        tls="implicit", accounts={SMTP_LOGIN: SMTP_PASSWORD}, chunking=True
    )
    credentials = base64.b64encode(f"\0{SMTP_LOGIN}\0{SMTP_PASSWORD}".encode()).decode()
    async with SmtpWire.open(smtps_server) as wire:
        assert "CHUNKING" in (await hello(wire)).lines
        assert 235 == (await wire.command(f"AUTH PLAIN {credentials}")).code
        await wire.send(ENVELOPE + bdat(MESSAGE, last=True))
        replies = await wire.replies(3)

    assert [250, 250, 250] == codes(replies)
    [message] = smtps_server.messages
    assert (MESSAGE, SMTP_LOGIN) == (message.data, message.login)
    assert message.tls_version in {"TLSv1.2", "TLSv1.3"}


async def test_bdat_through_aiosmtplib_after_starttls(
    smtp_server_factory: SmtpServerFactory,
) -> None:
    """aiosmtplib upgrades with STARTTLS and logs in, then its protocol writes one BDAT chunk
    (a command line and its octets in one write) and reads the single reply."""
    server = smtp_server_factory(
        tls="starttls", accounts={SMTP_LOGIN: SMTP_PASSWORD}, pipelining=True, chunking=True
    )
    async with smtp_client(server, username=SMTP_LOGIN, password=SMTP_PASSWORD) as client:
        assert client.supports_extension("chunking")
        await client.mail(SENDER)
        await client.rcpt("a@example.org")
        assert client.protocol is not None
        client.protocol.write(bdat(MESSAGE, last=True))
        response = await client.protocol.read_response(timeout=5)

    assert (250, "2.0.0 OK: queued") == (response.code, response.message)
    [message] = server.messages
    assert (MESSAGE, SMTP_LOGIN) == (message.data, message.login)
    assert message.tls_version in {"TLSv1.2", "TLSv1.3"}


async def test_empty_last_chunk_ends_the_message(server: SmtpTestServer) -> None:
    """``BDAT 0 LAST`` after a chunk delivers what came before."""
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(ENVELOPE + bdat(MESSAGE) + b"BDAT 0 LAST\r\n")
        replies = await wire.replies(4)

    assert [250, 250, 250, 250] == codes(replies)
    assert [MESSAGE] == [message.data for message in server.messages]


@pytest.mark.parametrize(
    ("commands", "expected"),
    [
        (b"", [503]),  # no MAIL
        (b"MAIL FROM:<user@example.com>\r\n", [250, 503]),  # no RCPT
    ],
)
async def test_bdat_without_an_envelope_is_refused_and_its_chunk_consumed(
    server: SmtpTestServer, commands: bytes, expected: list[int]
) -> None:
    """503 without MAIL or RCPT; the chunk is read all the same, so the line stays in step."""
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(commands + bdat(b"NOOP\r\n", last=True))
        replies = await wire.replies(len(expected))
        after = await wire.command("NOOP")

    assert expected == codes(replies)
    assert 250 == after.code
    assert ["EHLO", *(["MAIL"] if commands else []), "BDAT", "NOOP"] == [
        command.verb for command in server.commands
    ]


async def test_data_after_bdat_is_refused(server: SmtpTestServer) -> None:
    """DATA after a BDAT chunk of the same transaction gets 503; LAST still delivers."""
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        data = b"DATA\r\n"
        await wire.send(ENVELOPE + bdat(MESSAGE[:10]) + data + bdat(MESSAGE[10:], last=True))
        replies = await wire.replies(5)

    assert [250, 250, 250, 503, 250] == codes(replies)
    assert [MESSAGE] == [message.data for message in server.messages]


@pytest.mark.parametrize("argument", ["", "x", "-1", "10 FIRST", "10LAST"])
async def test_bad_bdat_size_is_a_syntax_error(server: SmtpTestServer, argument: str) -> None:
    """A missing or malformed size gets 501 and nothing is read as a chunk."""
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(ENVELOPE)
        await wire.replies(2)
        refusal = await wire.command(f"BDAT {argument}".strip())
        after = await wire.command("NOOP")

    assert (501, 250) == (refusal.code, after.code)
    assert () == server.messages


async def test_rset_discards_the_chunks(server: SmtpTestServer) -> None:
    """Chunks before RSET are forgotten; the next transaction holds only its own."""
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(ENVELOPE + bdat(b"old part\r\n") + b"RSET\r\n")
        await wire.send(ENVELOPE + bdat(MESSAGE, last=True))
        replies = await wire.replies(7)

    assert [250] * 7 == codes(replies)
    [message] = server.messages
    assert MESSAGE == message.data


async def test_chunks_over_the_size_limit_get_552_after_the_last(
    smtp_server_factory: SmtpServerFactory,
) -> None:
    """Chunks over SIZE are each read and acknowledged, then LAST gets 552 and nothing is kept."""
    server = smtp_server_factory(tls="none", chunking=True, size_limit=len(MESSAGE) - 1)
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(ENVELOPE + bdat(MESSAGE[:-5]) + bdat(MESSAGE[-5:], last=True))
        replies = await wire.replies(4)
        await wire.send(ENVELOPE + bdat(MESSAGE[:-1], last=True))  # just fits
        fits = await wire.replies(3)

    assert [250, 250, 250, 552] == codes(replies)
    assert [250, 250, 250] == codes(fits)
    assert [MESSAGE[:-1]] == [message.data for message in server.messages]


async def test_mail_with_too_large_size_is_refused_before_any_chunk(
    smtp_server_factory: SmtpServerFactory,
) -> None:
    """``MAIL FROM:<...> SIZE=n`` over the limit gets 552 on a CHUNKING server too."""
    server = smtp_server_factory(tls="none", chunking=True, size_limit=100)
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        refusal = await wire.command("MAIL FROM:<user@example.com> SIZE=101")

    assert 552 == refusal.code


async def test_bdat_without_chunking_is_an_unknown_command(
    smtp_server_factory: SmtpServerFactory,
) -> None:
    """A server without CHUNKING answers BDAT as any unknown command and reads no chunk."""
    server = smtp_server_factory(tls="none")
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(ENVELOPE + bdat(b"NOOP\r\n", last=True))
        replies = await wire.replies(4)

    assert [250, 250, 500, 250] == codes(replies)  # the chunk "NOOP" read as a command
    assert "not recognized" in replies[2].text


# --- Misbehaviour -----------------------------------------------------------------------------


@pytest.mark.parametrize("reply", ["451 4.3.0 Chunk not stored", "554 5.6.0 Chunk refused"])
async def test_scripted_reply_to_a_chunk_fails_the_transaction(
    server: SmtpTestServer, reply: str
) -> None:
    """A 4xx/5xx to a chunk is sent after reading it; the transaction is over (503 after it)."""
    rule = server.script.once("BDAT", reply=reply, match=lambda e: e.chunk == 1)
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(ENVELOPE + bdat(MESSAGE[:20]) + bdat(MESSAGE[20:], last=True))
        replies = await wire.replies(4)
        await wire.send(ENVELOPE + bdat(MESSAGE, last=True))  # the next one goes through
        retried = await wire.replies(3)

    assert [250, 250, int(reply[:3]), 503] == codes(replies)
    assert reply[4:] == replies[2].text
    assert [250, 250, 250] == codes(retried)
    assert 1 == rule.fired
    assert [MESSAGE] == [message.data for message in server.messages]


async def test_rule_on_the_last_chunk_only(server: SmtpTestServer) -> None:
    """``Event.last_chunk`` narrows a rule to ``BDAT ... LAST``."""
    server.script.on("BDAT", reply="452 4.3.1 Out of storage", match=lambda e: e.last_chunk)
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(ENVELOPE + bdat(MESSAGE[:20]) + bdat(MESSAGE[20:], last=True))
        replies = await wire.replies(4)

    assert [250, 250, 250, 452] == codes(replies)
    assert () == server.messages


async def test_drop_in_the_middle_of_a_chunk(server: SmtpTestServer) -> None:
    """``after_bytes=`` reads that much of the chunk, then the line is cut; nothing is kept."""
    rule = server.script.on("BDAT", action="drop", after_bytes=10)
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(ENVELOPE + b"BDAT 100 LAST\r\n" + MESSAGE[:30])  # 30 of 100 octets
        envelope = await wire.replies(2)
        assert await wire.closed()

    assert [250, 250] == codes(envelope)

    assert 1 == rule.fired
    assert () == server.messages


async def test_stall_in_the_middle_of_a_chunk_then_drop(server: SmtpTestServer) -> None:
    """``action="stall"`` with ``after_bytes=`` stops reading there, says nothing for its
    ``seconds`` and then cuts the line, whatever else the client sends meanwhile."""
    rule = server.script.on("BDAT", action="stall", after_bytes=5, seconds=0.2)
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(ENVELOPE + bdat(MESSAGE, last=True))
        envelope = await wire.replies(2)
        assert await wire.closed()

    assert [250, 250] == codes(envelope)
    assert 1 == rule.fired
    assert () == server.messages


async def test_advertised_chunking_answered_as_unknown(server: SmtpTestServer) -> None:
    """``action="unrecognised"``: CHUNKING offered, yet BDAT gets 500 and its chunk is read
    as commands, as at a server that lists the extension but never learnt it."""
    server.script.on("BDAT", action="unrecognised")
    async with SmtpWire.open(server) as wire:
        assert "CHUNKING" in (await hello(wire)).lines
        await wire.send(ENVELOPE + bdat(b"NOOP\r\n", last=True))
        replies = await wire.replies(4)

    assert [250, 250, 500, 250] == codes(replies)
    assert () == server.messages


@pytest.mark.parametrize(
    ("rule", "expected", "recorded"),
    [
        ({"reply": "550 5.4.5 Daily user sending limit exceeded"}, 550, 0),
        ({"reply": "250 2.0.0 Ok: queued as ABC123"}, 250, 1),
    ],
)
async def test_data_end_rules_answer_the_last_chunk(
    server: SmtpTestServer, rule: dict[str, str], expected: int, recorded: int
) -> None:
    """DATA_END rules apply to ``BDAT ... LAST`` as to DATA's final dot."""
    server.script.on("DATA_END", **rule)  # type: ignore[arg-type]
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(ENVELOPE + bdat(MESSAGE, last=True))
        replies = await wire.replies(3)

    assert [250, 250, expected] == codes(replies)
    assert rule["reply"][4:] == replies[2].text
    assert recorded == len(server.messages)


async def test_accept_then_drop_after_the_last_chunk(server: SmtpTestServer) -> None:
    """``accept_then_drop`` at DATA_END keeps a BDAT message and cuts the line before 250."""
    server.script.on("DATA_END", action="accept_then_drop")
    async with SmtpWire.open(server) as wire:
        await hello(wire)
        await wire.send(ENVELOPE + bdat(MESSAGE, last=True))
        await wire.replies(2)
        assert await wire.closed()

    assert [MESSAGE] == [message.data for message in server.messages]


@pytest.mark.parametrize(
    ("stage", "options", "error"),
    [
        ("RCPT", {"action": "unrecognised"}, "only makes sense at BDAT"),
        ("BDAT", {"reply": "451 4.3.0 x", "after_bytes": 3}, "after_bytes"),
        ("DATA", {"action": "drop", "after_bytes": 3}, "after_bytes"),
    ],
)
def test_invalid_chunking_rules_are_refused(
    stage: str, options: dict[str, object], error: str
) -> None:
    """Rules that cannot apply are refused when written, not silently ignored."""
    with pytest.raises(ValueError, match=error):
        SmtpTestServer().script.on(stage, **options)  # type: ignore[arg-type]


async def test_aiosmtplib_client_still_sends_through_a_chunking_server(
    server: SmtpTestServer,
) -> None:
    """Offering the extensions changes nothing for a client that uses neither."""
    async with smtp_client(server) as client:
        refused, _ = await client.sendmail(SENDER, ["a@example.org"], MESSAGE)
    assert {} == refused
    assert [MESSAGE] == [message.data for message in server.messages]
