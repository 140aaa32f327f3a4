"""``mailworker status`` and ``mailworker messages ...`` against a database of the test's own.

Plain ``def`` tests: each command runs its own ``asyncio.run``. Rows are written with plain SQL
(times on the database's clock), except where a real delivery makes the attempt history.
"""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func

from tests.kit.commands import cli, failed, ok
from tests.kit.database import run_sql
from tests.kit.delivery import fast_settings, run_until_empty
from tests.kit.rows import ago, ids, insert_attempt, insert_message, insert_profile
from tests.kit.smtp_fixtures import SMTP_LOGIN, SMTP_PASSWORD, SmtpServerFactory
from worker.db import asyncpg_dsn
from worker.moments import utc_iso
from worker.settings import Settings

REQUEUED = "queued again by an operator"


def _status_of(database_url: str, message_id: int) -> tuple[str, str, int]:
    [row] = run_sql(
        database_url,
        "SELECT status, status_reason, attempts FROM mail.outbox WHERE id = :id",
        id=message_id,
    )
    return row.status, row.status_reason, row.attempts


# --- status ----------------------------------------------------------------------------------


def _status_scene(database_url: str) -> dict[str, Any]:
    """A paused default profile with traffic, a profile at its daily cap, a disabled one."""
    insert_profile(
        database_url,
        "biuro",
        is_default=True,
        paused_until=func.now() + timedelta(hours=1),
        pause_reason="535 5.7.8 Error: authentication failed",
        pause_hint="check the password",
        pause_count=1,
    )
    insert_profile(database_url, "sklep", daily_cap=3)
    insert_profile(database_url, "relay", enabled=False)
    insert_message(database_url, profile="biuro", created_at=ago(hours=2))
    for _ in range(3):
        insert_message(database_url, profile="biuro")
    insert_message(
        database_url,
        profile="biuro",
        status="sending",
        claimed_by="w1",
        lease_expires_at=func.now() + timedelta(minutes=2),
    )
    for hours in (3, 1, 30):  # the one 30 h ago is outside the window
        insert_message(database_url, profile="biuro", status="sent", sent_at=ago(hours=hours))
    recent = insert_message(database_url, profile="biuro", status="failed", created_at=ago(days=2))
    insert_attempt(database_url, recent, started_at=ago(hours=1), finished_at=ago(hours=1))
    old = insert_message(database_url, profile="biuro", status="failed", created_at=ago(days=4))
    insert_attempt(database_url, old, started_at=ago(days=3), finished_at=ago(days=3))
    insert_message(  # failed by housekeeping 5 h ago, with no attempt of its own
        database_url,
        profile="biuro",
        status="failed",
        status_reason="expired: not sent before expires_at",
        created_at=ago(days=3),
        expires_at=ago(hours=5),
    )
    for hours in (20, 10, 1):
        insert_message(database_url, profile="sklep", status="sent", sent_at=ago(hours=hours))
    for _ in range(2):
        insert_message(database_url, profile="sklep", created_at=ago(minutes=30))
    [(paused_until, frees_at)] = run_sql(
        database_url,
        "SELECT (SELECT paused_until FROM mail.profile WHERE name = 'biuro'),"
        " (SELECT min(sent_at) + interval '24 hours' FROM mail.outbox WHERE profile = 'sklep')",
    )
    return {"paused_until": utc_iso(paused_until), "frees_at": utc_iso(frees_at)}


