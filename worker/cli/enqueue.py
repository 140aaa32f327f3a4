"""``mailworker enqueue``: put one message into the outbox from a shell script."""

from __future__ import annotations

import click

__all__ = ["enqueue"]


@click.command("enqueue")
def enqueue() -> None:
    """Put a message into the outbox."""
    raise click.ClickException("not built yet")
