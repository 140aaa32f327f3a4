"""The wheel that the image and other services install: typed, versioned once, with its data.

The wheel is built as the Dockerfile builds it (``pip wheel --no-deps .``, hatchling in an
isolated build environment from the package index): a few seconds, once for this module.
"""

from __future__ import annotations

import email.parser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import worker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The package's wheel, built from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), "."]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    [path] = out.glob("mail_outbox_worker-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_marks_the_package_as_typed(wheel: zipfile.ZipFile) -> None:
    """``worker/py.typed`` is in the wheel, so a service's type checker reads the outbox API's
    annotations (PEP 561) instead of treating ``worker`` as untyped."""
    assert "worker/py.typed" in wheel.namelist()


def test_the_wheel_version_is_the_packages_version(wheel: zipfile.ZipFile) -> None:
    """The version is written once, in ``worker/__init__.py``: the wheel's metadata and its
    file name carry that same version."""
    [metadata] = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    headers = email.parser.Parser().parsestr(wheel.read(metadata).decode("utf-8"))
    assert worker.__version__ == headers["Version"]
    assert f"mail_outbox_worker-{worker.__version__}-" in Path(str(wheel.filename)).name


def test_the_wheel_carries_the_migrations_and_the_presets(wheel: zipfile.ZipFile) -> None:
    """An installed wheel finds its migrations and provider presets under ``worker/_data/``."""
    names = set(wheel.namelist())
    expected = {"worker/_data/migrations/env.py", "worker/_data/config/providers.toml"}
    assert expected == expected & names


def test_the_wheel_carries_the_consoles_pages_style_and_catalogue(wheel: zipfile.ZipFile) -> None:
    """The console needs no checkout: its templates, style sheet and Polish catalogue ship."""
    names = set(wheel.namelist())
    expected = {
        "worker/console/templates/base.html",
        "worker/console/templates/accounts.html",
        "worker/console/static/console.css",
        "worker/console/locale/pl/LC_MESSAGES/console.po",
        "worker/locale/pl/LC_MESSAGES/mailworker.po",  # the core's sentences
    }
    assert expected == expected & names
