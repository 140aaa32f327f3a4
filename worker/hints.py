"""The provider's own advice for a failure, from the presets data (shared by worker and CLI)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from worker.classify import Failure
from worker.presets import Preset
from worker.profiles import Profile

__all__ = ["preset_of", "provider_hint"]


def preset_of(profile: Profile, presets: Mapping[str, Preset]) -> Preset | None:
    """The preset the profile was made from, if it names one that still exists."""
    return presets.get(profile.preset) if profile.preset else None


def provider_hint(failure: Failure, profile: Profile, presets: Mapping[str, Preset]) -> Failure:
    """``failure`` with the provider's ``auth_failure_hint`` when the login was refused.

    Other failures, and profiles without a preset (or whose preset has no such hint), keep
    the hint :func:`worker.classify.classify` gave them.
    """
    preset = preset_of(profile, presets)
    if not failure.about_credentials or preset is None or not preset.auth_failure_hint:
        return failure
    if profile.auth_method == "oauth2":
        return failure  # the preset's hint is about passwords; the OAuth hint says what to do
    return dataclasses.replace(failure, hint=" ".join(preset.auth_failure_hint.split()))
