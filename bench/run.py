"""``python -m bench.run``: how fast the worker drains the outbox, beside the machine's limit
and a peer, and what it costs while idle and under large messages.

One run measures, each rate the median of ``--runs`` with min and max:

- ``worker_1`` / ``worker_2``: messages a second from "N rows committed" to "N accepted by the
  sink", with 1 and 2 idle ``python -m worker run`` processes;
- ``limit``: a bare aiosmtplib loop sending N pre-rendered messages over as many reused
  connections as the profile allows, with no database;
- ``peer``: django-post_office's ``send_queued_mail --processes=1`` sending the same N messages;
- ``worker_1_attachment`` / ``limit_attachment``: both again with a 100 KB attachment each;
- ``worker_1_history``: ``worker_1`` with a million ``sent`` rows already in the outbox;
- ``rtt_worker_1`` / ``rtt_limit`` / ``rtt_peer``: the latency mode, the sink behind a
  round trip (``--rtt-ms``) and an acceptance time (``--accept-ms``): one worker process,
  the bare loop and the peer (with as many threads), each over the profile's connections,
  beside the bounds of one and of four round trips a message (``rtt_bounds``);
  ``rtt_worker_1_classic`` is the worker with PIPELINING and CHUNKING turned off;
- ``latency``: an idle worker, one row inserted with plain SQL, time to the sink's acceptance
  (p50, p99 over ``--latency-samples``);
- ``enqueue_sql`` / ``enqueue_api``: rows a second through plain SQL and through
  ``worker.outbox.enqueue_and_commit``, one transaction each; ``enqueue_api_batch`` through
  ``worker.outbox.enqueue_many``, ``ENQUEUE_BATCH`` messages a transaction;
- ``idle``: CPU time and database transactions of an idle worker (one run);
- ``memory``: peak RSS of a worker sending 200 messages of 10 MB attachments (one run).

The sink runs in a process of its own (:mod:`bench.sink`), and so does the delayed one. Both
offer PIPELINING and CHUNKING, as the providers do; the worker uses them, the bare loop and
the peer (aiosmtplib's and smtplib's ``sendmail()``) do not. Each worker figure says how many
messages came with BDAT (``chunked``). Every measurement also checks that every message
arrived; a failed check makes the exit code 1. ``--smoke`` is a tiny run for CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import create_async_engine

from bench.database import SENDER, add_profile, fresh_database, server_url
from bench.measurements import ENQUEUE_BATCH, Bench, content
from bench.network import over_network
from bench.peer import Peer, peer_throughput, prepare_peer
from bench.processes import WORKER_ENV
from bench.report import machine, report
from bench.resources import IDLE_POLL_INTERVAL, idle_cost, memory
from bench.results import Options, parse_options
from bench.sink import Delay, Extensions, SmtpSink
from worker.mime import render

__all__ = ["main"]

# What the sink offers beside SIZE and 8BITMIME: what Gmail, Microsoft 365 and Postfix offer.
PROVIDER_EXTENSIONS = Extensions(pipelining=True, chunking=True)


def _step(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what} ...", flush=True)


async def _throughput(bench: Bench, peer: Peer | None) -> None:
    options = bench.options
    for processes in (1, 2):
        _step(f"worker throughput, {processes} process(es)")
        await bench.worker_throughput(f"worker_{processes}", processes, options.messages)
    _step("limit: bare aiosmtplib")
    await bench.limit("limit", options.messages)
    if peer is not None:
        _step("peer: django-post_office")
        await peer_throughput(bench, peer, options.messages)
    if options.runs_part("attachment"):
        _step("100 KB attachments: worker and limit")
        await bench.attachment()


async def measure(
    options: Options,
    url: str,
    sinks: tuple[SmtpSink, SmtpSink | None],
    directory: Path,
    peer: Peer | None,
) -> dict[str, Any]:
    sink, delayed = sinks
    engine = create_async_engine(url, pool_size=5)
    try:
        await add_profile(engine, sink, options.connections)
        bench = Bench(options, engine, url, sink, Fernet.generate_key().decode(), directory)
        info = await machine(engine)
        await _throughput(bench, peer)
        if delayed is not None:
            rtt, accept = options.rtt * 1000, options.accept * 1000
            _step(f"latency mode, {rtt:g} ms round trip, {accept:g} ms acceptance")
            await over_network(bench, delayed, peer)
        _step("idle latency")
        await bench.latency()
        _step("enqueue")
        await bench.enqueue("enqueue_sql", bench.enqueue_sql)
        await bench.enqueue("enqueue_api", bench.enqueue_api)
        await bench.enqueue("enqueue_api_batch", bench.enqueue_api_batch, batch=ENQUEUE_BATCH)
        if options.runs_part("idle"):
            _step(f"idle cost, {options.idle_seconds:g} s")
            await idle_cost(bench)
        if options.runs_part("memory"):
            _step(f"memory, {options.memory_messages} large messages")
            await memory(bench)
        if options.runs_part("history"):
            _step(f"history: {options.history_rows} sent rows, then worker throughput")
            await bench.history()
        return report(bench.results, info, _settings(options))
    finally:
        await engine.dispose()


def _settings(options: Options) -> dict[str, Any]:
    return {
        "messages": options.messages,
        "runs": options.runs,
        "latency_samples": options.latency_samples,
        "max_connections": options.connections,
        "attachment_messages": options.attachment_messages,
        "attachment_bytes": options.attachment_bytes,
        "history_rows": options.history_rows,
        "idle_seconds": options.idle_seconds,
        "idle_poll_interval": IDLE_POLL_INTERVAL,
        "memory_messages": options.memory_messages,
        "memory_attachment_bytes": options.memory_attachment_bytes,
        "rtt_ms": options.rtt * 1000,
        "accept_ms": options.accept * 1000,
        "rtt_messages": options.rtt_messages,
        "skipped": sorted(options.skip),
        "smoke": options.smoke,
        "worker_env": WORKER_ENV,
        "message_bytes": len(render(SENDER, content(0)).data),
    }


def main(argv: list[str] | None = None) -> int:
    began = time.monotonic()
    options = parse_options(argv, __doc__)
    server = server_url()
    url = fresh_database(server, options.database)
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(SmtpSink(extensions=PROVIDER_EXTENSIONS))
        delayed = None
        if options.runs_part("rtt"):
            delay = Delay(options.rtt, options.accept)
            delayed = stack.enter_context(SmtpSink(delay, PROVIDER_EXTENSIONS))
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        peer = None
        if options.runs_part("peer"):
            _step("peer: a database with post_office's tables")
            peer = prepare_peer(server, f"{options.database}_peer", sink.port, directory)
        results = asyncio.run(measure(options, url, (sink, delayed), directory, peer))
    results["settings"]["wall_seconds"] = time.monotonic() - began
    options.json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"whole run: {results['settings']['wall_seconds']:.0f} s")
    print(f"results written to {options.json_path}")
    if not results["checks"]["ok"]:
        print(f"{len(results['checks']['failures'])} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
