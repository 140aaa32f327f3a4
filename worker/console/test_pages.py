"""The "Send test e-mail" page, and the page that follows the message until it has an answer.

An admin's test message is queued exactly as ``mailworker send-test`` queues it
(:mod:`worker.test_message`); a running worker sends it. The follow page shows what became of
it and ``/static/follow.js`` keeps it up to date from ``/send-test/{id}/state`` (JSON) until
the verdict is final; without the script, its link shows the state again.
"""

from __future__ import annotations

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from worker.console.following import FollowState, follow_state
from worker.console.i18n import explainer, translations
from worker.console.pages import PageKit
from worker.console.test_form import FILE_TOO_LARGE, NO_SUCH_ACCOUNT, SendTestForm
from worker.console_users import ConsoleUser
from worker.errors import InvalidMessage
from worker.test_message import TEST_KIND, TEST_PRIORITY, profile_to_test, queue_test_message

__all__ = ["routes"]

log = structlog.get_logger("worker.console")


class SendTestPages:
    def __init__(self, kit: PageKit) -> None:
        self._kit = kit

    async def _render_form(
        self, request: Request, user: ConsoleUser, form: SendTestForm
    ) -> Response:
        async with self._kit.repository(request) as repository:
            profiles = await repository.list_profiles()
        if not form.profile:
            form.profile = next((p.name for p in profiles if p.is_default), "")
        return self._kit.render(
            request, "send_test.html", 422 if form.problems else 200, user=user, form=form,
            profiles=profiles, own_problems=(NO_SUCH_ACCOUNT, FILE_TOO_LARGE),
            max_bytes=self._kit.settings.max_message_bytes,
        )  # fmt: skip

    async def send_test(self, request: Request) -> Response:
        try:
            return await self._send_test(request)
        finally:
            await request.close()  # the uploaded files' temporary copies, whatever happened

    async def _send_test(self, request: Request) -> Response:
        kit = self._kit
        admitted = await kit.admin_form(request)
        if isinstance(admitted, Response):
            return admitted
        user, posted = admitted
        if posted is None:
            return await self._render_form(request, user, SendTestForm())
        max_bytes = kit.settings.max_message_bytes
        form = await SendTestForm.posted(posted, max_bytes=max_bytes)
        if not form.check(max_bytes=max_bytes):
            return await self._render_form(request, user, form)
        queued = await self._queue(request, form, max_bytes, user)
        if queued is None:
            return await self._render_form(request, user, form)
        message_id, profile = queued
        log.info("test_message_queued", outbox_id=message_id, profile=profile,
                 priority=TEST_PRIORITY, by=user.name)  # fmt: skip
        return RedirectResponse(f"/send-test/{message_id}", status_code=303)

    async def _queue(
        self, request: Request, form: SendTestForm, max_bytes: int, user: ConsoleUser
    ) -> tuple[int, str] | None:
        """The queued message's id and account; None when the form has a problem after all."""
        async with self._kit.repository(request) as repository:
            profile = await profile_to_test(repository, form.profile or None)
            if profile is None:
                form.add_problem("profile", NO_SUCH_ACCOUNT)
                return None
            try:
                message_id = await queue_test_message(
                    repository, profile, form.request(user.name), max_bytes=max_bytes
                )
            except InvalidMessage as exc:  # e.g. more recipients than the account may send to
                for problem in exc.problems:
                    form.add_problem("", problem)
                return None
        return message_id, profile.name

    async def _state(self, request: Request) -> FollowState:
        message_id: int = request.path_params["message_id"]
        async with self._kit.repository(request) as repository:
            status = await repository.message_status(message_id)
            if status is None or status.kind != TEST_KIND:
                raise HTTPException(404, "No test message has this number.")
            profile = await repository.get_profile(status.profile) if status.profile else None
        language = self._kit.language(request)
        return follow_state(
            status, profile, gettext=translations(language).gettext, explain=explainer(language)
        )

    async def follow(self, request: Request) -> Response:
        user = await self._kit.admin(request)
        if isinstance(user, Response):
            return user
        state = await self._state(request)
        return self._kit.render(request, "send_test_follow.html", user=user, state=state)

    async def follow_json(self, request: Request) -> Response:
        user = await self._kit.signed_in(request)
        if user is None:  # signed out meanwhile: the script stops; its link leads to sign-in
            return JSONResponse({"signed_in": False}, status_code=401)
        if not user.is_admin:
            raise HTTPException(403, "Only an administrator may do this.")
        return JSONResponse((await self._state(request)).as_json())


def routes(kit: PageKit) -> list[Route]:
    pages = SendTestPages(kit)
    return [
        Route("/send-test", pages.send_test, methods=["GET", "POST"]),
        Route("/send-test/{message_id:int}", pages.follow, methods=["GET"]),
        Route("/send-test/{message_id:int}/state", pages.follow_json, methods=["GET"]),
    ]
