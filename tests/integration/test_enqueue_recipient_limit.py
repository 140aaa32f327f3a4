"""Enqueue refuses a message with more recipients than its profile takes (Gmail: 100).

The refusal comes before anything is stored, names the numbers and the profile, and applies to
the default profile as well as a named one, through the Python API and ``mailworker enqueue``.
"""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from worker.cli import main
from worker.errors import InvalidMessage
from worker.outbox import enqueue, enqueue_and_commit

COUNT_MESSAGES = text("SELECT count(*) FROM mail.outbox")
ADD_PROFILES = text(
    "INSERT INTO mail.profile (name, from_address, host, port, auth_method, is_default,"
    " max_recipients_per_message, daily_recipient_cap)"
    " VALUES ('gmail', 'jan.kowalski@gmail.com', 'smtp.gmail.com', 465, 'none', false, 100, NULL),"
    "        ('biuro', 'biuro@example.pl', 'smtp.example.pl', 587, 'none', true, 2, NULL),"
    "        ('relay', 'relay@example.pl', 'smtp.example.pl', 587, 'none', false, NULL, 10)"
)


def _addresses(count: int) -> list[str]:
    return [f"r{number}@example.com" for number in range(count)]


async def _add_profiles(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(ADD_PROFILES)


async def _message_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(COUNT_MESSAGES) or 0)


async def test_gmail_takes_100_recipients_and_refuses_101(engine: AsyncEngine) -> None:
    """100 recipients over To, Cc and Bcc are queued; 101 are refused and nothing is stored."""
    await _add_profiles(engine)
    addresses = _addresses(101)
    fits = {"to": addresses[:50], "cc": addresses[50:80], "bcc": addresses[80:100]}
    queued = await enqueue_and_commit(engine, profile="gmail", subject="Sto", **fits)

    with pytest.raises(InvalidMessage) as refused:
        await enqueue_and_commit(
            engine, profile="gmail", subject="Sto jeden", **{**fits, "bcc": addresses[80:]}
        )

    assert [
        "the message has 101 recipients (to, cc and bcc together); profile 'gmail' allows at"
        " most 100 per message: send it as several messages"
    ] == refused.value.problems
    assert (True, 1) == (queued.created, await _message_count(engine))


async def test_the_default_profiles_limit_applies_to_unnamed_messages(
    engine: AsyncEngine,
) -> None:
    """A message naming no profile is held to the default profile's limit."""
    await _add_profiles(engine)
    async with engine.begin() as connection:
        with pytest.raises(InvalidMessage) as refused:
            await enqueue(connection, to=_addresses(3), subject="Trzy")
    assert [
        "the message has 3 recipients (to, cc and bcc together); profile 'biuro' allows at"
        " most 2 per message: send it as several messages"
    ] == refused.value.problems
    assert 0 == await _message_count(engine)


async def test_a_repeated_address_counts_once(engine: AsyncEngine) -> None:
    """The same address in To and Bcc (in another case) is one recipient, as the worker sends it."""
    await _add_profiles(engine)
    queued = await enqueue_and_commit(
        engine, to=["a@example.com", "b@example.com"], bcc="A@Example.com", subject="Dwa"
    )
    assert (True, 1) == (queued.created, await _message_count(engine))


async def test_more_than_the_daily_recipient_cap_is_refused(engine: AsyncEngine) -> None:
    """A message over the profile's whole daily recipient cap could never go out: refused."""
    await _add_profiles(engine)
    with pytest.raises(InvalidMessage) as refused:
        await enqueue_and_commit(engine, profile="relay", to=_addresses(11), subject="Jedenaście")
    assert [
        "the message has 11 recipients (to, cc and bcc together); profile 'relay' allows at"
        " most 10 a day (its daily recipient cap): send it as several messages"
    ] == refused.value.problems
    assert 0 == await _message_count(engine)


def test_the_command_refuses_it_with_exit_status_2(
    cli_env: dict[str, str], database_url: str
) -> None:
    """``mailworker enqueue`` over the limit exits 2 (what was asked for is wrong), says why,
    prints no id, stores nothing."""

    async def prepare() -> None:
        engine = create_async_engine(database_url)
        try:
            await _add_profiles(engine)
        finally:
            await engine.dispose()

    async def count() -> int:
        engine = create_async_engine(database_url)
        try:
            return await _message_count(engine)
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    recipients = [arg for address in _addresses(3) for arg in ("--to", address)]
    result = CliRunner(env=cli_env).invoke(
        main, ["enqueue", "--profile", "biuro", *recipients, "--subject", "Trzy", "--body", "."]
    )
    assert (2, "") == (result.exit_code, result.stdout)
    assert (
        "the message has 3 recipients (to, cc and bcc together); profile 'biuro' allows at"
        " most 2 per message"
    ) in result.stderr
    assert 0 == asyncio.run(count())
