"""What a worker costs besides time: CPU and database work while idle, memory under load."""

from __future__ import annotations

import asyncio
import os
import time

from bench.database import admin_scalar, empty_outbox, insert_messages, outbox_statuses
from bench.measurements import Bench
from bench.processes import WORKER_ENV, cpu_seconds, peak_rss_bytes, wait_count, workers
from worker.settings import Settings

__all__ = ["IDLE_POLL_INTERVAL", "idle_cost", "memory"]

# The idle worker runs with the default poll interval, not the benchmark's short one: the
# cost of waiting is what a deployment with the defaults pays.
IDLE_POLL_INTERVAL: float = Settings.model_fields["poll_interval"].default
_IDLE_ENV = {key: value for key, value in WORKER_ENV.items() if key != "MAILWORKER_POLL_INTERVAL"}
_MB = 1024 * 1024

# Transactions of the bench database, committed or rolled back, from the server's statistics.
_TRANSACTIONS = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :name"


async def _transactions(bench: Bench) -> int:
    return int(await admin_scalar(bench.url, _TRANSACTIONS, name=bench.engine.url.database))


async def idle_cost(bench: Bench) -> None:
    """One idle worker watched for ``idle_seconds``: CPU time and database transactions.

    Nothing else uses the bench database meanwhile: the benchmark's own connections are
    closed first (which also flushes their statistics) and the counters are read from the
    ``postgres`` database. Autovacuum's transactions would count too, so the figure is an
    upper bound of the worker's.
    """
    seconds = bench.options.idle_seconds
    await empty_outbox(bench.engine)
    with workers(bench.url, bench.secret_key, bench.directory, 1, _IDLE_ENV) as started:
        await started.wait_listening(bench.engine)
        await bench.engine.dispose()
        await asyncio.sleep(2.0)  # start-up housekeeping done, closed sessions' stats flushed
        (pid,) = started.pids
        cpu_before, transactions_before = cpu_seconds(pid), await _transactions(bench)
        began = time.monotonic()
        await asyncio.sleep(seconds)
        cpu_after, transactions_after = cpu_seconds(pid), await _transactions(bench)
        elapsed = time.monotonic() - began
        started.assert_running()
    per_second = (transactions_after - transactions_before) / elapsed
    bench.results.figures["idle"] = {
        "seconds": elapsed,
        "cpu_percent_of_one_core": 100 * (cpu_after - cpu_before) / elapsed,
        "transactions_per_second": per_second,
        "transactions_per_poll_interval": per_second * IDLE_POLL_INTERVAL,
        "poll_interval": IDLE_POLL_INTERVAL,
        "cpu_seconds": cpu_after - cpu_before,
        "transactions": transactions_after - transactions_before,
    }


async def memory(bench: Bench) -> None:
    """Peak RSS of one worker sending ``memory_messages`` messages with a large attachment.

    One run: it moves gigabytes through the database and the sink.
    """
    options, n = bench.options, bench.options.memory_messages
    attached = os.urandom(options.memory_attachment_bytes)
    await empty_outbox(bench.engine)
    bench.sink.reset()
    with workers(bench.url, bench.secret_key, bench.directory, 1) as started:
        await started.wait_listening(bench.engine)
        (pid,) = started.pids
        idle_peak = peak_rss_bytes(pid)
        async with bench.engine.begin() as connection:
            await insert_messages(connection, n, attached)
        committed = time.monotonic()
        await wait_count(bench.sink, n, 1800, started.assert_running, interval=0.05)
        elapsed = bench.sink.last_at - committed
        peak = peak_rss_bytes(pid)
        counted = await bench.settle_and_check("memory", n)
    statuses = await outbox_statuses(bench.engine)
    bench.results.check(statuses == {"sent": n}, f"memory: outbox statuses {statuses}")
    await empty_outbox(bench.engine)
    bench.results.figures["memory"] = {
        "unit": "MB",
        "peak_rss_mb": peak / _MB,
        "idle_peak_rss_mb": idle_peak / _MB,
        "attachment_mb": options.memory_attachment_bytes / _MB,
        "messages": n,
        "counted": [counted],
        "runs": 1,
        "msgs_per_second": n / elapsed,
    }
