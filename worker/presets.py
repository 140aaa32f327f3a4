"""Provider presets: the known settings of common mail providers, read from ``providers.toml``.

The presets are data, not code: ``config/providers.toml`` lists each provider's server, login
rule, limits, hints and the source of every fact. This module only reads and checks that file.
"""

from __future__ import annotations

import difflib
import functools
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker.errors import ConfigurationError, InvalidProfile
from worker.resources import config_dir
from worker.sentences import N_

__all__ = [
    "PRESETS_FILE",
    "LoginRule",
    "Preset",
    "find_preset",
    "load_presets",
    "parse_presets",
    "require_preset",
    "unknown_preset_problem",
]

PRESETS_FILE = "providers.toml"

LoginRule = Literal["full_address", "local_part"]


class Preset(BaseModel):
    """One provider's settings; field meanings are described at the top of providers.toml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    title: str
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    # Providers never take mail unencrypted, so ``none`` is not a preset value.
    encryption: Literal["auto", "ssl", "starttls"]
    other_ports: tuple[int, ...] = ()
    login_rule: LoginRule
    daily_cap: int | None = Field(default=None, gt=0)
    recipients_per_day: int | None = Field(default=None, gt=0)
    messages_per_minute: int | None = Field(default=None, gt=0)
    max_recipients_per_message: int | None = Field(default=None, gt=0)
    strip_password_spaces: bool = False
    hint: str
    auth_failure_hint: str = ""
    # OAuth 2.0 sign-in (docs/oauth.md): the provider, and Microsoft's tenant for its accounts.
    oauth_provider: Literal["microsoft", "google"] | None = None
    oauth_tenant: str | None = None
    oauth_hint: str = ""
    source: str = Field(min_length=1)

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the provider documents, the preset's own first."""
        return (self.port, *self.other_ports)


def parse_presets(text: str, *, source: str) -> Mapping[str, Preset]:
    """The presets in a providers.toml text; :class:`ConfigurationError` names each mistake."""
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source} is not valid TOML: {exc}") from None
    presets = {name: _preset(name, table, source) for name, table in tables.items()}
    return types.MappingProxyType(presets)


def _preset(name: str, table: Any, source: str) -> Preset:
    if not isinstance(table, dict):
        raise ConfigurationError(f"{source}: {name} must be a [table] of preset fields")
    try:
        return Preset(name=name, **table)
    except ValidationError as exc:
        mistakes = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise ConfigurationError(f"{source}: preset {name!r}: {mistakes}") from None


def load_presets(path: Path | None = None) -> Mapping[str, Preset]:
    """The presets in ``path``, or those shipped with the service (read once, then kept)."""
    if path is None:
        return _shipped_presets()
    return _read_presets(path)


@functools.cache
def _shipped_presets() -> Mapping[str, Preset]:
    return _read_presets(config_dir() / PRESETS_FILE)


def _read_presets(path: Path) -> Mapping[str, Preset]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read provider presets {path}: {exc.strerror}") from None
    return parse_presets(text, source=str(path))


def unknown_preset_problem(name: str, presets: Mapping[str, Preset]) -> str:
    """Why ``name`` is no preset: the nearest name, if one is near, and the names that are."""
    near = difflib.get_close_matches(name.strip().lower(), list(presets), n=1, cutoff=0.6)
    values = {"name": repr(name), "names": ", ".join(sorted(presets))}
    if near:
        return N_("unknown preset %(name)s; did you mean %(value)s? known presets: %(names)s") % {
            **values,
            "value": repr(near[0]),
        }
    return N_("unknown preset %(name)s; known presets: %(names)s") % values


def find_preset(name: str, presets: Mapping[str, Preset]) -> Preset | None:
    """The preset named ``name``, whatever its case (``WP`` is ``wp``)."""
    wanted = name.strip()
    return presets.get(wanted) or next(
        (preset for key, preset in presets.items() if key.lower() == wanted.lower()), None
    )


def require_preset(name: str, presets: Mapping[str, Preset]) -> Preset:
    """The named preset (any case), or :class:`InvalidProfile` naming the nearest and all."""
    preset = find_preset(name, presets)
    if preset is None:
        raise InvalidProfile([unknown_preset_problem(name, presets)])
    return preset
