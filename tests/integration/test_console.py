"""The web console in this process (Starlette's TestClient) against the test's own database:
signing in and out, the login throttle, CSRF, roles, languages, headers, and no secret shown."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.routing import Route
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from tests.kit.commands import ok
from tests.kit.console_client import (
    ADMIN_PASSWORD,
    VIEWER_PASSWORD,
    assert_no_secret_shown,
    csrf_token,
    post_sign_in,
    sign_in,
)
from tests.kit.database import run_sql
from tests.kit.rows import insert_profile
from worker.console.app import SECURITY_HEADERS, SESSION_COOKIE, create_app
from worker.crypto import load_cipher
from worker.settings import Settings

SMTP_PASSWORD = "smtp-Tajne-Haslo-123"


def test_a_user_signs_in_sees_the_accounts_and_signs_out(
    client: TestClient, database_url: str
) -> None:
    """The right password opens the accounts page, with each profile's address, server and
    state; signing out closes it again. Both are logged with the user's name, never a password."""
    insert_profile(database_url, "biuro", is_default=True, daily_cap=500)
    with capture_logs() as logs:
        answer = post_sign_in(client, "ewa", ADMIN_PASSWORD)
        assert (303, "/overview") == (answer.status_code, answer.headers["location"])
        page = client.get("/accounts")
        out = client.post("/logout", data={"csrf_token": csrf_token(client, "/accounts")},
                          follow_redirects=False)  # fmt: skip

    assert 200 == page.status_code
    for shown in ("biuro@firma.pl", "relay.firma.pl", "25", "active", "(default)",
                  "0 of 500 messages in 24 h", "Signed in as ewa (administrator)"):  # fmt: skip
        assert shown in page.text
    assert (303, "/login") == (out.status_code, out.headers["location"])
    assert (
        "/login?next=%2Faccounts"
        == client.get("/accounts", follow_redirects=False).headers["location"]
    )
    events = [(entry["event"], entry.get("user")) for entry in logs]
    assert [("console_login", "ewa"), ("console_logout", "ewa")] == [
        event for event in events if event[0] in {"console_login", "console_logout"}
    ]
    assert ADMIN_PASSWORD not in repr(logs)


def test_a_paused_and_a_disabled_profile_are_said_in_words(
    client: TestClient, database_url: str
) -> None:
    """A pause shows until when and why; a disabled profile says so."""
    insert_profile(database_url, "biuro", paused_until=datetime(2299, 1, 1, tzinfo=UTC),
                   pause_reason="535 authentication failed")  # fmt: skip
    insert_profile(database_url, "stary", enabled=False)
    sign_in(client, "jan", VIEWER_PASSWORD)

    page = client.get("/accounts").text

    assert "paused until 2299-01-01T00:00:00Z: 535 authentication failed" in page
    assert "disabled" in page
    assert "Signed in as jan (viewer)" in page


def test_a_wrong_password_or_name_is_refused_alike(client: TestClient) -> None:
    """A wrong password and an unknown name get the same answer, and no session; the unknown
    name is not logged (it may be a password typed in the wrong field)."""
    with capture_logs() as logs:
        wrong = post_sign_in(client, "ewa", "not-the-password")
        unknown = post_sign_in(client, "Tajne-Haslo-w-polu-nazwy", ADMIN_PASSWORD)

    assert (401, 401) == (wrong.status_code, unknown.status_code)
    assert "Wrong user name or password." in wrong.text
    assert "Wrong user name or password." in unknown.text
    assert (
        "/login?next=%2Faccounts"
        == client.get("/accounts", follow_redirects=False).headers["location"]
    )
    refused = [entry.get("user") for entry in logs if entry["event"] == "console_login_refused"]
    assert ["ewa", None] == refused
    assert "Tajne-Haslo-w-polu-nazwy" not in repr(logs)


def test_five_failures_make_the_user_wait(client: TestClient) -> None:
    """After five wrong passwords for a name from one address, even the right one waits."""
    for _ in range(5):
        assert 401 == post_sign_in(client, "ewa", "wrong-password-again").status_code

    answer = post_sign_in(client, "ewa", ADMIN_PASSWORD)

    assert 429 == answer.status_code
    assert "Too many failed attempts. Try again in 5 min." in answer.text
    # Another user from the same address is not held back.
    assert 303 == post_sign_in(client, "jan", VIEWER_PASSWORD).status_code


