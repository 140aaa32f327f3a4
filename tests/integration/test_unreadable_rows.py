"""A producer's row can never stop delivery: refused by the database, or set aside by the worker.

The database refuses times a worker cannot hold (CHECK constraints of migration 0005). For
what nobody foresaw, the tests drop such a constraint in their own database and insert the
value the worker cannot read: the worker sets that one row aside (``failed``, with the
reason), keeps running, and sends the rows beside it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from types import FrameType

import asyncpg
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from tests.kit.commands import ok
from tests.kit.database import sql
from tests.kit.delivery import (
    add_profile,
    attempts_of,
    enqueue,
    fast_settings,
    row,
    run_until_empty,
)
from tests.kit.smtp_server import SmtpTestServer
from worker import mime
from worker.settings import Settings


async def _refusal(database_url: str, statement: str) -> str:
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    except asyncpg.CheckViolationError as exc:
        return exc.constraint_name or str(exc)
    finally:
        await connection.close()
    return "accepted"


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("not_before", "'10000-01-01'", "ck_outbox_not_before_in_range"),
        ("not_before", "'infinity'", "ck_outbox_not_before_in_range"),
        ("not_before", "'-infinity'", "ck_outbox_not_before_in_range"),
        ("expires_at", "'10000-01-01'", "ck_outbox_expires_at_in_range"),
        ("expires_at", "'infinity'", "ck_outbox_expires_at_in_range"),
        ("not_before", "'2200-01-01'", "ck_outbox_not_before_in_range"),
        ("next_attempt_at", "'infinity'", "ck_outbox_next_attempt_at_in_range"),
        ("created_at", "'0001-01-01'", "ck_outbox_created_at_in_range"),
    ],
)
async def test_the_database_refuses_times_a_worker_cannot_hold(
    database_url: str, column: str, value: str, constraint: str
) -> None:
    """Infinite times and years past the range are refused, naming the column's constraint."""
    statement = (
        f"INSERT INTO mail.outbox (to_addrs, subject, {column})"  # noqa: S608 - test values
        f" VALUES (ARRAY['anna@example.com'], 'T', {value})"
    )
    assert constraint == await _refusal(database_url, statement)


async def test_a_sane_schedule_is_accepted(database_url: str) -> None:
    """The range leaves every real schedule alone: next year, and the last day of 2199."""
    statement = (
        "INSERT INTO mail.outbox (to_addrs, subject, not_before, expires_at)"
        " VALUES (ARRAY['anna@example.com'], 'T', now() + interval '1 year', '2199-12-31')"
    )
    assert "accepted" == await _refusal(database_url, statement)


async def test_a_profile_row_with_a_login_in_clear_is_refused(database_url: str) -> None:
    """``encryption = 'none'`` with a login is refused, however the row is written."""
    statement = (
        "INSERT INTO mail.profile (name, from_address, host, port, encryption, auth_method,"
        " login) VALUES ('wp', 'jan@wp.pl', 'smtp.wp.pl', 25, 'none', 'login', 'jan')"
    )
    assert "ck_profile_no_login_in_clear" == await _refusal(database_url, statement)


async def _without_check(settings: Settings, constraint: str) -> None:
    """Drop a constraint in this test's database: a value nobody foresaw can then get in."""
    await sql(settings, f"ALTER TABLE mail.outbox DROP CONSTRAINT {constraint}")


@pytest.mark.parametrize("capped", [False, True], ids=["one-statement claim", "claim under a cap"])
async def test_a_row_the_worker_cannot_read_is_set_aside(
    settings: Settings, smtps_server: SmtpTestServer, capped: bool
) -> None:
    """A claim whose rows cannot all be read: the unreadable one fails in words, the rest go.

    Before: asyncpg's OverflowError ended the worker after the claim had marked the good rows
    ``sending``; every restart crashed again.
    """
    settings = fast_settings(settings)
    caps = {"daily_cap": 100} if capped else {}
    await add_profile(settings, smtps_server, encryption="ssl", **caps)
    await _without_check(settings, "ck_outbox_expires_at_in_range")
    good_before = await enqueue(settings, count=2)
    [bad] = await enqueue(settings, subject="Rok 10000")
    await sql(settings, "UPDATE mail.outbox SET expires_at = '10000-01-01' WHERE id = :id", id=bad)
    good_after = await enqueue(settings, count=2)

    await run_until_empty(settings)

    [(status, reason)] = await sql(  # the test reads only what it can read, too
        settings, "SELECT status, status_reason FROM mail.outbox WHERE id = :id", id=bad
    )
    assert "failed" == status
    assert reason.startswith(
        "failed: the worker cannot read this message (OverflowError: date value out of range);"
    )
    [attempt] = await attempts_of(settings, bad)
    assert "failed" == attempt["outcome"]
    statuses = [
        (await row(settings, message_id))["status"] for message_id in good_before + good_after
    ]
    assert ["sent"] * 4 == statuses
    assert 4 == len(smtps_server.messages)


