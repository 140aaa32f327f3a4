"""Signing in to the console: the session's secret, the CSRF token, the login rate limit.

The session is Starlette's signed cookie (itsdangerous): it holds the user's name, the CSRF
token and the chosen language, nothing secret. Its signing key is derived (HKDF-SHA256) from
the newest of the service's secret keys (:mod:`worker.crypto`), so there is no default to
forget and nothing more to store; rotating the keys signs everyone out.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from worker.crypto import configured_keys
from worker.settings import Settings

__all__ = [
    "CSRF_FIELD",
    "LoginThrottle",
    "csrf_matches",
    "csrf_token",
    "session_secret",
]

CSRF_FIELD = "csrf_token"
_CSRF_KEY = "csrf"


def session_secret(settings: Settings) -> str:
    """The key that signs session cookies, derived from the newest secret key."""
    newest = base64.urlsafe_b64decode(configured_keys(settings)[0])
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"mailworker console session"
    ).derive(newest)
    return derived.hex()


def csrf_token(session: MutableMapping[str, Any]) -> str:
    """The session's CSRF token, made on first use; every form carries it."""
    token = session.get(_CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[_CSRF_KEY] = token
    return token


def csrf_matches(session: MutableMapping[str, Any], sent: object) -> bool:
    """Whether a form's token is the session's (compared in constant time)."""
    expected = session.get(_CSRF_KEY)
    if not isinstance(expected, str) or not isinstance(sent, str):
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())


class LoginThrottle:
    """At most ``limit`` failed logins per user name and address in ``window`` seconds.

    Kept in the console process's memory: a restart forgets it, and each console process
    counts alone. A success does not wipe the failures, so guessing between two correct
    logins gains nothing.
    """

    def __init__(
        self,
        *,
        limit: int = 5,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def wait_seconds(self, name: str, address: str) -> float:
        """How long ``name`` from ``address`` must wait before trying again (0: may try)."""
        failures = self._recent((name.casefold(), address))
        if len(failures) < self._limit:
            return 0.0
        return max(0.0, failures[0] + self._window - self._clock())

    def failed(self, name: str, address: str) -> None:
        """Count a failed login (the last ``limit`` are kept)."""
        key = (name.casefold(), address)
        self._failures.setdefault(key, deque(maxlen=self._limit)).append(self._clock())

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        """The key's failures within the window; a key with none is forgotten."""
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        cutoff = self._clock() - self._window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures
