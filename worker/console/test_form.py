"""The "Send test e-mail" form: what was typed and uploaded, checked by the CLI's own rules.

The posted fields become a :class:`worker.test_message.SendTestRequest`; the message it makes
is checked by :meth:`worker.outbox.OutboxMessage.problems` (as ``mailworker send-test`` checks
it) and each problem is shown beside the field it is about.
"""

from __future__ import annotations

import dataclasses

from starlette.datastructures import FormData, UploadFile

from worker.outbox import Attachment
from worker.test_message import DEFAULT_SUBJECT, SendTestRequest

__all__ = ["FILE_TOO_LARGE", "NO_SUCH_ACCOUNT", "SendTestForm", "problem_field"]

NO_SUCH_ACCOUNT = "No account has this name."
FILE_TOO_LARGE = "The file is larger than a message may be (%(limit)s bytes)."
# Where each problem of OutboxMessage.problems belongs, by how its sentence starts.
_PROBLEM_FIELDS = (
    ("to address", "to"),
    ("no recipients", "to"),
    ("subject", "subject"),
    ("body_text", "body"),
    ("attachment", "attachment"),
    ("message is", "attachment"),  # too large: bodies and attachments together
)


def problem_field(problem: str) -> str:
    """The form field a problem is about; ``""``: it goes at the top of the form."""
    for start, field in _PROBLEM_FIELDS:
        if problem.startswith(start):
            return field
    return ""


@dataclasses.dataclass(kw_only=True)
class SendTestForm:
    """The form's values and the problems found, by field (``""``: the whole form)."""

    profile: str = ""
    to: str = ""
    subject: str = DEFAULT_SUBJECT
    body: str = ""
    attachments: tuple[Attachment, ...] = ()
    problems: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    @classmethod
    async def posted(cls, form: FormData, *, max_bytes: int) -> SendTestForm:
        """The posted form; an upload above ``max_bytes`` is a problem, and is not kept."""
        posted = cls(
            profile=str(form.get("profile", "")),
            to=str(form.get("to", "")).strip(),
            subject=str(form.get("subject", "")),
            body=str(form.get("body", "")),
        )
        attachments = []
        for upload in form.getlist("attachment"):
            if not isinstance(upload, UploadFile) or not upload.filename:
                continue  # the file field left empty
            content = await upload.read(max_bytes + 1)  # no more than the limit in memory
            if len(content) > max_bytes:
                posted.add_problem("attachment", FILE_TOO_LARGE)
                continue
            # The browser's type without parameters; none given: guessed from the name.
            content_type = (upload.content_type or "").partition(";")[0].strip()
            attachments.append(Attachment(upload.filename, content, content_type))
        posted.attachments = tuple(attachments)
        return posted

    def add_problem(self, field: str, problem: str) -> None:
        self.problems.setdefault(field, []).append(problem)

    def request(self, console_user: str | None = None) -> SendTestRequest:
        """What to queue; an empty body means the default one, as in ``send-test``, naming
        ``console_user`` as who sent it."""
        return SendTestRequest(
            profile=self.profile or None,
            to=self.to,
            subject=self.subject,
            body=self.body if self.body.strip() else None,
            attachments=self.attachments,
            console_user=console_user,
        )

    def check(self, *, max_bytes: int) -> bool:
        """Record the message's problems by field; whether it may be queued."""
        message = self.request().outbox_message(self.body)
        for problem in message.problems(max_bytes=max_bytes):
            self.add_problem(problem_field(problem), problem)
        return not self.problems
