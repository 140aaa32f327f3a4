"""One mail transaction in one flight: PIPELINING (RFC 2920) and CHUNKING (RFC 3030).

aiosmtplib sends MAIL, each RCPT and DATA one at a time and waits for each reply: four round
trips for a message with one recipient, then the server's time to accept it. When the server
offers PIPELINING, :func:`send_transaction` writes the whole envelope at once; when it offers
CHUNKING too, the message itself goes in the same write as ``BDAT <size> LAST``, so a message
costs one round trip. Without PIPELINING it is aiosmtplib's own ``sendmail()``.

The result and the errors are ``sendmail()``'s, so the classification of a failure does not
depend on how the message went: ``SMTPSenderRefused`` for MAIL, ``SMTPRecipientsRefused`` when
every RCPT is refused (the refused ones of a partly accepted message are returned), and
``SMTPDataError`` for DATA's or BDAT's reply. After a refusal the envelope is reset with RSET,
as ``sendmail()`` does.

aiosmtplib's protocol reads exactly one reply per command written and drops bytes that arrive
while a reply waits to be picked up, so the replies of a group would be lost.
:class:`PipeliningProtocol` is that protocol, with aiosmtplib's own reply parser and TLS
transport, which while a group is out keeps every reply, in order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import re
from collections.abc import Iterable, Sequence
from typing import cast

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import (
    COMMAND_INJECTION_REGEX,
    MAX_RESPONSE_LENGTH,
    PERIOD_REGEX,
    SMTPProtocol,
    normalize_message_line_endings,
)

from worker.sentences import N_

__all__ = ["ChunkingRefused", "PipeliningProtocol", "Transfer", "send_transaction", "transfer_for"]

_ACCEPTED = (250, 251)  # RCPT: 251 "user not local; will forward"
_START_INPUT = 354
_CLOSING = 421
_JOIN_BELOW = 64 * 1024  # bytes: a message this small goes in the same write as its commands


class Transfer(enum.StrEnum):
    """How a message goes over the connection."""

    CLASSIC = "classic"  # MAIL, RCPT ..., DATA, each waiting for its reply
    PIPELINING = "pipelining"  # MAIL, RCPT ..., DATA in one write; then the message
    CHUNKING = "chunking"  # MAIL, RCPT ..., BDAT <size> LAST and the message in one write


def transfer_for(client: aiosmtplib.SMTP, *, pipelining: bool, chunking: bool) -> Transfer:
    """The quickest way the server offers that this connection may use (after EHLO)."""
    if not pipelining or not client.supports_extension("pipelining"):
        return Transfer.CLASSIC
    if chunking and client.supports_extension("chunking"):
        return Transfer.CHUNKING
    return Transfer.PIPELINING


class ChunkingRefused(aiosmtplib.SMTPResponseException):
    """The server offers CHUNKING, yet does not know BDAT (500/502): the message's bytes were
    read as commands, so the connection is closed and the profile sends without CHUNKING."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(
            code,
            N_(
                "the server offers CHUNKING but did not accept BDAT (%(reply)s); the message"
                " will be sent again without it"
            )
            % {"reply": f"{code} {' '.join(message.split())}"},
        )


