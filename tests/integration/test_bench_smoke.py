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
RATES = ["worker_1", "worker_2", "limit", "enqueue_sql", "enqueue_api"]


def test_smoke_run_counts_every_message(server_url: str, tmp_path: Path) -> None:
    """``bench.run --smoke`` exits 0 and reports each figure with every message counted."""
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
    for name in RATES:
        figure = results["figures"][name]
        assert 50 == figure["messages"], name
        assert [50] == figure["counted"], name
        assert figure["min"] <= figure["median"] <= figure["max"], name
    latency = results["figures"]["latency"]
    assert 5 == latency["messages"]
    assert [5] == latency["counted"]
    assert 5 == len(latency["samples"])
    assert {"worker_1/limit", "worker_2/limit"} == set(results["ratios"])
    assert results["machine"]["postgresql"]
