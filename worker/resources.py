"""Where the data files shipped with the service are: migrations and provider presets.

In a checkout they are the top-level ``migrations/`` and ``config/`` folders; an installed
wheel carries copies under ``worker/_data/``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["config_dir", "migrations_dir"]

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the service's {name}/ folder is missing from this installation")


def migrations_dir() -> Path:
    return _find("migrations")


def config_dir() -> Path:
    return _find("config")
