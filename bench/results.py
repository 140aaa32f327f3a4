"""The benchmark's options and the figures and failed checks it collects."""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PARTS", "Options", "Results", "parse_options"]

# Measurements that may be skipped; the default runs every one.
PARTS = ("peer", "attachment", "history", "idle", "memory", "rtt")


@dataclass(frozen=True)
class Options:
    messages: int
    runs: int
    latency_samples: int
    connections: int
    database: str
    json_path: Path
    smoke: bool
    attachment_messages: int
    attachment_bytes: int
    history_rows: int
    idle_seconds: float
    memory_messages: int
    memory_attachment_bytes: int
    rtt: float
    accept: float
    rtt_messages: int
    skip: frozenset[str]

    def runs_part(self, part: str) -> bool:
        return part not in self.skip


@dataclass
class Results:
    """Every figure, and every failed check (a message missing or sent twice)."""

    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, failure: str) -> None:
        if not ok:
            self.failures.append(failure)
            print(f"CHECK FAILED: {failure}", file=sys.stderr)

    def rate(self, name: str, rates: list[float], counts: list[int], messages: int) -> None:
        self.figures[name] = {
            "unit": "msgs/s",
            "median": statistics.median(rates),
            "min": min(rates),
            "max": max(rates),
            "runs": rates,
            "messages": messages,
            "counted": counts,
        }


_MB = 1024 * 1024
_SMOKE = {
    "messages": 50,
    "runs": 1,
    "latency_samples": 5,
    "attachment_messages": 20,
    "history_rows": 1000,
    "idle_seconds": 6.0,  # more than one default poll interval
    "memory_messages": 5,
    "memory_attachment_mb": 1.0,
    "rtt_messages": 20,
}


def parse_options(argv: list[str] | None, description: str | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=description)
    add = parser.add_argument
    add("--messages", type=int, default=2000, help="messages per throughput measurement")
    add("--runs", type=int, default=3, help="runs per figure (median, min-max)")
    add("--latency-samples", type=int, default=50, help="messages for latency")
    add("--connections", type=int, default=4, help="profile max_connections")
    add("--database", default="mailworker_bench", help="dropped and re-created")
    add("--json", type=Path, default=Path("bench-results.json"), dest="json_path")
    add("--attachment-messages", type=int, default=250, help="messages with a 100 KB file")
    add("--history-rows", type=int, default=1_000_000, help="sent rows already in the outbox")
    add("--idle-seconds", type=float, default=30.0, help="how long the idle worker is watched")
    add("--memory-messages", type=int, default=200, help="messages with a large attachment")
    add("--memory-attachment-mb", type=float, default=10.0, help="their attachment, MB")
    add("--rtt-ms", type=float, default=20.0, help="latency mode: the network's round trip")
    add("--accept-ms", type=float, default=20.0, help="latency mode: the sink's time to accept")
    add("--rtt-messages", type=int, default=500, help="messages per latency-mode measurement")
    add("--skip", action="append", choices=PARTS, default=[], help="leave a part out (repeat)")
    add("--smoke", action="store_true", help="correctness only: every part at a tiny size")
    args = parser.parse_args(argv)
    if args.smoke:
        for name, value in _SMOKE.items():
            setattr(args, name, value)
    return Options(
        messages=args.messages,
        runs=args.runs,
        latency_samples=args.latency_samples,
        connections=args.connections,
        database=args.database,
        json_path=args.json_path,
        smoke=args.smoke,
        attachment_messages=args.attachment_messages,
        attachment_bytes=100 * 1024,
        history_rows=args.history_rows,
        idle_seconds=args.idle_seconds,
        memory_messages=args.memory_messages,
        memory_attachment_bytes=round(args.memory_attachment_mb * _MB),
        rtt=args.rtt_ms / 1000,
        accept=args.accept_ms / 1000,
        rtt_messages=args.rtt_messages,
        skip=frozenset(args.skip),
    )
