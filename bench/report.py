"""The benchmark's report: the machine, a table on stdout and the JSON document."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.cpu import cpu_ceiling
from bench.results import Results

__all__ = ["ceilings", "machine", "ratios", "report", "table", "verdicts"]

PACKAGES = [
    "mail-outbox-worker",
    "aiosmtplib",
    "aiosmtpd",
    "asyncpg",
    "sqlalchemy",
    "django",
    "django-post_office",
    "psycopg",
]
_RATES = {
    "worker_1": "worker, 1 process",
    "worker_2": "worker, 2 processes",
    "limit": "limit: bare aiosmtplib",
    "peer": "peer: django-post_office",
    "worker_1_attachment": "worker, 1 proc., 100 KB att.",
    "limit_attachment": "limit, 100 KB attachment",
    "worker_1_history": "worker, 1 proc., history",
    "enqueue_sql": "enqueue, plain SQL",
    "enqueue_api": "enqueue, Python API",
    "enqueue_api_batch": "enqueue, Python API, batches",
}
# Against the sink behind a round trip (the latency mode), each over the same connections.
_RTT_RATES = {
    "rtt_worker_1": "worker, 1 process",
    "rtt_worker_1_classic": "worker, no PIPELINING",
    "rtt_limit": "limit: bare aiosmtplib",
    "rtt_peer": "peer: django-post_office",
}
# The physical bounds of the latency mode, in ``rtt_bounds``.
_BOUNDS = {
    "one_round_trip": "bound: 1 round trip a message",
    "four_round_trips": "bound: 4 round trips a message",
}
# Each ratio: (numerator, denominator, target) — the worker's figure over its reference, and
# the least it should be.
_RATIOS = {
    "worker_1/limit": ("worker_1", "limit", 0.8),
    "worker_2/limit": ("worker_2", "limit", 0.8),
    "worker_1/peer": ("worker_1", "peer", 2.0),
    "worker_1_attachment/limit_attachment": ("worker_1_attachment", "limit_attachment", 0.8),
    "worker_1_history/worker_1": ("worker_1_history", "worker_1", 0.9),
}
# Ratios to the limit whose CPU ceiling is reported: the same ratio were both figures bound
# only by the CPU time a message costs (:func:`bench.cpu.cpu_ceiling`).
_CEILINGS = ("worker_1/limit", "worker_1_attachment/limit_attachment")
_RTT_RATIOS = {
    "rtt_worker_1/one_round_trip": ("rtt_worker_1", "one_round_trip", 0.8),
    "rtt_worker_1/rtt_peer": ("rtt_worker_1", "rtt_peer", 2.0),
    "rtt_worker_1/rtt_limit": ("rtt_worker_1", "rtt_limit", 2.0),
}


async def machine(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as connection:
        postgres = await connection.scalar(text("SHOW server_version"))
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": postgres,
        "packages": versions,
    }


def _rate(figures: dict[str, dict[str, Any]], name: str) -> float | None:
    """A measured median, or a bound of the latency mode; ``None`` when not measured."""
    if name in _BOUNDS:
        return figures["rtt_bounds"][name] if "rtt_bounds" in figures else None
    return figures[name]["median"] if name in figures else None


def ratios(figures: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The ratios of medians (or bounds) whose two figures were both measured."""
    found = {}
    for name, (top, bottom, _) in (_RATIOS | _RTT_RATIOS).items():
        numerator, denominator = _rate(figures, top), _rate(figures, bottom)
        if numerator is not None and denominator is not None:
            found[name] = numerator / denominator
    return found


def ceilings(figures: dict[str, dict[str, Any]]) -> dict[str, float]:
    """For the ratios to the limit: the most they could be on this machine, from CPU time."""
    found = {}
    for name in _CEILINGS:
        top, bottom, _ = _RATIOS[name]
        worker = figures.get(top, {}).get("cpu_ms_per_message")
        limit = figures.get(bottom, {}).get("cpu_ms_per_message")
        if worker is not None and limit is not None:
            found[name] = cpu_ceiling(worker, limit)
    return found


