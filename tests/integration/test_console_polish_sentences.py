"""The core's sentences that the queue and Send test pages show, in Polish: why a retry left a
message as it was, and what is wrong with a test message, with the typed values kept."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

from starlette.testclient import TestClient

from tests.kit.console_client import (
    ADMIN_PASSWORD,
    VIEWER_PASSWORD,
    csrf_token,
    sign_in,
)
from tests.kit.database import run_sql
from tests.kit.rows import ago, insert_message, insert_profile, message_status

POLISH = {"Accept-Language": "pl-PL,pl;q=0.9"}


def test_a_refused_retry_reads_in_polish_on_the_queue_page(
    client: TestClient, database_url: str
) -> None:
    """A retry of a sent message, and of a failed one past its expiry, is refused; the Polish
    page says why in Polish, with the expiry moment as stored, and the English one as the
    CLI says it."""
    sent = insert_message(database_url, status="sent", sent_at=ago())
    expired = insert_message(database_url, status="failed", status_reason="550 unavailable",
                             expires_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))  # fmt: skip
    sign_in(client, "ewa", ADMIN_PASSWORD)

    pages = {}
    for message_id in (sent, expired):
        token = csrf_token(client, f"/queue/{message_id}")
        answer = client.post(f"/queue/{message_id}/retry", headers=POLISH,
                             data={"csrf_token": token})  # fmt: skip
        assert 200 == answer.status_code, answer.text
        pages[message_id] = html.unescape(answer.text)
    token = csrf_token(client, f"/queue/{sent}")
    in_english = client.post(f"/queue/{sent}/retry", data={"csrf_token": token}).text

    assert ("sent", "failed") == (
        message_status(database_url, sent),
        message_status(database_url, expired),
    )
    assert f"Wiadomość {sent}: nie ponowiono: wiadomość została wysłana" in pages[sent]
    assert (
        f"Wiadomość {expired}: nie ponowiono: termin ważności wiadomości minął"
        " 2026-01-02T03:04:05Z (expires_at), więc od razu znów nie zostałaby wysłana"
    ) in pages[expired]
    assert "not retried" not in pages[sent] + pages[expired]
    assert f"Message {sent}: not retried: it was sent" in in_english


def _problem(page: str, field: str) -> str:
    """What the page says beside ``field``, as a person reads it."""
    found = re.search(rf'<span class="error" id="{field}-problem">([^<]*)</span>', page)
    assert found is not None, page
    return html.unescape(found[1]).strip()


def test_a_test_messages_problems_are_polish_beside_their_fields(
    client: TestClient, database_url: str
) -> None:
    """The CLI's rules for a message, said in Polish beside the recipient and the subject: the
    typed address as typed, email-validator's reason in Polish too; nothing is queued."""
    insert_profile(database_url, "biuro", is_default=True)
    sign_in(client, "ewa", ADMIN_PASSWORD)
    form = {"csrf_token": csrf_token(client, "/send-test"), "to": "jan kowalski@wp.pl",
            "subject": "Raport\nmiesięczny", "body": ""}  # fmt: skip
    no_file = {"attachment": ("", b"", "application/octet-stream")}

    answer = client.post("/send-test", headers=POLISH, data=form, files=no_file)

    assert 422 == answer.status_code
    assert (
        "pole „Adresat (to)”: 'jan kowalski@wp.pl' nie jest poprawnym adresem e-mail:"
        " Adres e-mail zawiera niedozwolone znaki przed znakiem @: SPACE."
    ) == _problem(answer.text, "to")
    assert "temat zawiera znak nowego wiersza lub NUL" == _problem(answer.text, "subject")
    assert [] == run_sql(database_url, "SELECT id FROM mail.outbox")


def test_a_refused_request_is_said_in_the_pages_language(
    client: TestClient, database_url: str
) -> None:
    """A viewer asking for an admin's page, and anyone asking for a message that does not
    exist, is told so in Polish on a Polish page, in English otherwise."""
    failed = insert_message(database_url, status="failed", status_reason="550 unavailable")
    sign_in(client, "jan", VIEWER_PASSWORD)

    forbidden = client.get(f"/queue/{failed}/retry", headers=POLISH)
    missing = client.get("/queue/999999999", headers=POLISH)
    in_english = client.get(f"/queue/{failed}/retry")

    assert 403 == forbidden.status_code
    assert '<p role="alert">Tylko administrator może to zrobić.</p>' in forbidden.text
    assert 404 == missing.status_code
    assert '<p role="alert">Nie ma wiadomości o tym numerze.</p>' in missing.text
    assert "pl" == forbidden.headers["content-language"]
    assert 403 == in_english.status_code
    assert '<p role="alert">Only an administrator may do this.</p>' in in_english.text
