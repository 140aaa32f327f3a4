"""The account form's **Check connection**, in this process (Starlette's TestClient), against real
SMTP test servers with TLS and AUTH: the same check as ``mailworker profiles check``, run on
the values in the form before they are saved.

The form has no CA field, so the console trusts the kit's CA the way an operator would make
a process trust a private CA: through ``SSL_CERT_FILE``, which the TLS context's default
certificates are read from.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import re
import socket
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
from tests.kit.provider_servers import (
    GMAIL,
    GMAIL_ACCOUNT_PASSWORD,
    WP,
    ProviderServers,
)
from tests.kit.smtp_fixtures import SMTP_LOGIN, SMTP_PASSWORD, SmtpServerFactory
from tests.kit.smtp_server import SmtpTestCA, SmtpTestServer
from worker.presets import load_presets
from worker.settings import Settings

pytestmark = pytest.mark.timeout(60)

WRONG_PASSWORD = "Zle-Haslo-987"
PRESETS = load_presets()


@pytest.fixture
def console_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The console's settings: the test's, changed by an indirect parameter if one is given."""
    changes: dict[str, Any] = getattr(request, "param", {})
    return settings.model_copy(update=changes)


@pytest.fixture
def client(
    console_settings: Settings,
    database_url: str,
    cli_env: dict[str, str],
    smtp_ca: SmtpTestCA,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TestClient]:
    """The console with the kit's users; it trusts the kit's CA."""
    add_console_users(cli_env)
    monkeypatch.setenv("SSL_CERT_FILE", smtp_ca.cert_bundle)
    with console_client(console_settings, database_url) as client:
        yield client


def _check(client: TestClient, path: str, language: str = "en", **fields: str) -> Any:
    """Post the form with **Check connection** (or another ``action``)."""
    form = {"csrf_token": csrf_token(client, "/accounts"), "action": "check", **fields}
    headers = {"Accept-Language": language}
    return client.post(path, data=form, headers=headers, follow_redirects=False)


def _form(server: SmtpTestServer, **fields: str) -> dict[str, str]:
    """An account reaching ``server`` as the form posts it (login and password as given)."""
    return _fields(host=server.hostname, port=str(server.port), **fields)


def _fields(**fields: str) -> dict[str, str]:
    return {
        "preset": "",
        "enabled": "on",
        "name": "biuro",
        "from_address": SMTP_LOGIN,
        "display_name": "Biuro",
        "reply_to": "",
        "description": "",
        "encryption": "auto",
        "auth_method": "login",
        "login": SMTP_LOGIN,
        "daily_cap": "",
        **fields,
    }


def _result(page: str) -> dict[str, str]:
    """The check's facts on the page, by their labels, as a person reads them."""
    section = page.split('class="connection-check', 1)[1].split("</section>", 1)[0]
    pairs = re.findall(r"<dt>(.*?)</dt>\s*<dd[^>]*>(.*?)</dd>", section, re.DOTALL)
    return {html.unescape(label): " ".join(html.unescape(value).split()) for label, value in pairs}


def _profiles(database_url: str) -> list[str]:
    return [row[0] for row in run_sql(database_url, "SELECT name FROM mail.profile ORDER BY id")]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_good_account_works_and_says_what_the_server_offers(
    client: TestClient, database_url: str, starttls_server: SmtpTestServer
) -> None:
    """Before saving: the server, TLS 1.3 after STARTTLS, the verified certificate, the AUTH
    mechanisms and the size limit; the login was made once, nothing is stored or sent, the
    password is in neither the page nor the logs, and the check is logged with the admin."""
    sign_in(client, "ewa", ADMIN_PASSWORD)

    with capture_logs() as logs:
        answer = _check(client, "/accounts/new", **_form(starttls_server), password=SMTP_PASSWORD)

    assert 200 == answer.status_code
    assert "Connection works" in answer.text
    assert "Nothing was saved and no message was sent." in answer.text
    facts = _result(answer.text)
    server = f"{starttls_server.hostname}:{starttls_server.port}"
    assert f"{server} (STARTTLS, required)" == facts["Server"]
    assert "TLSv1.3 (after STARTTLS)" == facts["TLS version"]
    assert facts["Certificate"].startswith("OU=Testing cert")  # trustme's subject
    assert "(verified; expires " in facts["Certificate"]
    assert {"LOGIN", "PLAIN"} == set(facts["AUTH mechanisms"].split())
    assert "32.0 MiB" == facts["Size limit"]
    assert "4 (no PIPELINING)" == facts["Round trips a message"]
    assert f"{SMTP_LOGIN} (accepted)" == facts["Login"]
    assert [True] == [attempt.success for attempt in starttls_server.auth_attempts]
    assert () == starttls_server.messages
    assert [] == _profiles(database_url)
    assert SMTP_PASSWORD not in answer.text
    assert 'name="password" type="password" autocomplete="new-password" value=""' in answer.text
    assert "type it again before saving" in answer.text
    checked = [entry for entry in logs if entry["event"] == "profile_checked"]
    assert [("biuro", True, "ewa", "TLSv1.3")] == [
        (entry["profile"], entry["works"], entry["by"], entry["tls_version"]) for entry in checked
    ]
    assert SMTP_PASSWORD not in repr(logs)


