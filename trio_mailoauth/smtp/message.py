"""From a message to what goes on the wire: the envelope taken from its headers, the bytes
(Bcc removed, CRLF line endings), and :class:`SendResult`, what a send reports back.

No I/O here: the async client (``client.py``) calls these before it sends anything.
"""

from __future__ import annotations

import copy
import email.policy
import email.utils
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

from trio_mailoauth.smtp._events import Reply

__all__ = [
    "SendResult",
    "envelope_from_headers",
    "message_bytes",
    "strip_bcc",
]

# Address headers whose values are recipients of the message (RFC 5322 §3.6.3).
_RECIPIENT_HEADERS = ("To", "Cc", "Bcc")
_HIDDEN_HEADERS = (b"bcc", b"resent-bcc")


@dataclass(frozen=True)
class SendResult:
    """What happened to one message.

    ``recipients`` maps every recipient, in the order sent, to the server's reply to its
    ``RCPT``; ``reply`` is the server's final reply to the message (its queue id is often
    in ``reply.text``). A send in which some recipients were refused still delivered to
    the others: check :attr:`refused`.
    """

    sender: str
    recipients: Mapping[str, Reply]
    reply: Reply

    @property
    def accepted(self) -> tuple[str, ...]:
        """The recipients the server accepted (the message went to them)."""
        return tuple(r for r, reply in self.recipients.items() if reply.is_positive)

    @property
    def refused(self) -> dict[str, Reply]:
        """The recipients the server refused, with its reply for each."""
        return {r: reply for r, reply in self.recipients.items() if not reply.is_positive}

    @property
    def ok(self) -> bool:
        """True when every recipient was accepted."""
        return all(reply.is_positive for reply in self.recipients.values())


def _addresses(values: Iterable[str]) -> list[str]:
    return [address for _, address in email.utils.getaddresses(list(values)) if address]


def _headers_of(message: Message | bytes) -> Message:
    if isinstance(message, Message):
        return message
    end = _header_end(message)
    text = message[:end].decode("utf-8", "surrogateescape")
    return HeaderParser().parsestr(text, headersonly=True)


def envelope_from_headers(
    message: Message | bytes, sender: str | None, recipients: Sequence[str] | None
) -> tuple[str, list[str]]:
    """The envelope: ``sender`` or Sender/From; ``recipients`` or To, Cc and Bcc.

    Duplicate recipients are sent once. ValueError when the headers do not say.
    """
    headers = None
    if sender is None:
        headers = _headers_of(message)
        senders = _addresses(headers.get_all("Sender", []))
        if not senders:
            senders = _addresses(headers.get_all("From", []))
            if len(senders) > 1:
                # RFC 5322 §3.6.2: with several From addresses, Sender says who sent it.
                raise ValueError("the message has several From addresses and no Sender")
        if not senders:
            raise ValueError("no sender given and the message has no From or Sender header")
        sender = senders[0]
    if recipients is None:
        headers = headers or _headers_of(message)
        found: list[str] = []
        for name in _RECIPIENT_HEADERS:
            found += _addresses(headers.get_all(name, []))
        recipients = found
    unique = list(dict.fromkeys(recipients))
    if not unique:
        raise ValueError("no recipients given and the message has no To, Cc or Bcc header")
    return sender, unique


def message_bytes(message: Message, *, smtputf8: bool, eight_bit: bool) -> bytes:
    """``message`` as it goes on the wire: without Bcc, with CRLF line endings.

    ``smtputf8``: headers may carry raw UTF-8 (RFC 6532); otherwise non-ASCII header text is
    RFC 2047-encoded. ``eight_bit``: bodies may stay 8-bit (8BITMIME); otherwise the
    generator transfer-encodes them to 7-bit.
    """
    visible = copy.copy(message)  # shallow: deleting headers replaces the copy's list only
    for name in ("Bcc", "Resent-Bcc"):
        del visible[name]
    policy = message.policy.clone(linesep="\r\n", cte_type="8bit" if eight_bit else "7bit")
    if isinstance(policy, email.policy.EmailPolicy):
        policy = policy.clone(utf8=smtputf8)
    return visible.as_bytes(policy=policy)


def _header_end(data: bytes) -> int:
    """Where the header block of ``data`` ends: after its last field's line ending, at the
    blank line (or the end of ``data`` when there is none)."""
    ends = [i + 2 for i in (data.find(b"\r\n\r\n"),) if i >= 0]
    ends += [i + 1 for i in (data.find(b"\n\n"),) if i >= 0]
    return min(ends) if ends else len(data)


def strip_bcc(data: bytes) -> bytes:
    """``data`` without its Bcc and Resent-Bcc header fields (continuation lines included).

    Only the header block is looked at, and only when it mentions "bcc" at all.
    """
    end = _header_end(data)
    if b"bcc" not in data[:end].lower():
        return data
    lines = data[:end].splitlines(keepends=True)
    kept: list[bytes] = []
    dropping = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):  # a continuation of the field before
            if not dropping:
                kept.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower() in _HIDDEN_HEADERS
        if not dropping:
            kept.append(line)
    return b"".join(kept) + data[end:]
