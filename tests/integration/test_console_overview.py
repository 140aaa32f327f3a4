"""The console's overview page (Starlette's TestClient, the test's own database): messages by
status, the backlog and its oldest due message, caps, pauses and failures, as ``status`` reads
them; in Polish and English, for every role, and on an empty database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

from starlette.testclient import TestClient

from tests.kit.console_client import (
    ADMIN_PASSWORD,
    VIEWER_PASSWORD,
    sign_in,
)
from tests.kit.database import run_sql
from tests.kit.rows import ago, insert_message, insert_profile
from worker.moments import utc_iso

POLISH = {"Accept-Language": "pl-PL,pl;q=0.9"}
PAUSE_REASON = "535 5.7.8 Error: authentication failed"
REFUSED = "failed: 550 5.1.1 <anna.nowak@example.pl>: Recipient address rejected"


class _Tables(HTMLParser):
    """Each table of a page (by its class) as rows of cell texts, spaces squeezed."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("class") or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in {"td", "th"}:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in {"td", "th"} and self._cell is not None and self._table is not None:
            self._table[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _tables(page: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def _text(page: str) -> str:
    """The page's words with the tags taken out and spaces squeezed."""
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def test_signing_in_and_the_home_lead_to_the_overview(client: TestClient) -> None:
    """The overview is the home: signing in and ``/`` lead there; signed out, to the login."""
    assert (
        "/login?next=%2Foverview"
        == client.get("/overview", follow_redirects=False).headers["location"]
    )
    assert "/overview" == sign_in(client, "ewa", ADMIN_PASSWORD)
    assert "/overview" == client.get("/", follow_redirects=False).headers["location"]
    assert "/overview" == client.get("/login", follow_redirects=False).headers["location"]
    page = client.get("/overview")
    assert 200 == page.status_code
    assert '<a href="/overview" aria-current="page">Overview</a>' in page.text


def test_counts_by_status_match_the_rows(client: TestClient, database_url: str) -> None:
    """Waiting and in-flight rows count whatever their age; sent, failed and cancelled ones
    only from the last 24 h. Each status is said in words and leads to its queue."""
    insert_profile(database_url, "biuro", is_default=True)
    for _ in range(3):
        insert_message(database_url, profile="biuro")
    insert_message(database_url, profile="biuro", status="pending", created_at=ago(days=3))
    insert_message(database_url, profile="biuro", status="sending", attempts=1)
    for _ in range(2):
        insert_message(database_url, profile="biuro", status="sent", sent_at=ago(hours=1))
    insert_message(database_url, profile="biuro", status="sent", sent_at=ago(days=2),
                   created_at=ago(days=2))  # fmt: skip
    insert_message(database_url, profile="biuro", status="failed", status_reason=REFUSED)
    insert_message(database_url, profile="biuro", status="failed", created_at=ago(days=5))
    insert_message(database_url, profile="biuro", status="cancelled")
    sign_in(client, "ewa", ADMIN_PASSWORD)

    page = client.get("/overview").text

    assert [
        ["Status", "Messages"],
        ["Waiting to be sent", "4"],
        ["Being sent now", "1"],
        ["Sent in the last 24 h", "2"],
        ["Failed in the last 24 h", "1"],
        ["Cancelled in the last 24 h", "1"],
    ] == _tables(page)["counts"]
    for status in ("pending", "sending", "sent", "failed", "cancelled"):
        assert f'href="/queue?status={status}"' in page


def test_the_backlog_says_what_waits_and_how_long_the_oldest_due_one_has(
    client: TestClient, database_url: str
) -> None:
    """Due rows of a usable account count as due, the oldest one's wait in words; rows due
    later, rows of a full cap and rows of a paused account are told apart."""
    insert_profile(database_url, "biuro", is_default=True)
    insert_message(database_url, profile="biuro", created_at=ago(hours=2, minutes=3))
    insert_message(database_url, profile="biuro", created_at=ago(minutes=5))
    insert_message(database_url, profile="biuro", next_attempt_at=ago(hours=-1))
    insert_profile(database_url, "sklep", daily_cap=1)
    insert_message(database_url, profile="sklep", status="sent", sent_at=ago(minutes=10))
    insert_message(database_url, profile="sklep", created_at=ago(days=1))
    insert_profile(database_url, "stary", paused_until=datetime(2299, 1, 1, tzinfo=UTC),
                   pause_reason=PAUSE_REASON)  # fmt: skip
    for _ in range(2):
        insert_message(database_url, profile="stary", created_at=ago(days=2))
    sign_in(client, "ewa", ADMIN_PASSWORD)

    english = _text(client.get("/overview").text)
    polish = _text(client.get("/overview", headers=POLISH).text)

    for said in (
        "Due now: 2, oldest waiting 2 h 3 min",
        "Scheduled for later (a retry or a set time): 1",
        "Held by send caps: 1",
        "Waiting for a paused or disabled account: 2",
    ):
        assert said in english
    assert "Do wysłania teraz: 2, najstarsza czeka 2 h 3 min" in polish


def test_a_paused_and_a_disabled_account_say_why_and_until_when(
    client: TestClient, database_url: str
) -> None:
    """A paused account shows until when, the reason and the hint; a disabled one says so;
    an active one is not listed among those that send nothing."""
    insert_profile(database_url, "biuro", paused_until=datetime(2299, 1, 1, tzinfo=UTC),
                   pause_reason=PAUSE_REASON, pause_hint="check the password")  # fmt: skip
    insert_profile(database_url, "stary", enabled=False)
    insert_profile(database_url, "sklep")
    sign_in(client, "jan", VIEWER_PASSWORD)

    page = client.get("/overview").text
    text = _text(page)

    assert (
        f"biuro : paused until 2299-01-01T00:00:00Z: {PAUSE_REASON} (hint: check the password)"
    ) in text
    assert "stary : disabled" in text
    assert "sklep :" not in text
    states = {row[0]: row[1] for row in _tables(page)["accounts"][1:]}
    assert {"biuro": "paused", "sklep": "active", "stary": "disabled"} == states


def test_sends_of_the_last_24_hours_against_each_cap(client: TestClient, database_url: str) -> None:
    """Each account's sends against each of its caps; a full cap says when it has room again;
    an account without a cap shows its sends alone."""
    insert_profile(database_url, "sklep", daily_cap=3, per_minute_cap=10)
    for minutes in (90, 60, 30):
        insert_message(database_url, profile="sklep", status="sent", sent_at=ago(minutes=minutes))
    insert_profile(database_url, "biuro", is_default=True)
    for _ in range(2):
        insert_message(database_url, profile="biuro", status="sent", sent_at=ago(hours=3))
    insert_message(database_url, profile="biuro", status="failed", status_reason=REFUSED)
    [(oldest,)] = run_sql(
        database_url, "SELECT min(sent_at) FROM mail.outbox WHERE profile = 'sklep'"
    )
    frees_at = utc_iso(oldest + timedelta(days=1))
    sign_in(client, "ewa", ADMIN_PASSWORD)

    rows = {row[0]: row for row in _tables(client.get("/overview").text)["accounts"][1:]}

    assert ["biuro (default)", "active", "2 sent in 24 h, no cap", "1", "0", "0"] == rows[
        "biuro (default)"
    ]
    assert [
        "sklep",
        "active",
        f"3 of 3 messages in 24 h 0 of 10 messages a minute Cap reached; room again at {frees_at}",
        "0",
        "0",
        "0",
    ] == rows["sklep"]


def test_recent_failures_by_reason_and_the_latest_failed_messages(
    client: TestClient, database_url: str
) -> None:
    """Failures of the last 24 h by account and reason, the unroutable too, most first; the
    latest failed messages with their reasons, each leading to its page in the queue."""
    old = insert_message(database_url, profile="biuro", status="failed", status_reason="old",
                         created_at=ago(days=3))  # fmt: skip
    unroutable = "failed: no profile given and no default profile exists"
    lost = insert_message(
        database_url, profile=None, status="failed", status_reason=unroutable, subject=""
    )  # fmt: skip  (no default profile yet to stand in)
    insert_profile(database_url, "biuro", is_default=True)
    refused = [
        insert_message(database_url, profile="biuro", status="failed", status_reason=REFUSED)
        for _ in range(3)
    ]
    insert_message(database_url, profile="gone", status="failed", status_reason="failed: x")
    sign_in(client, "ewa", ADMIN_PASSWORD)

    page = client.get("/overview").text
    tables = _tables(page)

    assert [
        ["Messages", "Account name", "Reason"],
        ["3", "biuro", REFUSED],
        ["1", "gone (no such account)", "failed: x"],
        ["1", "no account named", unroutable],
    ] == tables["failures"]
    latest = tables["recent-failed"]
    assert ["Message", "Account name", "Subject", "Reason"] == latest[0]
    assert [f"#{lost}", "", "(no subject)", unroutable] in latest
    assert [f"#{refused[0]}", "biuro", "Faktura FV/2026/12/0042", REFUSED] in latest
    assert 6 == len(latest)  # the header and the five newest of six
    assert f'href="/queue/{refused[1]}"' in page
    assert f'href="/queue/{old}"' not in page
    assert 'href="/queue?status=failed"' in page


def test_the_page_in_polish(client: TestClient, database_url: str) -> None:
    """Every heading and status of the page in Polish when the browser asks for it."""
    insert_profile(database_url, "biuro", is_default=True, daily_cap=300)
    insert_message(database_url, profile="biuro", status="failed", status_reason=REFUSED)
    insert_message(database_url, profile="biuro", created_at=ago(hours=1, minutes=4))
    sign_in(client, "ewa", ADMIN_PASSWORD)

    page = client.get("/overview", headers=POLISH).text
    text = _text(page)

    assert '<html lang="pl">' in page
    for said in (
        "Przegląd",
        "Wiadomości według stanu",
        "Czekające na wysłanie 1",
        "Nieudane w ostatnich 24 h 1",
        "Co czeka na wysłanie",
        "najstarsza czeka 1 h 4 min",
        "Konta w ostatnich 24 h",
        "0 z 300 wiadomości w 24 h",
        "aktywne",
        "Niepowodzenia w ostatnich 24 h",
        "Ostatnie nieudane wiadomości",
        "Wszystkie nieudane wiadomości",
    ):
        assert said in text
    for english in ("Overview</h1>", "Messages by status", "Due now", "Failures in"):
        assert english not in page


def test_an_empty_database_shows_a_calm_page(client: TestClient) -> None:
    """No account and no message: zero counts, nothing queued, no failure, and a pointer."""
    sign_in(client, "ewa", ADMIN_PASSWORD)

    page = client.get("/overview")
    text = _text(page.text)

    assert 200 == page.status_code
    assert [["Status", "Messages"]] + [
        [status, "0"]
        for status in (
            "Waiting to be sent",
            "Being sent now",
            "Sent in the last 24 h",
            "Failed in the last 24 h",
            "Cancelled in the last 24 h",
        )
    ] == _tables(page.text)["counts"]
    for said in (
        "Nothing queued: no message waits to be sent.",
        "No accounts yet. Add one with: mailworker profiles add",
        "No message failed in the last 24 h.",
    ):
        assert said in text
    assert "Latest failed messages" not in text


def test_a_viewer_reads_the_overview(client: TestClient, database_url: str) -> None:
    """A viewer sees the same figures as an admin; the page has no action of an admin."""
    insert_profile(database_url, "biuro", is_default=True)
    insert_message(database_url, profile="biuro")
    assert "/overview" == sign_in(client, "jan", VIEWER_PASSWORD)

    page = client.get("/overview")

    assert 200 == page.status_code
    assert "Signed in as jan (viewer)" in page.text
    assert ["Waiting to be sent", "1"] == _tables(page.text)["counts"][1]
    assert "/send-test" not in page.text
