"""The latency mode: the worker, the bare aiosmtplib loop and the peer, each over the same
connections, against the sink behind a network's round trip and acceptance time."""

from __future__ import annotations

import dataclasses

from bench.database import point_profile
from bench.delay import round_trip_bounds
from bench.measurements import Bench
from bench.peer import Peer, peer_throughput
from bench.sink import SmtpSink

__all__ = ["over_network"]


async def over_network(bench: Bench, delayed: SmtpSink, peer: Peer | None) -> None:
    """``rtt_worker_1`` (and ``rtt_worker_1_classic``, without PIPELINING and CHUNKING),
    ``rtt_limit`` and ``rtt_peer`` against ``delayed``, and the bounds of one and of four round
    trips a message (``rtt_bounds``)."""
    options = bench.options
    n, connections = options.rtt_messages, options.connections
    over = dataclasses.replace(bench, sink=delayed)
    await point_profile(bench.engine, delayed)
    try:
        await over.worker_throughput("rtt_worker_1", 1, n)
        # The same worker with PIPELINING and CHUNKING turned off: what one flight is worth.
        classic = {"MAILWORKER_SMTP_PIPELINING": "false"}
        await over.worker_throughput("rtt_worker_1_classic", 1, n, settings=classic)
    finally:
        await point_profile(bench.engine, bench.sink)
    await over.limit("rtt_limit", n)
    if peer is not None:
        await peer_throughput(over, peer.against(delayed.port, connections), n, "rtt_peer")
    one, four = round_trip_bounds(connections, delayed.delay.rtt, delayed.delay.accept)
    bench.results.figures["rtt_bounds"] = {
        "unit": "msgs/s",
        "one_round_trip": one,
        "four_round_trips": four,
        "rtt_ms": delayed.delay.rtt * 1000,
        "accept_ms": delayed.delay.accept * 1000,
        "connections": connections,
    }
