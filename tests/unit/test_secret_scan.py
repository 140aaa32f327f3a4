"""The secret scanner finds passwords (plain or base64) and keys, and reports them masked."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet

from tests.kit.secret_scan import Leak, Secrets, find_leaks, mask

PASSWORD = "Zielona-Brama-7"


def _secrets(*keys: str) -> Secrets:
    secrets = Secrets()
    secrets.add_password(PASSWORD)
    for key in keys:
        secrets.add_key(key)
    return secrets


def test_a_password_in_output_is_reported_masked() -> None:
    """A password in a log line is a leak; the report shows two characters and the length."""
    outputs = [("test_a, stdout", f"login user=jan password={PASSWORD}"), ("test_b, log", "ok")]
    expected = [Leak("test_a, stdout", "password Zi…(15 chars)")]
    assert expected == find_leaks(outputs, _secrets())


def test_a_password_in_base64_is_reported() -> None:
    """AUTH LOGIN sends the password in base64; a debug log of it is a leak too."""
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    expected = [Leak("smtp log", "password Zi…(15 chars)")]
    assert expected == find_leaks([("smtp log", f"C: {encoded}")], _secrets())


def test_a_key_in_output_is_reported() -> None:
    """A Fernet key that was used is found among other key-shaped text."""
    used, unused = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    outputs = [("config", f"secret_key={used}\nother={unused}")]
    expected = [Leak("config", "key " + mask(used))]
    assert expected == find_leaks(outputs, _secrets(used))


def test_clean_output_and_short_secrets_give_no_hits() -> None:
    """Text without secrets is clean; secrets too short to tell from text are not looked for."""
    secrets = _secrets()
    secrets.add_password("pw")
    outputs = [("cli", "profile wp: password set (encrypted), pw field hidden")]
    assert [] == find_leaks(outputs, secrets)


def test_the_mask_does_not_show_the_secret() -> None:
    """The report names a secret by its first two characters and its length only."""
    assert "Zi…(15 chars)" == mask(PASSWORD)
