"""The roles of ``docs/security.md``, created from its SQL, allow what it says and no more.

The ``roles`` fixture (conftest) runs the page's set-up under names of the test's own
(tests/kit/roles.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import asyncpg
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from tests.docs.test_outbox_docs import Block, Expected, counts, doc_blocks
from tests.kit.delivery import (
    add_profile,
    fast_settings,
    row,
    run_until_empty,
)
from tests.kit.outbox_samples import minimal_pdf
from tests.kit.roles import INSERT_WITH_FILE, Roles, documented_sql
from tests.kit.smtp_server import SmtpTestServer
from worker.settings import Settings


async def _insert(connection: asyncpg.Connection, subject: str) -> int:
    return int(await connection.fetchval(INSERT_WITH_FILE, subject, minimal_pdf()))


async def _refused(call: Callable[[], object], error: type[Exception]) -> str:
    with pytest.raises(error) as raised:
        await call()  # type: ignore[misc]
    return str(raised.value)


async def test_a_producer_enqueues_and_reads_its_own_status(roles: Roles) -> None:
    """The producer inserts a message with a PDF, reads its status; the default profile is set."""
    shop = await roles.connect("shop_app")
    message_id = await _insert(shop, "Wiadomość testowa 1")
    status = await shop.fetchrow(
        "SELECT status, status_reason, profile, enqueued_by FROM mail.outbox WHERE id = $1",
        message_id,
    )
    assert status is not None
    expected = ("pending", "queued", "biuro", roles.names["shop_app"])
    assert expected == tuple(status)


async def test_a_producer_cannot_read_profiles_or_passwords(roles: Roles) -> None:
    """Profiles, and with them the password tokens, are refused to a producer."""
    shop = await roles.connect("shop_app")
    errors = [
        await _refused(functools.partial(shop.fetch, sql), asyncpg.InsufficientPrivilegeError)
        for sql in (
            "SELECT name FROM mail.profile",
            "SELECT password_encrypted FROM mail.profile",
            "SELECT content FROM mail.attachment",
            "SELECT error FROM mail.attempt",
        )
    ]
    expected = [
        "permission denied for table profile",
        "permission denied for table profile",
        "permission denied for table attachment",
        "permission denied for table attempt",
    ]
    assert expected == errors


async def test_producers_see_and_touch_only_their_own_messages(roles: Roles) -> None:
    """crm_app neither sees, cancels nor attaches to shop_app's message, nor poses as shop_app."""
    shop, crm = await roles.connect("shop_app"), await roles.connect("crm_app")
    shop_message = await _insert(shop, "Zamówienie 1042")
    crm_message = await _insert(crm, "Zgłoszenie 7")

    seen_by_crm = [r["id"] for r in await crm.fetch("SELECT id FROM mail.outbox")]
    cancelled = await crm.fetchval("SELECT mail.cancel_message($1, 'crm')", shop_message)
    own = [
        await crm.fetchval("SELECT mail.is_own_message($1)", message_id)
        for message_id in (crm_message, shop_message)
    ]
    attach = await _refused(
        lambda: crm.execute(
            "INSERT INTO mail.attachment (outbox_id, filename, content) VALUES ($1, 'x.txt', 'x')",
            shop_message,
        ),
        asyncpg.InsufficientPrivilegeError,
    )
    pose = await _refused(
        lambda: crm.execute(
            "INSERT INTO mail.outbox (to_addrs, subject, enqueued_by)"
            " VALUES (ARRAY['a@example.pl'], 'T', $1)",
            roles.names["shop_app"],
        ),
        asyncpg.InsufficientPrivilegeError,
    )
    assert ([crm_message], False, [True, False]) == (seen_by_crm, cancelled, own)
    assert 'new row violates row-level security policy for table "attachment"' == attach
    assert "permission denied for table outbox" == pose
    shop_status = await shop.fetchval("SELECT status FROM mail.outbox WHERE id = $1", shop_message)
    assert "pending" == shop_status


