"""Upgrading a deployment of schema 0004: the migration repairs rows, the page's note does the rest.

docs/security.md ("Upgrading to version 0005 of the schema") says what ``mailworker migrate``
repairs and which grants an administrator changes by hand; both run here as written, on a
database that was set up as the 0004 page told.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.engine import make_url

from tests.kit.outbox_samples import add_profiles_at, minimal_pdf
from tests.kit.roles import INSERT_WITH_FILE, Roles, documented_sql, drop_roles
from worker.migrate import upgrade_async

# The producer and worker grants of docs/security.md at schema 0004, as deployments ran them.
GRANTS_AT_0004 = """
GRANT INSERT ON mail.outbox, mail.attachment TO mail_producer;
GRANT SELECT ON mail.outbox TO mail_producer;
GRANT UPDATE (status, status_reason) ON mail.outbox TO mail_producer;
GRANT SELECT (outbox_id) ON mail.attachment TO mail_producer;
CREATE FUNCTION mail.message_enqueued_by(outbox_id bigint) RETURNS text
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT o.enqueued_by FROM mail.outbox AS o WHERE o.id = outbox_id $$;
REVOKE ALL ON FUNCTION mail.message_enqueued_by(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mail.message_enqueued_by(bigint) TO mail_producer;
ALTER TABLE mail.outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE mail.attachment ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_messages ON mail.outbox TO mail_producer
    USING (enqueued_by = current_user) WITH CHECK (enqueued_by = current_user);
CREATE POLICY own_attachments ON mail.attachment TO mail_producer
    USING (mail.message_enqueued_by(outbox_id) = current_user)
    WITH CHECK (mail.message_enqueued_by(outbox_id) = current_user);
GRANT SELECT, UPDATE ON mail.outbox TO mail_worker;
GRANT SELECT ON mail.attachment TO mail_worker;
GRANT SELECT, INSERT ON mail.attempt TO mail_worker;
GRANT SELECT ON mail.profile TO mail_worker;
GRANT UPDATE (paused_until, pause_reason, pause_hint, pause_count) ON mail.profile TO mail_worker;
CREATE POLICY all_messages ON mail.outbox TO mail_worker USING (true) WITH CHECK (true);
CREATE POLICY all_attachments ON mail.attachment TO mail_worker USING (true);
CREATE ROLE mailworker_app LOGIN IN ROLE mail_worker;
"""


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


async def test_the_migration_repairs_what_the_new_rules_refuse(empty_database_url: str) -> None:
    """Rows a 0004 database accepted become valid, failing unsendable messages in words."""
    await upgrade_async(empty_database_url, "mail", "0004")
    admin = await _connect(empty_database_url)
    try:
        await admin.execute(
            "INSERT INTO mail.profile (name, from_address, host, port, encryption, auth_method,"
            " login, is_default) VALUES ('biuro', 'biuro@example.pl', 'smtp.example.pl', 587,"
            " 'none', 'login', 'biuro@example.pl', true)"
        )
        ids = {}
        for case, columns in {
            "far future": "not_before = '10000-01-01'",
            "infinity, sent": "status = 'sent', sent_at = now(), expires_at = 'infinity'",
            "forged send": "status = 'cancelled', sent_at = now() + interval '100 years'",
            "sending, no lease": "status = 'sending', claimed_by = 'gone'",
        }.items():
            ids[case] = await admin.fetchval(
                "INSERT INTO mail.outbox (to_addrs, subject) VALUES (ARRAY['a@example.pl'], 'T')"
                " RETURNING id"
            )
            await admin.execute(f"UPDATE mail.outbox SET {columns} WHERE id = $1", ids[case])  # noqa: S608 - test values

        await upgrade_async(empty_database_url, "mail")

        rows = {
            case: dict(
                await admin.fetchrow(
                    "SELECT status, status_reason, not_before, expires_at, sent_at IS NOT NULL"
                    " AS has_sent_at, lease_expires_at <= now() AS lease_ran_out"
                    " FROM mail.outbox WHERE id = $1",
                    message_id,
                )
            )
            for case, message_id in ids.items()
        }
        encryption = await admin.fetchval("SELECT encryption FROM mail.profile")
    finally:
        await admin.close()

    assert "auto" == encryption
    far = rows["far future"]
    assert ("failed", None) == (far["status"], far["not_before"])
    assert (
        "failed: its not_before or expires_at (10000-01-01 00:00:00+00 / -) is outside the"
        " years 1970 to 2199" == far["status_reason"]
    )
    assert ("sent", None, True) == (
        rows["infinity, sent"]["status"],
        rows["infinity, sent"]["expires_at"],
        rows["infinity, sent"]["has_sent_at"],
    )
    assert ("cancelled", False) == (
        rows["forged send"]["status"],
        rows["forged send"]["has_sent_at"],
    )
    assert ("sending", True) == (
        rows["sending, no lease"]["status"],
        rows["sending, no lease"]["lease_ran_out"],
    )


async def test_the_upgrade_note_moves_producers_to_the_new_grants(empty_database_url: str) -> None:
    """A 0004 deployment: the migration closes the owner leak, the note's SQL the rest."""
    await upgrade_async(empty_database_url, "mail", "0004")
    await add_profiles_at(empty_database_url)
    roles = Roles(empty_database_url)
    try:
        admin = await roles.connect()
        blocks = documented_sql()
        await admin.execute(roles.rename(blocks["roles"]))
        await admin.execute(roles.rename(GRANTS_AT_0004))
        await admin.execute(roles.rename(blocks["producer login"]))
        await admin.execute(roles.rename("CREATE ROLE crm_app LOGIN IN ROLE mail_producer"))
        shop, crm = await roles.connect("shop_app"), await roles.connect("crm_app")
        shop_message = int(await shop.fetchval(INSERT_WITH_FILE, "Przed", minimal_pdf()))
        leaked_before = await crm.fetchval("SELECT mail.message_enqueued_by($1)", shop_message)

        await upgrade_async(empty_database_url, "mail")
        leaked_after = await crm.fetchval("SELECT mail.message_enqueued_by($1)", shop_message)
        own_after = await shop.fetchval("SELECT mail.message_enqueued_by($1)", shop_message)
        await admin.execute(roles.rename(blocks["upgrade from 0004"]))

        second = int(await shop.fetchval(INSERT_WITH_FILE, "Po", minimal_pdf()))
        cancelled = await shop.fetchval("SELECT mail.cancel_message($1, 'order withdrawn')", second)
        refusals = []
        for sql in (
            "UPDATE mail.outbox SET status = 'pending'",
            "INSERT INTO mail.outbox (to_addrs, subject, status)"
            " VALUES (ARRAY['a@example.pl'], 'T', 'sent')",
        ):
            try:
                await shop.execute(sql)
                refusals.append("accepted")
            except asyncpg.InsufficientPrivilegeError as exc:
                refusals.append(str(exc))
        old_function = await admin.fetchval(
            "SELECT to_regprocedure('mail.message_enqueued_by(bigint)') IS NOT NULL"
        )
    finally:
        await roles.close()
        await drop_roles(roles)

    assert (roles.names["shop_app"], None) == (leaked_before, leaked_after)
    assert roles.names["shop_app"] == own_after
    assert cancelled is True
    assert ["permission denied for table outbox"] * 2 == refusals
    assert old_function is False
