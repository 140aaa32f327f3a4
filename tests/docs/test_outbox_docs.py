"""``docs/outbox.md`` is true: its SQL runs as documented and its tables match the schema.

Each ```sql block runs, in page order, against a migrated database with the profiles
``biuro`` (default) and ``sklep``, as the role ``shop_app`` the page's permissions block
grants to. The ``<!-- doc-test: ... -->`` comment before a block says what to expect:

- ``as=admin``: run as the database owner instead of ``shop_app``;
- ``messages=+N`` / ``attachments=+N``: rows the block adds (default: none);
- ``rows=N``: the block is one statement that returns N rows;
- ``again=+N``: running it a second time adds N messages and N attachments.

The Python blocks must compile and call the real API with keywords it takes; the shell
commands must queue a message.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import importlib
import inspect
import re
import shlex
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner
from sqlalchemy import Table
from sqlalchemy.engine import make_url

from tests.kit.outbox_samples import add_profiles_at, minimal_pdf
from worker import outbox as outbox_api
from worker.cli import main
from worker.models import MESSAGE_STATUSES, attachment, outbox

DOC = Path(__file__).resolve().parents[2] / "docs" / "outbox.md"
SERVICE_ROLE = "shop_app"
_BLOCK = re.compile(
    r"(?:^<!-- doc-test:(?P<check>[^>]*)-->\n)?^```(?P<lang>\w*)\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
# The calls the Python examples may make, and what they must match.
_API: dict[str, Callable[..., Any]] = {
    "enqueue": outbox_api.enqueue,
    "enqueue_and_commit": outbox_api.enqueue_and_commit,
    "Attachment": outbox_api.Attachment,
    "from_path": outbox_api.Attachment.from_path,
}


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced code block of the page."""

    lang: str
    code: str
    line: int
    check: dict[str, str]

    @property
    def where(self) -> str:
        return f"docs/outbox.md, the {self.lang} block at line {self.line}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Expected:
    """What a SQL block's doc-test comment promises."""

    as_admin: bool = False
    messages: int = 0
    attachments: int = 0
    rows: int | None = None
    again: int | None = None

    @classmethod
    def of(cls, block: Block) -> Expected:
        known = {"as", "messages", "attachments", "rows", "again"}
        assert block.check, f"{block.where} has no <!-- doc-test: ... --> comment"
        assert set(block.check) <= known, f"{block.where}: unknown doc-test keys"
        numbers = {key: int(value) for key, value in block.check.items() if key != "as"}
        return cls(as_admin=block.check.get("as") == "admin", **numbers)


def doc_blocks(lang: str) -> list[Block]:
    text = DOC.read_text(encoding="utf-8")
    blocks = []
    for match in _BLOCK.finditer(text):
        check = dict(pair.split("=", 1) for pair in (match["check"] or "").split())
        line = text.count("\n", 0, match.start("code"))
        blocks.append(Block(match["lang"], match["code"], line, check))
    return [block for block in blocks if block.lang == lang]


def section(heading: str) -> list[str]:
    """The page's lines under ``heading``, up to the next heading."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(heading) + 1
    end = next((n for n in range(start, len(lines)) if lines[n].startswith("#")), len(lines))
    return lines[start:end]


def first_cells(heading: str) -> list[str]:
    """The backticked first cell of every table row under ``heading``."""
    cells = [line.split("|")[1].strip() for line in section(heading) if line.startswith("| `")]
    return [cell.strip("`") for cell in cells]


def bullets(heading: str) -> list[str]:
    """The items of the bullet list under ``heading``, each on one line."""
    items: list[str] = []
    for line in section(heading):
        if line.startswith("- "):
            items.append(line[2:])
        elif items and line.startswith("  "):
            items[-1] += " " + line.strip()
    return items


# --- SQL ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def service_role(connection: asyncpg.Connection) -> AsyncIterator[None]:
    """The role the page's GRANTs name, existing for the test, its grants removed after."""
    try:
        with contextlib.suppress(asyncpg.DuplicateObjectError):
            await connection.execute(f"CREATE ROLE {SERVICE_ROLE} NOLOGIN")
    except asyncpg.InsufficientPrivilegeError:
        pytest.skip("the test database user may not create roles")
    try:
        yield
    finally:
        await connection.execute("RESET ROLE")
        await connection.execute(f"DROP OWNED BY {SERVICE_ROLE}")
        # Another test run on the same server may still use the role; it is harmless then.
        with contextlib.suppress(asyncpg.DependentObjectsStillExistError):
            await connection.execute(f"DROP ROLE IF EXISTS {SERVICE_ROLE}")


async def counts(connection: asyncpg.Connection) -> tuple[int, int]:
    row = await connection.fetchrow(
        "SELECT (SELECT count(*) FROM mail.outbox), (SELECT count(*) FROM mail.attachment)"
    )
    assert row is not None
    return int(row[0]), int(row[1])


