"""The chaos run, CI size: no message lost through SIGKILLs and PostgreSQL and SMTP restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_small_chaos_run_loses_nothing(tmp_path: Path) -> None:
    """``chaos.run --small`` exits 0: every fault happened, nothing lost, duplicates bounded."""
    results_path = tmp_path / "chaos.json"
    # The run starts a PostgreSQL of its own (it restarts it): no DATABASE_URL is used.
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    completed = subprocess.run(
        [sys.executable, "-m", "chaos.run", "--small", "--json", str(results_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert 0 == completed.returncode, completed.stdout + completed.stderr
    results = json.loads(results_path.read_text(encoding="utf-8"))
    figures = results["figures"]
    assert {"ok": True, "failures": []} == results["checks"]
    assert 600 + figures["hostile_rows"] == figures["messages"]
    assert 0 == figures["lost"]
    assert 0 == figures["unmatched_accepted"]
    assert figures["duplicates_observed"] <= figures["duplicates_bound"]
    assert 0 == figures["duplicates_beyond_bound"]
    assert figures["kills"] >= 1
    assert 1 == figures["postgres_restarts"]
    assert 1 == figures["smtp_restarts"]
    assert figures["tempfails_answered"] >= 1
    assert 0 == figures["left_sending"]
    assert 0 == figures["worker_crashes"]
    # The capped profile: exactly its cap sent, the rest waiting, none more at the server.
    assert figures["cap"] == figures["capped_sent"] == figures["capped_distinct_at_server"]
    assert figures["capped_messages"] - figures["cap"] == figures["pending_over_cap"]
    assert figures["messages"] == figures["sent"] + figures["failed"] + figures["pending_over_cap"]
    # The hostile producer: every round's attacks refused, its bad rows failed in words (two
    # a round), its forged rows sent or waiting like any other.
    assert figures["hostile_rounds"] >= 3
    refused = figures["hostile_refused"]
    assert set(refused) == {
        "far_future", "infinite", "expires_far", "insert_as_sent", "chosen_message_id",
        "flip_to_pending", "cancel_another",
    }  # fmt: skip
    assert figures["hostile_failed_in_words"] >= 2  # the verdict checked each one's reason
