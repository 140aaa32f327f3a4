"""Storing a profile as ``profiles add/edit`` and the console's account form both do.

The password a person gives is cleaned for its preset, registered so that no log line shows
it, and encrypted (:class:`NewPassword`); :func:`password_values` is the password column's
change; :func:`settle_default` makes the first real profile the default;
:func:`profile_as_saved` is the profile a save would store, for a check before saving.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from worker.crypto import PasswordCipher
from worker.devmail import is_dev_profile
from worker.errors import SecretKeyError
from worker.logs import register_secret
from worker.presets import Preset, load_presets
from worker.profiles import Profile, ProfileFields, clean_password
from worker.repository import Repository

__all__ = [
    "NewPassword",
    "password_values",
    "preset_or_none",
    "profile_as_saved",
    "settle_default",
]


@dataclasses.dataclass(frozen=True)
class NewPassword:
    """A password the user gave, and the cipher that will store it."""

    plain: str = dataclasses.field(repr=False)
    cipher: PasswordCipher

    def cleaned(self, preset: Preset | None) -> str:
        password = clean_password(self.plain, preset)
        register_secret(password)
        return password

    def token(self, preset: Preset | None) -> bytes:
        return self.cipher.encrypt(self.cleaned(preset))

    def is_stored_in(self, profile: Profile, preset: Preset | None) -> bool:
        """Whether ``profile`` already holds this password."""
        if profile.password_encrypted is None:
            return False
        try:
            stored = self.cipher.decrypt(profile.password_encrypted, profile=profile.name)
        except SecretKeyError:
            return False  # stored under a lost key: the given password replaces it
        return stored == self.cleaned(preset)


def preset_or_none(name: str | None) -> Preset | None:
    """The shipped preset of that exact name, if there is one."""
    return load_presets().get(name) if name else None


def password_values(
    current: Profile, fields: ProfileFields, new: NewPassword | None, *, remove: bool
) -> dict[str, bytes | None]:
    """The ``password_encrypted`` change, if any: a new password, or none when not needed."""
    if new is not None:
        return {"password_encrypted": new.token(preset_or_none(fields.preset))}
    if (remove or fields.auth_method in {"none", "oauth2"}) and current.has_password:
        return {"password_encrypted": None}
    return {}


def profile_as_saved(
    fields: ProfileFields, password: Mapping[str, bytes | None], current: Profile | None
) -> Profile:
    """The profile that saving ``fields`` and the ``password`` change (of
    :func:`password_values`) would store, without storing it: ``current`` changed, or a new
    profile (not the default yet)."""
    kept = None if current is None else current.password_encrypted
    token = password.get("password_encrypted", kept)
    if current is not None:
        return dataclasses.replace(current, **fields.as_row(), password_encrypted=token)
    return Profile(
        id=0, server_type="smtp", is_default=False, password_encrypted=token, **fields.as_row()
    )


async def settle_default(repository: Repository, name: str, *, make_default: bool) -> bool:
    """Make ``name`` the default when asked, when no profile is, or when the default is the
    development capture profile (the first real profile takes over); whether it now is."""
    current = await repository.get_default_profile()
    if make_default or current is None or is_dev_profile(current):
        return await repository.make_default_profile(name)
    return False