async def test_a_producer_runs_the_outbox_page_as_written(roles: Roles) -> None:
    """Every service example of docs/outbox.md works for a producer role under row security."""
    shop = await roles.connect("shop_app")
    problems = []
    for block in doc_blocks("sql"):
        expected = Expected.of(block)
        if not expected.as_admin:  # the page's own GRANT block is replaced by this page
            problems += await _run_as_producer(shop, block, expected)
    assert [] == problems


async def _run_as_producer(
    connection: asyncpg.Connection, block: Block, expected: Expected
) -> list[str]:
    before = await counts(connection)
    if expected.rows is None:
        await connection.execute(block.code)
        rows = None
    else:
        rows = len(await connection.fetch(block.code))
    after = await counts(connection)
    added = (after[0] - before[0], after[1] - before[1], rows)
    if (expected.messages, expected.attachments, expected.rows) != added:
        return [f"{block.where}: added {added}"]
    return []


async def test_a_worker_in_the_worker_role_delivers(
    roles: Roles, settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """``mailworker run`` connected as the worker role sends a producer's message."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, name="biuro-smtp", encryption="ssl")
    shop = await roles.connect("shop_app")
    message_id = int(
        await shop.fetchval(
            "INSERT INTO mail.outbox (profile, to_addrs, subject, body_text)"
            " VALUES ('biuro-smtp', ARRAY['anna@example.com'], 'Faktura', 'W załączniku.')"
            " RETURNING id"
        )
    )
    as_worker = settings.model_copy(update={"database_url": SecretStr(roles.url("mailworker_app"))})

    await run_until_empty(as_worker)

    [received] = smtps_server.messages
    assert ("anna@example.com",) == received.rcpt_tos
    stored = await row(settings, message_id)
    assert ("sent", roles.names["shop_app"]) == (stored["status"], stored["enqueued_by"])


async def test_a_worker_role_granted_before_0005_still_delivers(
    roles: Roles, settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """Without SELECT on the schema version (grants of an older page) the worker cannot check
    it: it says so once and delivers, rather than refusing to start."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, name="biuro-smtp", encryption="ssl")
    admin = await roles.connect()
    await admin.execute(roles.rename("REVOKE SELECT ON mail.alembic_version FROM mail_worker"))
    shop = await roles.connect("shop_app")
    message_id = int(
        await shop.fetchval(
            "INSERT INTO mail.outbox (profile, to_addrs, subject, body_text)"
            " VALUES ('biuro-smtp', ARRAY['anna@example.com'], 'Faktura', 'W załączniku.')"
            " RETURNING id"
        )
    )
    as_worker = settings.model_copy(update={"database_url": SecretStr(roles.url("mailworker_app"))})

    with capture_logs() as events:
        await run_until_empty(as_worker)

    assert "sent" == (await row(settings, message_id))["status"]
    assert 1 == sum(1 for event in events if event["event"] == "schema_version_unreadable")


async def test_the_upgrade_to_0006_grants_the_worker_the_oauth_tokens(roles: Roles) -> None:
    """A worker role set up before 0006 cannot touch mail.oauth_grant; the page's upgrade
    block lets it lock and write the grant (what renewing a token needs)."""
    admin = await roles.connect()
    await admin.execute(roles.rename("REVOKE ALL ON mail.oauth_grant FROM mail_worker"))
    worker = await roles.connect("mailworker_app")
    lock = "SELECT profile_id FROM mail.oauth_grant FOR UPDATE"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await worker.fetch(lock)

    await admin.execute(roles.rename(documented_sql()["upgrade from 0005"]))

    async with worker.transaction():
        assert [] == await worker.fetch(lock)
        await worker.execute(
            "INSERT INTO mail.oauth_grant (profile_id, scopes)"
            " SELECT id, 'https://outlook.office.com/SMTP.Send' FROM mail.profile LIMIT 1"
        )
        assert 1 == await worker.fetchval(
            "UPDATE mail.oauth_grant SET refresh_count = 1 RETURNING 1"
        )