def test_every_post_without_the_csrf_token_is_refused(client: TestClient) -> None:
    """Each POST route answers 403 without the session's token, or with another one."""
    sign_in(client, "ewa", ADMIN_PASSWORD)
    posts = [
        route.path
        for route in client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route) and "POST" in (route.methods or ())
    ]
    assert {"/login", "/logout", "/language", "/accounts/new", "/accounts/{name}/edit"} <= set(
        posts
    )
    for path in posts:
        bare = client.post(path, data={"name": "ewa", "password": ADMIN_PASSWORD})
        forged = client.post(path, data={"csrf_token": "forged", "language": "pl"})
        assert (path, 403, 403) == (path, bare.status_code, forged.status_code)
    assert 200 == client.get("/accounts").status_code  # still signed in: the logout was refused


def test_language_follows_the_browser_and_the_switch(client: TestClient, database_url: str) -> None:
    """Accept-Language picks Polish, in the guide's words; the switch sets English for the
    session, whatever the browser says."""
    insert_profile(database_url, "biuro")
    polish = {"Accept-Language": "pl-PL,pl;q=0.9,en;q=0.5"}
    sign_in(client, "ewa", ADMIN_PASSWORD)

    in_polish = client.get("/accounts", headers=polish)
    form = {"csrf_token": csrf_token(client, "/accounts"), "language": "en", "next": "/accounts"}
    switched = client.post("/language", headers=polish, follow_redirects=False, data=form)
    in_english = client.get("/accounts", headers=polish)

    assert '<html lang="pl">' in in_polish.text
    for word in ("Nazwa konta", "Email wychodzący", "Nazwa serwera", "Port", "aktywne"):
        assert word in in_polish.text
    assert (303, "/accounts") == (switched.status_code, switched.headers["location"])
    assert '<html lang="en">' in in_english.text
    assert "Account name" in in_english.text


def test_the_language_switch_goes_back_only_to_this_site(client: TestClient) -> None:
    """A ``next`` that leads elsewhere (another host, a scheme) is replaced by the home page."""
    for elsewhere in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        answer = client.post("/language", follow_redirects=False, data={
            "csrf_token": csrf_token(client), "language": "pl", "next": elsewhere})  # fmt: skip
        assert "/" == answer.headers["location"]


def test_signing_in_leads_back_to_the_page_asked_for_and_only_on_this_site(
    client: TestClient, database_url: str
) -> None:
    """A signed-out person asking for a queue filter signs in and lands on that filter; a
    ``next`` leading elsewhere lands on the overview instead."""
    asked = client.get("/queue?status=failed", follow_redirects=False)
    assert "/login?next=%2Fqueue%3Fstatus%3Dfailed" == asked.headers["location"]
    page = client.get(asked.headers["location"])
    assert '<input type="hidden" name="next" value="/queue?status=failed">' in page.text

    form = {"csrf_token": csrf_token(client), "name": "ewa", "password": ADMIN_PASSWORD,
            "next": "/queue?status=failed"}  # fmt: skip
    answer = client.post("/login", data=form, follow_redirects=False)
    assert (303, "/queue?status=failed") == (answer.status_code, answer.headers["location"])

    for elsewhere in ("//evil.example/", "https://evil.example/", "/\\evil.example", "/x\ny"):
        client.post("/logout", data={"csrf_token": csrf_token(client, "/overview")})
        form = {"csrf_token": csrf_token(client), "name": "ewa", "password": ADMIN_PASSWORD,
                "next": elsewhere}  # fmt: skip
        answer = client.post("/login", data=form, follow_redirects=False)
        assert "/overview" == answer.headers["location"], elsewhere


