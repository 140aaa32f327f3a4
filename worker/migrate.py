"""Running the alembic migrations from code: what ``mailworker migrate`` and the tests call."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from worker.models import DECLARED_SCHEMA
from worker.resources import migrations_dir

__all__ = [
    "alembic_config",
    "comparison_options",
    "downgrade",
    "head_revision",
    "schema_problem",
    "upgrade",
    "upgrade_async",
]


def comparison_options(schema: str) -> dict[str, Any]:
    """How the database is compared with the models (autogenerate, ``alembic check``, tests)."""
    return {
        "version_table_schema": schema,
        "include_schemas": True,
        # Only the service's own schema: the database may hold the callers' tables too.
        "include_name": lambda name, type_, _parent: type_ != "schema" or name == DECLARED_SCHEMA,
        "compare_type": True,
        "compare_server_default": True,
    }


def alembic_config(url: str, schema: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["url"] = url
    config.attributes["schema"] = schema
    return config


def upgrade(url: str, schema: str, revision: str = "head") -> None:
    """Bring the schema up to ``revision``. Blocking: env.py runs its own event loop."""
    command.upgrade(alembic_config(url, schema), revision)


def downgrade(url: str, schema: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url, schema), revision)


async def upgrade_async(url: str, schema: str, revision: str = "head") -> None:
    """``upgrade`` from inside a running event loop (env.py needs a loop of its own)."""
    await asyncio.to_thread(upgrade, url, schema, revision)


def head_revision() -> str:
    """The newest schema version this code knows (its last migration)."""
    head = ScriptDirectory.from_config(alembic_config("", DECLARED_SCHEMA)).get_current_head()
    assert head is not None  # the package always ships its migrations
    return head


def schema_problem(revision: str | None, *, schema: str) -> str | None:
    """Why a database at ``revision`` cannot be used by this code, in one line; None: it can."""
    head = head_revision()
    if revision == head:
        return None
    if revision is None:
        return f'schema {schema!r} was never migrated: run "mailworker migrate"'
    try:
        known = ScriptDirectory.from_config(alembic_config("", schema)).get_revision(revision)
    except CommandError:
        known = None
    if known is None:
        return (
            f"schema {schema!r} is at version {revision}, newer than this mailworker knows"
            f" ({head}): upgrade mailworker"
        )
    return (
        f"schema {schema!r} is at version {revision}; this mailworker needs {head}:"
        ' run "mailworker migrate"'
    )
