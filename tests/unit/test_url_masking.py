"""``mask_url_password`` hides a database URL's password in every form, and nothing else."""

from __future__ import annotations

import pytest

from worker.settings import Settings, mask_url_password

# (the URL, as config show must print it, the password it holds)
CASES = [
    pytest.param(
        "postgresql://svc:Hunter2-db@db.example.pl:5432/poczta",
        "postgresql://svc:***@db.example.pl:5432/poczta",
        "Hunter2-db",
        id="user-and-password",
    ),
    pytest.param(
        "postgresql://svc:p@ss:w@rd@db.example.pl/poczta",
        "postgresql://svc:***@db.example.pl/poczta",
        "p@ss:w@rd",
        id="at-and-colon-in-the-password",
    ),
    pytest.param(
        "postgresql://svc:p%40ss%3Aw%2Frd@db.example.pl/poczta",
        "postgresql://svc:***@db.example.pl/poczta",
        "p%40ss%3Aw%2Frd",
        id="percent-encoded",
    ),
    pytest.param(
        "postgresql://svc:pa/ss@db.example.pl/poczta",
        "postgresql://svc:***@db.example.pl/poczta",
        "pa/ss",
        id="unencoded-slash",
    ),
    pytest.param(
        "postgresql://:Tylko-Haslo@db.example.pl/poczta",
        "postgresql://:***@db.example.pl/poczta",
        "Tylko-Haslo",
        id="password-without-user",
    ),
    pytest.param(
        "postgresql://db.example.pl/poczta?user=svc&password=Hunter2-db",
        "postgresql://db.example.pl/poczta?user=svc&password=***",
        "Hunter2-db",
        id="query-password-last",
    ),
    pytest.param(
        "postgresql://db.example.pl/poczta?password=Hunter2-db&user=svc&sslmode=require",
        "postgresql://db.example.pl/poczta?password=***&user=svc&sslmode=require",
        "Hunter2-db",
        id="query-password-first",
    ),
    pytest.param(
        "postgresql://svc@db.example.pl/poczta?sslmode=verify-full&sslpassword=Klucz-TLS-9",
        "postgresql://svc@db.example.pl/poczta?sslmode=verify-full&sslpassword=***",
        "Klucz-TLS-9",
        id="query-sslpassword",
    ),
    pytest.param(
        "postgresql://svc:Hunter2-db@db1.example.pl:5432,db2.example.pl:5433/poczta"
        "?target_session_attrs=read-write",
        "postgresql://svc:***@db1.example.pl:5432,db2.example.pl:5433/poczta"
        "?target_session_attrs=read-write",
        "Hunter2-db",
        id="several-hosts",
    ),
    pytest.param(
        "postgresql:///poczta?host=/run/postgresql&user=svc&password=Hunter2-db",
        "postgresql:///poczta?host=/run/postgresql&user=svc&password=***",
        "Hunter2-db",
        id="socket-without-host",
    ),
]

# URLs without a password: printed exactly as given.
UNCHANGED = [
    "postgresql://db.example.pl:5432/poczta",
    "postgresql://svc@db.example.pl/poczta",
    "postgresql://db.example.pl/poczta?user=svc&application_name=mailworker@biuro",
    "postgresql+asyncpg://svc@[::1]:5432/poczta?sslmode=require",
    "postgresql://svc@db.example.pl/poczta?password=",
]


@pytest.mark.parametrize(("url", "expected", "password"), CASES)
def test_every_form_of_password_is_hidden(url: str, expected: str, password: str) -> None:
    """The password, wherever the URL carries it, becomes ***; user, hosts, ports, database
    and the other query parameters stay as they were."""
    masked = mask_url_password(url)
    assert expected == masked
    assert password not in masked


@pytest.mark.parametrize("url", UNCHANGED)
def test_a_url_without_password_is_left_alone(url: str) -> None:
    """Nothing is hidden where there is nothing to hide: the URL stays readable as it is."""
    assert url == mask_url_password(url)


@pytest.mark.parametrize(("url", "expected", "password"), CASES)
def test_effective_settings_show_the_masked_url(
    monkeypatch: pytest.MonkeyPatch, url: str, expected: str, password: str
) -> None:
    """What ``config show`` prints from holds the masked URL and never the password."""
    monkeypatch.setenv("DATABASE_URL", url)
    shown = Settings().effective()
    assert expected == shown["database_url"]
    assert password not in repr(shown)