def test_security_headers_and_the_session_cookie(client: TestClient) -> None:
    """Every answer has the CSP without inline scripts and the other headers; the session
    cookie is HttpOnly and SameSite=Lax, and not Secure over plain HTTP."""
    page = client.get("/login")
    style = client.get("/static/console.css")

    for answer in (page, style):
        for name, value in SECURITY_HEADERS.items():
            assert value == answer.headers[name]
    assert "'unsafe-inline'" not in SECURITY_HEADERS["content-security-policy"]
    assert "no-store" == page.headers["cache-control"]
    cookie = page.headers["set-cookie"].lower()
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert ("httponly" in cookie, "samesite=lax" in cookie, "secure" in cookie) == (
        True,
        True,
        False,
    )
    assert "<script" not in page.text
    assert "style=" not in page.text


def test_behind_https_the_cookie_is_secure(settings: Settings, database_url: str) -> None:
    """With MAILWORKER_CONSOLE_HTTPS the cookie is Secure and HSTS is sent."""
    app = create_app(settings.model_copy(update={"console_https": True}), database_url)
    with TestClient(app, base_url="https://console.example") as client:
        page = client.get("/login")
    assert "; secure" in page.headers["set-cookie"].lower()
    assert "max-age=31536000" == page.headers["strict-transport-security"]


def test_no_password_or_secret_reaches_a_page(
    client: TestClient, cli_env: dict[str, str], settings: Settings
) -> None:
    """A profile's SMTP password, the users' passwords and hashes, the secret key: none is in
    any page or cookie the console answers with."""
    ok(cli_env, "profiles", "add", "biuro", "--from", "biuro@firma.pl", "--host",
       "smtp.firma.pl", "--password-stdin", input=f"{SMTP_PASSWORD}\n")  # fmt: skip
    answers = [client.get("/login"), post_sign_in(client, "ewa", ADMIN_PASSWORD)]
    answers.append(client.get("/accounts"))
    assert "biuro@firma.pl" in answers[-1].text
    assert_no_secret_shown(answers, settings, SMTP_PASSWORD)


def test_a_removed_user_is_signed_out_at_once(client: TestClient, cli_env: dict[str, str]) -> None:
    """Removing a user ends their session at its next request."""
    sign_in(client, "jan", VIEWER_PASSWORD)
    assert 200 == client.get("/accounts").status_code

    ok(cli_env, "console", "users", "remove", "jan")

    assert (
        "/login?next=%2Faccounts"
        == client.get("/accounts", follow_redirects=False).headers["location"]
    )


WP_PASSWORD = "Wp-Tajne-Haslo-2026"
WP_FORM = {
    "preset": "wp",
    "enabled": "on",
    "name": "wp",
    "from_address": "jankowalski@wp.pl",
    "display_name": "Jan Kowalski",
    "reply_to": "",
    "description": "Faktury",
    "host": "smtp.wp.pl",
    "port": "465",
    "encryption": "ssl",
    "auth_method": "login",
    "login": "",
    # The caps as Apply preset fills them for WP.
    "daily_cap": "300",
    "daily_recipient_cap": "500",
    "per_minute_cap": "",
    "max_recipients_per_message": "",
}


def _post_form(client: TestClient, path: str, **fields: str):  # type: ignore[no-untyped-def]
    form = {"csrf_token": csrf_token(client, path), "action": "save", **fields}
    return client.post(path, data=form, follow_redirects=False)


def _stored(database_url: str, name: str) -> dict[str, object]:
    [row] = run_sql(database_url, "SELECT * FROM mail.profile WHERE name = :name", name=name)
    return dict(row._mapping)