def test_status_reports_what_each_profile_holds(cli_env: dict[str, str], database_url: str) -> None:
    """status --json: state and pause, queue, last 24 h and cap numbers match the rows."""
    scene = _status_scene(database_url)

    shown = json.loads(ok(cli_env, "status", "--json").stdout)
    by_name = {item["name"]: item for item in shown["profiles"]}

    assert ["biuro", "relay", "sklep"] == [item["name"] for item in shown["profiles"]]
    biuro = by_name["biuro"]
    assert {
        "default": True,
        "state": "paused",
        "paused_until": scene["paused_until"],
        "pause_reason": "535 5.7.8 Error: authentication failed",
        "pause_hint": "check the password",
        "pending": 4,
        "sending": 1,
        "sent_24h": 2,
        "failed_24h": 2,
        "cap": None,
    }.items() <= biuro.items()
    assert 7200 <= biuro["oldest_pending_age_seconds"] < 7200 + 60
    sklep = by_name["sklep"]
    assert ("active", 2, 0, 3, 0) == (
        sklep["state"],
        sklep["pending"],
        sklep["sending"],
        sklep["sent_24h"],
        sklep["failed_24h"],
    )
    assert {
        "daily": 3,
        "used": 3,
        "in_flight": 0,
        "remaining": 0,
        "full": "daily cap of 3 messages",
        "frees_at": scene["frees_at"],
    }.items() <= sklep["cap"].items()
    assert ("disabled", 0, None) == (
        by_name["relay"]["state"],
        by_name["relay"]["pending"],
        by_name["relay"]["oldest_pending_at"],
    )


def test_status_table_explains_pauses_and_full_caps(
    cli_env: dict[str, str], database_url: str
) -> None:
    """On a terminal: a table row per profile, then why a profile waits, in words."""
    scene = _status_scene(database_url)

    lines = ok(cli_env, "status").stdout.splitlines()

    assert lines[0].split() == [
        "PROFILE",
        "STATE",
        "PENDING",
        "SENDING",
        "SENT-24H",
        "FAILED-24H",
        "CAP",
        "CAP-LEFT",
        "CAP-FREES",
        "OLDEST-PENDING",
    ]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert ["biuro", "*", "paused", "4", "1", "2", "2", "-", "-", "-", "2h"] == rows["biuro"][:11]
    assert ["sklep", "active", "2", "0", "3", "0", "3/3", "0", scene["frees_at"], "30m"] == rows[
        "sklep"
    ]
    assert ["relay", "disabled"] == rows["relay"][:2]
    assert (
        f"biuro: paused until {scene['paused_until']}: 535 5.7.8 Error: authentication failed"
        " (hint: check the password)"
    ) in lines
    assert f"sklep: daily cap of 3 messages reached; room again at {scene['frees_at']}" in lines
    assert any(line.startswith("relay: disabled") for line in lines)


def test_status_without_profiles_says_how_to_start(cli_env: dict[str, str]) -> None:
    """An empty installation gets a pointer, and JSON an empty list."""
    assert "no profiles yet" in ok(cli_env, "status").stdout
    assert [] == json.loads(ok(cli_env, "status", "--json").stdout)["profiles"]


# --- messages list ---------------------------------------------------------------------------


def _listed(env: dict[str, str], *options: str) -> list[int]:
    return [row["id"] for row in json.loads(ok(env, "messages", "list", "--json", *options).stdout)]