def test_a_server_with_pipelining_and_chunking_costs_one_round_trip_a_message(
    client: TestClient, smtp_server_factory: SmtpServerFactory
) -> None:
    """A server that offers PIPELINING and CHUNKING, as Gmail and Microsoft 365 do: the check
    says a message costs one round trip, in English and in Polish."""
    server = smtp_server_factory(
        tls="starttls", accounts={SMTP_LOGIN: SMTP_PASSWORD}, pipelining=True, chunking=True
    )
    sign_in(client, "ewa", ADMIN_PASSWORD)

    english = _check(client, "/accounts/new", **_form(server), password=SMTP_PASSWORD)
    polish = _check(client, "/accounts/new", "pl-PL,pl", **_form(server), password=SMTP_PASSWORD)

    assert "1 (PIPELINING and CHUNKING)" == _result(english.text)["Round trips a message"]
    assert "1 (PIPELINING i CHUNKING)" == _result(polish.text)["Wymiany z serwerem na wiadomość"]


@pytest.mark.parametrize("console_settings", [{"smtp_pipelining": False}], indirect=True)
def test_a_console_whose_workers_send_without_pipelining_says_so(
    client: TestClient, smtp_server_factory: SmtpServerFactory
) -> None:
    """With MAILWORKER_SMTP_PIPELINING=false the workers send the classic way: four round
    trips, though the server offers PIPELINING and CHUNKING."""
    server = smtp_server_factory(
        tls="starttls", accounts={SMTP_LOGIN: SMTP_PASSWORD}, pipelining=True, chunking=True
    )
    sign_in(client, "ewa", ADMIN_PASSWORD)

    answer = _check(client, "/accounts/new", **_form(server), password=SMTP_PASSWORD)

    facts = _result(answer.text)
    assert "4 (the workers do not use PIPELINING)" == facts["Round trips a message"]


def test_a_wrong_password_stops_at_the_login_with_the_reply_and_the_providers_hint(
    client: TestClient, database_url: str, provider_servers: ProviderServers
) -> None:
    """WP over STARTTLS with a wrong password: stage login, WP's 535 reply word for word, the
    wp preset's advice; in Polish the same facts under Polish labels. Nothing is stored."""
    server = provider_servers.wp(tls="starttls")
    sign_in(client, "ewa", ADMIN_PASSWORD)
    form = _form(server, preset="wp", name="wp", from_address=WP.address, login=WP.login,
                 encryption="starttls")  # fmt: skip

    with capture_logs() as logs:
        english = _check(client, "/accounts/new", **form, password=WRONG_PASSWORD)
        polish = _check(client, "/accounts/new", "pl-PL,pl", **form, password=WRONG_PASSWORD)

    assert "Connection does not work" in english.text
    facts = _result(english.text)
    assert "login" == facts["Stage reached"]
    assert "535 5.7.8 Authentication credentials invalid" == facts["Server's reply"]
    assert _one_line(PRESETS["wp"].auth_failure_hint or "") == facts["Hint"]
    assert f"{WP.login} (refused by the server)" == facts["Login"]
    polish_facts = _result(polish.text)
    assert "Połączenie nie działa" in polish.text
    assert "logowanie" == polish_facts["Osiągnięty etap"]
    assert "535 5.7.8 Authentication credentials invalid" == polish_facts["Odpowiedź serwera"]
    assert [False, False] == [attempt.success for attempt in server.auth_attempts]
    assert [] == _profiles(database_url)
    for answer in (english, polish):
        assert WRONG_PASSWORD not in answer.text
    assert WRONG_PASSWORD not in repr(logs)


