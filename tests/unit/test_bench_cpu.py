"""The benchmark's CPU accounting: per-message figures from two readings, medians over runs,
and the ceiling they set on worker / limit."""

from __future__ import annotations

import os
import time

import pytest

from bench.cpu import cpu_ceiling, medians, per_message, snapshot


def test_per_message_is_milliseconds_between_two_readings() -> None:
    before = {"sender": 1.0, "sink": 2.0, "postgresql": 3.0, "bench": 4.0}
    after = {"sender": 1.5, "sink": 2.25, "postgresql": 3.125, "bench": 4.0}
    assert {"sender": 0.5, "sink": 0.25, "postgresql": 0.125, "bench": 0.0} == per_message(
        before, after, 1000
    )


def test_the_total_leaves_the_waiting_bench_out_and_is_the_median_of_totals() -> None:
    """The median total is of each run's total, not the sum of the parts' medians."""
    runs = [
        {"sender": 1.0, "sink": 0.0, "postgresql": 0.0, "bench": 9.0},
        {"sender": 0.0, "sink": 2.0, "postgresql": 0.0, "bench": 9.0},
        {"sender": 0.0, "sink": 0.0, "postgresql": 3.0, "bench": 9.0},
    ]
    found = medians(runs)
    assert 2.0 == found["total"]
    assert (0.0, 0.0, 0.0, 9.0) == (
        found["sender"],
        found["sink"],
        found["postgresql"],
        found["bench"],
    )


def test_the_ceiling_is_the_limits_total_over_the_workers() -> None:
    assert 0.5 == cpu_ceiling({"total": 1.2}, {"total": 0.6})


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_a_reading_of_this_process_as_sender_and_sink() -> None:
    """When the bench itself sends (the bare loop), it has no separate waiting part; its time
    only grows."""
    pid = os.getpid()
    first = snapshot([pid], pid)
    assert {"sender", "sink", "postgresql"} == set(first)
    deadline = time.monotonic() + 5.0
    second = first
    while second["sender"] == first["sender"] and time.monotonic() < deadline:
        sum(i * i for i in range(100_000))  # CPU time, read at the clock's tick
        second = snapshot([pid], pid)
    assert second["sender"] > first["sender"]
    assert second["sender"] == second["sink"]
    assert snapshot([], pid).keys() == {"sender", "sink", "postgresql", "bench"}
