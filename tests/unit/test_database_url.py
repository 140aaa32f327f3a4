"""Database URLs: every accepted form and libpq parameter, mapped to what each driver takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.database_url import (
    SCHEMES,
    SSLMODES,
    SUPPORTED_PARAMETERS,
    database_target,
    libpq_url,
    with_scheme,
)
from worker.errors import ConfigurationError
from worker.settings import Settings, load_settings

PLAIN = "postgresql://svc:Haslo-2026@db.example.pl:5432/poczta"


@pytest.fixture(autouse=True)
def _no_database_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "DATABASE_URL_FILE", "MAILWORKER_DATABASE_URL_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_means_the_same(scheme: str) -> None:
    """postgresql://, postgres:// and postgresql+asyncpg:// give the driver and libpq's tools
    the same postgresql:// URL."""
    target = database_target(with_scheme(PLAIN, scheme))
    assert (PLAIN, PLAIN) == (target.driver_dsn, target.libpq_url)


def test_another_scheme_is_refused_without_echoing_the_url() -> None:
    """mysql:// and a URL without a scheme are refused; the password is not repeated."""
    for url, expected in [
        ("mysql://svc:Haslo-2026@db/app", "not a mysql:// one"),
        ("svc:Haslo-2026@db/app", "must be a postgresql:// URL"),
    ]:
        with pytest.raises(ConfigurationError) as caught:
            database_target(url)
        assert expected in str(caught.value)
        assert "Haslo-2026" not in str(caught.value)


# (parameters as pasted, what asyncpg's DSN carries, what libpq's tools get)
MAPPINGS = [pytest.param(*(f"sslmode={mode}",) * 3, id=f"sslmode-{mode}") for mode in SSLMODES] + [
    pytest.param(
        "sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem&sslcert=/c.crt&sslkey=/c.key",
        "sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem&sslcert=/c.crt&sslkey=/c.key",
        "sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem&sslcert=/c.crt&sslkey=/c.key",
        id="certificates",
    ),
    pytest.param("ssl=true", "sslmode=require", "sslmode=require", id="ssl-true"),
    pytest.param("ssl=verify-ca", "sslmode=verify-ca", "sslmode=verify-ca", id="ssl-mode"),
    pytest.param("connect_timeout=5", "", "connect_timeout=5", id="connect-timeout"),
    pytest.param(
        "application_name=mail%20worker&options=-c%20statement_timeout%3D5s",
        "application_name=mail%20worker&options=-c%20statement_timeout%3D5s",
        "application_name=mail%20worker&options=-c%20statement_timeout%3D5s",
        id="startup-settings",
    ),
    pytest.param(
        "options=-c search_path=a+b",
        "options=-c%20search_path%3Da%2Bb",
        "options=-c%20search_path%3Da%2Bb",
        id="plus-stays-plus-as-in-libpq",
    ),
    pytest.param("prepared_statement_cache_size=0", "", "", id="sqlalchemy-cache"),
    pytest.param(
        "target_session_attrs=read-write&sslmode=require",
        "target_session_attrs=read-write&sslmode=require",
        "target_session_attrs=read-write&sslmode=require",
        id="target-session-attrs",
    ),
]


@pytest.mark.parametrize(("given", "driver", "libpq"), MAPPINGS)
def test_each_parameter_goes_where_it_is_honoured(given: str, driver: str, libpq: str) -> None:
    """Parameters asyncpg reads from a DSN stay in it (re-encoded the one way both read);
    connect_timeout and SQLAlchemy's cache size leave it, ssl= becomes sslmode=, and libpq's
    tools get every libpq parameter."""
    target = database_target(f"postgres://svc@db.example.pl/poczta?{given}")
    base = "postgresql://svc@db.example.pl/poczta"
    assert f"{base}?{driver}".rstrip("?") == target.driver_dsn
    assert f"{base}?{libpq}".rstrip("?") == target.libpq_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", 60.0),
        ("?connect_timeout=5", 5.0),
        ("?connect_timeout=1", 2.0),
        ("?connect_timeout=0", None),
    ],
)
def test_connect_timeout_becomes_asyncpgs_timeout(given: str, expected: float | None) -> None:
    """connect_timeout=N waits N seconds (2 at least), 0 waits indefinitely, as in libpq;
    without it the consumer's default holds."""
    target = database_target(f"{PLAIN}{given}")
    assert expected == target.timeout(60.0)
    assert expected == target.asyncpg_arguments(default_timeout=60.0)["timeout"]


