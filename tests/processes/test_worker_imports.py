"""What a worker's process loads: the commands of `mailworker run`, without the web console's
stack, which only `mailworker console` imports (docs/console.md, "One HTTP stack?")."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.kit.processes import REPO_ROOT

WEB_STACK = ("starlette", "uvicorn", "jinja2", "babel", "multipart", "itsdangerous")
PROBE = f"""
import json, sys
import worker.cli
print(json.dumps(sorted(name for name in {WEB_STACK!r} if name in sys.modules)))
"""


def test_the_commands_load_no_web_stack() -> None:
    run = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 0 == run.returncode, run.stderr
    assert [] == json.loads(run.stdout)