def test_list_filters_combine(cli_env: dict[str, str], database_url: str) -> None:
    """Each filter narrows the list; results come newest first; --limit cuts it."""
    insert_profile(database_url, "biuro", is_default=True)
    insert_profile(database_url, "sklep")
    old_sent = insert_message(
        database_url,
        profile="sklep",
        status="sent",
        sent_at=ago(days=3),
        created_at=ago(days=3),
        to_addrs=["jan.kowalski@example.pl"],
    )
    failed_cc = insert_message(
        database_url,
        profile="biuro",
        status="failed",
        created_at=ago(hours=5),
        to_addrs=["ksiegowosc@example.pl"],
        cc_addrs=["Anna.Nowak@Example.pl"],
    )
    test_bcc = insert_message(
        database_url,
        profile="biuro",
        kind="test",
        created_at=ago(minutes=10),
        to_addrs=["ksiegowosc@example.pl"],
        bcc_addrs=["anna.nowak@example.pl"],
    )
    newest = insert_message(
        database_url, profile="biuro", created_at=ago(minutes=5), to_addrs=["biuro@example.pl"]
    )
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()

    assert [newest, test_bcc, failed_cc, old_sent] == _listed(cli_env)
    assert [newest, test_bcc] == _listed(cli_env, "--status", "pending")
    assert [failed_cc, old_sent] == _listed(cli_env, "--status", "sent,failed")
    assert [old_sent] == _listed(cli_env, "--profile", "sklep")
    assert [test_bcc] == _listed(cli_env, "--kind", "test")
    assert [newest, test_bcc] == _listed(cli_env, "--since", "1h")
    assert [newest, test_bcc, failed_cc] == _listed(cli_env, "--since", two_days_ago)
    assert [test_bcc, failed_cc] == _listed(cli_env, "--recipient", "ANNA.nowak@example.pl")
    assert [test_bcc] == _listed(
        cli_env, "--recipient", "anna.nowak@example.pl", "--status", "pending"
    )
    assert [newest, test_bcc] == _listed(cli_env, "--limit", "2")


def test_list_finds_a_recipient_however_it_was_written(
    cli_env: dict[str, str], database_url: str
) -> None:
    """--recipient matches the address: rows stored with a display name, or with the domain
    in its Unicode or its xn-- form, are found by any of these forms."""
    named = insert_message(database_url, to_addrs=["Anna Nowak <anna.nowak@example.pl>"])
    unicode_domain = insert_message(
        database_url, to_addrs=["biuro@example.pl"], cc_addrs=["Jan <jan@zażółć.pl>"]
    )
    ascii_domain = insert_message(
        database_url, to_addrs=["biuro@example.pl"], bcc_addrs=["JAN@xn--za-6ja4f8n1l.pl"]
    )
    insert_message(database_url, to_addrs=["anna.nowak@example.com"])

    assert [named] == _listed(cli_env, "--recipient", "anna.nowak@example.pl")
    assert [named] == _listed(cli_env, "--recipient", "A. Nowak <Anna.Nowak@Example.pl>")
    expected = [ascii_domain, unicode_domain]
    assert expected == _listed(cli_env, "--recipient", "jan@zażółć.pl")
    assert expected == _listed(cli_env, "--recipient", "jan@xn--za-6ja4f8n1l.pl")


def test_list_prints_a_table_and_refuses_unknown_filters(
    cli_env: dict[str, str], database_url: str
) -> None:
    """The table has a row per message with status, profile and first recipient; bad filters
    fail with a usage error."""
    insert_profile(database_url, "biuro", is_default=True)
    message_id = insert_message(
        database_url, to_addrs=["jan.kowalski@example.pl", "anna.nowak@example.pl"]
    )

    result = ok(cli_env, "messages", "list", "--limit", "1")
    lines = result.stdout.splitlines()
    assert ["ID", "STATUS", "PROFILE", "KIND", "CREATED"] == lines[0].split()[:5]
    assert [str(message_id), "pending", "biuro", "notification"] == lines[1].split()[:4]
    assert "jan.kowalski@example.pl (+1)" in lines[1]
    assert "the newest 1; --limit shows more" in result.stderr

    assert (
        "statuses are pending, sending"
        in failed(cli_env, "messages", "list", "--status", "done").output
    )
    assert (
        "neither an age like 1h"
        in failed(cli_env, "messages", "list", "--since", "yesterday").output
    )
    assert "no messages match" in ok(cli_env, "messages", "list", "--status", "sent").stdout


# --- messages show ---------------------------------------------------------------------------


