"""The console's queue pages (Starlette's TestClient) against the test's own database: the
filters, the keyset pages, a message's page, retry and cancel through their confirmation
pages, the roles, CSRF and the Polish words."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.testclient import TestClient
from structlog.testing import capture_logs

from tests.kit.commands import ok
from tests.kit.console_client import (
    ADMIN_PASSWORD,
    VIEWER_PASSWORD,
    assert_no_secret_shown,
    csrf_token,
    sign_in,
)
from tests.kit.database import run_execute, run_sql
from tests.kit.rows import (
    ago,
    insert_attachment,
    insert_attempt,
    insert_message,
    insert_profile,
    message_status,
)
from worker.console.queue_filter import PAGE_SIZE
from worker.models import outbox
from worker.settings import Settings

_ROW = re.compile(r'<th scope="row"><a href="/queue/(\d+)">')
_NEXT = re.compile(r'<a href="(/queue\?[^"]*)" rel="next">')
POLISH = {"Accept-Language": "pl-PL,pl;q=0.9"}


def _listed(client: TestClient, query: str = "") -> list[int]:
    """The message ids the queue page lists for ``query``, in the page's order."""
    page = client.get(f"/queue?{query}")
    assert 200 == page.status_code, page.text
    return [int(found) for found in _ROW.findall(page.text)]


def _statuses(database_url: str) -> dict[int, str]:
    rows = run_sql(database_url, "SELECT id, status FROM mail.outbox")
    return {int(row.id): str(row.status) for row in rows}


def _failed(database_url: str, **columns: Any) -> int:
    return insert_message(database_url, status="failed", status_reason="550 mailbox unavailable",
                          **columns)  # fmt: skip


def test_each_filter_narrows_the_queue_and_they_combine(
    client: TestClient, database_url: str
) -> None:
    """Status, account, recipient and since each keep only their rows; together, the rows
    that pass all of them. Newest first throughout."""
    insert_profile(database_url, "biuro", is_default=True)
    insert_profile(database_url, "sklep")
    old_failed = _failed(database_url, profile="biuro", created_at=ago(days=3))
    shop_failed = _failed(database_url, profile="sklep", to_addrs=["Ola <ola@sklep.pl>"])
    shop_pending = insert_message(database_url, profile="sklep", cc_addrs=["OLA@sklep.pl"])
    office_sent = insert_message(database_url, profile="biuro", status="sent", sent_at=ago(),
                                 status_reason="sent")  # fmt: skip
    sign_in(client, "jan", VIEWER_PASSWORD)

    assert [office_sent, shop_pending, shop_failed, old_failed] == _listed(client)
    assert [shop_failed, old_failed] == _listed(client, "status=failed")
    assert [shop_pending, shop_failed] == _listed(client, "profile=sklep")
    assert [shop_pending, shop_failed] == _listed(client, "recipient=ola%40sklep.pl")
    assert [office_sent, shop_pending, shop_failed] == _listed(client, "since=1d")
    assert [shop_failed] == _listed(client, "status=failed&profile=sklep&since=1d")
    assert [old_failed] == _listed(client, "status=failed&profile=biuro")
    assert [] == _listed(client, "status=failed&recipient=nikt%40example.pl")
    assert "No messages match." in client.get("/queue?status=cancelled").text


def test_the_pages_give_every_row_once_even_when_rows_share_a_moment(
    client: TestClient, database_url: str
) -> None:
    """Following "next page" from the first page lists every row exactly once, newest first
    by (created_at, id): rows enqueued at the same moment are split across pages by id."""
    # 40 newer rows, then 70 of one moment: both page breaks fall inside that moment.
    same_moment = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    rows = [
        {"to_addrs": ["anna@example.pl"], "subject": f"Faktura {n}", "created_at": same_moment}
        for n in range(PAGE_SIZE + 20)
    ]
    rows += [{"to_addrs": ["anna@example.pl"], "subject": "Nowsza",
              "created_at": same_moment + timedelta(minutes=n)} for n in range(1, 41)]  # fmt: skip
    run_execute(database_url, outbox.insert().values(rows))
    expected = [
        int(row.id)
        for row in run_sql(
            database_url, "SELECT id FROM mail.outbox ORDER BY created_at DESC, id DESC"
        )
    ]
    sign_in(client, "jan", VIEWER_PASSWORD)

    seen: list[int] = []
    pages = 0
    path: str | None = "/queue"
    while path is not None:
        page = client.get(path)
        assert 200 == page.status_code
        seen += [int(found) for found in _ROW.findall(page.text)]
        following = _NEXT.search(page.text)
        path = following.group(1).replace("&amp;", "&") if following else None
        pages += 1

    assert 3 == pages
    assert expected == seen
    assert len(set(seen)) == len(seen) == PAGE_SIZE + 60