def test_the_engine_gets_the_dsn_and_sqlalchemys_own_option() -> None:
    """The engine's connect_args carry the DSN, the timeout when one is given, and
    prepared_statement_cache_size as the integer SQLAlchemy's dialect takes, and asyncpg's
    own statement cache the same size (the claim and the results run on the driver)."""
    target = database_target(f"{PLAIN}?connect_timeout=7&prepared_statement_cache_size=0")
    assert {
        "dsn": PLAIN,
        "timeout": 7.0,
        "prepared_statement_cache_size": 0,
        "statement_cache_size": 0,
    } == target.engine_connect_args()
    assert {"dsn": PLAIN} == database_target(PLAIN).engine_connect_args()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://svc:p@ss:w/rd@db.example.pl/poczta",
        "postgresql://svc:p%40ss%3Aw%2Frd@db.example.pl/poczta",
    ],
)
def test_a_password_reaches_the_driver_encoded(url: str) -> None:
    """ "@", ":" and "/" in a password, encoded or not, reach both forms percent-encoded."""
    expected = "postgresql://svc:p%40ss%3Aw%2Frd@db.example.pl/poczta"
    assert (expected, expected) == (database_target(url).driver_dsn, libpq_url(url))


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://svc@db1.example.pl:5432,db2.example.pl:5433/poczta",
        "postgresql://svc@%2Frun%2Fpostgresql/poczta",
        "postgresql://svc@[::1]:5432/poczta",
        "postgresql://svc@/poczta?host=/run/postgresql,/tmp&port=5432,5433",
    ],
)
def test_hosts_are_passed_as_written(url: str) -> None:
    """Several hosts, a socket folder (encoded in place of the host, or as host=) and an IPv6
    address reach the driver as written: asyncpg and libpq read them the same way."""
    assert url == database_target(url).driver_dsn


REFUSED = [
    "gssencmode=disable",
    "krbsrvname=postgres",
    "gsslib=gssapi",
    "hostaddr=10.0.0.5",
    "keepalives=1",
    "keepalives_idle=30",
    "tcp_user_timeout=1000",
    "client_encoding=LATIN2",
    "channel_binding=require",
    "require_auth=scram-sha-256",
    "sslcrldir=/etc/crl",
    "sslsni=0",
    "load_balance_hosts=random",
    "service=mail",
    "database=poczta",
    "sslmod=require",
    "statement_timeout=5s",
]


@pytest.mark.parametrize("parameter", REFUSED)
def test_a_parameter_that_cannot_be_honoured_is_refused_in_one_line(parameter: str) -> None:
    """Unknown to libpq, or one asyncpg cannot honour: refused in one line naming it."""
    name = parameter.partition("=")[0]
    with pytest.raises(ConfigurationError) as caught:
        database_target(f"{PLAIN}?{parameter}")
    message = str(caught.value)
    assert f"parameter {name} of the database URL" in message
    assert "\n" not in message
    assert "Haslo-2026" not in message


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("sslmode=strict", "sslmode of the database URL must be one of disable, allow, prefer"),
        ("ssl=yes", "parameter ssl of the database URL must be one of true, disable"),
        ("target_session_attrs=master", "must be one of any, read-write, read-only, primary"),
        ("connect_timeout=5s", "connect_timeout of the database URL must be whole seconds"),
        ("ssl_min_protocol_version=TLSv1.4", "must be one of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3"),
        ("sslnegotiation=direct", "sslnegotiation=direct of the database URL needs sslmode="),
        ("prepared_statement_cache_size=-1", "must be 0 or more"),
        ("sslrootcert=system", "sslrootcert=system (the system's CA store) of the database URL"),
        ("port=x", "port of the database URL must be a port number"),
        ("sslmode=require&sslmode=disable", "parameter sslmode is given twice"),
        ("ssl=true&sslmode=disable", "gives both ssl and sslmode"),
        ("dbname=other", "gives dbname twice, before the ? and as parameter dbname"),
        ("user=other", "gives user twice"),
        ("port=5433", "gives port twice"),
    ],
)
def test_a_wrong_value_is_refused_naming_it(query: str, expected: str) -> None:
    """A value libpq would reject, or one given twice (libpq and asyncpg would pick different
    ones), is refused in one line."""
    with pytest.raises(ConfigurationError) as caught:
        database_target(f"{PLAIN}?{query}")
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_unencoded_question_mark_in_a_password_is_not_echoed() -> None:
    """A password with "?" splits the URL early; the error says to encode it and repeats no
    part of the password."""
    with pytest.raises(ConfigurationError) as caught:
        database_target("postgresql://svc:Haslo?2026x=y@db.example.pl/poczta")
    assert "%3F" in str(caught.value)
    assert "2026" not in str(caught.value)


