"""Producers set the columns of a message, never the workers' delivery state (issue: forgery).

Each test uses the roles exactly as docs/security.md creates them (the ``roles`` fixture runs
the page's SQL), or a service given broad rights without them; the worker, where it runs,
connects as the page's worker role.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from tests.kit.delivery import add_profile, fast_settings, row, run_until_empty
from tests.kit.outbox_samples import DEFAULT_PROFILE, SHOP_PROFILE, add_profiles_at
from tests.kit.roles import Roles, documented_sql
from tests.kit.smtp_server import SmtpTestServer
from worker.settings import Settings

# Every column of the delivery state, with a value a forger would like to set.
FORGED = {
    "status": "'sent'",
    "status_reason": "'sent'",
    "attempts": "7",
    "next_attempt_at": "now() + interval '1 year'",
    "last_error": "'none'",
    "smtp_response": "'250 OK'",
    "message_id": "'<chosen@example.pl>'",
    "created_at": "'2001-01-01'",
    "sent_at": "now() + interval '100 years'",
    "claimed_by": "'nobody'",
    "claimed_at": "now()",
    "lease_expires_at": "now() + interval '100 years'",
    "enqueued_by": "'crm_app'",
}


async def _refusal(connection: asyncpg.Connection, sql: str, *args: object) -> str:
    try:
        await connection.execute(sql, *args)
    except asyncpg.PostgresError as exc:
        return str(exc)
    return "accepted"


async def test_a_producer_cannot_insert_or_change_the_delivery_state(roles: Roles) -> None:
    """An insert naming any delivery-state column, and any UPDATE, is refused to a producer."""
    shop = await roles.connect("shop_app")
    refusals = {
        column: await _refusal(
            shop,
            f"INSERT INTO mail.outbox (to_addrs, subject, {column})"  # noqa: S608 - fixed names
            f" VALUES (ARRAY['anna@example.com'], 'Faktura', {value})",
        )
        for column, value in FORGED.items()
    }
    message_id = await shop.fetchval(
        "INSERT INTO mail.outbox (to_addrs, subject) VALUES (ARRAY['anna@example.com'], 'T')"
        " RETURNING id"
    )
    admin = await roles.connect()
    await admin.execute(
        "UPDATE mail.outbox SET status = 'sent', sent_at = now() WHERE id = $1", message_id
    )
    resend = await _refusal(shop, "UPDATE mail.outbox SET status = 'pending'")

    assert {column: "permission denied for table outbox" for column in FORGED} == refusals
    assert "permission denied for table outbox" == resend


async def test_a_service_with_broad_grants_starts_every_message_fresh(
    database_url: str, settings: Settings
) -> None:
    """A role with ALL rights on the outbox (not its owner) inserts a forged row: it is reset."""
    await add_profiles_at(database_url)
    dsn = make_url(database_url).set(drivername="postgresql")
    role = f"legacy_app_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN")
        await admin.execute(f"GRANT USAGE ON SCHEMA mail TO {role}")
        await admin.execute(f"GRANT ALL ON mail.outbox TO {role}")
        legacy = await asyncpg.connect(dsn.set(username=role).render_as_string(hide_password=False))
        try:
            columns = ", ".join(FORGED)
            message_id = await legacy.fetchval(
                f"INSERT INTO mail.outbox (to_addrs, subject, {columns})"  # noqa: S608 - fixed
                f" VALUES (ARRAY['anna@example.com'], 'Faktura', {', '.join(FORGED.values())})"
                " RETURNING id"
            )
        finally:
            await legacy.close()
        stored = await admin.fetchrow(
            "SELECT status, status_reason, attempts, next_attempt_at <= now() AS due,"
            " last_error, smtp_response, message_id, created_at > now() - interval '1 hour'"
            " AS created_now, sent_at, claimed_by, claimed_at, lease_expires_at, enqueued_by"
            " FROM mail.outbox WHERE id = $1",
            message_id,
        )
    finally:
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()

    assert stored is not None
    expected = {
        "status": "pending",
        "status_reason": "queued",
        "attempts": 0,
        "due": True,
        "last_error": None,
        "smtp_response": None,
        "message_id": None,
        "created_now": True,
        "sent_at": None,
        "claimed_by": None,
        "claimed_at": None,
        "lease_expires_at": None,
        "enqueued_by": role,
    }
    assert expected == dict(stored)


async def test_forged_sends_do_not_hold_back_a_capped_profile(
    roles: Roles, settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """The issue's attack: rows 'cancelled' with sent_at in 2126 on a profile with a cap of 5.

    As the page's producer the insert is refused; as a producer given broad rights it is
    reset to a plain message. Either way another producer's message is sent at once by the
    page's worker role, and the cap counts only what the worker sent.
    """
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, name="kadry", encryption="ssl", daily_cap=5)
    admin = await roles.connect()
    await admin.execute(roles.rename("GRANT ALL ON mail.outbox TO crm_app"))
    shop, crm = await roles.connect("shop_app"), await roles.connect("crm_app")
    forged = (
        "INSERT INTO mail.outbox (profile, to_addrs, subject, status, sent_at)"
        " SELECT 'kadry', ARRAY['x@example.com'], 'forged', 'cancelled',"
        " now() + interval '100 years' FROM generate_series(1, 5)"
    )
    refused = await _refusal(shop, forged)
    await crm.execute(forged)  # broad rights: accepted, but as five plain messages
    good = await shop.fetchval(  # urgent: claimed before crm's five
        "INSERT INTO mail.outbox (profile, to_addrs, subject, priority)"
        " VALUES ('kadry', ARRAY['anna@example.com'], 'Pilne', 1) RETURNING id"
    )
    as_worker = settings.model_copy(update={"database_url": SecretStr(roles.url("mailworker_app"))})

    await run_until_empty(as_worker)

    counts = await admin.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'sent') AS sent,"
        " count(*) FILTER (WHERE sent_at > now()) AS sent_in_future,"
        " max(next_attempt_at) FILTER (WHERE status = 'pending') < now() + interval '25 hours'"
        " AS waits_a_day_at_most"
        " FROM mail.outbox WHERE profile = 'kadry'"
    )
    assert "permission denied for table outbox" == refused
    assert "sent" == (await row(settings, good))["status"]
    # The cap of 5 holds: the good message and four of crm's are sent; the fifth waits for
    # room, within a day, not until 2126.
    assert (5, 0, True) == tuple(counts)
    assert 5 == len(smtps_server.messages)


async def test_the_worker_role_changes_only_the_delivery_state(roles: Roles) -> None:
    """The page's worker role cannot rewrite a message or a profile's settings."""
    shop = await roles.connect("shop_app")
    message_id = await shop.fetchval(
        "INSERT INTO mail.outbox (to_addrs, subject) VALUES (ARRAY['anna@example.com'], 'T')"
        " RETURNING id"
    )
    worker = await roles.connect("mailworker_app")
    refusals = [
        await _refusal(worker, sql, message_id)
        for sql in (
            "UPDATE mail.outbox SET to_addrs = ARRAY['evil@example.com'] WHERE id = $1",
            "UPDATE mail.outbox SET subject = 'changed' WHERE id = $1",
            "UPDATE mail.profile SET host = 'smtp.evil.example' WHERE id > $1",
            "DELETE FROM mail.outbox WHERE id = $1",
        )
    ]
    allowed = await _refusal(
        worker, "UPDATE mail.outbox SET status_reason = 'looked at' WHERE id = $1", message_id
    )
    assert [
        "permission denied for table outbox",
        "permission denied for table outbox",
        "permission denied for table profile",
        "permission denied for table outbox",
    ] == refusals
    assert "accepted" == allowed


@pytest.fixture
async def granted(roles: Roles) -> Roles:
    """The page's profile grant: shop_app may send through biuro (and nothing else)."""
    admin = await roles.connect()
    await admin.execute(roles.rename(documented_sql()["profile grants"]))
    return roles


