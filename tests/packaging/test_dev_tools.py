"""The developer's checks agree with CI's: pre-commit runs `make lint`, `make test` a floor.

CI (``.ci/run``) runs ``make test`` and ``make lint``; CONTRIBUTING.md tells a contributor to
install the pre-commit hooks. These tests keep the three in step, reading the Makefile through
``make -n``, so a command changed in one place and not the other fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PRE_COMMIT_CONFIG = ROOT / ".pre-commit-config.yaml"
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


def _hooks() -> list[dict[str, object]]:
    config = yaml.safe_load(PRE_COMMIT_CONFIG.read_text(encoding="utf-8"))
    [repo] = config["repos"]
    assert "local" == repo["repo"], "hooks of a remote repo would bring tools of other versions"
    hooks: list[dict[str, object]] = repo["hooks"]
    return hooks


def test_pre_commit_runs_what_make_lint_runs() -> None:
    """The hooks are `make lint`'s commands in its order, each the tool of .venv on the whole
    tree (no file names passed): a commit is checked as CI checks it, with the same versions."""
    hooks = _hooks()
    commands = [" ".join([str(hook["entry"]), *map(str, hook.get("args", []))]) for hook in hooks]
    assert _recipe("lint") == commands
    assert {"system"} == {hook["language"] for hook in hooks}
    assert {False} == {hook["pass_filenames"] for hook in hooks}


def test_the_pre_commit_configuration_is_valid() -> None:
    """pre-commit itself (the dev extra) accepts the configuration."""
    pytest.importorskip("pre_commit")
    command = [sys.executable, "-m", "pre_commit", "validate-config", str(PRE_COMMIT_CONFIG)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert 0 == result.returncode, result.stdout + result.stderr


def test_make_test_measures_branch_coverage_against_a_floor() -> None:
    """`make test` runs the suite under coverage of worker/ with branches, and a floor
    (fail_under) that fails the run below it; without --cov the floor would be a dead line.
    It runs in one process per core, which pytest-cov combines."""
    assert [".venv/bin/pytest --cov --numprocesses=auto"] == _recipe("test")
    coverage = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "coverage"
    ]
    assert (True, ["worker"]) == (coverage["run"]["branch"], coverage["run"]["source"])
    assert coverage["report"]["fail_under"] > 0