async def run_block(connection: asyncpg.Connection, block: Block, expected: Expected) -> None:
    role = "RESET ROLE" if expected.as_admin else f"SET ROLE {SERVICE_ROLE}"
    await connection.execute(role)
    before = await counts(connection)
    # fetch() takes one statement and returns its rows; execute() runs a whole script.
    if expected.rows is None:
        await connection.execute(block.code)
        rows = None
    else:
        rows = len(await connection.fetch(block.code))
    after = await counts(connection)
    added = (after[0] - before[0], after[1] - before[1], rows)
    assert (expected.messages, expected.attachments, expected.rows) == added, block.where
    if expected.again is not None:
        await connection.execute(block.code)
        again = await counts(connection)
        assert (expected.again, expected.again) == (again[0] - after[0], again[1] - after[1])


async def test_every_sql_example_runs_as_documented(database_url: str) -> None:
    """Each SQL example works as written for a service role and adds exactly what it says."""
    await add_profiles_at(database_url)
    url = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    connection = await asyncpg.connect(url)
    try:
        async with service_role(connection):
            for block in doc_blocks("sql"):
                await run_block(connection, block, Expected.of(block))
            await connection.execute("RESET ROLE")
            polish = await connection.fetchrow(
                "SELECT o.profile, o.status, a.filename, a.content_type, a.content"
                " FROM mail.outbox o JOIN mail.attachment a ON a.outbox_id = o.id"
                " WHERE o.subject = 'Wiadomość testowa 1'"
            )
            unrouted = await connection.fetchval(
                "SELECT count(*) FROM mail.outbox"
                " WHERE profile IS NULL OR profile NOT IN (SELECT name FROM mail.profile)"
            )
            cancelled = await connection.fetchval(
                "SELECT status FROM mail.outbox WHERE idempotency_key = 'shop:order-1042:documents'"
            )
    finally:
        await connection.close()
    polish_message = ("biuro", "pending", "dokument.pdf", "application/pdf", minimal_pdf())
    expected = (polish_message, 0, "cancelled")
    assert expected == (tuple(polish or ()), unrouted, cancelled)


# --- Python --------------------------------------------------------------------------------


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _call_problems(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or _callee(node) not in _API:
            continue
        parameters = inspect.signature(_API[str(_callee(node))]).parameters
        for keyword in node.keywords:
            if keyword.arg is not None and keyword.arg not in parameters:
                yield f"{_callee(node)}() has no keyword {keyword.arg!r}"


def _import_problems(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    yield f"{node.module} has no {alias.name}"


def test_python_examples_use_the_real_api() -> None:
    """Python examples compile, import names that exist and pass keywords the API takes."""
    problems = []
    for block in doc_blocks("python"):
        tree = ast.parse(block.code)
        problems += [f"{block.where}: {p}" for p in _import_problems(tree)]
        problems += [f"{block.where}: {p}" for p in _call_problems(tree)]
    expected: list[str] = []
    assert expected == problems


def test_the_documented_signature_is_enqueues() -> None:
    """The signature shown for enqueue lists its real parameters, in order, with defaults."""
    (documented,) = (
        node
        for block in doc_blocks("python")
        for node in ast.walk(ast.parse(block.code))
        if isinstance(node, ast.AsyncFunctionDef) and node.name == "enqueue"
    )
    arguments = documented.args
    shown = [(a.arg, False) for a in arguments.args]
    shown += [
        (a.arg, default is not None)
        for a, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
    ]
    real = [
        (name, parameter.default is not inspect.Parameter.empty)
        for name, parameter in inspect.signature(outbox_api.enqueue).parameters.items()
    ]
    assert real == shown


# --- shell ---------------------------------------------------------------------------------


def shell_commands() -> list[list[str]]:
    """Each ``mailworker`` command of the shell blocks, continuation lines joined."""
    commands = []
    for block in doc_blocks("sh"):
        joined = block.code.replace("\\\n", " ")
        commands += [shlex.split(line) for line in joined.splitlines()]
    return [command for command in commands if command[:1] == ["mailworker"]]


def test_shell_examples_queue_their_messages(
    cli_env: dict[str, str], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each mailworker command on the page, run as written beside dokument.pdf, queues mail."""
    asyncio.run(add_profiles_at(database_url))
    (tmp_path / "dokument.pdf").write_bytes(minimal_pdf())
    monkeypatch.chdir(tmp_path)
    commands = shell_commands()
    results = [CliRunner(env=cli_env).invoke(main, command[1:]) for command in commands]
    outcomes = [(result.exit_code, result.stdout.strip().isdigit()) for result in results]
    expected = [(0, True)] * len(commands)
    assert (True, expected) == (len(commands) >= 2, outcomes), [r.output for r in results]


# --- tables ----------------------------------------------------------------------------------


@pytest.mark.parametrize("table", [outbox, attachment], ids=lambda table: table.name)
def test_the_column_tables_list_every_column(table: Table) -> None:
    """The page's table of mail.<table> lists exactly the schema's columns, in order."""
    assert list(table.c.keys()) == first_cells(f"### `mail.{table.name}`")


def test_the_statuses_table_lists_every_status() -> None:
    """The page explains exactly the statuses the schema allows."""
    assert list(MESSAGE_STATUSES) == first_cells("## Statuses")


def test_the_documented_service_headers_are_the_refused_ones() -> None:
    """The page names exactly the headers enqueue refuses (and every Content-* header)."""
    (rule,) = (item for item in bullets("### Extra headers") if "The service writes" in item)
    named = {name.lower() for name in re.findall(r"`([^`]+)`", rule)}
    assert {*outbox_api.SERVICE_HEADERS, "content-*"} == named
