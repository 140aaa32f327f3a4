"""The worker's process can leave no core dump, and the attempt never stops it starting."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PR_GET_DUMPABLE = 3


def _python(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter: the limits it sets must not touch the test run."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_core_dumps_are_disabled() -> None:
    """After disable_core_dumps(), the core file size limit is 0 both soft and hard, so the
    process cannot raise it again."""
    result = _python(
        """
        import resource
        from worker.process_limits import disable_core_dumps
        disable_core_dumps()
        print(resource.getrlimit(resource.RLIMIT_CORE))
        """
    )
    assert 0 == result.returncode, result.stderr
    assert "(0, 0)" == result.stdout.strip()


@pytest.mark.skipif(sys.platform != "linux", reason="prctl(PR_SET_DUMPABLE) is Linux's")
def test_the_process_is_not_dumpable_on_linux() -> None:
    """On Linux the process is marked undumpable (PR_GET_DUMPABLE answers 0): no core even
    through a crash collector pipe, and no ptrace attach by the same user."""
    result = _python(
        f"""
        import ctypes, ctypes.util
        from worker.process_limits import disable_core_dumps
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        before = libc.prctl({PR_GET_DUMPABLE}, 0, 0, 0, 0)
        disable_core_dumps()
        print(before, libc.prctl({PR_GET_DUMPABLE}, 0, 0, 0, 0))
        """
    )
    assert 0 == result.returncode, result.stderr
    assert "1 0" == result.stdout.strip()


def test_a_platform_without_the_calls_still_starts() -> None:
    """Where neither the limit nor prctl can be set, disable_core_dumps() returns normally
    and says why at debug level only."""
    result = _python(
        """
        import ctypes, resource
        from structlog.testing import capture_logs
        from worker.process_limits import disable_core_dumps

        def refuse(*args, **kwargs):
            raise OSError(1, "Operation not permitted")

        resource.setrlimit = refuse
        ctypes.CDLL = refuse
        with capture_logs() as events:
            disable_core_dumps()
        print(sorted((e["event"], e["log_level"]) for e in events))
        """
    )
    assert 0 == result.returncode, result.stderr
    expected = [("core_limit_not_set", "debug")]
    if sys.platform == "linux":
        expected.append(("dumpable_not_cleared", "debug"))
    assert repr(sorted(expected)) == result.stdout.strip()
