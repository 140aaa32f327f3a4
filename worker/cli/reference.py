"""The configuration reference, ``docs/configuration.md``, rendered from :class:`Settings`.

The page is generated, never written by hand, so it cannot drift from the code: a test
compares the file with :func:`settings_reference`.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from worker.settings import CONFIG_FILE_ENV, Settings

__all__ = ["REFERENCE_PATH", "settings_reference"]

# Where the rendered page lives, relative to the repository root.
REFERENCE_PATH = Path("docs") / "configuration.md"

_HEADER = f"""\
# Configuration reference

<!-- Generated from worker/settings.py by `mailworker config reference`; do not edit. -->
<!-- Regenerate: mailworker config reference --output {REFERENCE_PATH.as_posix()} -->

Every setting comes from an environment variable or from a settings file (TOML, lower-case
names as in the second column), named by `--config FILE` or `${CONFIG_FILE_ENV}`.
Environment variables win over the file, the file over the defaults.
`mailworker config show` prints the settings in effect, secrets masked.

| Environment variable | In the settings file | Type | Default | Meaning |
| --- | --- | --- | --- | --- |
"""


def settings_reference() -> str:
    """The Markdown page: one table row per setting, in the order the settings declare them."""
    prefix = Settings.model_config.get("env_prefix", "")
    rows = [_row(name, field, prefix) for name, field in Settings.model_fields.items()]
    return _HEADER + "".join(rows)


def _row(name: str, field: FieldInfo, prefix: str) -> str:
    env_names, file_key = _names(name, field, prefix)
    cells = (
        " or ".join(f"`{env}`" for env in env_names),
        f"`{file_key}`",
        _kind(field),
        _default(field),
        _escape(field.description or ""),
    )
    return "| " + " | ".join(cells) + " |\n"


def _names(name: str, field: FieldInfo, prefix: str) -> tuple[list[str], str]:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        choices = [choice for choice in alias.choices if isinstance(choice, str)]
        env_names = [choice for choice in choices if choice.isupper()]
        file_keys = [choice for choice in choices if choice.islower()]
        return env_names, file_keys[0] if file_keys else name
    return [f"{prefix}{name}".upper()], name


def _kind(field: FieldInfo) -> str:
    kind = _type_name(field.annotation)
    bounds = [_bound(item) for item in field.metadata]
    return ", ".join([kind, *[bound for bound in bounds if bound]])


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        parts = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return " or ".join(_type_name(part) for part in parts)
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(f"`{value}`" for value in typing.get_args(annotation))
    names = {
        str: "text",
        int: "integer",
        float: "number",
        bool: "true/false",
        Path: "path",
        SecretStr: "secret text",
    }
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bound(item: Any) -> str:
    """``Ge(ge=1)`` → ``≥ 1``: the numeric limits pydantic checks."""
    for attribute, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
        value = getattr(item, attribute, None)
        if isinstance(value, int | float):
            return f"{sign} {value:g}"
    return ""


def _default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "empty"
    if isinstance(value, bool):  # as it is written in the environment
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, Path):
        return f"`{value.as_posix()}`"
    return f"`{value}`"


def _escape(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())
