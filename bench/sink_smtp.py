"""The sink's SMTP protocol: aiosmtpd's, and BDAT (RFC 3030) when the sink offers CHUNKING.

Imported by the sink's child process only. A message sent in chunks reaches the handler's
``handle_DATA`` exactly as one sent with DATA, so it waits the same acceptance time after
its ``LAST`` chunk as after DATA's final dot.
"""

# ruff: noqa: N802 - aiosmtpd dispatches to smtp_<VERB> methods by name.

from __future__ import annotations

import re
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope

__all__ = ["ChunkedEnvelope", "SinkSMTP"]

_BDAT_ARGUMENT = re.compile(r"(?P<size>[0-9]{1,18})(?: +(?P<last>LAST))?", re.IGNORECASE)


class ChunkedEnvelope(Envelope):
    """aiosmtpd's envelope, which says whether its message came with BDAT."""

    came_in_chunks = False


class SinkSMTP(SMTP):
    """aiosmtpd's protocol with ``BDAT <size> [LAST]`` served when ``chunking`` is on."""

    def __init__(self, handler: Any, *, chunking: bool, **options: Any) -> None:
        self._chunking = chunking
        self._chunks: list[bytes] = []
        super().__init__(handler, **options)

    async def smtp_BDAT(self, arg: str | None) -> None:
        if not self._chunking:
            await self.push('500 Error: command "BDAT" not recognized')  # as aiosmtpd says
            return
        argument = _BDAT_ARGUMENT.fullmatch(arg or "")
        if argument is None:
            await self.push("501 5.5.4 Syntax: BDAT <size> [LAST]")
            return
        chunk = await self._reader.readexactly(int(argument["size"]))  # read even if refused
        envelope = self.envelope
        if envelope is None or not envelope.mail_from or not envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need MAIL and RCPT commands")
            return
        self._chunks.append(chunk)
        if argument["last"] is None:
            await self.push(f"250 2.0.0 {len(chunk)} octets received")
            return
        envelope.content = envelope.original_content = b"".join(self._chunks)
        if isinstance(envelope, ChunkedEnvelope):
            envelope.came_in_chunks = True  # the handler counts these
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    def _set_post_data_state(self) -> None:
        # After a message, RSET or EHLO: no chunks left. (aiosmtpd leaves this one untyped.)
        super()._set_post_data_state()  # type: ignore[no-untyped-call]
        self._chunks = []

    def _create_envelope(self) -> Envelope:
        return ChunkedEnvelope()
