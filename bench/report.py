"""The benchmark's report: the machine, a table on stdout and the JSON document."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.results import Results

__all__ = ["machine", "ratios", "report", "table"]

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
# Each ratio: (numerator, denominator, target) — the worker's figure over its reference.
_RATIOS = {
    "worker_1/limit": ("worker_1", "limit", "≥ 0.8"),
    "worker_2/limit": ("worker_2", "limit", "≥ 0.8"),
    "worker_1/peer": ("worker_1", "peer", "≥ 2.0"),
    "worker_1_attachment/limit_attachment": ("worker_1_attachment", "limit_attachment", "≥ 0.8"),
    "worker_1_history/worker_1": ("worker_1_history", "worker_1", "≥ 0.9"),
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


def ratios(figures: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The ratios of medians whose two figures were both measured."""
    return {
        name: figures[top]["median"] / figures[bottom]["median"]
        for name, (top, bottom, _) in _RATIOS.items()
        if top in figures and bottom in figures
    }


def table(figures: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'figure':<30} {'median':>10} {'min':>10} {'max':>10}  unit"]
    for key, label in _RATES.items():
        if key in figures:
            f = figures[key]
            numbers = f"{f['median']:>10.1f} {f['min']:>10.1f} {f['max']:>10.1f}"
            lines.append(f"{label:<30} {numbers}  msgs/s")
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
    lines.append("")
    for name, value in ratios(figures).items():
        lines.append(f"{name + ':':<40} {value:>6.2f}   target {_RATIOS[name][2]}")
    return "\n".join(lines)


def report(results: Results, info: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    figures = results.figures
    print(table(figures))
    print(f"\nmachine: {json.dumps(info)}\nsettings: {json.dumps(settings)}")
    return {
        "machine": info,
        "settings": settings,
        "figures": figures,
        "ratios": ratios(figures),
        "checks": {"ok": not results.failures, "failures": results.failures},
    }