def test_show_has_every_attempt_and_recipient_but_never_the_password(
    cli_env: dict[str, str],
    settings: Settings,
    smtp_server_factory: SmtpServerFactory,
    tmp_path: Path,
) -> None:
    """After a real partial delivery, show lists the attempt with each recipient's reply and
    the attachment's name and size; neither text nor JSON contains the profile's password."""
    server = smtp_server_factory(tls="implicit", accounts={SMTP_LOGIN: SMTP_PASSWORD})
    server.script.on("RCPT", reply="550 5.1.1 No such user", rcpt="zly@example.com")
    ok(
        cli_env,
        *["profiles", "add", "test", "--from", "jankowalski@wp.pl", "--host", server.hostname],
        *["--port", str(server.port), "--encryption", "ssl", "--login", SMTP_LOGIN],
        *["--ca-bundle", str(server.cert_bundle), "--password-stdin"],
        input=SMTP_PASSWORD,
    )
    invoice = tmp_path / "faktura.pdf"
    invoice.write_bytes(b"%PDF-1.4 faktura" * 10)
    message_id = ok(
        cli_env,
        *["enqueue", "--to", "anna@example.com", "--cc", "zly@example.com"],
        *["--subject", "Faktura", "--body", "W załączniku faktura.", "--attach", str(invoice)],
    ).stdout.strip()
    asyncio.run(run_until_empty(fast_settings(settings)))
    assert 1 == len(server.messages)

    text = ok(cli_env, "messages", "show", message_id)
    shown = json.loads(ok(cli_env, "messages", "show", message_id, "--json").stdout)

    assert "attempts (1):" in text.stdout
    assert "#1  partial" in text.stdout
    assert "      anna@example.com: 250 accepted" in text.stdout
    assert "      zly@example.com: 550 5.1.1 No such user" in text.stdout
    assert f"  faktura.pdf  application/pdf  {len(invoice.read_bytes())} bytes" in text.stdout
    assert "W załączniku faktura." in text.stdout
    assert ("sent", 1) == (shown["message"]["status"], shown["message"]["attempts"])
    [attempt] = shown["attempts"]
    assert ("partial", 1, 250) == (attempt["outcome"], attempt["attempt_no"], attempt["smtp_code"])
    assert {
        "anna@example.com": {"code": 250, "text": "accepted"},
        "zly@example.com": {"code": 550, "text": "5.1.1 No such user"},
    } == attempt["recipients"]
    assert [{"filename": "faktura.pdf", "content_type": "application/pdf", "size": 160}] == shown[
        "attachments"
    ]
    for output in (text.stdout + text.stderr, json.dumps(shown)):
        assert SMTP_PASSWORD not in output
        assert "password" not in output.lower()


def test_show_of_a_missing_message_says_so(cli_env: dict[str, str]) -> None:
    """An unknown id ends with a one-line error, not a traceback."""
    assert "no message has the id 424242" in failed(cli_env, "messages", "show", "424242").output


# --- messages retry, cancel ------------------------------------------------------------------