def test_the_pages_keep_the_filter(client: TestClient, database_url: str) -> None:
    """The next page of a filtered list carries the filter: it lists only matching rows."""
    failed = [_failed(database_url) for _ in range(PAGE_SIZE + 2)]
    insert_message(database_url)  # pending, never listed under status=failed
    sign_in(client, "jan", VIEWER_PASSWORD)

    first = client.get("/queue?status=failed")
    following = _NEXT.search(first.text)
    assert following is not None
    second = client.get(following.group(1).replace("&amp;", "&"))

    assert "status=failed" in following.group(1)
    assert failed[:2] == sorted(int(found) for found in _ROW.findall(second.text))


def test_a_wrong_filter_is_said_beside_its_field_not_a_server_error(
    client: TestClient, database_url: str
) -> None:
    """An unknown status, a time that is none, a page link no page made: 422 with the
    problem next to the field, the typed value kept, no rows."""
    insert_message(database_url)
    sign_in(client, "jan", VIEWER_PASSWORD)

    status = client.get("/queue?status=lost")
    since = client.get("/queue?since=wczoraj")
    after = client.get("/queue?after=12_x")

    assert [422, 422, 422] == [status.status_code, since.status_code, after.status_code]
    status_field = status.text.split('id="status"', 1)[1].split("</p>", 1)[0]
    assert 'id="status-problem"' in status_field
    assert "Choose one of the statuses in the list." in status_field
    since_field = since.text.split('id="since"', 1)[1].split("</p>", 1)[0]
    assert 'value="wczoraj"' in since_field
    assert "Give an age like 2h or 3d, or a time like 2026-12-01T08:00." in since_field
    assert "This page link is not valid any more" in after.text
    for answer in (status, since, after):
        assert [] == _ROW.findall(answer.text)


def test_the_message_page_shows_the_message_its_attempts_and_recipients(
    client: TestClient, database_url: str
) -> None:
    """Status in words, account, recipients, subject, times, reason, attachments by name and
    size, each attempt with the server's reply and the result per recipient; the body is
    escaped. An unknown id is 404."""
    insert_profile(database_url, "biuro", is_default=True)
    message_id = _failed(database_url, profile="biuro", to_addrs=["anna@example.pl"],
                         cc_addrs=["jan@example.pl"], subject="Faktura FV/7", attempts=2,
                         body_text="<script>alert(1)</script> Dzień dobry.")  # fmt: skip
    insert_attachment(database_url, message_id, "faktura.pdf", b"%PDF-" + b"x" * 995)
    insert_attempt(database_url, message_id, attempt_no=1, outcome="retry", smtp_code=451,
                   smtp_text="4.7.1 greylisted, try later", profile="biuro")  # fmt: skip
    insert_attempt(database_url, message_id, attempt_no=2, outcome="failed", smtp_code=550,
                   smtp_text="5.1.1 mailbox unavailable", profile="biuro",
                   recipients={"anna@example.pl": {"code": 550, "text": "no such user"},
                               "jan@example.pl": {"code": 250, "text": "OK"}})  # fmt: skip
    sign_in(client, "jan", VIEWER_PASSWORD)

    page = client.get(f"/queue/{message_id}")

    assert 200 == page.status_code
    for shown in ("failed", "550 mailbox unavailable", "biuro", "anna@example.pl",
                  "jan@example.pl", "Faktura FV/7", "faktura.pdf", "1000 bytes",
                  "451 4.7.1 greylisted, try later", "to be tried again",
                  "550 5.1.1 mailbox unavailable", "anna@example.pl: 550 no such user",
                  "jan@example.pl: 250 OK",
                  "&lt;script&gt;alert(1)&lt;/script&gt; Dzień dobry."):  # fmt: skip
        assert shown in page.text
    assert "<script>" not in page.text
    assert 404 == client.get("/queue/999999").status_code
    for no_id in (str(2**63), "0", "x1", "１"):
        assert 404 == client.get(f"/queue/{no_id}").status_code