def test_an_admin_adds_the_wp_account_as_the_cli_would(
    client: TestClient, database_url: str, settings: Settings
) -> None:
    """The guide's WP account, added through the form with the wp preset: the login is derived
    (jankowalski), the row holds the form's fields, the password is stored encrypted and no
    answer shows it; the change is logged with the admin's name and never the password."""
    sign_in(client, "ewa", ADMIN_PASSWORD)
    applied = client.post("/accounts/new", data={"csrf_token": csrf_token(client, "/accounts/new"),
                          "action": "preset", "preset": "wp", "encryption": "auto",
                          "auth_method": "login"})  # fmt: skip
    with capture_logs() as logs:
        saved = _post_form(client, "/accounts/new", **WP_FORM, password=WP_PASSWORD)
    page = client.get("/accounts")

    assert 'value="smtp.wp.pl"' in applied.text
    assert 'value="465"' in applied.text
    assert "Aktywacja dostępu dla programów" in applied.text  # the preset's hint
    assert (303, "/accounts") == (saved.status_code, saved.headers["location"])
    row = _stored(database_url, "wp")
    expected = {"from_address": "jankowalski@wp.pl", "display_name": "Jan Kowalski",
                "description": "Faktury", "host": "smtp.wp.pl", "port": 465,
                "encryption": "ssl", "auth_method": "login", "login": "jankowalski",
                "daily_cap": 300, "preset": "wp", "enabled": True, "reply_to": None,
                "is_default": True}  # fmt: skip
    assert expected == {key: row[key] for key in expected}
    token = row["password_encrypted"]
    assert isinstance(token, bytes)
    assert WP_PASSWORD.encode() not in token
    assert WP_PASSWORD == load_cipher(settings).decrypt(token, profile="wp")
    assert "jankowalski@wp.pl" in page.text
    edit_page = client.get("/accounts/wp/edit")
    for answer in (applied, saved, page, edit_page):
        assert WP_PASSWORD not in answer.text
    assert 'name="password" type="password" autocomplete="new-password" value=""' in edit_page.text
    added = [entry for entry in logs if entry["event"] == "profile_added"]
    assert [("wp", "ewa")] == [(entry["profile"], entry["by"]) for entry in added]
    assert WP_PASSWORD not in repr(logs)


def test_an_edit_with_an_empty_password_keeps_it(
    client: TestClient, cli_env: dict[str, str], database_url: str
) -> None:
    """Changing the display name with the password left empty keeps the stored password;
    the change is logged with the admin's name."""
    ok(cli_env, "profiles", "add", "wp", "--preset", "wp", "--from", "jankowalski@wp.pl",
       "--password-stdin", input=f"{WP_PASSWORD}\n")  # fmt: skip
    before = _stored(database_url, "wp")
    sign_in(client, "ewa", ADMIN_PASSWORD)
    form = {**WP_FORM, "display_name": "Biuro Kowalski", "description": "", "login": "jankowalski"}

    with capture_logs() as logs:
        saved = _post_form(client, "/accounts/wp/edit", **form, password="")

    assert 303 == saved.status_code
    after = _stored(database_url, "wp")
    assert ("Biuro Kowalski", before["password_encrypted"]) == (
        after["display_name"],
        after["password_encrypted"],
    )
    updated = [
        (entry["fields"], entry["by"]) for entry in logs if entry["event"] == "profile_updated"
    ]
    assert [(["display_name"], "ewa")] == updated


def test_a_wrong_port_and_encryption_mix_is_shown_beside_the_port(
    client: TestClient, database_url: str
) -> None:
    """SSL on port 587 is refused with the CLI's words, next to the port field; nothing is
    stored and the typed password is not sent back."""
    sign_in(client, "ewa", ADMIN_PASSWORD)

    answer = _post_form(client, "/accounts/new", **{**WP_FORM, "port": "587"},
                        password=WP_PASSWORD)  # fmt: skip

    assert 422 == answer.status_code
    port_field = answer.text.split('id="port"', 1)[1].split("</p>", 1)[0]
    assert 'id="port-problem"' in port_field
    assert "port 587 expects STARTTLS" in port_field
    assert WP_PASSWORD not in answer.text
    assert [] == run_sql(database_url, "SELECT id FROM mail.profile WHERE name = 'wp'")


