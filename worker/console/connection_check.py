"""A connection check's report as the account form shows it, one fact a line.

The report is :func:`worker.profile_check.check_profile`'s, the same as ``mailworker profiles
check`` prints; this module only picks its facts for the page. Core sentences (the encryption
in words, the failure's reason and hint) stay as the core wrote them: the template says them
through ``explain()``, and a server's reply inside a reason stays as the server sent it.
"""

from __future__ import annotations

import dataclasses

from worker.moments import utc_iso
from worker.profile_check import CheckReport, encryption_words

__all__ = ["CheckView", "check_view"]

_MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckView:
    """What the form says about one check."""

    works: bool
    server: str  # host:port
    encryption: str  # a core sentence: "implicit TLS", "STARTTLS, required", ...
    login: str | None  # None: the account logs in without one
    tls_version: str | None = None  # None: the check failed before, or no encryption
    starttls_used: bool = False
    certificate: str | None = None  # the subject
    certificate_verified: bool = False
    certificate_expires: str | None = None
    auth_mechanisms: str = ""
    size_limit_mib: str | None = None  # None: the server states no limit
    round_trips: int | None = None  # a message's round trips on this server (1, 2 or 4)
    pipelining_off: bool = False  # the workers do not use PIPELINING (a setting)
    stage: str | None = None  # where it failed: connect, tls, auth, ...
    reply: str | None = None  # the core's reason; a refusal's is the server's reply itself
    reply_is_servers: bool = False
    hint: str | None = None
    duration_ms: int = 0


def check_view(report: CheckReport) -> CheckView:
    profile, offer, failure = report.profile, report.offer, report.failure
    certificate = None if offer is None else offer.certificate
    size_limit = None if offer is None else offer.size_limit
    return CheckView(
        works=report.works,
        server=report.server,
        encryption=encryption_words(profile),
        login=profile.login if profile.auth_method != "none" else None,
        tls_version=None if offer is None else offer.tls_version,
        starttls_used=offer is not None and offer.starttls_used,
        certificate=None if certificate is None else certificate.subject,
        certificate_verified=certificate is not None and certificate.verified,
        certificate_expires=None if certificate is None else utc_iso(certificate.not_after),
        auth_mechanisms="" if offer is None else " ".join(offer.auth_mechanisms),
        size_limit_mib=None if size_limit is None else f"{size_limit / _MIB:.1f}",
        round_trips=None if offer is None else offer.round_trips,
        pipelining_off=offer is not None and not offer.pipelining,
        stage=None if failure is None else str(failure.stage),
        reply=None if failure is None else failure.reason,
        reply_is_servers=failure is not None and failure.code is not None,
        hint=None if failure is None else failure.hint,
        duration_ms=report.duration_ms,
    )
