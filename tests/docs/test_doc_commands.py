"""Every shell block of README.md and docs/ runs in a test, so the documentation cannot drift.

A ```sh block is preceded by a comment that says how it runs:

- ``<!-- doc-test: run -->``: here, as written, in a scratch folder: ``mailworker`` (and
  ``.venv/bin/mailworker``) on hand, a migrated database of the test's own with the profiles
  ``biuro`` (the default) and ``sklep``, a secret key, a copy of ``config/``. ``stdin=TEXT``
  is typed at each password prompt, on a terminal the block gets (a hidden prompt reads
  only from one),
  ``files=a.pdf,b.pdf`` are made first (small PDFs). Every command must succeed
  (``bash -e``).
- ``<!-- doc-test: run=fresh-clone -->``: in a fresh copy of the repository, pasted as a
  newcomer would (the README's "Try it" block).
- ``<!-- doc-test: covered-by=PATH::TEST -->``: run by that test (containers, backups, the
  chaos run); this file checks that the test exists.

A command's synopsis (``mailworker messages list [--status S] ...``) is a ```text block, not a
shell one.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import os
import pty
import re
import select
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.run import parse_options
from tests.kit.outbox_samples import add_profiles_at, minimal_pdf
from tests.kit.processes import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(
    r"(?:^<!-- doc-test: (?P<marker>[^>]*?) -->\n)?^```(?P<lang>sh|bash|shell|console)\n"
    r"(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)


@dataclasses.dataclass(frozen=True)
class ShellBlock:
    path: Path
    line: int
    code: str
    options: dict[str, str]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def shell_blocks() -> list[ShellBlock]:
    blocks = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            marker = match["marker"] or ""
            options = dict(
                item.split("=", 1) if "=" in item else (item, "") for item in shlex.split(marker)
            )
            line = text.count("\n", 0, match.start("code"))
            blocks.append(ShellBlock(path, line, match["code"], options))
    return blocks


def _blocks(kind: str) -> list[ShellBlock]:
    return [block for block in shell_blocks() if kind in block.options]


def test_every_shell_block_says_how_it_runs() -> None:
    """A ```sh block without a doc-test comment would be documentation nothing checks."""
    unmarked = [
        block.where for block in shell_blocks() if not {"run", "covered-by"} & set(block.options)
    ]
    assert [] == unmarked


@pytest.mark.parametrize("block", _blocks("covered-by"), ids=lambda block: block.where)
def test_a_covering_test_exists(block: ShellBlock) -> None:
    """``covered-by`` names a test function that exists in that file."""
    path, _, name = block.options["covered-by"].partition("::")
    tree = ast.parse((REPO_ROOT / path).read_text(encoding="utf-8"))
    functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert name in functions, f"{block.where}: {path} has no {name}"


@pytest.fixture
def scratch(database_url: str, secret_key: str, tmp_path: Path) -> dict[str, str]:
    """A folder to run documented commands in, and their environment."""
    asyncio.run(add_profiles_at(database_url))
    (tmp_path / ".venv").symlink_to(REPO_ROOT / ".venv")
    shutil.copytree(REPO_ROOT / "config", tmp_path / "config")
    env = {
        **os.environ,
        "PATH": f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "DATABASE_URL": database_url,
        "MAILWORKER_SECRET_KEY": secret_key,
        "MAILWORKER_DATA_DIR": str(tmp_path / "data"),
        "HOME": str(tmp_path),
    }
    env.pop("MAILWORKER_LOG_FORMAT", None)
    return env


@pytest.mark.parametrize(
    "block", [b for b in _blocks("run") if not b.options["run"]], ids=lambda block: block.where
)
def test_a_documented_block_runs_as_written(
    block: ShellBlock, scratch: dict[str, str], tmp_path: Path
) -> None:
    """The block's commands, run by bash as written, all succeed."""
    for name in filter(None, block.options.get("files", "").split(",")):
        (tmp_path / name).write_bytes(minimal_pdf())
    command = ["bash", "-euo", "pipefail", "-c", block.code]
    if "stdin" in block.options:
        code, output = _on_a_terminal(command, tmp_path, scratch, block.options["stdin"])
        assert 0 == code, f"{block.where}\n{output}"
        return
    done = subprocess.run(
        command, cwd=tmp_path, env=scratch, capture_output=True, text=True, timeout=120, check=False
    )
    assert 0 == done.returncode, f"{block.where}\n{done.stdout}\n{done.stderr}"


def _on_a_terminal(
    command: list[str], cwd: Path, env: dict[str, str], answer: str
) -> tuple[int, str]:
    """Run ``command`` on a terminal of its own, typing ``answer`` at each prompt.

    A hidden prompt reads only from a terminal, and drops what was typed before it appeared,
    so the answer goes in after the prompt shows, as a person types it. A prompt is output
    that stops at ": " and waits.
    """
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,  # no controlling terminal of ours to prompt on instead
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the terminal closed: the command ended
                    break
                output += chunk
                if output.endswith(b": "):  # a prompt, and its confirmation
                    os.write(leader, answer.encode() + b"\n")
                    output += b"\n"
            elif process.poll() is not None:
                break
    finally:
        os.close(leader)
    return process.wait(timeout=30), output.decode(errors="replace")


@contextlib.contextmanager
def _fresh_clone(tmp_path: Path) -> Iterator[Path]:
    """The repository's files as a clone has them (no .venv, no .data), removed after."""
    clone = tmp_path / "clone"
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            target = clone / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    try:
        yield clone
    finally:
        _stop_embedded_postgres(clone / ".data" / "postgres")


def _stop_embedded_postgres(pgdata: Path) -> None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGTERM)


@pytest.mark.timeout(600)
def test_the_readme_try_it_block_works_when_pasted(tmp_path: Path) -> None:
    """A fresh clone, the README's "Try it" block pasted whole: set-up, the worker in the
    background, the test message DELIVERED, the .eml file there, the worker stopped."""
    [block] = [b for b in _blocks("run") if b.options["run"] == "fresh-clone"]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MAILWORKER_") and key != "DATABASE_URL"
    }
    with _fresh_clone(tmp_path) as clone:
        # -m: job control as in a terminal, so `kill %1` stops the worker with its make.
        process = subprocess.Popen(
            ["bash", "-m", "-e", "-c", block.code],
            cwd=clone,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=540)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        eml = sorted((clone / ".data" / "devmail").glob("*.eml"))
    assert 0 == process.returncode, output
    assert "DELIVERED: 127.0.0.1:2525 accepted test message" in output
    assert 1 == len(eml), output
    assert eml[0].name in output  # `ls .data/devmail/` showed it


def test_the_jq_lines_read_the_sample_log(tmp_path: Path) -> None:
    """docs/operations.md's jq lines, run on the page's own sample log, find what they say."""
    text = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    sample = re.search(r"^```\n(\{\"worker\": \"mail-1\".*?)^```$", text, re.M | re.S)
    assert sample is not None
    (tmp_path / "worker.log").write_text(sample[1], encoding="utf-8")
    [block] = [b for b in shell_blocks() if "jq " in b.code]
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    outputs = [
        subprocess.run(
            ["bash", "-c", line.split("  #")[0]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in block.code.splitlines()
        if line.strip()
    ]
    warnings, one_message, failed = outputs
    assert 2 == len(warnings.splitlines())  # profile_paused and mail_failed
    assert {2} == {int(x) for x in re.findall(r'"outbox_id":\s*(\d+)', one_message)}
    assert failed.startswith("4\tfailed: every recipient was refused")


def test_the_documented_chaos_commands_take_their_options() -> None:
    """docs/reliability.md's chaos runs (minutes long; the CI size runs in test_chaos_smoke)
    give options the run takes, with the values it accepts."""
    lines = [
        line
        for block in shell_blocks()
        for line in block.code.replace("\\\n", " ").splitlines()
        if "chaos.run" in line
    ]
    assert lines
    for line in lines:
        words = shlex.split(line.split("#")[0])
        parse_options(words[words.index("chaos.run") + 1 :])
    dry = subprocess.run(
        ["make", "-n", "chaos"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert "python -m chaos.run" in dry.stdout, dry.stderr
