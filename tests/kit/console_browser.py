"""The web console as a process and a person's first steps in Chromium, for browser tests.

- :func:`running_console`: ``mailworker console`` on a free port of 127.0.0.1, with extra
  environment variables (e.g. ``SSL_CERT_FILE``, so that it trusts the SMTP kit's CA); yields
  its URL and stops it afterwards.
- :func:`polish_page`: a page whose browser asks for Polish, collecting what its console says
  (the CSP's refusals, script errors) in ``errors``.
- :func:`sign_in_in_polish`: signs in by the Polish labels, as a person does.

Playwright is imported by the caller (``pytest.importorskip``), so this module does not need it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

from tests.kit.processes import REPO_ROOT

__all__ = ["free_port", "polish_page", "running_console", "sign_in_in_polish"]

START_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def running_console(cli_env: Mapping[str, str], **extra_env: str) -> Iterator[str]:
    """``mailworker console`` as a process; its URL once it listens."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "console", "--listen", f"127.0.0.1:{port}"],
        cwd=REPO_ROOT,
        env={**os.environ, **cli_env, **extra_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
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


def polish_page(browser: Any, errors: list[str]) -> Any:
    """A new page in Polish; what its console says is appended to ``errors``."""
    page = browser.new_page(locale="pl-PL", extra_http_headers={"Accept-Language": "pl-PL,pl"})
    page.on("console", lambda message: errors.append(message.text))
    return page


def sign_in_in_polish(page: Any, console_url: str, name: str, password: str) -> None:
    """Sign in on the Polish sign-in page; returns on the accounts page, reached by its link."""
    page.goto(f"{console_url}/login")
    page.get_by_label("Nazwa użytkownika").fill(name)
    page.get_by_label("Hasło").fill(password)
    page.get_by_role("button", name="Zaloguj").click()
    page.wait_for_url("**/overview")
    page.get_by_role("link", name="Konta").click()
    page.wait_for_url("**/accounts")
