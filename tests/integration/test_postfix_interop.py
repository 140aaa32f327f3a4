"""The worker delivers through Postfix, a real MTA, with and without PIPELINING and CHUNKING.

Each test runs twice: against Postfix as it comes (it offers PIPELINING and CHUNKING, so a
client may send with BDAT) and against Postfix with both hidden (the classic MAIL, RCPT,
DATA). What arrives is read from Postfix's Maildir, and how it was sent from the commands
Postfix counted per session in its mail log: ``bdat=`` or ``data=``. In either mode Postfix
logs a client that sends on after EHLO or DATA before the reply (it does not notice MAIL and
RCPT sent together without PIPELINING). See ``tests/kit/postfix.py``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from tests.kit.delivery import add_profile, attempts_of, fast_settings, row, run_until_empty
from tests.kit.postfix import (
    DOMAIN,
    REFUSED,
    DeliveredMessage,
    PostfixServer,
    PostfixServerFactory,
    PostfixSession,
)
from worker.models import attachment, outbox
from worker.settings import Settings

OFFERED = "pipelining+chunking offered"
HIDDEN = "both hidden"
_HIDDEN_KEYWORDS = {OFFERED: (), HIDDEN: ("pipelining", "chunking")}

# Lines that DATA must dot-stuff (and the server unstuff); BDAT sends them as they are. The
# ASCII text goes 7bit, so they are on the wire as written; the other one quoted-printable.
DOTTED_TEXT = "Pierwsza linia.\n.kropka na początku\n..dwie kropki\n.\nostatnia linia"
DOTTED_ASCII = "First line.\n.a leading dot\n..two dots\n.\n. \nlast line"


@pytest.fixture(params=[OFFERED, HIDDEN])
def postfix(
    request: pytest.FixtureRequest, postfix_server_factory: PostfixServerFactory
) -> PostfixServer:
    return postfix_server_factory(discard_ehlo_keywords=_HIDDEN_KEYWORDS[request.param])


async def _enqueue(
    settings: Settings, files: Sequence[tuple[str, str, bytes]] = (), **values: Any
) -> int:
    """One message and its attachments in one transaction, as a producer inserts them."""
    assert settings.database_url is not None
    engine = create_async_engine(settings.database_url.get_secret_value())
    columns = {"profile": "test", "subject": "Interoperacyjność", "body_text": "Treść.", **values}
    try:
        async with engine.begin() as connection:
            result = await connection.execute(outbox.insert().returning(outbox.c.id), [columns])
            message_id = int(result.scalar_one())
            for filename, content_type, content in files:
                await connection.execute(
                    attachment.insert().values(
                        outbox_id=message_id,
                        filename=filename,
                        content_type=content_type,
                        content=content,
                    )
                )
            return message_id
    finally:
        await engine.dispose()


async def _send_through(settings: Settings, postfix: PostfixServer) -> Settings:
    settings = fast_settings(settings)
    await add_profile(settings, postfix, encryption="none", login=None, password=None)
    return settings


def _text(message: DeliveredMessage) -> str:
    body = message.message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n").removesuffix("\n")


def _attachments(message: DeliveredMessage) -> dict[str, bytes]:
    """Each attachment's bytes, decoded from its transfer encoding."""
    files = {}
    for part in message.message.iter_attachments():
        content = part.get_payload(decode=True)
        assert isinstance(content, bytes)
        files[str(part.get_filename())] = content
    return files


def _by_subject(messages: Sequence[DeliveredMessage]) -> dict[str, list[DeliveredMessage]]:
    grouped: dict[str, list[DeliveredMessage]] = {}
    for message in messages:
        grouped.setdefault(str(message.message["Subject"]), []).append(message)
    return grouped


def _assert_sent_as_the_mode_asks(
    postfix: PostfixServer, sessions: list[PostfixSession], messages: int
) -> None:
    """DATA where CHUNKING is hidden; BDAT, one for each message, where it is offered."""
    used = {name for session in sessions for name in session.commands}
    # Sent on after EHLO, DATA, ... before the reply: Postfix cut the session off.
    assert "improper command pipelining" not in postfix.log_text(), postfix.log_tail()
    if postfix.discard_ehlo_keywords:
        assert messages == sum(session.issued("data") for session in sessions), sessions
        assert "bdat" not in used, sessions
        return
    assert messages == sum(session.issued("bdat") for session in sessions), sessions
    assert "data" not in used, sessions


