"""The console's "Send test e-mail" page (Starlette's TestClient) with a real worker process
delivering to a real SMTP test server: the form, its checks, and the page following the
message to the same verdict ``mailworker send-test`` gives."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from tests.kit.console_client import (
    ADMIN_PASSWORD,
    VIEWER_PASSWORD,
    add_console_users,
    console_client,
    csrf_token,
    sign_in,
)
from tests.kit.database import run_sql
from tests.kit.delivery import add_profile
from tests.kit.outbox_samples import minimal_pdf
from tests.kit.processes import WorkerProcesses
from tests.kit.smtp_server import SmtpTestServer
from worker.settings import Settings
from worker.test_message import DEFAULT_SUBJECT, RECIPIENT_HINT, TEST_PRIORITY

pytestmark = pytest.mark.timeout(90)

WRONG_PASSWORD = "zle-haslo-123"
RECIPIENT = "odbiorca@example.com"
# From the wp preset's auth_failure_hint in config/providers.toml.
WP_AUTH_HINT = "Check that access for mail programs is switched on in WP Poczta's settings"


@pytest.fixture
def small_client(
    settings: Settings, database_url: str, cli_env: dict[str, str]
) -> Iterator[TestClient]:
    """A console whose messages may be 1000 bytes at most."""
    add_console_users(cli_env)
    with console_client(
        settings.model_copy(update={"max_message_bytes": 1000}), database_url
    ) as client:
        yield client


def _send(client: TestClient, files: dict[str, Any] | None = None, **fields: str):  # type: ignore[no-untyped-def]
    """Post the form as a browser does (multipart), with the page's token unless one is given."""
    form = {"csrf_token": csrf_token(client, "/send-test"), "to": RECIPIENT, **fields}
    multipart = files or {"attachment": ("", b"", "application/octet-stream")}  # no file chosen
    return client.post("/send-test", data=form, files=multipart, follow_redirects=False)


def _follow(client: TestClient, location: str, workers: WorkerProcesses) -> dict[str, Any]:
    """Read the state as follow.js does until the verdict is final; every state seen is kept."""
    deadline = time.monotonic() + 60
    seen: list[str] = []
    while True:
        state: dict[str, Any] = client.get(f"{location}/state").json()
        seen.append(state["verdict"])
        if state["final"]:
            return {**state, "seen": seen}
        workers.assert_running()
        assert time.monotonic() < deadline, f"no final verdict; seen {seen}{workers.report()}"
        time.sleep(0.1)


def _outbox(database_url: str) -> list[dict[str, Any]]:
    rows = run_sql(database_url, "SELECT * FROM mail.outbox ORDER BY id")
    return [dict(row._mapping) for row in rows]


def _start_worker(workers: WorkerProcesses) -> None:
    worker = workers.start("worker-a")
    asyncio.run(worker.wait_logged("worker_started"))


