"""A pytest plugin: the session fails if a test password, key or OAuth secret appears in output.

**Which secrets.** They are collected as the tests use them, not listed by hand, so a new test
is covered without its author remembering to register anything:

- every key the service reads from its settings in this process (``parse_keys``) and every key
  a :class:`worker.crypto.PasswordCipher` is built from: the ``secret_key`` fixture's keys,
  keys a test makes for a rotation, the worker's own cipher;
- every password this process encrypts with a ``PasswordCipher``: each profile password stored
  through the service's code in-process (the CLI under ``CliRunner``, ``add_profile``, the
  Python API);
- every account password of an ``SmtpTestServer``: what a test expects the service to send,
  including passwords it hands to a CLI or worker *subprocess*, which this process never sees
  being encrypted;
- every OAuth secret of an ``OAuthTestServer`` (``tests/kit/oauth_server.py``), which passes
  them all through its ``note_secret`` method: the access and refresh tokens and the
  authorisation codes it issues, including those a worker *subprocess* gets from it (the
  server runs in this process), the client secrets registered with it, and each service
  account's private key, by a line from the middle of its PEM body, which every copy of the
  key holds (the PEM, the JSON key file with its escaped newlines, a log of either).

Watching these four doors rather than a registry of constants means a password typed only
into a subprocess still counts once the test's server knows it, and a password nobody
serves (a wrong one) counts once it is stored. The wrappers only observe: what they wrap
behaves as before. Secrets shorter than :data:`MIN_SECRET_LENGTH` are ignored (they would
match ordinary text). Passwords and OAuth secrets are also looked for in base64, at any of the
three alignments they can have inside a longer base64 text: ``AUTH LOGIN`` carries a password
alone, ``AUTH PLAIN`` after the login, XOAUTH2 a token after ``user=...`` and ``auth=Bearer``.

The doors are the service's own code, not ``cryptography``'s ``Fernet``: from cryptography 51
on, ``Fernet`` and ``MultiFernet`` are compiled types whose methods call each other without
Python's attribute lookup, so a wrapper there sees nothing, or breaks the constructor. A key or
token a test makes with ``Fernet`` itself, to plant a row no configured key opens, is not
collected: the service is never given it.

**Where it looks.** The captured stdout, stderr and log of every phase of every test (passed
ones too) and the text of each failure; what ``CliRunner.invoke``, ``subprocess.run`` and
``Popen.communicate`` return; every ``*.log`` file under the test's ``tmp_path`` (worker
processes write their logs there). Everything is kept and scanned once at the end of the
session, so a secret first seen in a later test is still found in an earlier one's output.

A hit fails the session (exit status 1) and the summary lists where, and which secret,
masked. Under pytest-xdist each worker process scans what it saw and hands its secrets and hits
to the controller, which scans every test's report against all of them and reports once.
Registered in ``tests/conftest.py``'s ``pytest_plugins``.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.kit.oauth_server import OAuthTestServer
from tests.kit.smtp_server import SmtpTestServer
from worker import crypto
from worker.crypto import PasswordCipher

__all__ = ["MIN_SECRET_LENGTH", "Leak", "Secrets", "base64_forms", "find_leaks", "mask"]

MIN_SECRET_LENGTH = 8
# A Fernet key is 32 bytes in URL-safe base64: 43 characters and one '='.
_KEY_SHAPED = re.compile(r"[A-Za-z0-9_-]{43}=")
_MAX_LOG_BYTES = 20_000_000  # a log larger than this is read up to here
_WORKER_OUTPUT = "secret_scan"  # the key of a pytest-xdist worker's findings


@dataclasses.dataclass(frozen=True)
class Leak:
    """A secret found in some output."""

    where: str
    secret: str  # masked

    def __str__(self) -> str:
        return f"{self.where}: {self.secret}"


@dataclasses.dataclass
class Secrets:
    """The passwords, keys and OAuth secrets seen so far."""

    passwords: set[str] = dataclasses.field(default_factory=set)
    keys: set[str] = dataclasses.field(default_factory=set)
    oauth: set[str] = dataclasses.field(default_factory=set)

    def add_password(self, password: str | bytes) -> None:
        text = password.decode("utf-8", "replace") if isinstance(password, bytes) else password
        if len(text) >= MIN_SECRET_LENGTH:
            self.passwords.add(text)

    def add_key(self, key: str | bytes) -> None:
        self.keys.add(key.decode("ascii", "replace") if isinstance(key, bytes) else key)

    def add_oauth_secret(self, secret: str) -> None:
        if len(secret) >= MIN_SECRET_LENGTH:
            self.oauth.add(secret)

    def counts(self) -> str:
        return (
            f"{len(self.passwords)} passwords, {len(self.keys)} keys,"
            f" {len(self.oauth)} OAuth secrets"
        )


def mask(secret: str) -> str:
    """Enough to tell secrets apart in a report, too little to use: ``s3…(11 chars)``."""
    return f"{secret[:2]}…({len(secret)} chars)"


def base64_forms(secret: str) -> tuple[str, ...]:
    """What every base64 text that carries ``secret`` contains, whatever came before it.

    Inside a longer encoded text (``\\0login\\0password``, ``user=...\\x01auth=Bearer
    TOKEN``) the secret starts at one of three offsets in a 3-byte group; for each, the
    characters that encode the secret's bytes alone, without those of its neighbours.
    """
    data = secret.encode()
    forms = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode("ascii")
        first = -(-offset * 4 // 3)  # the characters holding bits of the prefix
        last = (offset + len(data)) // 3 * 4  # the complete groups; the rest needs what follows
        forms.append(encoded[first:last])
    return tuple(forms)


def find_leaks(outputs: Iterable[tuple[str, str]], secrets: Secrets) -> list[Leak]:
    """Every (where, masked secret) of a password, key or OAuth secret in ``outputs``."""
    patterns = {
        (kind, secret): (secret, *base64_forms(secret))
        for kind, found in (("password", secrets.passwords), ("OAuth secret", secrets.oauth))
        for secret in found
    }
    leaks: dict[Leak, None] = {}  # ordered and without repeats
    for where, text in outputs:
        for token in _KEY_SHAPED.findall(text):
            if token in secrets.keys:
                leaks[Leak(where, "key " + mask(token))] = None
        for (kind, secret), forms in patterns.items():
            if any(form in text for form in forms):
                leaks[Leak(where, f"{kind} {mask(secret)}")] = None
    return list(leaks)


class _Scanner:
    """The plugin: collects secrets and outputs during the session, reports at its end."""

    def __init__(self) -> None:
        self.secrets = Secrets()
        self.outputs: list[tuple[str, str]] = []
        self.leaks: list[Leak] = []
        self.current = "(outside a test)"
        self._undo: list[Callable[[], None]] = []

    # --- observing

    def install(self) -> None:
        self._watch_secrets()
        self._watch_outputs()

    def _watch_secrets(self) -> None:
        scanner = self

        def keys_read(original: Any, text: str, *a: Any, **k: Any) -> Any:
            for key in _KEY_SHAPED.findall(text):  # before parsing: a later bad key raises
                scanner.secrets.add_key(key)
            return original(text, *a, **k)

        def cipher_init(original: Any, cipher: PasswordCipher, keys: Sequence[bytes]) -> Any:
            for key in keys:
                scanner.secrets.add_key(key)
            return original(cipher, keys)

        def cipher_encrypt(original: Any, cipher: PasswordCipher, password: str) -> Any:
            scanner.secrets.add_password(password)
            return original(cipher, password)

        def server_init(original: Any, server: SmtpTestServer, *a: Any, **k: Any) -> Any:
            for password in (k.get("accounts") or {}).values():
                scanner.secrets.add_password(password)
            return original(server, *a, **k)

        self._wrap(crypto, "parse_keys", keys_read)  # configured_keys calls it by module name
        self._wrap(PasswordCipher, "__init__", cipher_init)
        self._wrap(PasswordCipher, "encrypt", cipher_encrypt)

        def oauth_secret(original: Any, server: OAuthTestServer, value: str) -> Any:
            scanner.secrets.add_oauth_secret(value)
            return original(server, value)

        self._wrap(SmtpTestServer, "__init__", server_init)
        self._wrap(OAuthTestServer, "note_secret", oauth_secret)

    def _watch_outputs(self) -> None:
        scanner = self

        def invoke(original: Any, *a: Any, **k: Any) -> Any:
            result = original(*a, **k)
            scanner.record("CliRunner output", result.output)
            scanner.record("CliRunner stderr", _stderr(result))
            scanner.record("CliRunner exception", repr(result.exception))
            return result

        def run(original: Any, *a: Any, **k: Any) -> Any:
            completed = original(*a, **k)
            scanner.record("subprocess.run output", completed.stdout, completed.stderr)
            return completed

        def communicate(original: Any, *a: Any, **k: Any) -> Any:
            out, err = original(*a, **k)
            scanner.record("Popen.communicate output", out, err)
            return out, err

        self._wrap(CliRunner, "invoke", invoke)
        self._wrap(subprocess, "run", run)
        self._wrap(subprocess.Popen, "communicate", communicate)

    def _wrap(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def observed(*args: Any, **kwargs: Any) -> Any:
            return wrapper(original, *args, **kwargs)

        setattr(owner, name, observed)  # a plain function: on a class it is a method again
        self._undo.append(functools.partial(setattr, owner, name, original))

    def uninstall(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def record(self, what: str, *texts: object) -> None:
        for output in texts:
            text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
            if isinstance(text, str) and text:
                self.outputs.append((f"{self.current}, {what}", text))

    def record_logs(self, directory: Path) -> None:
        for path in sorted(directory.rglob("*.log")):
            with path.open("rb") as file:
                self.record(f"log file {path.name}", file.read(_MAX_LOG_BYTES))

    # --- hooks

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        self.current = item.nodeid
        try:
            return (yield)
        finally:
            self.current = "(outside a test)"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Iterator[None]:
        tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
        try:
            return (yield)
        finally:
            if isinstance(tmp_path, Path) and tmp_path.is_dir():
                self.record_logs(tmp_path)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for title, content in report.sections:
            self.outputs.append((f"{report.nodeid}, {title}", content))
        if report.failed:
            self.outputs.append((f"{report.nodeid}, failure ({report.when})", report.longreprtext))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """Under pytest-xdist: what a worker process found and saw, for the report here."""
        found = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT)
        if found is None:
            return
        self.secrets.passwords.update(found["passwords"])
        self.secrets.keys.update(found["keys"])
        self.secrets.oauth.update(found["oauth"])
        self.leaks.extend(Leak(where, secret) for where, secret in found["leaks"])

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Worker processes' leaks came in pytest_testnodedown; this process also has every
        # test's report, so it scans those against the secrets of all processes.
        leaks = [*self.leaks, *find_leaks(self.outputs, self.secrets)]
        self.leaks = list(dict.fromkeys(leaks))
        worker_output = getattr(session.config, "workeroutput", None)
        if worker_output is not None:  # a pytest-xdist worker: its controller reports
            worker_output[_WORKER_OUTPUT] = {
                "passwords": sorted(self.secrets.passwords),
                "keys": sorted(self.secrets.keys),
                "oauth": sorted(self.secrets.oauth),
                "leaks": [(leak.where, leak.secret) for leak in self.leaks],
            }
            return
        if self.leaks and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        counts = self.secrets.counts()
        if not self.leaks:
            terminalreporter.write_line(f"secret scan: no test secret in any output ({counts})")
            return
        terminalreporter.section("secret scan: test secrets found in output", red=True)
        for leak in self.leaks:
            terminalreporter.write_line(str(leak))
        terminalreporter.write_line(f"{len(self.leaks)} hits; scanned for {counts}")


def _stderr(result: Any) -> str:
    try:
        return str(result.stderr)
    except ValueError:  # click < 8.2 without mix_stderr=False keeps no separate stderr
        return ""


def pytest_configure(config: pytest.Config) -> None:
    scanner = _Scanner()
    scanner.install()
    config.pluginmanager.register(scanner, "secret-scan")
    config.add_cleanup(scanner.uninstall)
