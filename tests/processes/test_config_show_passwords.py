"""``mailworker config show``, run as an operator runs it, prints no database password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (DATABASE_URL, the password in it, what config show prints for it)
URLS = [
    pytest.param(
        "postgresql://db.example.pl/poczta?user=mailworker&password=Baza-Haslo-2026",
        "Baza-Haslo-2026",
        "postgresql://db.example.pl/poczta?user=mailworker&password=***",
        id="query",
    ),
    pytest.param(
        "postgresql://mailworker:Baza@Haslo:2026@db.example.pl:5432/poczta",
        "Baza@Haslo:2026",
        "postgresql://mailworker:***@db.example.pl:5432/poczta",
        id="at-in-password",
    ),
    pytest.param(
        "postgresql://mailworker:Baza-Haslo-2026@db1.example.pl,db2.example.pl/poczta"
        "?sslpassword=Klucz-TLS-2026",
        "Klucz-TLS-2026",
        "postgresql://mailworker:***@db1.example.pl,db2.example.pl/poczta?sslpassword=***",
        id="several-hosts-and-sslpassword",
    ),
]


def _config_show(url: str, *options: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MAILWORKER_")},
        "DATABASE_URL": url,
    }
    return subprocess.run(
        [sys.executable, "-m", "worker", "config", "show", *options],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("url", "password", "shown"), URLS)
@pytest.mark.parametrize("options", [[], ["--json"]], ids=["text", "json"])
def test_config_show_prints_no_database_password(
    url: str, password: str, shown: str, options: list[str]
) -> None:
    """Whether the password is in the user part (even with "@" in it) or in the query, config
    show prints the URL with *** in its place, the rest as given, and the password nowhere."""
    result = _config_show(url, *options)
    assert 0 == result.returncode, result.stderr
    assert [] == [secret for secret in (password, "Baza-Haslo-2026") if secret in result.stdout]
    if options:
        assert shown == json.loads(result.stdout)["database_url"]
    else:
        lines = (line.partition(" ") for line in result.stdout.splitlines())
        assert shown == {name: value.strip() for name, _, value in lines}["database_url"]
