"""ENVELOPE and BODYSTRUCTURE: generic values (nested tuples) to typed records.

The tokenizer gives nested tuples (strings as bytes, NIL as None, atoms as str); these
functions check the shapes of RFC 9051 §7.5.2 / §9 and build :mod:`.message` records.
Real servers are sloppy with the optional extension data, so everything after the required
fields is read leniently; a required field of the wrong type raises RemoteProtocolError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from trio_mailoauth.errors import RemoteProtocolError
from trio_mailoauth.imap.events import Value
from trio_mailoauth.imap.message import Address, BodyStructure, Envelope, MultiPart, SinglePart

__all__ = ["parse_body_structure", "parse_envelope"]

# A message/rfc822 part holds a whole message, whose structure may hold another: the
# tokenizer's depth limit already bounds this, this bounds the recursion here separately.
MAX_BODY_DEPTH: Final = 32


def _error(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed IMAP response: {what}")


def _text(value: Value) -> str | None:
    """An nstring as text (NIL -> None); atoms are tolerated where strings are due."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    raise _error("expected a string, got a list")


def _required_text(value: Value, what: str) -> str:
    text = _text(value)
    if text is None:
        raise _error(f"{what} is NIL")
    return text


def _number(value: Value, what: str) -> int:
    if isinstance(value, bytes):  # some servers quote numbers
        value = value.decode("ascii", "replace")
    if not isinstance(value, str) or not value.isdigit() or len(value) > 19:
        raise _error(f"{what} is not a number")
    return int(value)


def _addresses(value: Value) -> tuple[Address, ...]:
    if value is None:
        return ()
    if not isinstance(value, tuple):
        raise _error("address list is not a list")
    out = []
    for item in value:
        if not isinstance(item, tuple) or len(item) != 4:
            raise _error("address is not a list of 4")
        name, route, mailbox, host = (_text(part) for part in item)
        out.append(Address(name, route, mailbox, host))
    return tuple(out)


def parse_envelope(value: Value) -> Envelope:
    """``(date subject from sender reply-to to cc bcc in-reply-to message-id)``."""
    if not isinstance(value, tuple) or len(value) != 10:
        raise _error("ENVELOPE is not a list of 10")
    date, subject, from_, sender, reply_to, to, cc, bcc, in_reply_to, message_id = value
    return Envelope(
        date=_text(date),
        subject=_text(subject),
        from_=_addresses(from_),
        sender=_addresses(sender),
        reply_to=_addresses(reply_to),
        to=_addresses(to),
        cc=_addresses(cc),
        bcc=_addresses(bcc),
        in_reply_to=_text(in_reply_to),
        message_id=_text(message_id),
    )


def _params(value: Value) -> Mapping[str, str]:
    """``("name" "value" ...)`` or NIL; names lower-cased."""
    if value is None or not isinstance(value, tuple):
        return {}
    params: dict[str, str] = {}
    for index in range(0, len(value) - 1, 2):
        name = _text(value[index])
        if name is not None:
            params[name.lower()] = _text(value[index + 1]) or ""
    return params


def _disposition(value: Value) -> tuple[str, Mapping[str, str]] | None:
    if not isinstance(value, tuple) or not value:
        return None
    kind = _text(value[0]) if not isinstance(value[0], tuple) else None
    if kind is None:
        return None
    return kind.lower(), _params(value[1] if len(value) > 1 else None)


def _language(value: Value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(text for item in value if (text := _safe_text(item)) is not None)
    text = _safe_text(value)
    return None if text is None else (text,)


def _safe_text(value: Value) -> str | None:
    return None if isinstance(value, tuple) else _text(value)


def parse_body_structure(value: Value, depth: int = 0) -> BodyStructure:
    """A BODY or BODYSTRUCTURE value to a :data:`BodyStructure` tree."""
    if depth > MAX_BODY_DEPTH:
        raise _error("BODYSTRUCTURE nested too deep")
    if not isinstance(value, tuple) or not value:
        raise _error("BODYSTRUCTURE is not a list")
    if isinstance(value[0], tuple):
        return _multipart(value, depth)
    return _single(value, depth)


def _multipart(value: tuple[Value, ...], depth: int) -> MultiPart:
    parts: list[BodyStructure] = []
    index = 0
    while index < len(value) and isinstance(value[index], tuple):
        parts.append(parse_body_structure(value[index], depth + 1))
        index += 1
    if index >= len(value):
        raise _error("multipart BODYSTRUCTURE without a subtype")
    subtype = _required_text(value[index], "multipart subtype").lower()
    extension = value[index + 1 :]
    return MultiPart(
        parts=tuple(parts),
        subtype=subtype,
        params=_params(extension[0]) if extension else {},
        disposition=_disposition(extension[1]) if len(extension) > 1 else None,
        language=_language(extension[2]) if len(extension) > 2 else None,
        location=_safe_text(extension[3]) if len(extension) > 3 else None,
    )


def _single(value: tuple[Value, ...], depth: int) -> SinglePart:
    if len(value) < 7:
        raise _error("BODYSTRUCTURE part with fewer than 7 fields")
    type_ = _required_text(value[0], "body type").lower()
    subtype = _required_text(value[1], "body subtype").lower()
    rest = list(value[7:])
    lines: int | None = None
    envelope: Envelope | None = None
    body: BodyStructure | None = None
    if type_ == "message" and subtype in ("rfc822", "global") and len(rest) >= 3:
        envelope = parse_envelope(rest[0])
        body = parse_body_structure(rest[1], depth + 1)
        lines = _number(rest[2], "body lines")
        rest = rest[3:]
    elif type_ == "text":
        if not rest:
            raise _error("text part without a line count")
        lines = _number(rest[0], "body lines")
        rest = rest[1:]
    return SinglePart(
        type=type_,
        subtype=subtype,
        params=_params(value[2]),
        id=_text(value[3]),
        description=_text(value[4]),
        encoding=(_text(value[5]) or "7bit").lower(),
        size=_number(value[6], "body size"),
        lines=lines,
        envelope=envelope,
        body=body,
        md5=_safe_text(rest[0]) if rest else None,
        disposition=_disposition(rest[1]) if len(rest) > 1 else None,
        language=_language(rest[2]) if len(rest) > 2 else None,
        location=_safe_text(rest[3]) if len(rest) > 3 else None,
    )
