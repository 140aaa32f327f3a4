"""The benchmark's report: the physical bounds of the latency mode, the ratios against them
and a verdict on each line."""

from __future__ import annotations

from typing import Any

from bench.delay import round_trip_bounds
from bench.report import ceilings, ratios, table, verdicts


def _rate(median: float) -> dict[str, Any]:
    return {"unit": "msgs/s", "median": median, "min": median, "max": median}


FIGURES: dict[str, dict[str, Any]] = {
    "worker_1": _rate(600.0),
    "limit": _rate(2000.0),
    "peer": _rate(200.0),
    "latency": {"p50": 6.0, "p99": 11.0, "min": 4.0, "max": 11.0},
    "rtt_worker_1": _rate(40.0),
    "rtt_limit": _rate(38.0),
    "rtt_peer": _rate(10.0),
    "rtt_bounds": {
        "unit": "msgs/s",
        "one_round_trip": 100.0,
        "four_round_trips": 40.0,
        "rtt_ms": 20.0,
        "accept_ms": 20.0,
        "connections": 4,
    },
}


def test_the_bounds_of_one_and_of_four_round_trips_a_message() -> None:
    """4 connections, 20 ms round trip, 20 ms acceptance: 100 and 40 messages a second."""
    one, four = round_trip_bounds(4, 0.020, 0.020)
    assert (100.0, 40.0) == (round(one, 9), round(four, 9))


def test_ratios_against_the_bound_the_peer_and_the_loop_over_the_network() -> None:
    """The latency mode's ratios use its bound and its own rates, never the loopback ones."""
    found = ratios(FIGURES)
    assert 0.4 == found["rtt_worker_1/one_round_trip"]
    assert 4.0 == found["rtt_worker_1/rtt_peer"]
    assert 40.0 / 38.0 == found["rtt_worker_1/rtt_limit"]
    assert 0.3 == found["worker_1/limit"]
    assert "worker_1_history/worker_1" not in found  # not measured


def test_each_ratio_has_its_target_and_verdict() -> None:
    """A ratio at or above its target is met; below it, missed."""
    judged = verdicts(ratios(FIGURES))
    assert {"target": 0.8, "met": False} == judged["rtt_worker_1/one_round_trip"]
    assert {"target": 2.0, "met": True} == judged["rtt_worker_1/rtt_peer"]
    assert {"target": 2.0, "met": True} == judged["worker_1/peer"]
    assert set(ratios(FIGURES)) == set(judged)


def test_the_table_prints_both_modes_with_their_bounds_and_verdicts() -> None:
    """The loopback table, then the latency mode's with its setting, its two bounds, and one
    line per ratio with target and verdict."""
    lines = table(FIGURES).splitlines()
    printed = [" ".join(line.split()) for line in lines]
    assert "worker_1/peer: 3.00 target ≥ 2.0 met" in printed
    assert "worker_1/limit: 0.30 target ≥ 0.8 MISSED" in printed
    assert any(
        line.startswith("latency mode: 20 ms round trip, 20 ms acceptance") for line in printed
    )
    assert "bound: 1 round trip a message 100.0 msgs/s" in printed
    assert "bound: 4 round trips a message 40.0 msgs/s" in printed
    assert "rtt_worker_1/one_round_trip: 0.40 target ≥ 0.8 MISSED" in printed
    assert "rtt_worker_1/rtt_peer: 4.00 target ≥ 2.0 met" in printed
    assert "rtt_worker_1/rtt_limit: 1.05 target ≥ 2.0 MISSED" in printed
    loopback = printed.index("worker, 1 process 600.0 600.0 600.0 msgs/s")
    over_network = printed.index("worker, 1 process 40.0 40.0 40.0 msgs/s")
    assert loopback < over_network


def _spent(sender: float, sink: float, database: float) -> dict[str, float]:
    total = sender + sink + database
    return {"sender": sender, "sink": sink, "postgresql": database, "total": total}


def test_the_cpu_ceiling_counts_the_sink_and_the_database_of_each_side() -> None:
    """The worker pays its own CPU, the sink's and the database's; the bare loop its own and
    the sink's. The ceiling of worker / limit is the ratio of those sums, printed with each
    figure's parts."""
    figures = {
        **FIGURES,
        "worker_1": {**_rate(600.0), "cpu_ms_per_message": _spent(0.5, 0.25, 0.25)},
        "limit": {**_rate(2000.0), "cpu_ms_per_message": _spent(0.3, 0.3, 0.0)},
    }
    assert {"worker_1/limit": 0.6} == {
        name: round(value, 9) for name, value in ceilings(figures).items()
    }
    printed = [" ".join(line.split()) for line in table(figures).splitlines()]
    assert "worker, 1 process 0.500 0.250 0.250 1.000" in printed
    assert "limit: bare aiosmtplib 0.300 0.300 0.000 0.600" in printed
    assert "worker_1/limit: 0.60" in printed


def test_no_cpu_table_without_cpu_figures() -> None:
    """An older results file (no CPU figures) prints no CPU lines and no ceiling; with the
    worker's CPU alone there is no ceiling either."""
    assert {} == ceilings(FIGURES)
    assert not any(line.startswith("CPU") for line in table(FIGURES).splitlines())
    worker_only = {
        **FIGURES,
        "worker_1": {**_rate(600.0), "cpu_ms_per_message": _spent(0.5, 0.25, 0.25)},
    }
    assert {} == ceilings(worker_only)
