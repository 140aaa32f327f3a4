"""What the page following a test message says about it, in the page's language.

The verdict is :func:`worker.test_message.follow_judgement`'s, the one ``mailworker send-test``
gives: delivered with the server's reply, not delivered with the reason and the advice, or no
answer yet. Before there is one, the row's state says how far the message got: queued,
being sent, waiting to be tried again. The page and its JSON (for ``follow.js``) are both made
from one :class:`FollowState`, so a refresh and the live update cannot disagree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from worker.message_status import Judgement, MessageStatus, Verdict
from worker.moments import utc_iso
from worker.profiles import Profile
from worker.test_message import advice, follow_judgement

__all__ = ["FollowState", "follow_state"]

Say = Callable[[str], str]


@dataclasses.dataclass(frozen=True, kw_only=True)
class FollowState:
    """The message's state in words: a headline, labelled details, and whether it is final."""

    message_id: int
    profile: str | None  # the account it goes through
    status: str  # the row's own status: pending, sending, sent, failed or cancelled
    verdict: str  # delivered, not_delivered, still_waiting, or in_progress
    final: bool  # no later look would change the verdict: stop following
    headline: str
    details: tuple[tuple[str, str], ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "profile": self.profile,
            "status": self.status,
            "verdict": self.verdict,
            "final": self.final,
            "headline": self.headline,
            "details": [list(pair) for pair in self.details],
        }


def follow_state(
    status: MessageStatus, profile: Profile | None, *, gettext: Say, explain: Say
) -> FollowState:
    """``status`` in the words of ``gettext`` (the page's texts) and ``explain`` (the core's)."""
    judgement = follow_judgement(status)
    if judgement is None:
        headline, details = _progress(status, gettext, explain)
        verdict, final = "in_progress", False
    else:
        headline, details = _answer(status, judgement, profile, gettext, explain)
        verdict = str(judgement.verdict)
        final = judgement.verdict is not Verdict.STILL_WAITING
    return FollowState(
        message_id=status.id,
        profile=status.profile,
        status=status.status,
        verdict=verdict,
        final=final,
        headline=headline,
        details=tuple(details),
    )


def _progress(status: MessageStatus, _: Say, explain: Say) -> tuple[str, list[tuple[str, str]]]:
    if status.status == "sending":
        worker = status.claimed_by or "?"
        return _("Sending: a worker is sending it now"), [(_("Worker"), worker)]
    if not status.picked_up:
        return _("Queued: waiting for a worker to pick it up"), []
    last_error = status.last_error or status.status_reason or ""
    return _("Waiting to be tried again"), [
        (_("Last error"), explain(last_error)),
        (_("Next attempt"), utc_iso(status.next_attempt_at)),
    ]


def _answer(
    status: MessageStatus, judgement: Judgement, profile: Profile | None, _: Say, explain: Say
) -> tuple[str, list[tuple[str, str]]]:
    if judgement.verdict is Verdict.DELIVERED:
        details = [(_("Server's reply"), explain(judgement.reason))]  # "accepted" if none
        if profile is not None:
            details.append((_("Server"), f"{profile.host}:{profile.port}"))
        tls = status.latest_attempt.tls_version if status.latest_attempt else None
        if tls:
            details.append((_("TLS version"), tls))
        if status.sent_at is not None:
            details.append((_("Sent at"), utc_iso(status.sent_at)))
        return _("Delivered"), details
    if judgement.verdict is Verdict.STILL_WAITING:
        return _("No answer yet"), [(_("Why"), explain(judgement.reason))]
    details = [(_("Reason"), explain(judgement.reason))]
    hint = advice(judgement, profile)
    if hint:
        details.append((_("What to do"), explain(hint)))
    paused_until = status.profile_paused_until
    if judgement.account_problem and status.profile_paused and paused_until is not None:
        details.append((_("Account paused until"), utc_iso(paused_until)))
    return _("Not delivered"), details