def test_gmails_account_password_gets_the_app_password_hint(
    client: TestClient, provider_servers: ProviderServers
) -> None:
    """The Google account's own password on port 465: Google's 534 5.7.9 reply as sent and the
    gmail preset's advice to create an app password; the preset's own hint stays on the form."""
    server = provider_servers.gmail()
    sign_in(client, "ewa", ADMIN_PASSWORD)
    form = _form(server, preset="gmail", name="gmail", from_address=GMAIL.address,
                 login=GMAIL.login)  # fmt: skip

    answer = _check(client, "/accounts/new", **form, password=GMAIL_ACCOUNT_PASSWORD)

    facts = _result(answer.text)
    assert "login" == facts["Stage reached"]
    assert facts["Server's reply"].startswith("534 5.7.9 Application-specific password required.")
    assert facts["Server's reply"].endswith("- gsmtp")
    assert "app password is required" in facts["Hint"]
    assert _one_line(PRESETS["gmail"].auth_failure_hint or "") == facts["Hint"]
    assert _one_line(PRESETS["gmail"].hint) in _one_line(html.unescape(answer.text))
    assert GMAIL_ACCOUNT_PASSWORD not in answer.text


def test_gmails_app_password_with_googles_spaces_works(
    client: TestClient, provider_servers: ProviderServers
) -> None:
    """The app password as Google shows it (in groups with spaces) logs in: the check cleans
    it as saving does."""
    server = provider_servers.gmail()
    sign_in(client, "ewa", ADMIN_PASSWORD)
    form = _form(server, preset="gmail", name="gmail", from_address=GMAIL.address,
                 login=GMAIL.login)  # fmt: skip

    answer = _check(client, "/accounts/new", **form, password=GMAIL.typed_password)

    assert "Connection works" in answer.text
    assert "(implicit TLS)" in _result(answer.text)["Server"]
    assert GMAIL.typed_password not in answer.text
    assert GMAIL.password not in answer.text


def test_an_unreachable_server_stops_at_connect(client: TestClient) -> None:
    """Nothing listens on the port: stage connect, with the reason, and no server reply."""
    sign_in(client, "ewa", ADMIN_PASSWORD)
    form = _fields(host="127.0.0.1", port=str(_closed_port()))

    answer = _check(client, "/accounts/new", **form, password=SMTP_PASSWORD)

    facts = _result(answer.text)
    assert "connect" == facts["Stage reached"]
    assert "Connect call failed" in facts["Reason"]
    assert "Server's reply" not in facts


def test_an_invalid_form_is_not_checked(
    client: TestClient, starttls_server: SmtpTestServer
) -> None:
    """The rules of saving come first: a login account without a password shows the problem
    beside the password field, and no connection is made."""
    sign_in(client, "ewa", ADMIN_PASSWORD)

    answer = _check(client, "/accounts/new", **_form(starttls_server), password="")

    assert 422 == answer.status_code
    assert 'id="password-problem"' in answer.text
    assert "connection-check" not in answer.text
    assert 0 == starttls_server.connection_count


def test_a_gmail_password_of_blanks_is_a_problem_beside_the_password(
    client: TestClient, provider_servers: ProviderServers
) -> None:
    """Gmail's spaces are taken out of its app password; one of only blanks is then empty,
    which is said beside the password field (for a check and for saving alike)."""
    server = provider_servers.gmail()
    sign_in(client, "ewa", ADMIN_PASSWORD)
    form = _form(server, preset="gmail", name="gmail", from_address=GMAIL.address,
                 login=GMAIL.login)  # fmt: skip

    checked = _check(client, "/accounts/new", **form, password="    ")
    saved = _check(client, "/accounts/new", **{**form, "action": "save"}, password="    ")

    for answer in (checked, saved):
        assert 422 == answer.status_code
        password_field = answer.text.split('id="password"', 1)[1].split("</p>", 1)[0]
        assert "the password is empty" in password_field
    assert 0 == server.connection_count


