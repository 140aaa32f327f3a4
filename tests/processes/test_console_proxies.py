"""Whose X-Forwarded-For the console believes: the reverse proxies its settings name only.

The address decides the sign-in rate limit and the log's ``client``; a header from anyone
else must change neither.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.kit.console_browser import add_console_user, console_process

FORWARDED = "203.0.113.7"  # a documentation address: the client a proxy says it serves


def _refused_sign_in(url: str) -> None:
    """A wrong password, posted from 127.0.0.1 with X-Forwarded-For, as a proxy forwards it."""
    browser = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor()
    )
    with browser.open(f"{url}/login", timeout=10) as answer:
        token = re.findall(r'name="csrf_token" value="([^"]+)"', answer.read().decode())[0]
    form = urllib.parse.urlencode({"csrf_token": token, "name": "ewa", "password": "zle-haslo"})
    request = urllib.request.Request(  # noqa: S310 - the console's own http:// address
        f"{url}/login", data=form.encode(), headers={"X-Forwarded-For": FORWARDED}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        browser.open(request, timeout=10)
    refused.value.close()  # the answer's connection
    assert 401 == refused.value.code


def _refusals(log: Path) -> list[str | None]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line.get("client") for line in lines if line["event"] == "console_login_refused"]


@pytest.mark.parametrize(
    ("trusted", "client"),
    [
        (None, FORWARDED),  # the default: a proxy on this machine
        ("10.0.0.1", "127.0.0.1"),  # another proxy: the header of 127.0.0.1 is not believed
        ("127.0.0.0/8", FORWARDED),  # a network
    ],
)
def test_only_the_named_proxies_give_the_clients_address(
    cli_env: dict[str, str], tmp_path: Path, trusted: str | None, client: str
) -> None:
    add_console_user(cli_env, "ewa", "Konsola-Haslo-2026!", "admin")
    log = tmp_path / "console.log"
    settings = {"MAILWORKER_LOG_FORMAT": "json"}
    if trusted is not None:
        settings["MAILWORKER_CONSOLE_TRUSTED_PROXIES"] = trusted
    with console_process(cli_env, output=log, **settings) as url:
        _refused_sign_in(url)
    assert [client] == _refusals(log)
