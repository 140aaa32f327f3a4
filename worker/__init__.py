"""mail-outbox-worker: sends notification e-mail from a PostgreSQL outbox over SMTP."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
