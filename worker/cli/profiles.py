"""``mailworker profiles ...``: manage SMTP profiles."""

from __future__ import annotations

import click

__all__ = ["profiles"]


@click.group("profiles")
def profiles() -> None:
    """Add, change, list and remove SMTP profiles (mail account settings)."""
