"""CPU time a throughput run costs, by who spent it: the sender, the sink and PostgreSQL.

On loopback every party shares the machine's cores, so a rate is bounded by the sum of their
CPU time per message, not by the sender's alone. The bare aiosmtplib loop pays only its own
and the sink's; the worker pays its own, the sink's and the database's. The ratio of those
two sums is the most worker / limit can be on this machine while both use the cores equally
well (:func:`cpu_ceiling`).

Times come from ``/proc``: user plus system time of the processes, so a send's work on the
receiver's behalf is counted where the kernel charges it. PostgreSQL is every process of
this machine named ``postgres``: an estimate, since a backend that exits between the two
readings takes its time with it, and a server on another machine counts nothing.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from pathlib import Path

from bench.processes import cpu_seconds

__all__ = ["cpu_ceiling", "medians", "per_message", "snapshot"]


def postgres_cpu_seconds() -> float:
    """CPU seconds so far of every process of this machine named ``postgres``."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text(encoding="ascii").strip() == "postgres":
                total += cpu_seconds(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            continue  # it exited meanwhile
    return total


def snapshot(senders: Sequence[int], sink: int) -> dict[str, float]:
    """CPU seconds so far of the ``senders`` (the worker processes, or the bench itself for
    the bare loop), the ``sink``, PostgreSQL, and the bench process while it only waits
    (``bench``, left out when the bench is among ``senders``)."""
    own = os.getpid()
    spent = {
        "sender": sum(cpu_seconds(pid) for pid in senders),
        "sink": cpu_seconds(sink),
        "postgresql": postgres_cpu_seconds(),
    }
    if own not in senders:
        spent["bench"] = cpu_seconds(own)
    return spent


def per_message(
    before: dict[str, float], after: dict[str, float], messages: int
) -> dict[str, float]:
    """Milliseconds of CPU a message, by part, between two snapshots."""
    return {part: 1000 * (after[part] - before[part]) / messages for part in after}


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each part's median over ``runs``, and the median of their totals as ``total``."""
    found = {part: statistics.median(run[part] for run in runs) for part in runs[0]}
    found["total"] = statistics.median(_total(run) for run in runs)
    return found


def _total(run: dict[str, float]) -> float:
    """What the sending costs: the sender, the sink and the database (not the waiting bench)."""
    return sum(run[part] for part in ("sender", "sink", "postgresql"))


def cpu_ceiling(worker: dict[str, float], limit: dict[str, float]) -> float:
    """The most worker / limit can be when both use the machine's cores equally well: the
    limit's CPU a message over the worker's, counting the sink and the database."""
    return limit["total"] / worker["total"]
