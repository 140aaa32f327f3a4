"""The byte budget: who waits, who goes, and that nothing leaks on errors or cancellation."""

from __future__ import annotations

import asyncio

import pytest

from worker.budget import ByteBudget


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_holders_within_the_limit_go_together_and_the_next_waits() -> None:
    """Limit 10: 4 and 5 are held at once; 3 more would pass 10, so it waits for a release."""
    budget = ByteBudget(10)
    release_first = asyncio.Event()
    order: list[str] = []

    async def hold(name: str, size: int, until: asyncio.Event | None = None) -> None:
        async with budget.hold(size):
            order.append(f"{name} in")
            if until is not None:
                await until.wait()
        order.append(f"{name} out")

    first = asyncio.create_task(hold("a", 4, release_first))
    second = asyncio.create_task(hold("b", 5, asyncio.Event()))
    third = asyncio.create_task(hold("c", 3))
    await _settle()
    assert (["a in", "b in"], 9) == (order, budget.held)

    release_first.set()
    await first
    await third
    assert ["a in", "b in", "a out", "c in", "c out"] == order
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    assert 0 == budget.held


async def test_a_request_over_the_limit_waits_to_go_alone() -> None:
    """A 30-byte message with a limit of 10 goes once nothing else is held, never with others."""
    budget = ByteBudget(10)
    small_done = asyncio.Event()
    seen: list[int] = []

    async def small() -> None:
        async with budget.hold(2):
            await small_done.wait()

    async def large() -> None:
        async with budget.hold(30):
            seen.append(budget.held)

    holder = asyncio.create_task(small())
    await _settle()
    waiting = asyncio.create_task(large())
    await _settle()
    assert ([], 2) == (seen, budget.held)
    small_done.set()
    await asyncio.gather(holder, waiting)
    assert ([30], 0) == (seen, budget.held)


async def test_zero_bytes_never_wait() -> None:
    """A message without attachments does not queue behind large ones."""
    budget = ByteBudget(1)
    async with budget.hold(1), budget.hold(0):
        assert 1 == budget.held


async def test_an_error_or_a_cancelled_waiter_gives_everything_back() -> None:
    """Bytes come back when the block raises; a waiter cancelled in the queue holds nothing."""
    budget = ByteBudget(10)
    with pytest.raises(RuntimeError):
        async with budget.hold(8):
            raise RuntimeError("send failed")
    assert 0 == budget.held

    async def wait_behind() -> None:
        async with budget.hold(5):
            pass

    blocker = budget.hold(8)
    await blocker.__aenter__()
    waiter = asyncio.create_task(wait_behind())
    await _settle()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await blocker.__aexit__(None, None, None)
    assert 0 == budget.held
    async with budget.hold(10):
        assert 10 == budget.held
