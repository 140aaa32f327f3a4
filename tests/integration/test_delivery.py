"""The worker delivers the outbox over real SMTP servers with real TLS and AUTH."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
import structlog

from tests.kit.database import sql
from tests.kit.delivery import (
    add_profile,
    attempts_of,
    enqueue,
    fast_settings,
    row,
    run_until_empty,
)
from tests.kit.outbox_samples import minimal_pdf
from tests.kit.smtp_fixtures import SMTP_LOGIN, SMTP_PASSWORD, SmtpServerFactory
from tests.kit.smtp_server import Event, SmtpTestServer
from worker.settings import Settings


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def test_implicit_tls_delivers_and_records_the_reply(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """Over SMTPS with AUTH the message arrives, and the row shows 'sent' with the reply."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    [received] = smtps_server.messages
    assert "jankowalski@wp.pl" == received.mail_from
    assert ["odbiorca@example.com"] == list(received.rcpt_tos)
    assert SMTP_LOGIN == received.login
    assert received.tls_version is not None
    stored = await row(settings, message_id)
    assert ("sent", "sent") == (stored["status"], stored["status_reason"])
    assert stored["smtp_response"].startswith("250 ")
    assert stored["sent_at"] is not None
    assert stored["claimed_by"] is None
    [attempt] = await attempts_of(settings, message_id)
    assert ("sent", 250) == (attempt["outcome"], attempt["smtp_code"])
    assert received.tls_version == attempt["tls_version"]


async def test_starttls_delivers(settings: Settings, starttls_server: SmtpTestServer) -> None:
    """A starttls profile upgrades the connection before logging in."""
    settings = fast_settings(settings)
    await add_profile(settings, starttls_server, encryption="starttls")
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    [received] = starttls_server.messages
    assert received.tls_version is not None
    assert "sent" == (await row(settings, message_id))["status"]


async def test_auto_uses_starttls_off_port_465(
    settings: Settings, starttls_server: SmtpTestServer
) -> None:
    """'auto' on a port other than 465 requires STARTTLS and delivers through it."""
    settings = fast_settings(settings)
    await add_profile(settings, starttls_server, encryption="auto")
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    assert 1 == len(starttls_server.messages)
    assert starttls_server.messages[0].tls_version is not None
    assert "sent" == (await row(settings, message_id))["status"]


async def test_auto_never_sends_a_password_without_starttls(
    settings: Settings, smtp_server_factory: SmtpServerFactory
) -> None:
    """A server that offers AUTH but no STARTTLS gets no password; the profile pauses."""
    settings = fast_settings(settings)
    leaky = smtp_server_factory(
        tls="none", accounts={SMTP_LOGIN: SMTP_PASSWORD}, offer_auth_without_tls=True
    )
    await add_profile(settings, leaky, encryption="auto")
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    assert 0 == len(leaky.auth_attempts)
    assert 0 == len(leaky.messages)
    stored = await row(settings, message_id)
    assert "pending" == stored["status"]
    assert 0 == stored["attempts"]
    assert "offers no STARTTLS" in stored["status_reason"]
    [profile] = await sql(settings, "SELECT paused_until, pause_reason FROM mail.profile")
    assert profile.paused_until is not None
    assert "offers no STARTTLS" in profile.pause_reason