class PipeliningProtocol(SMTPProtocol):
    """aiosmtplib's protocol, which keeps every reply while a group of commands is out.

    Outside a group (``_replies`` is None) it is aiosmtplib's protocol, unchanged.
    """

    _replies: collections.deque[aiosmtplib.SMTPResponse | Exception] | None = None
    _reply_waiter: asyncio.Future[None] | None = None  # while a read waits for a reply

    @classmethod
    def of(cls, client: aiosmtplib.SMTP) -> PipeliningProtocol:
        """The connected client's protocol, as a :class:`PipeliningProtocol`."""
        protocol = client.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        if not isinstance(protocol, cls):
            # aiosmtplib makes its protocol inside connect() and takes no factory for another
            # class. This one only adds methods and two class-level defaults, so the connected
            # instance can become one; the transport and aiosmtplib's state stay as they are.
            protocol.__class__ = cls
            if protocol.transport is not None:
                # Handed over again, so a transport that keeps the protocol's bound methods
                # (uvloop's does) calls this class's data_received from now on.
                protocol.transport.set_protocol(protocol)
        return cast(PipeliningProtocol, protocol)

    def data_received(self, data: bytes) -> None:
        replies = self._replies
        if replies is None:
            super().data_received(data)
            return
        self._buffer.extend(data)
        try:
            while (reply := self._read_response_from_buffer()) is not None:
                replies.append(reply)
        except aiosmtplib.SMTPResponseException as exc:  # a line that is no reply
            del self._buffer[:]
            replies.append(exc)
        if len(self._buffer) > MAX_RESPONSE_LENGTH:
            del self._buffer[:]
            replies.append(aiosmtplib.SMTPResponseException(-1, "Response too long"))
        self._wake()

    def eof_received(self) -> bool:
        self._lose(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"), None)
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(aiosmtplib.SMTPServerDisconnected("Connection lost"), exc)
        super().connection_lost(exc)

    async def exchange(
        self, flight: Sequence[bytes], replies: int, reply_timeout: float | None
    ) -> list[aiosmtplib.SMTPResponse]:
        """Write ``flight`` (commands, perhaps with a message) and read ``replies`` replies;
        fewer if one is ``421``, after which the server closes the connection.

        A lost connection, a silent server or a line that is no reply raises; the caller then
        closes the connection, whose replies are no longer in step with its commands.
        """
        if self._command_lock is None:
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        async with self._command_lock:
            self._replies = collections.deque()
            try:
                for part in flight:  # written in turn: a large message is not copied
                    self.write(part)
                answered: list[aiosmtplib.SMTPResponse] = []
                while len(answered) < replies:
                    answered.append(reply := await self._next_reply(reply_timeout))
                    if reply.code == _CLOSING:  # the server closes the line: no more replies
                        break
                return answered
            finally:
                # What a misbehaving server sends beyond its replies is dropped, as aiosmtplib
                # drops data that no command waits for.
                self._replies = None
                del self._buffer[:]

    async def _next_reply(self, reply_timeout: float | None) -> aiosmtplib.SMTPResponse:
        assert self._replies is not None
        while not self._replies:
            self._reply_waiter = self._loop.create_future()
            try:
                async with asyncio.timeout(reply_timeout):
                    await self._reply_waiter
            except TimeoutError as exc:
                raise aiosmtplib.SMTPReadTimeoutError(
                    "Timed out waiting for server response"
                ) from exc
            finally:
                self._reply_waiter = None
        reply = self._replies.popleft()
        if isinstance(reply, Exception):
            self._replies.appendleft(reply)  # every later read fails the same way
            raise reply
        return reply

    def _lose(self, error: aiosmtplib.SMTPServerDisconnected, cause: Exception | None) -> None:
        if self._replies is not None:
            error.__cause__ = cause
            self._replies.append(error)
            self._wake()

    def _wake(self) -> None:
        if self._reply_waiter is not None and not self._reply_waiter.done():
            self._reply_waiter.set_result(None)


async def send_transaction(
    client: aiosmtplib.SMTP,
    sender: str,
    recipients: Sequence[str],
    message: bytes,
    *,
    mail_options: Iterable[str] = (),
    transfer: Transfer,
) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    """Send one message as ``client.sendmail()`` would, with ``transfer``'s round trips.

    Returns the refused recipients and the server's final reply; raises what ``sendmail()``
    raises. The connection must have said EHLO.
    """
    if transfer is Transfer.CLASSIC:
        return await client.sendmail(sender, recipients, message, mail_options=mail_options)
    envelope, message = _envelope(client, sender, recipients, message, mail_options)
    try:
        mail_reply, refused, data_reply = await _transfer(
            client, envelope, recipients, message, transfer=transfer, sender=sender
        )
    except aiosmtplib.SMTPException:
        client.close()  # the replies are no longer in step with the commands
        raise
    error = _refusal(
        mail_reply, refused, data_reply, sender=sender, recipients=recipients, transfer=transfer
    )
    if isinstance(error, ChunkingRefused):
        client.close()  # the message's lines were read as commands
        raise error
    if error is not None:
        await _reset(client)
        raise error
    return refused, data_reply.message


def _envelope(
    client: aiosmtplib.SMTP,
    sender: str,
    recipients: Sequence[str],
    message: bytes,
    mail_options: Iterable[str],
) -> tuple[list[bytes], bytes]:
    """MAIL and RCPT commands, checked as ``sendmail()`` checks them, and the message with
    the line endings it is sent with (its SIZE)."""
    options = list(mail_options)
    encoding = "utf-8" if any(o.lower() == "smtputf8" for o in options) else "ascii"
    if encoding == "utf-8" and not client.supports_extension("smtputf8"):
        raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
    # Each address is parsed and checked once, and all before anything is written: one that
    # cannot go on a command line raises ValueError, as sendmail() does.
    sender_box, *recipient_boxes = (
        _quoted(address).encode(encoding) for address in (sender, *recipients)
    )
    message = _canonical(message)
    if client.supports_extension("size"):
        options.insert(0, f"size={len(message)}")
    envelope = [_command(b"MAIL", b"FROM:" + sender_box, options)]
    envelope += [_command(b"RCPT", b"TO:" + box) for box in recipient_boxes]
    return envelope, message


# An address as the message builder hands it over: a dot-atom local part and domain in ASCII,
# nothing to parse. Any other form goes through aiosmtplib's parser and checks.
_BARE_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)