def test_a_preset_account_saved_without_applying_the_preset_gets_its_caps(
    client: TestClient, cli_env: dict[str, str], database_url: str
) -> None:
    """Gmail chosen in the list, the server typed, Save pressed without Apply preset: the
    caps left empty are Gmail's limits, exactly as `profiles add --preset gmail` stores them."""
    sign_in(client, "ewa", ADMIN_PASSWORD)
    form = {**WP_FORM, "preset": "gmail", "name": "gmail", "from_address": "jan@gmail.com",
            "host": "smtp.gmail.com", "port": "465", "encryption": "ssl", "login": "",
            "daily_cap": "", "daily_recipient_cap": "", "per_minute_cap": "",
            "max_recipients_per_message": ""}  # fmt: skip
    saved = _post_form(client, "/accounts/new", **form, password="abcdabcdabcdabcd")
    ok(cli_env, "profiles", "add", "gmail-cli", "--preset", "gmail", "--from", "jan@gmail.com",
       "--password-env", "CLI_GMAIL_PASSWORD", CLI_GMAIL_PASSWORD="abcdabcdabcdabcd")  # fmt: skip

    assert (303, "/accounts") == (saved.status_code, saved.headers["location"])
    caps = ("daily_cap", "daily_recipient_cap", "per_minute_cap", "max_recipients_per_message")
    by_form, by_cli = _stored(database_url, "gmail"), _stored(database_url, "gmail-cli")
    assert {cap: by_cli[cap] for cap in caps} == {cap: by_form[cap] for cap in caps}
    assert by_form["daily_cap"] is not None


def test_every_cap_is_edited_and_a_wrong_one_is_shown_beside_its_field(
    client: TestClient, database_url: str
) -> None:
    """The form carries the four caps: set, cleared (no cap) and refused beside the field."""
    insert_profile(database_url, "biuro", daily_cap=500)
    sign_in(client, "ewa", ADMIN_PASSWORD)
    edit = "/accounts/biuro/edit"
    values = {**WP_FORM, "preset": "", "name": "biuro", "from_address": "biuro@firma.pl",
              "host": "relay.firma.pl", "port": "25", "encryption": "none",
              "auth_method": "none", "login": ""}  # fmt: skip

    saved = _post_form(client, edit, **{**values, "daily_cap": "", "daily_recipient_cap": "900",
                       "per_minute_cap": "20", "max_recipients_per_message": "50"})  # fmt: skip
    refused = _post_form(client, edit, **{**values, "per_minute_cap": "0"})

    assert 303 == saved.status_code
    row = _stored(database_url, "biuro")
    caps = ("daily_cap", "daily_recipient_cap", "per_minute_cap", "max_recipients_per_message")
    assert (None, 900, 20, 50) == tuple(row[cap] for cap in caps)
    assert 422 == refused.status_code
    field = refused.text.split('id="per_minute_cap"', 1)[1].split("</p>", 1)[0]
    assert "per-minute cap 0 must be at least 1" in field
    assert 20 == _stored(database_url, "biuro")["per_minute_cap"]


def test_only_an_admin_may_open_or_post_the_account_form(
    client: TestClient, database_url: str
) -> None:
    """A viewer gets 403 on the form pages and their posts, and sees no links to them."""
    insert_profile(database_url, "biuro")
    sign_in(client, "jan", VIEWER_PASSWORD)
    token = csrf_token(client, "/accounts")

    answers = [
        client.get("/accounts/new"),
        client.get("/accounts/biuro/edit"),
        client.post("/accounts/new", data={"csrf_token": token, **WP_FORM}),
        client.post("/accounts/biuro/edit", data={"csrf_token": token, **WP_FORM}),
    ]

    assert [403, 403, 403, 403] == [answer.status_code for answer in answers]
    assert "/accounts/new" not in client.get("/accounts").text
    polish = client.get("/accounts/new", headers={"Accept-Language": "pl"})
    assert "Tylko administrator może to zrobić." in polish.text  # a page, in their language
    assert "Signed in as jan (viewer)" in answers[0].text
    assert SECURITY_HEADERS["content-security-policy"] == polish.headers["content-security-policy"]
    assert [] == run_sql(database_url, "SELECT id FROM mail.profile WHERE name = 'wp'")


def test_the_account_form_posts_need_the_csrf_token(client: TestClient, database_url: str) -> None:
    """An admin's post of the form without the session's token is refused and stores nothing."""
    insert_profile(database_url, "biuro")
    sign_in(client, "ewa", ADMIN_PASSWORD)

    new = client.post("/accounts/new", data={**WP_FORM, "password": WP_PASSWORD})
    edit = client.post("/accounts/biuro/edit", data={**WP_FORM, "display_name": "X"})

    assert (403, 403) == (new.status_code, edit.status_code)
    assert [] == run_sql(database_url, "SELECT id FROM mail.profile WHERE name = 'wp'")
    assert "" == _stored(database_url, "biuro")["display_name"]
