"""The developer's checks are CI's: `make test` measures coverage against a floor.

CI (``.ci/run``) runs ``make test`` and ``make lint``. These tests read the Makefile through
``make -n``, so a command changed in one place and not the other fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ".venv/.tools-installed"

pytestmark = pytest.mark.timeout(60)


def _recipe(target: str) -> list[str]:
    """The commands of ``make TARGET`` itself, with .venv taken as set up (``-o``)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    command = [make, "--no-print-directory", "-n", "-o", TOOLS, "-C", str(ROOT), target]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.splitlines()


def test_make_test_measures_branch_coverage_against_a_floor() -> None:
    """`make test` runs the suite under coverage of worker/ with branches, and a floor
    (fail_under) that fails the run below it; without --cov the floor would be a dead line."""
    assert [".venv/bin/pytest --cov"] == _recipe("test")
    coverage = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "coverage"
    ]
    assert (True, ["worker"]) == (coverage["run"]["branch"], coverage["run"]["source"])
    assert coverage["report"]["fail_under"] > 0