def test_an_admin_retries_a_failed_message_after_confirming(
    client: TestClient, database_url: str
) -> None:
    """The confirmation page changes nothing; its button makes the message pending (only
    it), goes back to its page which says so, and the log names who did it."""
    message_id = _failed(database_url)
    other = _failed(database_url)
    sign_in(client, "ewa", ADMIN_PASSWORD)
    assert f'href="/queue/{message_id}/retry"' in client.get(f"/queue/{message_id}").text

    confirm = client.get(f"/queue/{message_id}/retry")
    assert "failed" == message_status(database_url, message_id)
    token = csrf_token(client, f"/queue/{message_id}/retry")
    with capture_logs() as logs:
        done = client.post(f"/queue/{message_id}/retry", follow_redirects=False,
                           data={"csrf_token": token})  # fmt: skip
    page = client.get(f"/queue/{message_id}")

    assert f"Retry message {message_id}?" in confirm.text
    assert "Yes, retry the message" in confirm.text
    assert (303, f"/queue/{message_id}") == (done.status_code, done.headers["location"])
    assert {message_id: "pending", other: "failed"} == _statuses(database_url)
    assert "Messages queued again: 1." in page.text
    assert "Messages queued again" not in client.get(f"/queue/{message_id}").text  # said once
    requeued = [(entry["ids"], entry["by"]) for entry in logs
                if entry["event"] == "messages_requeued"]  # fmt: skip
    assert [([message_id], "ewa")] == requeued


def test_an_admin_cancels_a_pending_message_and_a_sending_one_is_refused_in_words(
    client: TestClient, database_url: str
) -> None:
    """Cancel takes a pending message; one being sent stays as it is, and the page says why."""
    pending = insert_message(database_url)
    sending = insert_message(database_url, status="sending", claimed_by="w1",
                             claimed_at=ago(), lease_expires_at=ago(seconds=-60))  # fmt: skip
    sign_in(client, "ewa", ADMIN_PASSWORD)
    assert f'href="/queue/{pending}/cancel"' in client.get(f"/queue/{pending}").text

    with capture_logs() as logs:
        answers = [
            client.post(f"/queue/{message_id}/cancel",
                        data={"csrf_token": csrf_token(client, f"/queue/{message_id}/cancel")})
            for message_id in (pending, sending)
        ]  # fmt: skip
    done_page, refused_page = (answer.text for answer in answers)

    assert {pending: "cancelled", sending: "sending"} == _statuses(database_url)
    assert "Messages cancelled: 1." in done_page
    assert "Messages cancelled: 0." in refused_page
    assert (
        f"Message {sending}: not cancelled: it is being sent right now, and a send cannot be"
        " called back" in refused_page
    )
    cancelled = [(entry["ids"], entry["by"]) for entry in logs
                 if entry["event"] == "messages_cancelled"]  # fmt: skip
    assert [([pending], "ewa"), ([], "ewa")] == cancelled


def test_retrying_a_sent_message_is_refused_in_words(client: TestClient, database_url: str) -> None:
    """A retry posted for a sent message (e.g. from an old page) leaves it sent, and says so."""
    sent = insert_message(database_url, status="sent", sent_at=ago())
    sign_in(client, "ewa", ADMIN_PASSWORD)

    page = client.post(
        f"/queue/{sent}/retry", data={"csrf_token": csrf_token(client, f"/queue/{sent}")}
    )

    assert "sent" == message_status(database_url, sent)
    assert f"Message {sent}: not retried: it was sent" in page.text


def test_an_admin_retries_all_failed_messages_of_one_account(
    client: TestClient, database_url: str
) -> None:
    """Filtered to an account, the queue offers to retry its failed messages; confirmed, they
    become pending except an expired one, which the page names; other accounts' stay."""
    insert_profile(database_url, "biuro", is_default=True)
    insert_profile(database_url, "sklep")
    shop = [_failed(database_url, profile="sklep") for _ in range(2)]
    expired = _failed(database_url, profile="sklep", expires_at=ago(hours=1))
    office = _failed(database_url, profile="biuro")
    shop_sent = insert_message(database_url, profile="sklep", status="sent", sent_at=ago())
    sign_in(client, "ewa", ADMIN_PASSWORD)
    assert "/queue/retry-failed?profile=sklep" in client.get("/queue?profile=sklep").text
    assert "/queue/retry-failed" not in client.get("/queue").text

    confirm = client.get("/queue/retry-failed?profile=sklep")
    with capture_logs() as logs:
        done = client.post("/queue/retry-failed", follow_redirects=False, data={
            "csrf_token": csrf_token(client, "/queue"), "profile": "sklep"})  # fmt: skip
    page = client.get(done.headers["location"])

    assert "Failed messages of this account now: 3." in confirm.text
    assert (303, "/queue?profile=sklep") == (done.status_code, done.headers["location"])
    expected = {shop[0]: "pending", shop[1]: "pending", expired: "failed", office: "failed",
                shop_sent: "sent"}  # fmt: skip
    assert expected == _statuses(database_url)
    assert "Messages queued again: 2." in page.text
    assert f"Message {expired}: not retried: it expired at" in page.text
    requeued = [(sorted(entry["ids"]), entry["profile"], entry["by"])
                for entry in logs if entry["event"] == "messages_requeued"]  # fmt: skip
    assert [(shop, "sklep", "ewa")] == requeued


