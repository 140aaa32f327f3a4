"""No core dumps: a crashed worker must not leave its decrypted passwords on disk."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import structlog

__all__ = ["disable_core_dumps"]

log = structlog.get_logger(__name__)

# From <linux/prctl.h>.
PR_SET_DUMPABLE = 4


def disable_core_dumps() -> None:
    """Forbid core dumps of this process; call it first thing, before any password is read.

    ``RLIMIT_CORE`` (0, 0) stops core files, and child processes inherit it. On Linux the
    process is also made undumpable (``PR_SET_DUMPABLE`` 0): that stops a core dump piped to
    a crash collector too, which the limit does not, and keeps other processes of the same
    user from attaching to it. What the platform lacks is skipped and logged at debug level:
    it is never a reason not to start.
    """
    _zero_core_limit()
    if sys.platform == "linux":
        _not_dumpable()


def _zero_core_limit() -> None:
    try:
        import resource  # noqa: PLC0415 - POSIX only; absent on Windows

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, OSError, ValueError) as exc:
        log.debug("core_limit_not_set", error=str(exc))


def _not_dumpable() -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")
    except (OSError, AttributeError) as exc:
        log.debug("dumpable_not_cleared", error=str(exc))
