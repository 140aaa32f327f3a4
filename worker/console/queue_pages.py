"""The queue pages: the outbox by filter, one message, and retry or cancel after confirming.

Reading is for every signed-in user; retry and cancel are for admins, each first as a page
saying what will happen (GET) and then done by its confirm button (POST). They go through the
same repository calls and words as ``mailworker messages retry`` / ``cancel``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from worker.console.pages import PageKit
from worker.console.queue_filter import PAGE_SIZE, QueueFilter
from worker.console_users import ConsoleUser
from worker.listener import notify_channel
from worker.operations import (
    CANCELLABLE_STATUSES,
    MESSAGE_STATUSES,
    RETRYABLE_STATUSES,
    ChangeOutcome,
    MessageChange,
    MessageFilter,
    MessageKey,
    cancel_refusal,
    change_outcomes,
    retry_refusal,
)
from worker.repository import Repository

__all__ = ["routes"]

log = structlog.get_logger("worker.console")

Action = Literal["retry", "cancel", "retry_failed"]
# A notice lives in the session cookie until shown: keep it well under the cookie's 4 kB.
_NOTICE_REFUSALS = 10
_NOTICE = "queue_notice"


class QueuePages:
    def __init__(self, kit: PageKit) -> None:
        self._kit = kit

    async def queue(self, request: Request) -> Response:
        user = await self._kit.reader(request)
        if isinstance(user, Response):
            return user
        now = datetime.now(UTC)
        chosen = QueueFilter.read(request.query_params, now=now)
        rows: list[dict[str, Any]] = []
        async with self._kit.repository(request) as repository:
            profiles = [profile.name for profile in await repository.list_profiles()]
            if not chosen.problems:
                rows = await repository.search_messages(chosen.selection(now=now))
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        next_query = chosen.query(after=MessageKey.of(rows[-1])) if more else None
        return self._kit.render(
            request, "queue.html", 422 if chosen.problems else 200, user=user,
            chosen=chosen, rows=rows, profiles=profiles, next_query=next_query,
            statuses=MESSAGE_STATUSES,
            notice=request.session.pop(_NOTICE, None),
        )  # fmt: skip

    async def message(self, request: Request) -> Response:
        user = await self._kit.reader(request)
        if isinstance(user, Response):
            return user
        message_id = _message_id(request)
        async with self._kit.repository(request) as repository:
            details = await repository.message_details(message_id)
        if details is None:
            raise HTTPException(404, "No message has this id.")
        return self._kit.render(
            request, "message.html", user=user, details=details, message=details.message,
            retryable=RETRYABLE_STATUSES, cancellable=CANCELLABLE_STATUSES,
            notice=request.session.pop(_NOTICE, None),
        )  # fmt: skip

    async def retry(self, request: Request) -> Response:
        return await self._one_message(request, "retry")

    async def cancel(self, request: Request) -> Response:
        return await self._one_message(request, "cancel")

    async def _one_message(self, request: Request, action: Action) -> Response:
        kit = self._kit
        admitted = await kit.admin_form(request)
        if isinstance(admitted, Response):
            return admitted
        user, form = admitted
        posted = form is not None
        message_id = _message_id(request)
        back = f"/queue/{message_id}"
        async with kit.repository(request) as repository:
            if not posted:
                details = await repository.message_details(message_id)
                if details is None:
                    raise HTTPException(404, "No message has this id.")
                return kit.render(request, "confirm.html", user=user, action=action,
                                  message=details.message, back=back)  # fmt: skip
            if action == "retry":
                changes = await self._requeue(repository, [message_id])
            else:
                changes = await repository.cancel_pending([message_id])
        _record(request, user, action, [message_id], changes)
        return RedirectResponse(back, status_code=303)

    async def retry_failed(self, request: Request) -> Response:
        kit = self._kit
        admitted = await kit.admin_form(request)
        if isinstance(admitted, Response):
            return admitted
        user, form = admitted
        given = request.query_params if form is None else form
        profile = str(given.get("profile", "")).strip()
        if not profile:
            raise HTTPException(400, "Name the profile whose failed messages to retry.")
        back = "/queue?" + urlencode({"profile": profile})
        async with kit.repository(request) as repository:
            if form is None:
                failed = MessageFilter(statuses=("failed",), profile=profile)
                count = await repository.count_messages(failed)
                return kit.render(request, "confirm.html", user=user, action="retry_failed",
                                  profile=profile, count=count, back=back)  # fmt: skip
            changes = await self._requeue(repository, None, profile=profile)
        _record(request, user, "retry_failed", [change.id for change in changes], changes,
                profile=profile)  # fmt: skip
        return RedirectResponse(back, status_code=303)

    async def _requeue(
        self, repository: Repository, ids: Sequence[int] | None, *, profile: str | None = None
    ) -> list[MessageChange]:
        """``ids`` (None: every failed message of ``profile``) due again; workers woken."""
        if ids is None:
            changes = await repository.requeue_failed(profile)
        else:
            changes = await repository.requeue_messages(ids)
        if any(change.changed for change in changes):
            await repository.wake_workers(notify_channel(self._kit.settings.db_schema))
        return changes


def _message_id(request: Request) -> int:
    """The id in the path; 404 for one no row can have (the column is a positive bigint)."""
    text: str = request.path_params["message_id"]
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 2**63):
        raise HTTPException(404, "No message has this id.")
    return int(text)


def _record(
    request: Request,
    user: ConsoleUser,
    action: Action,
    ids: Sequence[int],
    changes: Sequence[MessageChange],
    *,
    profile: str | None = None,
) -> None:
    """Log what changed and by whom; keep its words for the page the person goes back to."""
    refusal = cancel_refusal if action == "cancel" else retry_refusal
    outcomes = change_outcomes(ids, changes, refusal)
    changed = [outcome.id for outcome in outcomes if outcome.result == "changed"]
    if action == "cancel":
        log.info("messages_cancelled", count=len(changed), ids=changed, by=user.name)
    else:
        log.info("messages_requeued", count=len(changed), ids=changed[:100], profile=profile,
                 by=user.name)  # fmt: skip
    request.session[_NOTICE] = _notice(action, outcomes)


def _notice(action: Action, outcomes: Sequence[ChangeOutcome]) -> dict[str, Any]:
    """The result in plain values (the session holds it as JSON), for the page to say."""
    refused = [(outcome.id, outcome.refusal) for outcome in outcomes if outcome.refusal]
    return {
        "action": action,
        "changed": sum(outcome.result == "changed" for outcome in outcomes),
        "already": [outcome.id for outcome in outcomes if outcome.result == "already"],
        "refused": refused[:_NOTICE_REFUSALS],
        "refused_more": max(0, len(refused) - _NOTICE_REFUSALS),
    }


def routes(kit: PageKit) -> list[Route]:
    pages = QueuePages(kit)
    return [
        Route("/queue", pages.queue, methods=["GET"]),
        Route("/queue/retry-failed", pages.retry_failed, methods=["GET", "POST"]),
        Route("/queue/{message_id}", pages.message, methods=["GET"]),
        Route("/queue/{message_id}/retry", pages.retry, methods=["GET", "POST"]),
        Route("/queue/{message_id}/cancel", pages.cancel, methods=["GET", "POST"]),
    ]