def test_a_viewer_sees_no_retry_or_cancel_and_may_not_post_them(
    client: TestClient, database_url: str
) -> None:
    """A viewer reads the queue and the messages, without any button to change them; the
    confirmation pages and their posts are 403, and nothing changes."""
    insert_profile(database_url, "sklep")
    failed = _failed(database_url, profile="sklep")
    pending = insert_message(database_url, profile="sklep")
    sign_in(client, "jan", VIEWER_PASSWORD)
    token = csrf_token(client, "/queue")

    pages = [client.get("/queue?profile=sklep"), client.get(f"/queue/{failed}"),
             client.get(f"/queue/{pending}")]  # fmt: skip
    answers = [
        client.get(f"/queue/{failed}/retry"),
        client.get(f"/queue/{pending}/cancel"),
        client.get("/queue/retry-failed?profile=sklep"),
        client.post(f"/queue/{failed}/retry", data={"csrf_token": token}),
        client.post(f"/queue/{pending}/cancel", data={"csrf_token": token}),
        client.post("/queue/retry-failed", data={"csrf_token": token, "profile": "sklep"}),
    ]

    assert [200, 200, 200] == [page.status_code for page in pages]
    for page in pages:
        assert "/retry" not in page.text
        assert "/cancel" not in page.text
    assert [403] * 6 == [answer.status_code for answer in answers]
    assert {failed: "failed", pending: "pending"} == _statuses(database_url)


def test_the_queue_posts_need_the_csrf_token(client: TestClient, database_url: str) -> None:
    """An admin's retry or cancel without the session's token (or with another) is refused."""
    failed = _failed(database_url, profile="sklep")
    pending = insert_message(database_url)
    sign_in(client, "ewa", ADMIN_PASSWORD)

    answers = [
        client.post(f"/queue/{failed}/retry", data={}),
        client.post(f"/queue/{pending}/cancel", data={"csrf_token": "forged"}),
        client.post("/queue/retry-failed", data={"profile": "sklep"}),
    ]

    assert [403, 403, 403] == [answer.status_code for answer in answers]
    assert {failed: "failed", pending: "pending"} == _statuses(database_url)


def test_the_queue_in_polish(client: TestClient, database_url: str) -> None:
    """With a Polish browser the filter, the table and the statuses are in Polish words."""
    failed = _failed(database_url)
    insert_message(database_url)
    sign_in(client, "ewa", ADMIN_PASSWORD)

    queue = client.get("/queue", headers=POLISH).text
    message = client.get(f"/queue/{failed}", headers=POLISH).text
    confirm = client.get(f"/queue/{failed}/retry", headers=POLISH).text
    wrong = client.get("/queue?since=wczoraj", headers=POLISH).text

    assert '<html lang="pl">' in queue
    for word in ("Stan", "Konto", "Adresat", "Dodane od", "Pokaż", "nieudana", "oczekująca",
                 "Wiadomości, od najnowszych"):  # fmt: skip
        assert word in queue
    for word in ("Wyślij ponownie", "Próby", "Załączniki", "Wróć do kolejki"):
        assert word in message
    assert f"Wysłać ponownie wiadomość {failed}?" in confirm
    assert "Podaj wiek, np. 2h lub 3d" in wrong


def test_no_password_or_key_reaches_the_queue_pages(
    client: TestClient, cli_env: dict[str, str], database_url: str, settings: Settings
) -> None:
    """The queue, a message of an account with a stored password, and its confirmation page
    show neither that password, nor a user's password or hash, nor the secret key."""
    smtp_password = "smtp-Tajne-Haslo-kolejka-9"
    ok(cli_env, "profiles", "add", "biuro", "--from", "biuro@firma.pl", "--host",
       "smtp.firma.pl", "--password-stdin", input=f"{smtp_password}\n")  # fmt: skip
    message_id = _failed(database_url, profile="biuro")
    insert_attempt(database_url, message_id, smtp_code=535, smtp_text="5.7.8 bad credentials",
                   profile="biuro")  # fmt: skip
    sign_in(client, "ewa", ADMIN_PASSWORD)

    pages = [client.get(path) for path in ("/queue", f"/queue/{message_id}",
                                           f"/queue/{message_id}/retry")]  # fmt: skip

    assert [200, 200, 200] == [page.status_code for page in pages]
    assert "5.7.8 bad credentials" in pages[1].text
    assert_no_secret_shown(pages, settings, smtp_password)
