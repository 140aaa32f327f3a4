"""The HTTP-stack comparison's smoke run: both servers answer, and every figure is printed."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.kit.processes import REPO_ROOT

ROWS = (
    "resident memory after imports (MB)",
    "import time (ms)",
    "server CPU per request (µs)",
    "requests per second (1 client)",
)


def test_both_stacks_answer_and_every_figure_is_printed() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.http_stack", "--requests", "300", "--runs", "1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == run.returncode, run.stderr
    figures = {}
    for line in run.stdout.splitlines():
        for row in ROWS:
            if line.startswith(row):
                figures[row] = [float(value) for value in re.findall(r"\d+\.\d+", line[len(row) :])]
    assert set(ROWS) == set(figures), run.stdout
    for row, (own, starlette, ratio) in figures.items():
        assert float(starlette) > 0, row
        if ratio != "n/a":  # CPU time is counted in ticks: a short run may see none
            assert abs(float(ratio) - float(starlette) / float(own)) < 0.01 + 0.01 * float(ratio)
