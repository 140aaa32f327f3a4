"""The web console as a process and Chromium driving it, for the browser tests (tests/browser/).

- :func:`console_process`: ``mailworker console`` on a free port of 127.0.0.1 with the test's
  environment and extra variables (e.g. ``SSL_CERT_FILE``, so that it trusts the SMTP kit's
  CA); its URL once it listens, its output in the failure if it dies; stopped afterwards.
- :func:`add_console_user`: a console user made by the CLI, as an administrator does.
- :func:`chromium`: Debian's ``/usr/bin/chromium`` through Playwright's sync API (no browser
  download); skips the test where it is missing (``.ci/run`` installs it).
- :func:`new_page`: a page in Polish or English, recording what its console says and its
  script errors in ``errors``.
- :func:`sign_in`: the sign-in form filled by its labels, as a person does; lands on
  ``/overview``.

Fixtures (registered in ``tests/conftest.py``):

- ``browser``: Chromium, started after the test module's own ``console_url`` fixture (which
  each browser test module defines: its users, its rows, its console) and closed before it.
  Playwright's event loop runs in the test's thread while it is open, so fixtures that need
  ``asyncio.run`` must come first: ``console_url`` is where they belong.
- ``screenshots``: the folder for the test's screenshots, ``<tmp_path>/screenshots``. When
  ``CONSOLE_SCREENSHOTS`` names a folder, the PNGs are also copied there after the test:
  ``CONSOLE_SCREENSHOTS=docs/console-screenshots pytest tests/browser`` refreshes the pictures
  of docs/console.md.

Playwright is imported only when Chromium starts, so the other tiers do not need it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest

from tests.kit.commands import ok
from tests.kit.processes import REPO_ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

__all__ = [
    "CHROMIUM",
    "SCREENSHOTS_VARIABLE",
    "add_console_user",
    "browser",
    "chromium",
    "console_process",
    "free_port",
    "needs_chromium",
    "new_page",
    "screenshots",
    "sign_in",
]

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS_VARIABLE = "CONSOLE_SCREENSHOTS"
START_SECONDS = 30

Language = Literal["pl", "en"]

_MISSING = "no /usr/bin/chromium: apt-get install chromium (.ci/run does)"
# For a module's ``pytestmark``: skips before its fixtures fill a database and start a console;
# under CI the tests run, and fail without Chromium, as the port-465 tests do.
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"), reason=_MISSING
)

_LOCALES: dict[Language, tuple[str, str]] = {
    "pl": ("pl-PL", "pl-PL,pl"),
    "en": ("en-GB", "en-GB,en"),
}
# The sign-in form's labels: user name, password, the button.
_SIGN_IN_LABELS: dict[Language, tuple[str, str, str]] = {
    "pl": ("Nazwa użytkownika", "Hasło", "Zaloguj"),
    "en": ("User name", "Password", "Sign in"),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def add_console_user(cli_env: Mapping[str, str], name: str, password: str, role: str) -> None:
    """``mailworker console users add`` with the password on standard input."""
    ok(dict(cli_env), "console", "users", "add", name, "--role", role, "--password-stdin",
       input=f"{password}\n")  # fmt: skip


@contextlib.contextmanager
def console_process(
    cli_env: Mapping[str, str], *, output: Path | None = None, **extra_env: str
) -> Iterator[str]:
    """``mailworker console`` as a process; its URL once it listens. With ``output``, what it
    prints (its log) is written to that file."""
    port = free_port()
    sink = None if output is None else output.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "console", "--listen", f"127.0.0.1:{port}"],
        cwd=REPO_ROOT,
        env={**os.environ, **cli_env, **extra_env},
        stdout=subprocess.PIPE if sink is None else sink,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                said = (
                    output.read_text()
                    if output
                    else process.stdout.read()
                    if process.stdout
                    else ""
                )
                raise AssertionError(f"the console stopped: {said!r}")
            assert time.monotonic() < deadline, "the console did not start listening"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        if sink is not None:
            sink.close()


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium, closed when the block ends; the test skips where it is missing
    (fails under CI, which must run it)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{_MISSING}; CI must run this test", pytrace=False)
        pytest.skip(_MISSING)
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Browser, language: Language, errors: list[str]) -> Page:
    """A new page whose browser asks for ``language``; what its console says (the CSP's
    refusals, script errors) and its uncaught errors are appended to ``errors``."""
    locale, accept_language = _LOCALES[language]
    page = browser.new_page(locale=locale, extra_http_headers={"Accept-Language": accept_language})
    page.on("console", lambda message: errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page


def sign_in(page: Page, url: str, name: str, password: str, language: Language) -> None:
    """Sign in through the form's labelled fields in ``language``; returns on the overview."""
    user_label, password_label, button = _SIGN_IN_LABELS[language]
    page.goto(f"{url}/login")
    page.get_by_label(user_label).fill(name)
    page.get_by_label(password_label).fill(password)
    page.get_by_role("button", name=button).click()
    page.wait_for_url("**/overview")


@pytest.fixture
def browser(console_url: str) -> Iterator[Browser]:
    """Chromium, started after the module's ``console_url`` (and its database) and closed
    before them."""
    with chromium() as started:
        yield started


@pytest.fixture
def screenshots(tmp_path: Path) -> Iterator[Path]:
    """The test's screenshot folder; copied to ``$CONSOLE_SCREENSHOTS`` after the test when
    that is set. Each picture is taken after the checks of its page, so a test that fails
    later still leaves only pages that passed them."""
    folder = tmp_path / "screenshots"
    yield folder
    taken = sorted(folder.glob("*.png"))
    print("screenshots:", *map(str, taken))
    target = os.environ.get(SCREENSHOTS_VARIABLE)
    if target and taken:
        Path(target).mkdir(parents=True, exist_ok=True)
        for picture in taken:
            shutil.copyfile(picture, Path(target) / picture.name)
