"""``mailworker enqueue`` lets shell scripts queue mail and tells them what happened."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.kit.outbox_samples import (
    POLISH_BODY,
    POLISH_SUBJECT,
    SHOP_PROFILE,
    add_profiles_at,
    attachments_of,
    minimal_pdf,
    pick,
    stored_message,
)
from worker.cli import main

# For commands that must fail before they connect: a database that cannot be reached.
NO_DATABASE = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}


@pytest.fixture
def profiles(database_url: str) -> None:
    """``biuro`` (the default) and ``sklep``, committed."""
    asyncio.run(add_profiles_at(database_url))


@pytest.fixture
def invoice(tmp_path: Path) -> Path:
    path = tmp_path / "faktura.pdf"
    path.write_bytes(minimal_pdf())
    return path


def run_cli(env: dict[str, str], args: Sequence[str], stdin: str | None = None) -> Result:
    return CliRunner(env=env).invoke(main, ["enqueue", *args], input=stdin)


def read_back(database_url: str, message_id: int) -> tuple[dict[str, Any], list[Any]]:
    """The stored message and its attachments."""

    async def read() -> tuple[dict[str, Any], list[Any]]:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                row = await stored_message(connection, message_id)
                return row, await attachments_of(connection, message_id)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def message_count(database_url: str) -> int:
    async def count() -> int:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                return int(await connection.scalar(text("SELECT count(*) FROM mail.outbox")) or 0)
        finally:
            await engine.dispose()

    return asyncio.run(count())


@pytest.mark.usefixtures("profiles")
def test_polish_message_with_a_pdf(
    cli_env: dict[str, str], database_url: str, invoice: Path
) -> None:
    """The message and its PDF are stored as given; stdout is the new message's id alone."""
    args = [
        "--profile", SHOP_PROFILE,
        "--to", "jan.kowalski@example.pl",
        "--to", "anna.nowak@example.pl",
        "--cc", "biuro@example.pl",
        "--subject", POLISH_SUBJECT,
        "--body", POLISH_BODY,
        "--attach", str(invoice),
        "--priority", "3",
        "--not-before", "2026-12-01T08:00:00+01:00",
    ]  # fmt: skip
    result = run_cli(cli_env, args)
    message_id = int(result.stdout or -1)
    expected_output = (0, f"{message_id}\n")
    assert expected_output == (result.exit_code, result.stdout), result.stderr

    row, attachments = read_back(database_url, message_id)
    expected = {
        "profile": SHOP_PROFILE,
        "to_addrs": ["jan.kowalski@example.pl", "anna.nowak@example.pl"],
        "cc_addrs": ["biuro@example.pl"],
        "subject": POLISH_SUBJECT,
        "body_text": POLISH_BODY,
        "body_html": None,
        "priority": 3,
        "not_before": datetime(2026, 12, 1, 7, tzinfo=UTC),
        "status": "pending",
    }
    assert expected == pick(row, *expected)
    assert [("faktura.pdf", "application/pdf", minimal_pdf())] == attachments


@pytest.mark.usefixtures("profiles")
def test_bodies_from_files_and_standard_input(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    """--body-file - reads the text body from stdin; --html reads the HTML body from a file."""
    html = tmp_path / "tresc.html"
    html.write_text("<p>Dzień dobry</p>", encoding="utf-8")
    args = ["--to", "jan@example.pl", "--subject", "T", "--body-file", "-", "--html", str(html)]
    result = run_cli(cli_env, args, stdin=POLISH_BODY)
    row, _ = read_back(database_url, int(result.stdout))
    expected = {"body_text": POLISH_BODY, "body_html": "<p>Dzień dobry</p>", "profile": "biuro"}
    assert expected == pick(row, *expected)


@pytest.mark.usefixtures("profiles")
def test_a_repeated_idempotency_key_prints_the_first_id(
    cli_env: dict[str, str], database_url: str
) -> None:
    """A re-run of a script adds nothing, prints the same id, and says so on stderr; exit 0."""
    args = ["--to", "jan@example.pl", "--subject", "T", "--body", "x", "--idempotency-key", "k-1"]
    first = run_cli(cli_env, args)
    again = run_cli(cli_env, args)
    expected_note = (
        f"message {int(first.stdout)} was already queued with idempotency key 'k-1';"
        " nothing new was added"
    )
    expected = (0, first.stdout, True, 1)
    actual = (
        again.exit_code,
        again.stdout,
        expected_note in again.stderr,
        message_count(database_url),
    )
    assert expected == actual


def test_invalid_input_lists_every_problem_before_connecting() -> None:
    """Problems end the command with exit code 1, one line each, before any database work."""
    args = ["--to", "jan@", "--subject", "Faktura\r\nBcc: x@example.pl", "--body", "x"]
    result = run_cli(NO_DATABASE, args)
    expected = [
        "Error: the message was not queued:",
        "  - to address 'jan@' is not a valid e-mail address",
        "  - subject contains a line break or NUL character",
    ]
    # The address library's explanation after ": T..." may change; the sentence may not.
    actual = [line.split(": T")[0] for line in result.stderr.splitlines()]
    assert (1, expected) == (result.exit_code, actual)


@pytest.mark.usefixtures("profiles")
def test_an_unknown_profile_fails_with_its_name(cli_env: dict[str, str]) -> None:
    """A profile that does not exist is a clean error naming it."""
    args = ["--profile", "nieznany", "--to", "jan@example.pl", "--subject", "T", "--body", "x"]
    result = run_cli(cli_env, args)
    expected = (2, "Error: there is no profile with the account name 'nieznany'\n")
    assert expected == (result.exit_code, result.stderr)


@pytest.mark.parametrize(
    "body_args", [[], ["--body", "x", "--body-file", "-"]], ids=["no body", "two bodies"]
)
def test_exactly_one_body_option_is_required(body_args: list[str]) -> None:
    """--body and --body-file exclude each other, and one of them is required (usage error)."""
    result = run_cli(NO_DATABASE, ["--to", "jan@example.pl", "--subject", "T", *body_args])
    expected = (2, "Error: give the body with exactly one of --body and --body-file")
    assert expected == (result.exit_code, result.stderr.splitlines()[-1])


def test_a_bad_time_is_a_usage_error() -> None:
    """--not-before must be an ISO 8601 time."""
    args = ["--to", "jan@example.pl", "--subject", "T", "--body", "x", "--not-before", "jutro"]
    result = run_cli(NO_DATABASE, args)
    expected = (2, True)
    assert expected == (result.exit_code, "'jutro' is not an ISO 8601 time" in result.stderr)