async def test_messages_arrive_whole_in_every_recipients_mailbox(
    settings: Settings, postfix: PostfixServer
) -> None:
    """Two recipients and an attachment, dotted lines, a 300 KB file: sent, and delivered to
    each recipient with the same text and the same attachment bytes as enqueued."""
    settings = await _send_through(settings, postfix)
    pdf = b"%PDF-1.4\n" + os.urandom(2000)
    big = os.urandom(300 * 1024)
    dotted_file = DOTTED_ASCII.encode()
    ids = [
        await _enqueue(
            settings,
            subject="Dwóch odbiorców",
            to_addrs=[f"anna@{DOMAIN}"],
            cc_addrs=[f"jan@{DOMAIN}"],
            body_text="Faktura w załączniku.",
            files=[("faktura.pdf", "application/pdf", pdf)],
        ),
        await _enqueue(
            settings,
            subject="Kropki",
            to_addrs=[f"kropki@{DOMAIN}"],
            body_text=DOTTED_ASCII,
            files=[("kropki.txt", "text/plain", dotted_file)],
        ),
        await _enqueue(
            settings,
            subject="Kropki po polsku",
            to_addrs=[f"kropki@{DOMAIN}"],
            body_text=DOTTED_TEXT,
        ),
        await _enqueue(
            settings,
            subject="Duży załącznik",
            to_addrs=[f"duzy@{DOMAIN}"],
            body_text="Duży plik.",
            files=[("duzy.bin", "application/octet-stream", big)],
        ),
    ]

    await run_until_empty(settings)

    for message_id in ids:
        stored = await row(settings, message_id)
        assert "sent" == stored["status"], stored["status_reason"]
    delivered = _by_subject(postfix.wait_for_messages(5))
    two = delivered["Dwóch odbiorców"]
    assert [f"anna@{DOMAIN}", f"jan@{DOMAIN}"] == sorted(message.recipient for message in two)
    for message in two:
        assert "Faktura w załączniku." == _text(message)
        assert {"faktura.pdf": pdf} == _attachments(message)
    [dotted] = delivered["Kropki"]
    # Sent as 7bit, so the dotted lines were on the wire as they are, not encoded.
    assert b"\n..two dots\n.\n" in dotted.raw
    assert (f"kropki@{DOMAIN}", DOTTED_ASCII) == (dotted.recipient, _text(dotted))
    assert {"kropki.txt": dotted_file} == _attachments(dotted)
    [dotted_utf8] = delivered["Kropki po polsku"]
    assert DOTTED_TEXT == _text(dotted_utf8)
    [large] = delivered["Duży załącznik"]
    assert (f"duzy@{DOMAIN}", "Duży plik.") == (large.recipient, _text(large))
    assert {"duzy.bin": big} == _attachments(large)
    _assert_sent_as_the_mode_asks(postfix, postfix.wait_for_sessions(len(ids)), len(ids))


async def test_a_recipient_postfix_refuses_is_recorded(
    settings: Settings, postfix: PostfixServer
) -> None:
    """Postfix refuses one of two recipients at RCPT with 550: the message is sent to the
    other, and the refusal is recorded for that recipient."""
    settings = await _send_through(settings, postfix)
    accepted = f"anna@{DOMAIN}"
    message_id = await _enqueue(settings, to_addrs=[accepted, REFUSED])

    await run_until_empty(settings)

    stored = await row(settings, message_id)
    assert "sent" == stored["status"]
    assert f"1 of 2 recipients refused: {REFUSED}: 550" in stored["status_reason"]
    [attempt] = await attempts_of(settings, message_id)
    assert "partial" == attempt["outcome"]
    assert 550 == attempt["recipients"][REFUSED]["code"]
    assert 250 == attempt["recipients"][accepted]["code"]
    [delivered] = postfix.wait_for_messages(1)
    assert (accepted, "Treść.") == (delivered.recipient, _text(delivered))
    [session] = postfix.wait_for_sessions(1)
    assert (1, 2) == session.commands["rcpt"]
    _assert_sent_as_the_mode_asks(postfix, [session], 1)