def _quoted(address: str) -> str:
    """``address`` in angle brackets for MAIL or RCPT, as aiosmtplib's ``quote_address``."""
    if _BARE_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return quote_address(address)


async def _transfer(
    client: aiosmtplib.SMTP,
    envelope: list[bytes],
    recipients: Sequence[str],
    message: bytes,
    *,
    transfer: Transfer,
    sender: str,
) -> tuple[aiosmtplib.SMTPResponse, dict[str, aiosmtplib.SMTPResponse], aiosmtplib.SMTPResponse]:
    """The envelope and the message over the wire: MAIL's reply, the refused recipients, and
    the reply to the message (or to DATA or BDAT, where they refused)."""
    if transfer is Transfer.CHUNKING:
        head = b"".join(envelope) + b"BDAT %d LAST\r\n" % len(message)
        # One write is one send() on loopback and one packet on a network; a large message
        # is written after the commands instead, so it is not copied for that.
        flight = [head + message] if len(message) <= _JOIN_BELOW else [head, message]
    else:
        flight = [b"".join(envelope) + b"DATA\r\n"]
    protocol = PipeliningProtocol.of(client)
    replies = await protocol.exchange(flight, len(envelope) + 1, client.timeout)
    if len(replies) <= len(envelope):  # a 421 before the last reply: the line is closing
        raise _closed_early(replies[0], sender)
    mail_reply, rcpt_replies, data_reply = replies[0], replies[1:-1], replies[-1]
    refused = {
        recipient: reply
        for recipient, reply in zip(recipients, rcpt_replies, strict=True)
        if reply.code not in _ACCEPTED
    }
    if transfer is Transfer.PIPELINING and data_reply.code == _START_INPUT:
        # RFC 2920: a server may answer DATA with 354 even when MAIL or every RCPT was
        # refused; then a lone dot ends the empty transaction.
        accepted = mail_reply.code == 250 and len(refused) < len(recipients)
        body = PERIOD_REGEX.sub(b"..", message) if accepted else b""
        [data_reply] = await protocol.exchange([body, b".\r\n"], 1, client.timeout)
    return mail_reply, refused, data_reply


def _closed_early(mail_reply: aiosmtplib.SMTPResponse, sender: str) -> Exception:
    """What ``sendmail()`` raises when the server says 421 and closes before the last reply:
    the refusal of MAIL, or, after a RCPT, the lost line that the next command finds."""
    if mail_reply.code != 250:
        return aiosmtplib.SMTPSenderRefused(mail_reply.code, mail_reply.message, sender)
    return aiosmtplib.SMTPServerDisconnected("Connection lost")


def _refusal(
    mail_reply: aiosmtplib.SMTPResponse,
    refused: dict[str, aiosmtplib.SMTPResponse],
    data_reply: aiosmtplib.SMTPResponse,
    *,
    sender: str,
    recipients: Sequence[str],
    transfer: Transfer,
) -> Exception | None:
    """The error ``sendmail()`` raises for these replies, in its order; None if sent."""
    if mail_reply.code != 250:
        return aiosmtplib.SMTPSenderRefused(mail_reply.code, mail_reply.message, sender)
    if len(refused) == len(recipients):
        return aiosmtplib.SMTPRecipientsRefused(
            [
                aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
                for recipient, reply in refused.items()
            ]
        )
    if transfer is Transfer.CHUNKING and data_reply.code in (500, 502):
        return ChunkingRefused(data_reply.code, data_reply.message)
    if data_reply.code != 250:
        return aiosmtplib.SMTPDataError(data_reply.code, data_reply.message)
    return None


def _canonical(message: bytes) -> bytes:
    """The message with CRLF line endings and a final CRLF, as it is sent (and its SIZE).

    Checking first is cheaper than aiosmtplib's regular expression, and worker/mime.py
    already writes messages so."""
    crlf = message.count(b"\r\n")
    if message.endswith(b"\r\n") and message.count(b"\r") == crlf == message.count(b"\n"):
        return message
    return normalize_message_line_endings(message)


def _command(verb: bytes, argument: bytes, options: Iterable[str] = ()) -> bytes:
    words = [verb, argument, *(option.encode("ascii") for option in options)]
    for word in words:
        if COMMAND_INJECTION_REGEX.search(word):
            raise ValueError("Command arg contains a prohibited control character")
    return b" ".join(words) + b"\r\n"


async def _reset(client: aiosmtplib.SMTP) -> None:
    """RSET after a refusal, as ``sendmail()`` does; its own failure is not the news."""
    with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
        await client.rset()