def test_retry_requeues_failed_and_cancelled_rows_only(
    cli_env: dict[str, str], database_url: str
) -> None:
    """Failed and cancelled rows become pending with attempts reset and history kept; every
    other row stays as it was, and each refusal is named (exit 1)."""
    insert_profile(database_url, "biuro", is_default=True)
    gave_up = insert_message(
        database_url, status="failed", attempts=8, status_reason="failed: gave up after 8"
    )
    insert_attempt(database_url, gave_up, attempt_no=7, outcome="retry")
    insert_attempt(database_url, gave_up, attempt_no=8, outcome="failed")
    cancelled = insert_message(database_url, status="cancelled", status_reason="cancelled")
    sent = insert_message(database_url, status="sent", sent_at=ago(minutes=1))
    pending = insert_message(database_url)
    sending = insert_message(database_url, status="sending", claimed_by="w1")
    expired = insert_message(
        database_url,
        status="failed",
        status_reason="expired: not sent before expires_at",
        expires_at=ago(hours=1),
    )
    before = {row.id: tuple(row) for row in run_sql(database_url, "SELECT * FROM mail.outbox")}
    requested = [gave_up, cancelled, sent, pending, sending, expired, 424242]

    result = failed(cli_env, "messages", "retry", *map(str, requested))

    assert f"message {gave_up}: queued again\nmessage {cancelled}: queued again\n" == result.stdout
    assert f"message {sent}: not retried: it was sent" in result.stderr
    assert f"message {pending}: not retried: it is pending already" in result.stderr
    assert f"message {sending}: not retried: it is being sent right now" in result.stderr
    assert f"message {expired}: not retried: it expired at" in result.stderr
    assert "message 424242: no such message" in result.stderr
    assert "5 of 7 message(s) were not retried" in result.stderr
    assert ("pending", REQUEUED, 0) == _status_of(database_url, gave_up)
    assert ("pending", REQUEUED, 0) == _status_of(database_url, cancelled)
    [due] = run_sql(
        database_url,
        "SELECT bool_and(next_attempt_at <= now()) FROM mail.outbox WHERE id IN (:a, :b)",
        a=gave_up,
        b=cancelled,
    )
    assert due[0] is True
    assert [7, 8] == [
        row.attempt_no
        for row in run_sql(
            database_url,
            "SELECT attempt_no FROM mail.attempt WHERE outbox_id = :id ORDER BY id",
            id=gave_up,
        )
    ]
    after = {row.id: tuple(row) for row in run_sql(database_url, "SELECT * FROM mail.outbox")}
    unchanged = {sent, pending, sending, expired}
    assert {key: before[key] for key in unchanged} == {key: after[key] for key in unchanged}


def test_retry_failed_takes_every_failed_row_of_a_profile(
    cli_env: dict[str, str], database_url: str
) -> None:
    """--failed --profile requeues that profile's failed rows; others and expired ones stay."""
    insert_profile(database_url, "biuro", is_default=True)
    insert_profile(database_url, "sklep")
    shop_failures = [insert_message(database_url, profile="sklep", status="failed") for _ in "ab"]
    office_failure = insert_message(database_url, profile="biuro", status="failed")
    expired = insert_message(
        database_url, profile="biuro", status="failed", expires_at=ago(minutes=1)
    )
    shop_cancelled = insert_message(database_url, profile="sklep", status="cancelled")

    shop = ok(cli_env, "messages", "retry", "--failed", "--profile", "sklep")

    assert "queued again 2 failed message(s) of profile 'sklep'\n" == shop.stdout
    assert shop_failures == ids(
        run_sql(database_url, "SELECT id FROM mail.outbox WHERE status = 'pending'")
    )
    assert "failed" == _status_of(database_url, office_failure)[0]
    assert "cancelled" == _status_of(database_url, shop_cancelled)[0]

    everyone = ok(cli_env, "messages", "retry", "--failed")

    assert "queued again 1 failed message(s)" in everyone.stdout
    assert "left 1 expired message(s) failed" in everyone.stdout
    assert "failed" == _status_of(database_url, expired)[0]
    assert "pending" == _status_of(database_url, office_failure)[0]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ([], "give message IDs or --failed"),
        (["1", "--failed"], "give message IDs or --failed"),
        (["1", "--profile", "sklep"], "--profile goes with --failed"),
    ],
)
def test_retry_needs_ids_or_failed(
    cli_env: dict[str, str], arguments: list[str], expected: str
) -> None:
    """retry says how it is used before touching anything."""
    result = cli(cli_env, "messages", "retry", *arguments)
    assert 2 == result.exit_code
    assert expected in result.output


