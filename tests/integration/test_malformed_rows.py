"""Rows a producer stored with plain SQL that cannot be sent as they are: each fails in words.

The database refuses what its constraints catch (``test_enqueue_sql.py``: empty recipient
lists, NULL subjects, repeated idempotency keys ...) and the worker fails a row naming an
unknown profile (``test_delivery.py``). These are the rows that get past the database: each
ends ``failed`` with a reason a person can act on, and the good rows beside them are sent.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tests.kit.database import sql
from tests.kit.delivery import (
    add_profile,
    attempts_of,
    enqueue,
    fast_settings,
    row,
    run_until_empty,
)
from tests.kit.smtp_fixtures import SMTP_LOGIN, SMTP_PASSWORD, SmtpServerFactory
from tests.kit.smtp_server import Event, SmtpTestServer
from worker.settings import Settings

SIZE_LIMIT = 200_000
WAIT_SECONDS = 20.0


def _server(factory: SmtpServerFactory) -> SmtpTestServer:
    return factory(tls="implicit", accounts={SMTP_LOGIN: SMTP_PASSWORD}, size_limit=SIZE_LIMIT)


async def _attach(settings: Settings, message_id: int, content: bytes) -> None:
    await sql(
        settings,
        "INSERT INTO mail.attachment (outbox_id, filename, content_type, content)"
        " VALUES (:id, 'skan.pdf', 'application/pdf', :content)",
        id=message_id,
        content=content,
    )


async def _outcome(settings: Settings, message_id: int) -> tuple[str, str]:
    stored = await row(settings, message_id)
    return stored["status"], stored["status_reason"]


async def test_bad_rows_fail_in_words_and_good_rows_are_sent(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """Bad addresses and a too-large attachment fail with reasons; the good rows are sent."""
    settings = fast_settings(settings)
    server = _server(smtp_server_factory)
    await add_profile(settings, server, encryption="ssl")
    bad_rows: dict[str, dict[str, Any]] = {
        "no at sign": {"to_addrs": ["jan.kowalski.example.pl"]},
        "unquoted comma": {"to_addrs": ["Kowalski, Jan <jan@example.pl>"]},
        "two in one": {"to_addrs": ["a@example.pl, b@example.pl"]},
        "empty string": {"cc_addrs": [""]},
        "blank": {"bcc_addrs": ["   "]},
    }
    bad = {case: (await enqueue(settings, **values))[0] for case, values in bad_rows.items()}
    [too_large] = await enqueue(settings, subject="Skan umowy")
    await _attach(settings, too_large, b"%PDF-1.4\n" + b"\x00" * SIZE_LIMIT)
    good = await enqueue(settings, count=3)

    await run_until_empty(settings)

    outcomes = {case: await _outcome(settings, message_id) for case, message_id in bad.items()}
    expected_reasons = {
        "no at sign": "failed: To address 'jan.kowalski.example.pl' is not valid: ",
        "unquoted comma": "failed: To address 'Kowalski, Jan <jan@example.pl>' is not valid: ",
        "two in one": "failed: To address 'a@example.pl, b@example.pl' is not valid: ",
        "empty string": "failed: Cc address is empty",
        "blank": "failed: Bcc address is empty",
    }
    problems = [
        f"{case}: {outcomes[case]}"
        for case, reason in expected_reasons.items()
        if outcomes[case][0] != "failed" or reason not in outcomes[case][1]
    ]
    assert [] == problems
    expected_size_failure = (
        "failed",
        "failed: 552 Error: message size exceeds fixed maximum message size",
    )
    assert expected_size_failure == await _outcome(settings, too_large)
    [profile] = await sql(settings, "SELECT paused_until FROM mail.profile")
    assert profile.paused_until is None  # one message too large is no reason to stop them all
    assert {"sent"} == {(await row(settings, message_id))["status"] for message_id in good}
    assert 3 == len(server.messages)


async def test_a_body_of_several_megabytes_arrives_whole(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """A 5 MB plain-text body under the server's SIZE is sent, byte for byte."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    line = "Zażółć gęślą jaźń, wiersz raportu dziennego numer {:07d}.\n"
    body = "".join(line.format(n) for n in range(80_000))
    assert len(body.encode()) > 5_000_000
    [message_id] = await enqueue(settings, subject="Raport dzienny", body_text=body)

    await run_until_empty(settings)

    assert "sent" == (await row(settings, message_id))["status"]
    [received] = smtps_server.messages
    text_part = received.parsed().get_body(preferencelist=("plain",))
    assert text_part is not None
    assert body == text_part.get_content()


class _HeldAtMail:
    """A script rule's ``match``: holds the server at MAIL until the test lets it go on."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, event: Event) -> bool:
        # Runs in the server's thread: blocking it holds this SMTP transaction, nothing else.
        self.reached.set()
        self.release.wait(WAIT_SECONDS)
        return False  # never replaces the reply: the transaction goes on normally


async def test_a_row_edited_while_sending_is_sent_as_claimed(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """An UPDATE during sending does not change the message in flight; the record says so.

    The worker sends what it claimed. The row keeps the edit, the message is ``sent``, and
    its attempt lists the recipients that really got it, so the record matches the delivery.
    """
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    held = _HeldAtMail()
    smtps_server.script.on("MAIL", reply="451 never used", match=held)
    [message_id] = await enqueue(settings, to_addrs=["anna@example.com"], subject="Przed zmianą")

    worker = asyncio.create_task(run_until_empty(settings))
    try:
        assert await asyncio.to_thread(held.reached.wait, WAIT_SECONDS)
        assert "sending" == (await row(settings, message_id))["status"]
        await sql(
            settings,
            "UPDATE mail.outbox SET subject = 'Po zmianie', to_addrs = ARRAY['piotr@example.com']"
            " WHERE id = :id",
            id=message_id,
        )
    finally:
        held.release.set()
    await worker

    [received] = smtps_server.messages
    assert (("anna@example.com",), "Przed zmianą") == (
        received.rcpt_tos,
        str(received.parsed()["Subject"]),
    )
    stored = await row(settings, message_id)
    assert ("sent", "Po zmianie") == (stored["status"], stored["subject"])
    [attempt] = await attempts_of(settings, message_id)
    assert ["anna@example.com"] == list(attempt["recipients"])