async def test_an_unforeseen_error_in_one_message_sets_only_it_aside(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """A message whose handling raises (here: an infinite expiry) fails once, with the reason.

    Before: the crash was taken for passing trouble and retried until its attempts ran out.
    """
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    await _without_check(settings, "ck_outbox_expires_at_in_range")
    [bad] = await enqueue(settings, subject="Nigdy nie wygasa")
    await sql(settings, "UPDATE mail.outbox SET expires_at = 'infinity' WHERE id = :id", id=bad)
    good = await enqueue(settings, count=2)

    await run_until_empty(settings)

    stored = await row(settings, bad)
    assert ("failed", 1) == (stored["status"], stored["attempts"])
    assert stored["status_reason"].startswith(
        "failed: the worker could not handle this message (TypeError: "
    )
    assert ["sent", "sent"] == [(await row(settings, m))["status"] for m in good]


async def test_housekeeping_survives_a_value_it_cannot_read(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """A pause until year 10000 on one profile: housekeeping logs it, the other profile sends.

    Before: the worker's first housekeeping raised OverflowError and it exited at every start.
    """
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    await add_profile(settings, smtps_server, name="zepsuty", encryption="ssl")
    await sql(settings, "ALTER TABLE mail.profile DROP CONSTRAINT ck_profile_paused_until_in_range")
    await sql(
        settings,
        "UPDATE mail.profile SET paused_until = '10000-01-01', pause_count = 1"
        " WHERE name = 'zepsuty'",
    )
    good = await enqueue(settings, count=2)

    await run_until_empty(settings)

    assert ["sent", "sent"] == [(await row(settings, m))["status"] for m in good]


async def test_an_attachment_over_the_limit_fails_before_it_is_loaded(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """An attachment put in with SQL past the size limit: failed, naming the limit; nothing sent.

    Before: the worker loaded and built the whole message (1.8 GB for 200 MB) and the server
    refused it; with no SIZE limit at the server, it was sent.
    """
    settings = fast_settings(settings, max_message_bytes=100_000)
    await add_profile(settings, smtps_server, encryption="ssl")
    body = "Umowa w załączniku."
    content = b"%PDF-1.4\n" + b"\x00" * 150_000
    [large] = await enqueue(settings, subject="Skan umowy", body_text=body)
    await sql(
        settings,
        "INSERT INTO mail.attachment (outbox_id, filename, content_type, content)"
        " VALUES (:id, 'skan.pdf', 'application/pdf', :content)",
        id=large,
        content=content,
    )
    good = await enqueue(settings, count=2)

    await run_until_empty(settings)

    stored = await row(settings, large)
    assert ("failed", 1) == (stored["status"], stored["attempts"])
    size = len(body.encode()) + len(content)
    assert stored["status_reason"] == (
        f"failed: the message is {size} bytes with its attachments, more than the limit of"
        " 100000 bytes (MAILWORKER_MAX_MESSAGE_BYTES)"
    )
    assert ["sent", "sent"] == [(await row(settings, m))["status"] for m in good]
    assert 2 == len(smtps_server.messages)


async def test_a_password_no_configured_key_opens_pauses_the_profile_in_status(
    settings: Settings, smtps_server: SmtpTestServer, cli_env: dict[str, str]
) -> None:
    """A worker with another key: the profile pauses saying why and what to do; the message
    waits unspent, and ``status`` shows the pause. Before: no hint said what to do."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")  # under the test's key
    [message_id] = await enqueue(settings)
    other_key = settings.model_copy(
        update={"secret_key": SecretStr(Fernet.generate_key().decode())}
    )

    await run_until_empty(other_key)

    stored = await row(settings, message_id)
    assert ("pending", 0) == (stored["status"], stored["attempts"])
    status = await asyncio.to_thread(ok, cli_env, "status", "--json")  # its own event loop
    [profile] = json.loads(status.stdout)["profiles"]
    assert "paused" == profile["state"]
    assert profile["pause_reason"] == (
        "stored password of profile 'test' cannot be decrypted with the configured keys;"
        " was MAILWORKER_SECRET_KEY changed?"
    )
    assert profile["pause_hint"].startswith("configure the key the password was saved with")
    assert () == smtps_server.auth_attempts


async def test_a_large_message_is_built_off_the_event_loop(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """A message of 256 KB or more is built in a thread, so no other send waits for it;
    a small one is built in the loop, where it costs less than a thread would.

    Observed with profile hooks that note the thread each call of ``render`` runs in. Before:
    every message was built in the event loop, and 200 MB froze it for 9 s.
    """
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    [large] = await enqueue(settings, subject="Skan umowy")
    await sql(
        settings,
        "INSERT INTO mail.attachment (outbox_id, filename, content_type, content)"
        " VALUES (:id, 'skan.pdf', 'application/pdf', :content)",
        id=large,
        content=b"%PDF-1.4\n" + bytes(300_000),
    )
    [small] = await enqueue(settings, subject="Krótka")
    built_in: list[tuple[str, bool]] = []

    def note_render(frame: FrameType, event: str, _arg: object) -> None:
        if event == "call" and frame.f_code is mime.render.__code__:
            subject = frame.f_locals["content"].subject
            built_in.append((subject, threading.current_thread() is threading.main_thread()))

    threading.setprofile(note_render)
    sys.setprofile(note_render)
    try:
        await run_until_empty(settings)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)

    assert ["sent", "sent"] == [(await row(settings, m))["status"] for m in (large, small)]
    assert [("Krótka", True), ("Skan umowy", False)] == sorted(built_in)
