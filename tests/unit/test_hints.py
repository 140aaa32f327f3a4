"""The provider's advice for a refused login (``worker.hints.provider_hint``), no I/O."""

from __future__ import annotations

from tests.kit.factories import make_profile
from worker.classify import Failure, FailureKind, Stage
from worker.hints import provider_hint
from worker.presets import load_presets
from worker.profiles import Profile


def profile(preset: str | None) -> Profile:
    return make_profile(preset=preset)


REFUSED_LOGIN = Failure(
    kind=FailureKind.PROFILE,
    stage=Stage.AUTH,
    reason="535 5.7.8 Bad credentials",
    code=535,
    hint="check the login and password of the profile",
    about_credentials=True,
)


def test_a_refused_login_gets_the_presets_advice_on_one_line() -> None:
    """The wp preset's auth_failure_hint replaces the generic hint, its line breaks joined."""
    presets = load_presets()

    hinted = provider_hint(REFUSED_LOGIN, profile("wp"), presets)

    assert " ".join(presets["wp"].auth_failure_hint.split()) == hinted.hint
    assert REFUSED_LOGIN.reason == hinted.reason


def test_other_failures_and_profiles_without_a_preset_keep_their_hint() -> None:
    """Only a refused login of a profile made from a preset gets the provider's advice."""
    timeout = Failure(kind=FailureKind.TRANSIENT, stage=Stage.CONNECT, reason="timed out")

    assert REFUSED_LOGIN == provider_hint(REFUSED_LOGIN, profile(None), load_presets())
    assert REFUSED_LOGIN == provider_hint(REFUSED_LOGIN, profile("gone"), load_presets())
    assert timeout == provider_hint(timeout, profile("wp"), load_presets())