def verdicts(found: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Each ratio's target and whether it is met."""
    targets = {name: target for name, (_, _, target) in (_RATIOS | _RTT_RATIOS).items()}
    return {
        name: {"target": targets[name], "met": value >= targets[name]}
        for name, value in found.items()
    }


def _rate_lines(figures: dict[str, dict[str, Any]], labels: dict[str, str]) -> list[str]:
    lines = [f"{'figure':<30} {'median':>10} {'min':>10} {'max':>10}  unit"]
    for key, label in labels.items():
        if key in figures:
            f = figures[key]
            numbers = f"{f['median']:>10.1f} {f['min']:>10.1f} {f['max']:>10.1f}"
            lines.append(f"{label:<30} {numbers}  msgs/s")
    return lines


def _ratio_lines(found: dict[str, float], names: dict[str, Any]) -> list[str]:
    lines = []
    for name, verdict in verdicts(found).items():
        if name in names:
            met = "met" if verdict["met"] else "MISSED"
            lines.append(
                f"{name + ':':<40} {found[name]:>6.2f}   target ≥ {verdict['target']:.1f}   {met}"
            )
    return lines


def table(figures: dict[str, dict[str, Any]]) -> str:
    """The loopback table and, when it ran, the latency mode's; each with its ratios."""
    lines = ["loopback: the sink on 127.0.0.1, no delay", *_rate_lines(figures, _RATES)]
    lat = figures["latency"]
    lines.append(f"{'idle latency p50':<30} {lat['p50']:>10.1f} {lat['min']:>10.1f} {'':>10}  ms")
    lines.append(f"{'idle latency p99':<30} {lat['p99']:>10.1f} {'':>10} {lat['max']:>10.1f}  ms")
    if "idle" in figures:
        idle = figures["idle"]
        poll = f"per {idle['poll_interval']:g} s poll"
        lines.append(
            f"{'idle CPU, % of one core':<30} {idle['cpu_percent_of_one_core']:>10.2f}"
            f" {'':>21}  % ({idle['seconds']:.0f} s, 1 run)"
        )
        lines.append(
            f"{'idle transactions':<30} {idle['transactions_per_poll_interval']:>10.2f}"
            f" {'':>21}  {poll} ({idle['transactions_per_second']:.2f}/s)"
        )
    if "memory" in figures:
        memory = figures["memory"]
        lines.append(
            f"{'peak RSS, large attachments':<30} {memory['peak_rss_mb']:>10.1f} {'':>21}  MB"
            f" ({memory['messages']} x {memory['attachment_mb']:g} MB, 1 run)"
        )
    found = ratios(figures)
    lines += ["", *_ratio_lines(found, _RATIOS), "", *_cpu_lines(figures)]
    if "rtt_bounds" in figures:
        lines += ["", *_rtt_table(figures), "", *_ratio_lines(found, _RTT_RATIOS)]
    return "\n".join(lines)


def _cpu_lines(figures: dict[str, dict[str, Any]]) -> list[str]:
    """CPU time a message on loopback, by who spent it, and the ceilings it sets."""
    measured = [key for key in _RATES if "cpu_ms_per_message" in figures.get(key, {})]
    if not measured:
        return []
    lines = [
        "CPU a message on loopback, ms (medians of the runs; the bench's own waiting apart)",
        f"{'figure':<30} {'sender':>8} {'sink':>8} {'database':>8} {'total':>8} {'bench':>8}",
    ]
    for key in measured:
        spent = figures[key]["cpu_ms_per_message"]
        waiting = f"{spent['bench']:>8.3f}" if "bench" in spent else f"{'':>8}"
        lines.append(
            f"{_RATES[key]:<30} {spent['sender']:>8.3f} {spent['sink']:>8.3f}"
            f" {spent['postgresql']:>8.3f} {spent['total']:>8.3f} {waiting}"
        )
    found = ceilings(figures)
    if found:
        lines.append("CPU ceilings: the limit's total a message over the worker's")
        lines += [f"{name + ':':<40} {ceiling:>6.2f}" for name, ceiling in found.items()]
    return lines


def _rtt_table(figures: dict[str, dict[str, Any]]) -> list[str]:
    bounds = figures["rtt_bounds"]
    lines = [
        f"latency mode: {bounds['rtt_ms']:g} ms round trip, {bounds['accept_ms']:g} ms"
        f" acceptance, {bounds['connections']} connections (the peer: as many threads)",
        *_rate_lines(figures, _RTT_RATES),
    ]
    for key, label in _BOUNDS.items():
        lines.append(f"{label:<30} {bounds[key]:>10.1f} {'':>21}  msgs/s")
    return lines


def report(results: Results, info: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    figures = results.figures
    print(table(figures))
    print(f"\nmachine: {json.dumps(info)}\nsettings: {json.dumps(settings)}")
    return {
        "machine": info,
        "settings": settings,
        "figures": figures,
        "ratios": ratios(figures),
        "verdicts": verdicts(ratios(figures)),
        "cpu_ceilings": ceilings(figures),
        "checks": {"ok": not results.failures, "failures": results.failures},
    }