async def test_wrong_password_pauses_the_profile_with_one_login(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """20 queued messages and a wrong password: one login attempt, no attempt spent."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl", password="wrong-password")
    ids = await enqueue(settings, count=20)

    await run_until_empty(settings)

    assert 1 == len(smtps_server.auth_attempts)
    assert not smtps_server.auth_attempts[0].success
    rows = [await row(settings, message_id) for message_id in ids]
    assert {("pending", 0)} == {(r["status"], r["attempts"]) for r in rows}
    assert all("check the login and password" in r["status_reason"] for r in rows)
    [profile] = await sql(settings, "SELECT pause_count, pause_reason FROM mail.profile")
    assert 1 == profile.pause_count
    assert profile.pause_reason.startswith("535 ")


async def test_profile_resumes_after_the_pause_with_one_probe(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """When the pause ends one message probes; its success resumes the profile for all."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    ids = await enqueue(settings, count=3)
    await sql(
        settings,
        "UPDATE mail.profile SET pause_count = 2, pause_reason = 'was broken',"
        " paused_until = now() - interval '1 second'",
    )

    with structlog.testing.capture_logs() as logs:
        await run_until_empty(settings)

    assert {"sent"} == {(await row(settings, i))["status"] for i in ids}
    assert ["test"] == [e["profile"] for e in logs if e["event"] == "profile_resumed"]
    [profile] = await sql(settings, "SELECT pause_count, paused_until FROM mail.profile")
    assert (0, None) == (profile.pause_count, profile.paused_until)


async def test_temporary_failure_is_retried(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """451 then success: the message is sent and its history shows both attempts."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    smtps_server.script.once("DATA_END", reply="451 4.3.0 Temporary failure, try later")
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    stored = await row(settings, message_id)
    assert ("sent", 2) == (stored["status"], stored["attempts"])
    history = await attempts_of(settings, message_id)
    assert [("retry", 451), ("sent", 250)] == [(a["outcome"], a["smtp_code"]) for a in history]
    assert 1 == len(smtps_server.messages)


async def test_permanent_failure_fails_at_once(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """554 at the end of DATA fails the message on its first attempt, with the reply."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    smtps_server.script.on("DATA_END", reply="554 5.6.0 Message content rejected")
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    stored = await row(settings, message_id)
    assert ("failed", 1) == (stored["status"], stored["attempts"])
    assert "554 5.6.0 Message content rejected" in stored["status_reason"]


async def test_one_refused_recipient_of_three(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """Two recipients accepted, one refused: sent, and the refusal is recorded and visible."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    smtps_server.script.on("RCPT", reply="550 5.1.1 No such user", rcpt="bad@example.com")
    [message_id] = await enqueue(
        settings, to_addrs=["a@example.com", "bad@example.com"], cc_addrs=["c@example.com"]
    )

    await run_until_empty(settings)

    [received] = smtps_server.messages
    assert ["a@example.com", "c@example.com"] == list(received.rcpt_tos)
    stored = await row(settings, message_id)
    assert "sent" == stored["status"]
    assert "1 of 3 recipients refused: bad@example.com: 550" in stored["status_reason"]
    [attempt] = await attempts_of(settings, message_id)
    assert "partial" == attempt["outcome"]
    assert 550 == attempt["recipients"]["bad@example.com"]["code"]
    assert 250 == attempt["recipients"]["a@example.com"]["code"]


async def test_line_dropped_during_data_is_retried(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """A connection cut before the server's reply to DATA is a passing failure: retried."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    smtps_server.script.once("DATA_END", action="drop")
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    history = await attempts_of(settings, message_id)
    assert ["retry", "sent"] == [a["outcome"] for a in history]
    assert "connection was lost" in history[0]["error"]
    assert 1 == len(smtps_server.messages)


async def test_stalled_server_times_out_and_retries(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """A server that stops answering is given up on after the profile's timeout."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl", timeout_seconds=1)
    smtps_server.script.once("MAIL", action="stall", seconds=3)
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    history = await attempts_of(settings, message_id)
    assert ["retry", "sent"] == [a["outcome"] for a in history]
    assert "did not answer in time" in history[0]["error"]


async def test_gives_up_after_max_attempts(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """A message failing again and again is failed after max attempts, not retried forever."""
    settings = fast_settings(settings, max_attempts=3)
    await add_profile(settings, smtps_server, encryption="ssl")
    smtps_server.script.on("DATA_END", reply="451 4.3.0 Try later")
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    stored = await row(settings, message_id)
    assert ("failed", 3) == (stored["status"], stored["attempts"])
    assert "gave up after 3 attempts" in stored["status_reason"]


async def test_expired_and_cancelled_rows_are_not_sent(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """Rows past expires_at fail as expired; cancelled rows are never touched."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    past = datetime.now(UTC) - timedelta(minutes=1)
    [expired] = await enqueue(settings, expires_at=past)
    [cancelled] = await enqueue(settings, status="cancelled", status_reason="cancelled by me")
    [fine] = await enqueue(settings, subject="ok")

    await run_until_empty(settings)

    assert 1 == len(smtps_server.messages)
    expired_row, cancelled_row = await row(settings, expired), await row(settings, cancelled)
    assert ("failed", "expired: not sent before expires_at") == (
        expired_row["status"],
        expired_row["status_reason"],
    )
    assert ("cancelled", "cancelled by me", 0) == (
        cancelled_row["status"],
        cancelled_row["status_reason"],
        cancelled_row["attempts"],
    )
    assert "sent" == (await row(settings, fine))["status"]


async def test_unknown_profile_fails_with_a_reason(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """A row naming a profile that does not exist fails in words; others are still sent."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    [lost] = await enqueue(settings, profile="no-such-profile")
    [fine] = await enqueue(settings)

    await run_until_empty(settings)

    stored = await row(settings, lost)
    assert ("failed", "profile no-such-profile does not exist") == (
        stored["status"],
        stored["status_reason"],
    )
    assert "sent" == (await row(settings, fine))["status"]


async def test_disabled_profile_waits_with_a_reason(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """A disabled profile's messages stay pending and say why; nothing is sent."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl", enabled=False)
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    stored = await row(settings, message_id)
    assert ("pending", "waiting: profile test is disabled") == (
        stored["status"],
        stored["status_reason"],
    )
    assert 0 == len(smtps_server.messages)


async def test_the_bytes_the_server_received(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """From, Reply-To, To/Cc, no Bcc, the Polish subject and a byte-exact PDF arrive."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    pdf = minimal_pdf()
    [message_id] = await enqueue(
        settings,
        to_addrs=["anna@example.com"],
        cc_addrs=["biuro@example.com"],
        bcc_addrs=["archiwum@example.com"],
        subject="Wiadomość testowa 1",
        body_text="Zażółć gęślą jaźń.",
        body_html="<p>Zażółć <b>gęślą</b> jaźń.</p>",
        headers={"X-Dokument": "FV/2026/11"},
    )
    await sql(
        settings,
        "INSERT INTO mail.attachment (outbox_id, filename, content_type, content)"
        " VALUES (:id, 'Faktura – listopad.pdf', 'application/pdf', :content)",
        id=message_id,
        content=pdf,
    )

    await run_until_empty(settings)

    [received] = smtps_server.messages
    assert ["anna@example.com", "biuro@example.com", "archiwum@example.com"] == list(
        received.rcpt_tos
    )
    parsed = _parse(received.data)
    assert "Comarch DMS - powiadomienia <jankowalski@wp.pl>" == str(parsed["From"])
    assert "jankowalski@wp.pl" == str(parsed["Reply-To"])
    assert "Wiadomość testowa 1" == str(parsed["Subject"])
    assert "biuro@example.com" == str(parsed["Cc"])
    assert parsed["Bcc"] is None
    assert "FV/2026/11" == str(parsed["X-Dokument"])
    stored = await row(settings, message_id)
    assert stored["message_id"] == str(parsed["Message-ID"])
    text_part = parsed.get_body(preferencelist=("plain",))
    html_part = parsed.get_body(preferencelist=("html",))
    assert text_part is not None
    assert html_part is not None
    assert "Zażółć gęślą jaźń." == text_part.get_content().strip()
    assert "<b>gęślą</b>" in html_part.get_content()
    [attachment] = list(parsed.iter_attachments())
    assert "Faktura – listopad.pdf" == attachment.get_filename()
    assert "application/pdf" == attachment.get_content_type()
    assert pdf == attachment.get_content()


async def test_message_id_is_kept_across_retries(
    settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """The Message-ID generated on the first attempt is the one sent on the retry."""
    settings = fast_settings(settings)
    await add_profile(settings, smtps_server, encryption="ssl")
    smtps_server.script.once("DATA_END", action="accept_then_drop")
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    first, second = smtps_server.messages
    assert _parse(first.data)["Message-ID"] == _parse(second.data)["Message-ID"]
    stored = await row(settings, message_id)
    assert stored["message_id"] == str(_parse(first.data)["Message-ID"])


@pytest.mark.parametrize("kind", ["self_signed", "expired", "wrong_host"])
async def test_bad_certificates_are_refused(
    settings: Settings, smtp_server_factory: SmtpServerFactory, kind: str
) -> None:
    """Self-signed, expired and wrong-host certificates pause the profile; no password sent."""
    settings = fast_settings(settings)
    server = smtp_server_factory(
        tls="implicit", accounts={SMTP_LOGIN: SMTP_PASSWORD}, certificate=kind
    )
    await add_profile(settings, server, encryption="ssl")
    [message_id] = await enqueue(settings)

    await run_until_empty(settings)

    assert 0 == len(server.auth_attempts)
    stored = await row(settings, message_id)
    assert ("pending", 0) == (stored["status"], stored["attempts"])
    assert "TLS failed" in stored["status_reason"]


@pytest.mark.parametrize(("budget", "alone"), [(64 * 1024, True), (None, False)])
async def test_the_attachment_budget_bounds_the_messages_sent_at_once(
    settings: Settings, smtp_server_factory: SmtpServerFactory, budget: int | None, alone: bool
) -> None:
    """Eight messages of 64 KB attachments over 4 connections, all arriving intact.

    With a budget of one attachment each goes alone (the server never sees two transactions
    open at once); without one, the 4 connections carry them side by side.
    """
    overrides = {} if budget is None else {"attachment_budget": budget}
    settings = fast_settings(settings, **overrides)
    server = smtp_server_factory(tls="none")
    await add_profile(
        settings, server, encryption="none", login=None, password=None, max_connections=4
    )
    open_transactions, peak = 0, 0

    def mail(_event: Event) -> bool:  # watches, never fires
        nonlocal open_transactions, peak
        open_transactions += 1
        peak = max(peak, open_transactions)
        return False

    def data_end(_event: Event) -> bool:
        nonlocal open_transactions
        open_transactions -= 1
        return False

    server.script.on("MAIL", reply="451 unused", match=mail)
    server.script.on("DATA_END", reply="451 unused", match=data_end)
    files = {}
    for message_id in await enqueue(settings, count=8):
        files[message_id] = bytes([message_id % 256]) * 64 * 1024
        await sql(
            settings,
            "INSERT INTO mail.attachment (outbox_id, filename, content_type, content)"
            " VALUES (:id, 'dane.bin', 'application/octet-stream', :content)",
            id=message_id,
            content=files[message_id],
        )

    await run_until_empty(settings)

    received = sorted(
        next(_parse(message.data).iter_attachments()).get_content() for message in server.messages
    )
    assert sorted(files.values()) == received
    assert alone == (peak == 1), f"at most {peak} transactions open at once"