def test_the_repr_shows_no_password() -> None:
    """A target in a log line or a traceback does not carry the password."""
    target = database_target(f"{PLAIN}?sslpassword=Klucz-2026&connect_timeout=3")
    assert "Haslo-2026" not in repr(target)
    assert "Klucz-2026" not in repr(target)


def test_every_supported_parameter_is_documented() -> None:
    """docs/operations.md's section on the URL gives each scheme, sslmode and parameter."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text("utf-8")
    section = docs.split("## The database URL", 1)[1].split("\n## ", 1)[0]
    for name in (*SCHEMES, *SSLMODES, *SUPPORTED_PARAMETERS):
        assert f"`{name}" in section, name


# --- the settings ------------------------------------------------------------------------


def test_settings_refuse_an_unusable_parameter_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """DATABASE_URL is checked when the settings load, before anything connects."""
    monkeypatch.setenv("DATABASE_URL", f"{PLAIN}?gssencmode=disable")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "parameter gssencmode of the database URL is not supported" in str(caught.value)
    assert "Haslo-2026" not in str(caught.value)


def test_the_url_file_is_read_and_stripped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """DATABASE_URL_FILE gives the URL (a secret file's newline dropped); config show masks
    it as it masks DATABASE_URL."""
    secret = tmp_path / "database_url"
    secret.write_text(f"  {PLAIN}?sslmode=require\n", encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))
    settings = load_settings()
    assert settings.database_url is not None
    assert f"{PLAIN}?sslmode=require" == settings.database_url.get_secret_value()
    shown = settings.effective()
    assert "postgresql://svc:***@db.example.pl:5432/poczta?sslmode=require" == shown["database_url"]
    assert str(secret) == shown["database_url_file"]
    assert "Haslo-2026" not in repr(shown)


def test_the_url_file_means_no_development_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A database named by file is not the embedded one: no development key by default."""
    secret = tmp_path / "database_url"
    secret.write_text(PLAIN, encoding="utf-8")
    monkeypatch.setenv("MAILWORKER_DATABASE_URL_FILE", str(secret))
    assert False is load_settings().development_key_allowed


@pytest.mark.parametrize(
    ("content", "with_url", "expected"),
    [
        (None, False, "cannot read DATABASE_URL_FILE {file}: No such file or directory"),
        ("\n", False, "DATABASE_URL_FILE {file} is empty"),
        (PLAIN, True, "set DATABASE_URL or DATABASE_URL_FILE, not both"),
        (f"{PLAIN}?keepalives=1", False, "parameter keepalives of the database URL"),
    ],
    ids=["missing", "empty", "both", "bad-parameter"],
)
def test_a_url_file_problem_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    content: str | None,
    with_url: bool,
    expected: str,
) -> None:
    """A missing or empty file, a file beside DATABASE_URL, or a URL in it that cannot be
    honoured: each is one line naming it, without the password."""
    secret = tmp_path / "database_url"
    if content is not None:
        secret.write_text(content, encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))
    if with_url:
        monkeypatch.setenv("DATABASE_URL", PLAIN)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    lines = str(caught.value).splitlines()
    assert 2 == len(lines), lines  # "invalid settings:" and the one mistake
    assert expected.format(file=secret) in lines[1]
    assert lines[1].startswith(
        ("  - database_url (DATABASE_URL): ", "  - database_url_file (DATABASE_URL_FILE): ")
    )
    assert "Haslo-2026" not in str(caught.value)


def test_settings_built_in_code_take_the_url_file_too(tmp_path: Path) -> None:
    """The settings file's database_url_file key works as the variable does."""
    secret = tmp_path / "database_url"
    secret.write_text(PLAIN, encoding="utf-8")
    settings = Settings(database_url_file=secret)
    assert settings.database_url is not None
    assert PLAIN == settings.database_url.get_secret_value()