def test_retry_wakes_the_workers_at_once(cli_env: dict[str, str], database_url: str) -> None:
    """A requeued message is announced on the outbox channel, so it goes out without a poll."""
    insert_profile(database_url, "biuro", is_default=True)
    message_id = insert_message(database_url, status="failed")
    listening, heard = threading.Event(), threading.Event()

    async def listen() -> None:
        connection = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            await connection.add_listener("mail_outbox", lambda *_args: heard.set())
            listening.set()
            for _ in range(100):
                if heard.is_set():
                    return
                await asyncio.sleep(0.05)
        finally:
            await connection.close()

    listener = threading.Thread(target=lambda: asyncio.run(listen()))
    listener.start()
    try:
        assert listening.wait(10)
        ok(cli_env, "messages", "retry", str(message_id))
        assert heard.wait(5)
    finally:
        listener.join(10)


def test_cancel_withdraws_pending_rows_only(cli_env: dict[str, str], database_url: str) -> None:
    """Pending rows are cancelled; a row being sent is refused with the reason, and so are
    finished ones; cancelling twice is no error; untouched rows stay pending."""
    insert_profile(database_url, "biuro", is_default=True)
    pending, other_pending = insert_message(database_url), insert_message(database_url)
    sending = insert_message(database_url, status="sending", claimed_by="w1")
    sent = insert_message(database_url, status="sent", sent_at=ago(minutes=1))
    cancelled = insert_message(database_url, status="cancelled")
    requested = [pending, sending, sent, cancelled, 424242]

    result = failed(cli_env, "messages", "cancel", *map(str, requested))

    assert (
        f"message {pending}: cancelled\nmessage {cancelled}: cancelled already\n" == result.stdout
    )
    assert (
        f"message {sending}: not cancelled: it is being sent right now, and a send cannot be"
        " called back"
    ) in result.stderr
    assert f"message {sent}: not cancelled: it was sent already" in result.stderr
    assert "3 of 5 message(s) were not cancelled" in result.stderr
    assert ("cancelled", "cancelled by an operator", 0) == _status_of(database_url, pending)
    assert "pending" == _status_of(database_url, other_pending)[0]
    assert "sending" == _status_of(database_url, sending)[0]
    assert "sent" == _status_of(database_url, sent)[0]


def test_retry_gives_a_message_without_profile_the_current_default(
    cli_env: dict[str, str], database_url: str
) -> None:
    """A message that failed for want of a default profile goes to the default chosen since."""
    orphan = insert_message(
        database_url,
        status="failed",
        status_reason="no profile given and no default profile exists",
    )
    insert_profile(database_url, "biuro", is_default=True)

    ok(cli_env, "messages", "retry", str(orphan))

    [row] = run_sql(
        database_url, "SELECT profile, status FROM mail.outbox WHERE id = :id", id=orphan
    )
    assert ("biuro", "pending") == (row.profile, row.status)


def test_status_says_what_failed_and_why_the_unroutable_too(
    cli_env: dict[str, str], database_url: str
) -> None:
    """Failures of the last 24 h by reason, with the messages no profile can send; a message
    older than a day is left out. Also when there is no profile at all."""
    unroutable = "failed: no profile given and no default profile exists"
    for _ in range(2):
        insert_message(database_url, profile=None, status="failed", status_reason=unroutable)
    insert_message(
        database_url,
        profile=None,
        status="failed",
        status_reason=unroutable,
        created_at=ago(days=3),
    )

    text = ok(cli_env, "status").stdout
    shown = json.loads(ok(cli_env, "status", "--json").stdout)

    assert f"     2  (no profile) (unroutable): {unroutable}" in text.splitlines()
    assert [
        {"profile": None, "profile_exists": False, "reason": unroutable, "messages": 2}
    ] == shown["failed_24h_by_reason"]

    insert_profile(database_url, "biuro")
    refused = "failed: 550 5.1.1 <anna.nowak@example.pl>: Recipient address rejected"
    insert_message(database_url, profile="biuro", status="failed", status_reason=refused)
    insert_message(database_url, profile="gone", status="failed", status_reason="failed: x")
    text = ok(cli_env, "status").stdout.splitlines()
    assert f"     1  biuro: {refused}" in text
    assert "     1  gone (unroutable): failed: x" in text