def test_a_test_message_with_an_attachment_is_followed_until_delivered(
    client: TestClient,
    settings: Settings,
    database_url: str,
    smtps_server: SmtpTestServer,
    workers: WorkerProcesses,
) -> None:
    """The admin's test message is queued as send-test queues it (kind test, priority 100,
    the default subject and body), a worker delivers it with the PDF byte for byte, and the
    state reaches "delivered" with the server's reply; the page says the same in words."""
    asyncio.run(add_profile(settings, smtps_server, encryption="ssl"))
    _start_worker(workers)
    sign_in(client, "ewa", ADMIN_PASSWORD)
    form = client.get("/send-test")
    pdf = minimal_pdf()

    with capture_logs() as logs:
        sent = _send(client, files={"attachment": ("faktura testowa.pdf", pdf, "application/pdf")},
                     profile="test", subject=DEFAULT_SUBJECT, body="")  # fmt: skip
    [message] = _outbox(database_url)
    assert (303, f"/send-test/{message['id']}") == (sent.status_code, sent.headers["location"])
    state = _follow(client, sent.headers["location"], workers)
    page = client.get(sent.headers["location"])

    assert 200 == form.status_code
    assert '<option value="test" selected>' in form.text  # the default account
    assert f'value="{DEFAULT_SUBJECT}"' in form.text
    for label in ("Account", "Recipient", "Subject", "Message text", "Attachment"):
        assert re.search(rf'<label for="\w+">{label}</label>', form.text), label
    assert ("delivered", "sent") == (state["verdict"], state["status"])
    [received] = smtps_server.wait_for_messages(1)
    parsed = received.parsed()
    assert DEFAULT_SUBJECT == parsed["subject"]
    [attachment] = list(parsed.iter_attachments())
    assert ("faktura testowa.pdf", pdf) == (attachment.get_filename(), attachment.get_content())
    body = parsed.get_body(("plain",))
    assert body is not None
    assert "Profil:  test (jankowalski@wp.pl)" in body.get_content()
    assert "(konsola mailworker, użytkownik ewa)" in body.get_content()  # not "send-test"
    assert "(the mailworker console, user ewa)" in body.get_content()
    [message] = _outbox(database_url)
    assert ("test", TEST_PRIORITY, "sent") == (
        message["kind"], message["priority"], message["status"]
    )  # fmt: skip
    assert message["smtp_response"].startswith("250 ")
    assert "Delivered" == state["headline"]
    assert ["Server's reply", message["smtp_response"]] == state["details"][0]
    assert 'role="status"' in page.text
    assert "<strong>Delivered</strong>" in page.text
    assert message["smtp_response"] in page.text
    assert 'data-final="true"' in page.text
    assert f'<a href="/send-test/{message["id"]}">Refresh</a>' in page.text  # works without JS
    assert "Account: test" in page.text
    server = f"{smtps_server.hostname}:{smtps_server.port}"
    assert ["Server", server] in state["details"]
    queued = [entry for entry in logs if entry["event"] == "test_message_queued"]
    assert [("ewa", message["id"], "test")] == [
        (entry["by"], entry["outbox_id"], entry["profile"]) for entry in queued
    ]


def test_a_refused_recipient_is_not_delivered_with_the_reply_and_the_hint(
    client: TestClient,
    settings: Settings,
    database_url: str,
    smtps_server: SmtpTestServer,
    workers: WorkerProcesses,
) -> None:
    """The server refuses the recipient (550): not delivered, with its reply and the advice to
    check the address, in Polish on the page; the message failed for good."""
    smtps_server.script.on("RCPT", reply="550 5.1.1 No such user here")
    asyncio.run(add_profile(settings, smtps_server, encryption="ssl"))
    _start_worker(workers)
    sign_in(client, "ewa", ADMIN_PASSWORD)

    sent = _send(client, profile="test", subject="Próba", body="Treść próby.")
    state = _follow(client, sent.headers["location"], workers)
    polish = client.get(sent.headers["location"], headers={"accept-language": "pl"})

    assert ("not_delivered", "failed") == (state["verdict"], state["status"])
    details = dict(state["details"])
    assert "550 5.1.1 No such user here" in details["Reason"]
    assert RECIPIENT in details["Reason"]
    assert RECIPIENT_HINT == details["What to do"]
    assert "<strong>Nie dostarczono</strong>" in polish.text
    assert "<dt>Przyczyna</dt>" in polish.text
    assert "550 5.1.1 No such user here" in polish.text
    assert () == smtps_server.messages
    assert "failed" == _outbox(database_url)[0]["status"]


def test_a_refused_login_pauses_the_account_and_says_why(
    client: TestClient,
    settings: Settings,
    smtps_server: SmtpTestServer,
    workers: WorkerProcesses,
) -> None:
    """A wrong password: not delivered at once, the 535 reply, WP's own advice and until when
    the account is paused, as send-test says it."""
    asyncio.run(
        add_profile(settings, smtps_server, encryption="ssl", password=WRONG_PASSWORD, preset="wp")
    )
    _start_worker(workers)
    sign_in(client, "ewa", ADMIN_PASSWORD)

    sent = _send(client)
    state = _follow(client, sent.headers["location"], workers)

    assert ("not_delivered", "pending") == (state["verdict"], state["status"])
    details = dict(state["details"])
    assert details["Reason"].startswith("535 5.7.8")
    assert details["What to do"].startswith(WP_AUTH_HINT)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", details["Account paused until"])
    assert WRONG_PASSWORD not in repr(state)