def test_on_edit_an_empty_password_checks_with_the_stored_one(
    client: TestClient, database_url: str, settings: Settings, smtps_server: SmtpTestServer
) -> None:
    """Editing a stored account: an empty password field means the stored password, and the
    check uses the form's changes (the display name) without storing them."""
    asyncio.run(add_profile(settings, smtps_server, name="biuro", encryption="ssl"))
    sign_in(client, "ewa", ADMIN_PASSWORD)
    form = _form(smtps_server, display_name="Nowa nazwa", encryption="ssl")

    answer = _check(client, "/accounts/biuro/edit", **form, password="")

    assert "Connection works" in answer.text
    assert "type it again" not in answer.text  # nothing was typed
    [(display_name,)] = run_sql(database_url, "SELECT display_name FROM mail.profile")
    assert "Comarch DMS - powiadomienia" == display_name
    assert SMTP_PASSWORD not in answer.text


def test_a_silent_server_is_given_up_after_the_accounts_timeout(
    client: TestClient, settings: Settings, smtp_server_factory: Any
) -> None:
    """A server that never greets: the check waits the account's timeout (1 s here), then says
    it did not answer in time at the connect stage."""
    server: SmtpTestServer = smtp_server_factory(
        tls="implicit", accounts={SMTP_LOGIN: SMTP_PASSWORD}
    )
    server.script.on("CONNECT", action="stall", seconds=30)
    asyncio.run(add_profile(settings, server, name="biuro", encryption="ssl", timeout_seconds=1))
    sign_in(client, "ewa", ADMIN_PASSWORD)

    answer = _check(client, "/accounts/biuro/edit", **_form(server, encryption="ssl"),
                    password="")  # fmt: skip

    facts = _result(answer.text)
    assert "connect" == facts["Stage reached"]
    assert "the server did not answer in time (connect stage)" == facts["Reason"]


def test_other_pages_are_served_while_a_check_waits_for_its_server(
    client: TestClient, settings: Settings, smtp_server_factory: Any
) -> None:
    """A check waiting for a server that does not greet holds up no one: the accounts page is
    served meanwhile; the check ends when the server closes the connection."""
    server: SmtpTestServer = smtp_server_factory(
        tls="implicit", accounts={SMTP_LOGIN: SMTP_PASSWORD}
    )
    server.script.on("CONNECT", action="stall", seconds=60)
    asyncio.run(add_profile(settings, server, name="biuro", encryption="ssl", timeout_seconds=60))
    sign_in(client, "ewa", ADMIN_PASSWORD)
    form = _form(server, encryption="ssl")

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        checking = pool.submit(_check, client, "/accounts/biuro/edit", **form, password="")
        deadline = time.monotonic() + 20
        while server.connection_count == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        accounts = client.get("/accounts")
        waiting = not checking.done()
        server.stop()  # closes the stalled connection
        answer = checking.result(timeout=20)

    assert 1 == server.connection_count
    assert (200, True) == (accounts.status_code, waiting)
    assert "jankowalski@wp.pl" in accounts.text  # add_profile's address
    facts = _result(answer.text)
    assert "connect" == facts["Stage reached"]


def test_a_viewer_may_not_check_and_a_check_needs_the_csrf_token(
    client: TestClient, starttls_server: SmtpTestServer
) -> None:
    """A viewer's check is refused (403), and so is an admin's without the session's token;
    neither reaches the server."""
    sign_in(client, "jan", VIEWER_PASSWORD)
    viewer = _check(client, "/accounts/new", **_form(starttls_server), password=SMTP_PASSWORD)
    client.cookies.clear()
    sign_in(client, "ewa", ADMIN_PASSWORD)
    no_token = client.post("/accounts/new", data={"action": "check", **_form(starttls_server),
                                                  "password": SMTP_PASSWORD})  # fmt: skip

    assert (403, 403) == (viewer.status_code, no_token.status_code)
    assert 0 == starttls_server.connection_count
