"""The benchmark's smoke run: every message of every measurement arrives (no timing asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.timeout(300)

REPO_ROOT = Path(__file__).resolve().parents[2]
# Each rate figure and the messages of its smoke size (bench/results.py).
RATES = {
    "worker_1": 50,
    "worker_2": 50,
    "limit": 50,
    "peer": 50,
    "worker_1_attachment": 20,
    "limit_attachment": 20,
    "worker_1_history": 50,
    "enqueue_sql": 50,
    "enqueue_api": 50,
    "enqueue_api_batch": 50,
    "rtt_worker_1": 20,
    "rtt_worker_1_classic": 20,
    "rtt_limit": 20,
    "rtt_peer": 20,
}
RATIOS = {
    "worker_1/limit",
    "worker_2/limit",
    "worker_1/peer",
    "worker_1_attachment/limit_attachment",
    "worker_1_history/worker_1",
    "rtt_worker_1/one_round_trip",
    "rtt_worker_1/rtt_peer",
    "rtt_worker_1/rtt_limit",
}


def test_smoke_run_counts_every_message(server_url: str, tmp_path: Path) -> None:
    """``bench.run --smoke`` exits 0 and reports each figure, the peer's, the idle cost's, the
    memory's and the latency mode's too, with every message counted, and a verdict on each
    ratio."""
    results_path = tmp_path / "bench.json"
    database = f"mailworker_bench_{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        # The tests' server; the benchmark creates (and re-creates) its database beside it.
        "DATABASE_URL": make_url(server_url)
        .set(database="postgres")
        .render_as_string(hide_password=False),
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--smoke",
            "--database",
            database,
            "--json",
            str(results_path),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert 0 == completed.returncode, completed.stdout + completed.stderr
    results = json.loads(results_path.read_text(encoding="utf-8"))
    assert {"ok": True, "failures": []} == results["checks"]
    for name, messages in RATES.items():
        figure = results["figures"][name]
        assert messages == figure["messages"], name
        assert [messages] == figure["counted"], name
        assert figure["min"] <= figure["median"] <= figure["max"], name
    latency = results["figures"]["latency"]
    assert 5 == latency["messages"]
    assert [5] == latency["counted"]
    assert 5 == len(latency["samples"])
    assert 1000 == results["figures"]["worker_1_history"]["history_rows"]
    assert 100 * 1024 < results["figures"]["worker_1_attachment"]["message_bytes"]
    memory = results["figures"]["memory"]
    assert 5 == memory["messages"]
    assert [5] == memory["counted"]
    assert memory["idle_peak_rss_mb"] <= memory["peak_rss_mb"]
    idle = results["figures"]["idle"]
    assert 5.0 == idle["poll_interval"]
    assert 6.0 <= idle["seconds"]
    assert 0 <= idle["cpu_seconds"]
    assert 0 <= idle["transactions"]
    assert RATIOS == set(results["ratios"])
    assert RATIOS == set(results["verdicts"])
    bounds = results["figures"]["rtt_bounds"]
    assert (20.0, 20.0, 4) == (bounds["rtt_ms"], bounds["accept_ms"], bounds["connections"])
    assert (100.0, 40.0) == (
        round(bounds["one_round_trip"], 6),
        round(bounds["four_round_trips"], 6),
    )
    for line in ("rtt_worker_1/one_round_trip:", "bound: 1 round trip a message"):
        assert line in completed.stdout
    # Both sending modes: with PIPELINING and CHUNKING every message came with BDAT, without
    # them none did.
    chunked = {name: results["figures"][name]["chunked"] for name in RATES if "worker" in name}
    assert {
        "worker_1": [50],
        "worker_2": [50],
        "worker_1_attachment": [20],
        "worker_1_history": [50],
        "rtt_worker_1": [20],
        "rtt_worker_1_classic": [0],
    } == chunked
    assert results["machine"]["postgresql"]
    # Who spent the CPU time, for the worker and the loop, and the ceiling it sets.
    # /proc counts in clock ticks (10 ms), which 50 small messages may not fill; 20 messages
    # with a 100 KB attachment each do.
    for name in ("worker_1", "limit", "worker_1_attachment", "limit_attachment"):
        spent = results["figures"][name]["cpu_ms_per_message"]
        assert {"sender", "sink", "postgresql", "total"} <= spent.keys(), name
        assert 0 <= spent["sender"] <= spent["total"], name
        assert ("bench" in spent) == name.startswith("worker"), name
    for name in ("worker_1_attachment", "limit_attachment"):
        assert 0 < results["figures"][name]["cpu_ms_per_message"]["sender"], name
    assert {"worker_1/limit", "worker_1_attachment/limit_attachment"} == set(
        results["cpu_ceilings"]
    )
    assert "CPU ceilings: the limit's total a message over the worker's" in completed.stdout