def test_a_bad_address_or_account_is_shown_beside_its_field_and_nothing_is_queued(
    client: TestClient, database_url: str, settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """The CLI's address rule, said beside the recipient field (marked invalid); what was typed
    stays in the form; an account that does not exist is said beside the account; no row."""
    asyncio.run(add_profile(settings, smtps_server, encryption="ssl"))
    sign_in(client, "ewa", ADMIN_PASSWORD)

    answer = _send(client, to="not-an-address", subject="Próba łączności")
    no_account = _send(client, profile="nie-ma")

    assert (422, 422) == (answer.status_code, no_account.status_code)
    assert '<span class="error" id="profile-problem">No account has this name. </span>' in (
        no_account.text
    )
    problem = re.search(r'<span class="error" id="to-problem">([^<]*)</span>', answer.text)
    assert problem is not None
    assert "to address &#39;not-an-address&#39; is not a valid e-mail address" in problem[1]
    assert 'aria-invalid="true" aria-describedby="to-problem"' in answer.text
    assert 'value="Próba łączności"' in answer.text
    assert [] == _outbox(database_url)


def test_an_oversize_attachment_is_refused_with_the_limit(
    small_client: TestClient, database_url: str, settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """A file above the message limit is refused beside the attachment field with the limit in
    bytes; a small file with a long text above it together gets the CLI's size sentence."""
    asyncio.run(add_profile(settings, smtps_server, encryption="ssl"))
    sign_in(small_client, "ewa", ADMIN_PASSWORD)

    big = _send(small_client, files={"attachment": ("duzy.bin", b"x" * 1001, "")})
    together = _send(small_client, files={"attachment": ("maly.txt", b"y" * 600, "text/plain")},
                     body="z" * 500)  # fmt: skip

    assert (422, 422) == (big.status_code, together.status_code)
    assert "The file is larger than a message may be (1000 bytes)." in big.text
    assert "message is 1100 bytes (bodies and attachments), above the 1000 limit" in together.text
    for answer in (big, together):
        assert 'id="attachment-problem"' in answer.text
    assert [] == _outbox(database_url)


def test_only_an_admin_may_send_or_follow_a_test_message(
    client: TestClient, database_url: str, settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """A viewer gets 403 for the form, its post, the follow page and its state; no row."""
    asyncio.run(add_profile(settings, smtps_server, encryption="ssl"))
    sign_in(client, "jan", VIEWER_PASSWORD)
    token = csrf_token(client, "/accounts")
    [(message_id,)] = run_sql(
        database_url,
        "INSERT INTO mail.outbox (profile, to_addrs, subject, body_text, kind)"
        " VALUES ('test', ARRAY['a@example.com'], 'x', 'y', 'test') RETURNING id",
    )

    answers = [
        client.get("/send-test"),
        client.post("/send-test", data={"csrf_token": token, "to": RECIPIENT},
                    files={"attachment": ("a.txt", b"a", "text/plain")}),
        client.get(f"/send-test/{message_id}"),
        client.get(f"/send-test/{message_id}/state"),
    ]  # fmt: skip

    assert [403, 403, 403, 403] == [answer.status_code for answer in answers]
    assert 1 == len(_outbox(database_url))
    assert "Send test e-mail" not in client.get("/accounts").text  # not in a viewer's menu


def test_the_post_needs_the_csrf_token_and_the_state_a_session(
    client: TestClient, database_url: str, settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """Without the session's token the multipart post is refused (403) and nothing queued; a
    notification is not a test message (404); signed out, the state says so (401)."""
    asyncio.run(add_profile(settings, smtps_server, encryption="ssl"))
    sign_in(client, "ewa", ADMIN_PASSWORD)
    [(notification,)] = run_sql(
        database_url,
        "INSERT INTO mail.outbox (profile, to_addrs, subject, body_text)"
        " VALUES ('test', ARRAY['a@example.com'], 'x', 'y') RETURNING id",
    )

    bare = client.post("/send-test", data={"to": RECIPIENT},
                       files={"attachment": ("a.txt", b"a", "text/plain")})  # fmt: skip
    forged = _send(client, csrf_token="forged")
    not_a_test = client.get(f"/send-test/{notification}")
    client.post("/logout", data={"csrf_token": csrf_token(client, "/accounts")})
    signed_out = client.get(f"/send-test/{notification}/state")

    assert (403, 403, 404) == (bare.status_code, forged.status_code, not_a_test.status_code)
    assert [notification] == [row["id"] for row in _outbox(database_url)]
    assert (401, {"signed_in": False}) == (signed_out.status_code, signed_out.json())