async def test_profile_grants_keep_a_service_to_its_profiles(granted: Roles) -> None:
    """With a grant row, a producer sends only through the profiles granted to it or its group."""
    shop, crm = await granted.connect("shop_app"), await granted.connect("crm_app")

    def insert(profile: str | None) -> str:
        named = "NULL" if profile is None else f"'{profile}'"
        return (
            "INSERT INTO mail.outbox (profile, to_addrs, subject)"  # noqa: S608 - test values
            f" VALUES ({named}, ARRAY['anna@example.com'], 'T')"
        )

    policy = 'new row violates row-level security policy "granted_profiles_only" for table "outbox"'
    before = {
        "shop biuro": await _refusal(shop, insert(DEFAULT_PROFILE)),
        "shop default": await _refusal(shop, insert(None)),
        "shop sklep": await _refusal(shop, insert(SHOP_PROFILE)),
        "crm biuro": await _refusal(crm, insert(DEFAULT_PROFILE)),
        "crm default": await _refusal(crm, insert(None)),
    }
    probe = await shop.fetchval(
        "SELECT mail.may_use_profile($1, $2)", DEFAULT_PROFILE, granted.names["crm_app"]
    )
    admin = await granted.connect()
    await admin.execute(
        "INSERT INTO mail.profile_grant (profile, grantee) VALUES ($1, $2)",
        SHOP_PROFILE,
        granted.names["mail_producer"],
    )
    crm_after_group_grant = await _refusal(crm, insert(SHOP_PROFILE))

    assert {
        "shop biuro": "accepted",
        "shop default": "accepted",
        "shop sklep": policy,
        "crm biuro": policy,
        "crm default": policy,
    } == before
    assert probe is False  # no one learns another role's grants
    assert "accepted" == crm_after_group_grant
