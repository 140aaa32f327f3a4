"""The console as a process and Chromium driving it, for browser tests of the console's pages.

- :func:`console_process`: ``python -m worker console`` on a free port of 127.0.0.1, its URL
  once it listens; stopped when the block ends.
- :func:`chromium`: Debian's ``/usr/bin/chromium`` through Playwright's sync API (no browser
  download). Start it after every fixture that needs ``asyncio.run``: Playwright's event loop
  runs in the test's thread while it is open.
- :func:`sign_in`: the sign-in form filled by its labels, as a person does.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

from tests.kit.processes import REPO_ROOT

__all__ = ["CHROMIUM", "chromium", "console_process", "free_port", "sign_in"]

CHROMIUM = Path("/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def console_process(env: Mapping[str, str]) -> Iterator[str]:
    """``mailworker console`` with ``env`` (the test's database and key) until the block ends."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "console", "--listen", f"127.0.0.1:{port}"],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the console did not start listening"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium, closed when the block ends."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Page, url: str, name: str, password: str, *, polish: bool) -> None:
    """Sign in through the form's labelled fields (Polish or English labels)."""
    labels = ("Nazwa użytkownika", "Hasło", "Zaloguj") if polish else (
        "User name", "Password", "Sign in"
    )  # fmt: skip
    page.goto(f"{url}/login")
    page.get_by_label(labels[0]).fill(name)
    page.get_by_label(labels[1]).fill(password)
    page.get_by_role("button", name=labels[2]).click()
    page.wait_for_url("**/overview")  # signing in leads to the overview
