"""The secret-scan plugin fails a whole pytest session in which a test secret was written."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

LEAKY_TESTS = """
import base64

import requests
from cryptography.fernet import Fernet

from tests.kit.oauth_server import OAuthTestServer
from tests.kit.smtp_server import SmtpTestCA
from worker.crypto import PasswordCipher


def test_prints_a_stored_password():
    PasswordCipher([Fernet.generate_key()]).encrypt("Planted-Haslo-42")
    print("logging in with Planted-Haslo-42")


def test_writes_its_key_to_a_log(tmp_path):
    key = Fernet.generate_key()
    PasswordCipher([key])
    (tmp_path / "worker-a-0.log").write_text("secret_key=" + key.decode())


def test_logs_an_xoauth2_command(tmp_path):
    ca = SmtpTestCA(tmp_path)
    with OAuthTestServer(ca=ca) as server:
        server.register_confidential_client("daemon", secret="Daemon-Secret-44")
        answer = requests.post(
            server.microsoft_token_url("contoso.test"),
            data={
                "grant_type": "client_credentials",
                "client_id": "daemon",
                "client_secret": "Daemon-Secret-44",
                "scope": "https://outlook.office365.com/.default",
            },
            verify=ca.cert_bundle,
            timeout=5,
        ).json()
    sasl = "user=orders@contoso.test\\x01auth=Bearer " + answer["access_token"] + "\\x01\\x01"
    print("AUTH XOAUTH2 " + base64.b64encode(sasl.encode()).decode())


def test_clean():
    PasswordCipher([Fernet.generate_key()]).encrypt("Ukryte-Haslo-43")
    print("password set")
"""

CLEAN_TESTS = """
from cryptography.fernet import Fernet

from tests.kit.oauth_server import OAuthTestServer
from tests.kit.smtp_server import SmtpTestCA
from worker.crypto import PasswordCipher


def test_clean(tmp_path):
    PasswordCipher([Fernet.generate_key()]).encrypt("Ukryte-Haslo-43")
    OAuthTestServer(ca=SmtpTestCA(tmp_path)).register_google_client("app", "GOCSPX-Ukryty-45")
    print("password set")
"""


def _run(pytester: pytest.Pytester, source: str, *options: str) -> pytest.RunResult:
    pytester.makepyfile(test_sample=source)
    pytester.chdir()
    return pytester.runpytest_subprocess(
        "-p", "tests.kit.secret_scan", "-p", "no:cacheprovider", *options
    )


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    return pytester


@pytest.mark.parametrize("processes", [[], ["--numprocesses=2"]], ids=["one", "xdist"])
def test_planted_secrets_fail_the_session_and_are_listed(
    inner: pytest.Pytester, processes: list[str]
) -> None:
    """All tests pass, yet the session fails, naming each test and masked secret that leaked
    (an OAuth access token inside a base64 XOAUTH2 command too); also when pytest-xdist runs
    the tests in worker processes, as `make test` does."""
    result = _run(inner, LEAKY_TESTS, *processes)
    result.assert_outcomes(passed=4)
    assert pytest.ExitCode.TESTS_FAILED == result.ret
    output = result.stdout.str()
    assert (
        "test_sample.py::test_prints_a_stored_password, Captured stdout call: password Pl…(16"
        in (output)
    )
    assert "test_sample.py::test_writes_its_key_to_a_log, log file worker-a-0.log: key " in output
    assert (
        "test_sample.py::test_logs_an_xoauth2_command, Captured stdout call: OAuth secret Ew…(67"
        in output
    )
    assert "3 hits" in output
    assert "Planted-Haslo-42" not in output
    assert "test_clean" not in output.split("test secrets found in output")[1]


@pytest.mark.parametrize("processes", [[], ["--numprocesses=2"]], ids=["one", "xdist"])
def test_a_clean_session_passes(inner: pytest.Pytester, processes: list[str]) -> None:
    """Without a leak the session's result is the tests' own, and the summary counts the
    secrets it watched for, those of worker processes too."""
    result = _run(inner, CLEAN_TESTS, *processes)
    assert pytest.ExitCode.OK == result.ret
    assert (
        "secret scan: no test secret in any output (1 passwords, 1 keys, 1 OAuth secrets)"
        in result.stdout.str()
    )
