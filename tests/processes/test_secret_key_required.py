"""Against a database server, or in the container image, no secret key means no start.

Every command that needs the key runs as an operator runs it (a subprocess against this
test's database) with ``DATABASE_URL`` set and no key: each exits non-zero with one line that
says what to set, without a traceback, and no key file appears. The image's and the compose
file's own environment decide the same way.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.kit.database import run_sql
from tests.kit.rows import insert_profile
from tests.packaging.test_containers import environment, image_environment, services
from worker.crypto import DEVELOPMENT_KEY_FILE, configured_keys
from worker.errors import SecretKeyError
from worker.settings import load_settings

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
NO_KEY = (
    "Error: no secret key is configured: set MAILWORKER_SECRET_KEY or MAILWORKER_SECRET_KEY_FILE"
)
KEY_SETTINGS = ("MAILWORKER_SECRET_KEY", "MAILWORKER_SECRET_KEY_FILE")
PASSWORD = "Konwalia369!"


@pytest.fixture
def keyless_env(cli_env: dict[str, str]) -> dict[str, str]:
    """This test's database and data folder, and neither a key nor a development allowance."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MAILWORKER_")}
    given = {k: v for k, v in cli_env.items() if k not in KEY_SETTINGS}
    return {**inherited, **given, "WP_PASSWORD": PASSWORD}


def _mailworker(
    env: Mapping[str, str], *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=dict(env),
        cwd=ROOT,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def profile_with_password(database_url: str) -> str:
    """A profile whose stored password a key of some other installation encrypted."""
    token = Fernet(Fernet.generate_key()).encrypt(PASSWORD.encode())
    insert_profile(
        database_url,
        "biuro",
        host="127.0.0.1",
        port=_closed_port(),
        encryption="ssl",
        auth_method="login",
        login="biuro",
        timeout_seconds=2,
        password_encrypted=token,
    )
    return "biuro"


ADD_WITH_PASSWORD = (
    *("profiles", "add", "wp", "--preset", "wp", "--from", "jankowalski@wp.pl"),
    *("--password-env", "WP_PASSWORD"),
)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("run", "--until-empty"), id="run"),
        pytest.param(ADD_WITH_PASSWORD, id="profiles-add"),
        pytest.param(("profiles", "check", "biuro"), id="profiles-check"),
        pytest.param(("secrets", "rotate"), id="secrets-rotate"),
    ],
)
@pytest.mark.usefixtures("profile_with_password")
def test_each_command_that_needs_the_key_refuses_in_one_line(
    keyless_env: dict[str, str], database_url: str, args: tuple[str, ...]
) -> None:
    """With DATABASE_URL set and no key, the command exits non-zero with exactly one line on
    standard error that says what to set; no traceback, no key file, no profile added."""
    result = _mailworker(keyless_env, *args)

    assert 0 != result.returncode, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(NO_KEY), line
    assert "MAILWORKER_ALLOW_DEVELOPMENT_KEY=true" in line
    assert not (Path(keyless_env["MAILWORKER_DATA_DIR"]) / DEVELOPMENT_KEY_FILE).exists()
    assert ["biuro"] == [row.name for row in run_sql(database_url, "SELECT name FROM mail.profile")]


def test_profiles_apply_with_a_password_refuses_in_one_line(
    keyless_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    """A profiles file that gives a password needs the key too: one line, nothing applied."""
    profiles_file = tmp_path / "profiles.toml"
    profiles_file.write_text(
        '[profiles.wp]\npreset = "wp"\nfrom_address = "jankowalski@wp.pl"\n'
        'password_env = "WP_PASSWORD"\n',
        encoding="utf-8",
    )
    result = _mailworker(keyless_env, "profiles", "apply", str(profiles_file))

    assert 0 != result.returncode, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(NO_KEY), line
    assert [] == run_sql(database_url, "SELECT name FROM mail.profile")


def test_an_explicit_allowance_still_makes_a_development_key(
    keyless_env: dict[str, str], database_url: str
) -> None:
    """MAILWORKER_ALLOW_DEVELOPMENT_KEY=true beside a database server: the password is stored
    under a development key made in the data folder, with the usual warning."""
    env = {**keyless_env, "MAILWORKER_ALLOW_DEVELOPMENT_KEY": "true"}
    result = _mailworker(env, *ADD_WITH_PASSWORD)

    assert 0 == result.returncode, result.stderr
    events = [json.loads(line)["event"] for line in result.stderr.splitlines() if line[:1] == "{"]
    assert "development_secret_key" in events
    key = (Path(env["MAILWORKER_DATA_DIR"]) / DEVELOPMENT_KEY_FILE).read_bytes().strip()
    [(token,)] = run_sql(database_url, "SELECT password_encrypted FROM mail.profile")
    assert PASSWORD.encode() == Fernet(key).decrypt(bytes(token))


def _only_environment(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's settings come from ``env`` alone, not from this shell's."""
    for name in list(os.environ):
        if name.startswith("MAILWORKER_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_the_image_never_makes_a_key_by_itself(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The Dockerfile's environment, even without DATABASE_URL (the embedded database), makes
    a missing key an error, not a development key."""
    _only_environment({**image_environment(), "MAILWORKER_DATA_DIR": str(tmp_path)}, monkeypatch)
    settings = load_settings()
    with pytest.raises(SecretKeyError, match="since MAILWORKER_ALLOW_DEVELOPMENT_KEY=false"):
        configured_keys(settings)
    assert [] == list(tmp_path.iterdir())


def test_the_compose_demo_still_runs_without_a_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The compose file's environment over the image's (as compose applies them) allows the
    demo's development key on the shared data volume, though DATABASE_URL is set."""
    env = {**image_environment(), **environment(services()["worker"])}
    assert "DATABASE_URL" in env
    _only_environment({**env, "MAILWORKER_DATA_DIR": str(tmp_path)}, monkeypatch)
    assert 1 == len(configured_keys(load_settings()))
    assert [tmp_path / DEVELOPMENT_KEY_FILE] == list(tmp_path.iterdir())
