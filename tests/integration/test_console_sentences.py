"""The console says the core's sentences in the page's language: a pause's reason and a
preset's advice in Polish, the server's reply inside them as the server wrote it."""

from __future__ import annotations

import html
from datetime import UTC, datetime

from starlette.testclient import TestClient

from tests.kit.console_client import (
    ADMIN_PASSWORD,
    VIEWER_PASSWORD,
    csrf_token,
    sign_in,
)
from tests.kit.rows import insert_profile

POLISH = {"Accept-Language": "pl-PL,pl;q=0.9"}
REPLY = (
    "550 5.4.5 Daily user sending limit exceeded. For more information on Gmail sending limits"
    " go to https://support.google.com/a/answer/166852 a1-20020a05"
)


def _text(answer_text: str) -> str:
    """The page's text as a person reads it (entities such as &#39; back to characters)."""
    return html.unescape(answer_text)


def test_a_paused_accounts_reason_is_polish_around_the_servers_reply(
    client: TestClient, database_url: str
) -> None:
    """A pause stored by the worker (the provider's limit, then Google's reply) reads in
    Polish, with the reply byte for byte; in English it is as stored."""
    reason = f"the provider's sending limit was reached: {REPLY}"
    insert_profile(database_url, "gmail", paused_until=datetime(2299, 1, 1, tzinfo=UTC),
                   pause_reason=reason)  # fmt: skip
    sign_in(client, "jan", VIEWER_PASSWORD)

    in_polish = _text(client.get("/accounts", headers=POLISH).text)
    in_english = _text(client.get("/accounts").text)

    assert f"wstrzymane do 2299-01-01T00:00:00Z: osiągnięto limit wysyłki dostawcy: {REPLY}" in (
        in_polish
    )
    assert f"paused until 2299-01-01T00:00:00Z: {reason}" in in_english


def test_a_presets_advice_is_polish_on_the_account_form(client: TestClient) -> None:
    """Applying the WP or the Gmail preset shows its advice in the guide's Polish words."""
    sign_in(client, "ewa", ADMIN_PASSWORD)
    shown = {}
    for preset in ("wp", "gmail"):
        form = {"csrf_token": csrf_token(client, "/accounts/new"), "action": "preset",
                "preset": preset, "encryption": "auto", "auth_method": "login"}  # fmt: skip
        answer = client.post("/accounts/new", data=form, headers=POLISH)
        assert 200 == answer.status_code
        shown[preset] = _text(answer.text)

    assert (
        "Login to część adresu przed znakiem @ (jankowalski dla jankowalski@wp.pl)" in (shown["wp"])
    )
    assert "Aktywacja dostępu dla programów pocztowych" in shown["wp"]
    assert "Switch on access for mail programs" not in shown["wp"]
    assert "włącz weryfikację dwuetapową, a potem utwórz hasło do aplikacji" in shown["gmail"]
    assert "Google refuses the account password" not in shown["gmail"]


def test_the_account_forms_problems_are_polish(client: TestClient) -> None:
    """The form's problems (no preset to apply, a wrong number, a bad address, a cap of 0)
    are said in Polish, each typed value quoted as typed."""
    sign_in(client, "ewa", ADMIN_PASSWORD)
    choose = {"csrf_token": csrf_token(client, "/accounts/new"), "action": "preset", "preset": ""}
    no_preset = client.post("/accounts/new", headers=POLISH, data=choose)
    form = {"csrf_token": csrf_token(client, "/accounts/new"), "action": "save", "name": "biuro",
            "from_address": "jan kowalski.wp.pl", "host": "smtp.wp.pl", "port": "46five",
            "encryption": "ssl", "auth_method": "none", "daily_cap": "0"}  # fmt: skip
    wrong_number = client.post("/accounts/new", headers=POLISH, data=form)
    wrong_address = client.post("/accounts/new", headers=POLISH, data=form | {"port": "465"})

    assert "Najpierw wybierz dostawcę poczty." in _text(no_preset.text)
    assert (422, 422) == (wrong_number.status_code, wrong_address.status_code)
    assert "'46five' nie jest liczbą całkowitą" in _text(wrong_number.text)
    page = _text(wrong_address.text)
    assert (
        "pole „Email wychodzący (from_address)”: 'jan kowalski.wp.pl' nie jest poprawnym"
        " adresem e-mail: Adres e-mail musi zawierać znak @."  # email-validator's, in Polish
    ) in page
    assert "limit dzienny 0: wartość musi wynosić co najmniej 1" in page
    assert "must be" not in page
