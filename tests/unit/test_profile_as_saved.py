"""``profile_as_saved``: the profile a save would store, for a check made before saving."""

from __future__ import annotations

import dataclasses

from tests.kit.factories import make_profile
from worker.profile_saving import profile_as_saved
from worker.profiles import ProfileFields


def test_a_new_profile_is_what_add_would_store_and_not_yet_the_default() -> None:
    """The form's fields and the new token, no id, not the default, never paused."""
    fields = ProfileFields(name="biuro", from_address="biuro@firma.pl", host="smtp.firma.pl",
                           port=587, login="biuro@firma.pl", timeout_seconds=7)  # fmt: skip

    profile = profile_as_saved(fields, {"password_encrypted": b"token"}, None)

    assert fields == ProfileFields.of(profile)
    assert (0, False, b"token", None) == (
        profile.id,
        profile.is_default,
        profile.password_encrypted,
        profile.paused_until,
    )


def test_an_edit_keeps_the_stored_password_unless_the_change_names_one() -> None:
    """No password change keeps the stored token; a new token or its removal is used."""
    current = make_profile(password_encrypted=b"stored", pause_count=3)
    fields = dataclasses.replace(ProfileFields.of(current), display_name="Biuro", port=587,
                                 encryption="starttls")  # fmt: skip

    kept = profile_as_saved(fields, {}, current)
    replaced = profile_as_saved(fields, {"password_encrypted": b"new"}, current)
    removed = profile_as_saved(fields, {"password_encrypted": None}, current)

    assert (fields, b"stored", 3) == (ProfileFields.of(kept), kept.password_encrypted,
                                      kept.pause_count)  # fmt: skip
    assert b"new" == replaced.password_encrypted
    assert removed.password_encrypted is None
    assert b"stored" == current.password_encrypted
