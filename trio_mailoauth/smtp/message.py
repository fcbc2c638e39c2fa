"""From a message to what goes on the wire: the envelope taken from its headers, the bytes
(Bcc removed, CRLF line endings), and what a send reports back: :class:`SendResult`, or
the error a refused transaction ends with (:func:`transaction_error`).

No I/O here: the async client (``client.py``) calls these before it sends anything, and
``transaction_error`` with the replies it read.
"""

from __future__ import annotations

import copy
import email.policy
import email.utils
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

from trio_mailoauth.errors import SMTPResponseError
from trio_mailoauth.smtp._events import Rcpt, Reply

__all__ = [
    "SendResult",
    "envelope_from_headers",
    "message_bytes",
    "strip_bcc",
    "transaction_error",
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


def _text(value: object) -> str:
    """A raw header value as text (a compat32 message may hold ``Header`` objects; the bytes
    parser keeps 8-bit octets as surrogates)."""
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def _fields(message: Message | bytes) -> list[tuple[str, str]]:
    """Every header field, in order: (lower-case name, value).

    The raw values (``raw_items``), not ``get_all``: an EmailMessage's policy would parse
    each field into a header object first, which costs more than sending the message.
    """
    if isinstance(message, Message):
        headers = message
    else:
        end = _header_end(message)
        text = message[:end].decode("utf-8", "surrogateescape")
        headers = HeaderParser().parsestr(text, headersonly=True)
    return [(name.lower(), _text(value)) for name, value in headers.raw_items()]


def _newest_resent_block(fields: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """The fields of the most recent Resent- block (RFC 5322 §3.6.6), or None.

    A block is a run of adjacent Resent- fields, each field at most once (a repeated one
    starts the next block; a trace or other field ends it). Resending prepends a block, so
    the topmost is the newest — unless blocks follow the From field, where a program put
    them (``message["Resent-To"] = ...`` appends): then the last of those is the newest.
    """
    blocks: list[tuple[int, list[tuple[str, str]]]] = []
    current: list[tuple[str, str]] | None = None
    for index, (name, value) in enumerate(fields):
        if not name.startswith("resent-"):
            current = None
            continue
        if current is None or any(name == seen for seen, _ in current):
            current = []
            blocks.append((index, current))
        current.append((name, value))
    if not blocks:
        return None
    from_at = next((i for i, (name, _) in enumerate(fields) if name == "from"), None)
    appended = [block for start, block in blocks if from_at is not None and start > from_at]
    return appended[-1] if appended else blocks[0][1]


def _values(fields: list[tuple[str, str]], name: str) -> list[str]:
    return [value for field, value in fields if field == name]


def envelope_from_headers(
    message: Message | bytes, sender: str | None, recipients: Sequence[str] | None
) -> tuple[str, list[str]]:
    """The envelope: ``sender`` or Sender/From; ``recipients`` or To, Cc and Bcc.

    When the message has Resent- fields, the most recent Resent- block says instead:
    Resent-Sender/Resent-From, and Resent-To, Resent-Cc, Resent-Bcc (as smtplib does).
    Duplicate recipients are sent once. ValueError when the headers do not say.
    """
    if sender is not None and recipients is not None:
        return sender, list(dict.fromkeys(recipients))
    fields = _fields(message)
    resent = _newest_resent_block(fields)
    if resent is None:
        where, prefix = "the message", ""
    else:
        where, prefix, fields = "the most recent Resent- block", "Resent-", resent
    if sender is None:
        senders = _addresses(_values(fields, f"{prefix}sender".lower()))
        if not senders:
            senders = _addresses(_values(fields, f"{prefix}from".lower()))
            if len(senders) > 1:
                # RFC 5322 §3.6.2: with several From addresses, Sender says who sent it.
                raise ValueError(
                    f"{where} has several {prefix}From addresses and no {prefix}Sender"
                )
        if not senders:
            raise ValueError(
                f"no sender given and {where} has no {prefix}From or {prefix}Sender header"
            )
        sender = senders[0]
    if recipients is None:
        found: list[str] = []
        for name in _RECIPIENT_HEADERS:
            found += _addresses(_values(fields, f"{prefix}{name}".lower()))
        recipients = found
    unique = list(dict.fromkeys(recipients))
    if not unique:
        raise ValueError(
            f"no recipients given and {where} has no {prefix}To, {prefix}Cc or {prefix}Bcc header"
        )
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


def transaction_error(
    mail_reply: Reply, rcpts: list[Rcpt], rcpt_replies: list[Reply], final: Reply | None
) -> SMTPResponseError | None:
    """The error a transaction ends with, or None when the message was accepted."""
    if (
        final is not None
        and 200 <= final.code < 300
        and 200 <= mail_reply.code < 300
        and all(200 <= reply.code < 300 for reply in rcpt_replies)
    ):
        return None  # every message sent goes this way: decided without building anything
    if not mail_reply.is_positive:
        return _refusal(mail_reply)
    refused = [
        (r.recipient, reply)
        for r, reply in zip(rcpts, rcpt_replies, strict=True)
        if not reply.is_positive
    ]
    if len(refused) == len(rcpts):
        # Transient when any refusal is: trying again later may reach those recipients.
        chosen = next((reply for _, reply in refused if reply.is_transient), refused[0][1])
        listed = "; ".join(f"{who}: {reply.code} {reply.text}" for who, reply in refused)
        return SMTPResponseError.for_reply(
            chosen.code, f"every recipient was refused ({listed})", chosen.enhanced_status
        )
    if final is None or not final.is_positive:
        return _refusal(final) if final is not None else None
    return None


def _refusal(reply: Reply) -> SMTPResponseError:
    return SMTPResponseError.for_reply(reply.code, reply.text, reply.enhanced_status)
