"""Reading IMAP responses: framing on the receive buffer, then a tokenizer over one response.

Two steps, each simple on its own:

1. :class:`ResponseReader` cuts one whole response out of the receive buffer. A response is a
   line, and every line that ends in a literal marker (``{n}`` CRLF, RFC 9051 §4.3) is
   followed by exactly ``n`` bytes and another line. The reader keeps the parts it already
   took, so feeding one byte at a time yields the same responses as feeding everything at
   once; it returns ``None`` until the response is complete.
2. :class:`Parser` tokenizes that complete response (atoms, quoted strings with escapes,
   literals, ``NIL``, nested parenthesized lists, response codes) and
   :func:`parse_response` turns it into an event or an internal record the connection
   interprets (a continuation request, a tagged completion, an untagged status).

Everything malformed or over a limit raises :class:`RemoteProtocolError`; nothing else may
escape (the fuzz tests check it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from trio_mailoauth._sansio import ReceiveBuffer
from trio_mailoauth.errors import RemoteProtocolError
from trio_mailoauth.imap.events import (
    CapabilityResponse,
    Exists,
    Expunge,
    Recent,
    UntaggedResponse,
    Value,
)

__all__ = [
    "Continuation",
    "Limits",
    "Parser",
    "ResponseReader",
    "TaggedCompletion",
    "UntaggedStatus",
    "parse_response",
]

# A response line outside literals. Our longest lines in this slice are CAPABILITY lists
# (< 1 KiB at Dovecot, Gmail, Outlook) and server texts; 64 KiB bounds what we hold before
# seeing CRLF while leaving room for long LIST/FLAGS lines. (Big SEARCH results belong to a
# later slice, which will raise this or stream them.)
MAX_LINE: Final = 64 * 1024

# One literal. This slice reads no message bodies (the streaming FETCH of a later slice
# does not buffer them here); 1 MiB covers any header block or mailbox name.
MAX_LITERAL: Final = 1024 * 1024

# One whole response, lines and literals together: several literals of one response
# (a FETCH of a few header fields) stay far below 4 MiB.
MAX_RESPONSE: Final = 4 * 1024 * 1024

# Parenthesized lists nested deeper than this are an attack, not mail: a BODYSTRUCTURE of a
# message with multiparts nested 10 deep is already exotic. Also bounds our recursion.
MAX_DEPTH: Final = 32

# Numbers are unsigned 32-bit (RFC 9051 §4.2: number, nz-number); 64-bit only in
# CONDSTORE mod-sequences, which a later slice parses from atoms.
MAX_NUMBER: Final = 2**32 - 1


@dataclass(frozen=True)
class Limits:
    """The caps a reader enforces; each default is explained at its constant."""

    max_line: int = MAX_LINE
    max_literal: int = MAX_LITERAL
    max_response: int = MAX_RESPONSE
    max_depth: int = MAX_DEPTH


@dataclass(frozen=True)
class Continuation:
    """``+ text``: the server waits for a literal's bytes or a SASL response."""

    text: bytes


@dataclass(frozen=True)
class TaggedCompletion:
    """``tag OK|NO|BAD [code] text``, before the connection matches the tag to a command."""

    tag: str
    status: Literal["OK", "NO", "BAD"]
    text: str
    code: str | None
    code_data: str | None


@dataclass(frozen=True)
class UntaggedStatus:
    """``* OK|NO|BAD|BYE|PREAUTH [code] text``; its meaning depends on the state."""

    status: Literal["OK", "NO", "BAD", "BYE", "PREAUTH"]
    text: str
    code: str | None
    code_data: str | None


Parsed = (
    Continuation
    | TaggedCompletion
    | UntaggedStatus
    | CapabilityResponse
    | Exists
    | Recent
    | Expunge
    | UntaggedResponse
)


def literal_size(line: bytes) -> int | None:
    """The ``n`` of a line ending in ``{n}`` / ``{n+}`` / ``~{n}`` CRLF, else None."""
    if not line.endswith(b"}\r\n"):
        return None
    start = line.rfind(b"{")
    if start < 0:
        return None
    digits = line[start + 1 : -3]
    if digits.endswith(b"+"):
        digits = digits[:-1]
    if not digits or not digits.isdigit():
        return None
    if len(digits) > 10:  # more than 4 GiB: certainly over any limit
        raise RemoteProtocolError(f"literal of {len(digits)} digits announced")
    return int(digits)


class ResponseReader:
    """Cuts complete responses (lines plus their literals) out of a :class:`ReceiveBuffer`.

    The parts of a response taken so far are kept here until it is whole: a transaction
    that commits when the last line arrives. A failure leaves the connection broken anyway.
    """

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._parts: list[bytes] = []
        self._size = 0
        self._literal: int | None = None  # bytes of a literal still to take

    @property
    def in_progress(self) -> bool:
        """True when part of a response has been taken but not all of it."""
        return bool(self._parts)

    def read(self, buffer: ReceiveBuffer) -> bytes | None:
        """The next whole response, or None until more data arrives."""
        while True:
            if self._literal is not None:
                data = buffer.maybe_extract_bytes(self._literal)
                if data is None:
                    return None
                self._parts.append(data)
                self._literal = None
            line = buffer.maybe_extract_line(self._limits.max_line)
            if line is None:
                return None
            self._add(len(line))
            self._parts.append(line)
            size = None if self._parts[0].startswith(b"+") else literal_size(line)
            if size is None:
                response = b"".join(self._parts)
                self._parts.clear()
                self._size = 0
                return response
            if size > self._limits.max_literal:
                raise RemoteProtocolError(
                    f"literal of {size} bytes exceeds the limit of {self._limits.max_literal}"
                )
            self._add(size)
            self._literal = size

    def _add(self, count: int) -> None:
        self._size += count
        if self._size > self._limits.max_response:
            raise RemoteProtocolError(f"response longer than {self._limits.max_response} bytes")


# Bytes that end an atom: SP, CTL, "(", ")", '"' (RFC 9051 atom-specials, leniently:
# "]", "%", "*" and "\" are accepted inside atoms as real servers send them in flags,
# mailbox names and FETCH items).
_ATOM_STOP: Final = frozenset(b' ()"\x7f') | frozenset(range(0x20))
_SP: Final = 0x20


class Parser:
    """A tokenizer over one complete response (as returned by :class:`ResponseReader`)."""

    def __init__(self, data: bytes, max_depth: int = MAX_DEPTH) -> None:
        self.data = data
        self.pos = 0
        self._max_depth = max_depth

    def error(self, what: str) -> RemoteProtocolError:
        line = self.data.split(b"\r\n", 1)[0][:80].decode("ascii", "replace")
        return RemoteProtocolError(
            f"malformed IMAP response ({what} at offset {self.pos}): {line!r}"
        )

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def at_line_end(self) -> bool:
        return self.data.startswith(b"\r\n", self.pos)

    def skip(self, token: bytes) -> bool:
        if self.data.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: bytes) -> None:
        if not self.skip(token):
            raise self.error(f"expected {token.decode()!r}")

    def end(self) -> None:
        """The response must end here (trailing spaces are tolerated: some servers add one)."""
        while self.peek() == _SP:
            self.pos += 1
        if not self.at_line_end() or self.pos + 2 != len(self.data):
            raise self.error("expected the end of the response")
        self.pos += 2

    def atom(self) -> str:
        """An atom; a ``[...]`` section inside it (``BODY[HEADER.FIELDS (TO)]``) is kept whole."""
        start = self.pos
        data = self.data
        while self.pos < len(data):
            byte = data[self.pos]
            if byte == 0x5B:  # "["
                self._skip_section()
                continue
            if byte in _ATOM_STOP:
                break
            self.pos += 1
        if self.pos == start:
            raise self.error("expected an atom")
        return data[start : self.pos].decode("utf-8", "replace")

    def _skip_section(self) -> None:
        depth = 0
        while self.pos < len(self.data):
            byte = self.data[self.pos]
            if byte in (0x0D, 0x0A):
                break
            self.pos += 1
            if byte == 0x5B:
                depth += 1
                if depth > self._max_depth:
                    raise self.error("brackets nested too deep")
            elif byte == 0x5D:
                depth -= 1
                if depth == 0:
                    return
        raise self.error("unclosed '['")

    def number(self) -> int:
        start = self.pos
        while self.pos < len(self.data) and 0x30 <= self.data[self.pos] <= 0x39:
            self.pos += 1
        digits = self.data[start : self.pos]
        if not digits or len(digits) > 10 or int(digits) > MAX_NUMBER:
            raise self.error("expected a 32-bit number")
        return int(digits)

    def quoted(self) -> bytes:
        """A quoted string; ``\\"`` and ``\\\\`` are the escapes (RFC 9051 quoted-specials)."""
        self.expect(b'"')
        out = bytearray()
        data = self.data
        while self.pos < len(data):
            byte = data[self.pos]
            if byte == 0x22:  # closing quote
                self.pos += 1
                return bytes(out)
            if byte in (0x0D, 0x0A):
                break
            if byte == 0x5C:  # backslash
                following = data[self.pos + 1 : self.pos + 2]
                if following in (b'"', b"\\"):
                    out += following
                    self.pos += 2
                    continue
                # Not a valid escape: keep the backslash, as lenient clients do.
            out.append(byte)
            self.pos += 1
        raise self.error("unterminated quoted string")

    def literal(self) -> bytes:
        """``{n}`` CRLF and n bytes (``~{n}`` literal8 and ``{n+}`` accepted too)."""
        self.skip(b"~")
        self.expect(b"{")
        size = self.number()
        self.skip(b"+")
        self.expect(b"}\r\n")
        if self.pos + size > len(self.data):
            raise self.error("literal shorter than announced")
        value = self.data[self.pos : self.pos + size]
        self.pos += size
        return value

    def value(self, depth: int = 0) -> Value:
        """Any one value: list, string, literal, NIL or atom."""
        byte = self.peek()
        if byte == 0x28:  # "("
            return self.parenthesized(depth + 1)
        if byte == 0x22:
            return self.quoted()
        if byte == 0x7B or (byte == 0x7E and self.data.startswith(b"{", self.pos + 1)):
            return self.literal()
        word = self.atom()
        return None if word.upper() == "NIL" else word

    def parenthesized(self, depth: int) -> tuple[Value, ...]:
        if depth > self._max_depth:
            raise self.error(f"lists nested deeper than {self._max_depth}")
        self.expect(b"(")
        items: list[Value] = []
        while True:
            while self.peek() == _SP:
                self.pos += 1
            if self.skip(b")"):
                return tuple(items)
            if self.peek() is None or self.at_line_end():
                raise self.error("unclosed '('")
            items.append(self.value(depth))

    def values(self) -> tuple[Value, ...]:
        """Space-separated values up to the end of the response."""
        items: list[Value] = []
        while True:
            while self.peek() == _SP:
                self.pos += 1
            if self.at_line_end():
                self.end()
                return tuple(items)
            if self.peek() is None:
                raise self.error("missing CRLF")
            items.append(self.value())

    def resp_text(self) -> tuple[str, str | None, str | None]:
        """``[code data] text`` up to the end: (text, code, code_data)."""
        code: str | None = None
        code_data: str | None = None
        self.skip(b" ")
        line_end = self.data.find(b"\r\n", self.pos)
        if line_end < 0 or line_end + 2 != len(self.data):
            raise self.error("expected text up to the end of the response")
        if self.skip(b"["):
            close = self.data.find(b"]", self.pos, line_end)
            if close < 0:
                raise self.error("unclosed response code")
            name, _, rest = self.data[self.pos : close].partition(b" ")
            if not name or any(byte in _ATOM_STOP for byte in name):
                raise self.error("bad response code")
            code = name.decode("ascii", "replace").upper()
            code_data = rest.decode("utf-8", "replace") if rest else None
            self.pos = close + 1
            self.skip(b" ")
        text = self.data[self.pos : line_end].decode("utf-8", "replace")
        self.pos = len(self.data)
        return text, code, code_data


_STATUSES: Final = ("OK", "NO", "BAD")
_UNTAGGED_STATUSES: Final = ("OK", "NO", "BAD", "BYE", "PREAUTH")


def parse_response(data: bytes, max_depth: int = MAX_DEPTH) -> Parsed:
    """One complete response (CRLF included) → an event or an internal record."""
    parser = Parser(data, max_depth)
    if parser.skip(b"+"):
        parser.skip(b" ")
        end = data.find(b"\r\n", parser.pos)
        if end + 2 != len(data):
            raise parser.error("continuation request with trailing data")
        return Continuation(data[parser.pos : end])
    if parser.skip(b"* "):
        return _untagged(parser)
    tag = parser.atom()
    if "+" in tag or tag == "*":
        raise parser.error("bad tag")
    parser.expect(b" ")
    status = parser.atom().upper()
    if status not in _STATUSES:
        raise parser.error(f"tagged response with status {status[:20]!r}")
    text, code, code_data = parser.resp_text()
    return TaggedCompletion(tag, status, text, code, code_data)  # type: ignore[arg-type]


def _untagged(parser: Parser) -> Parsed:
    number: int | None = None
    peek = parser.peek()
    if peek is not None and 0x30 <= peek <= 0x39:
        number = parser.number()
        parser.expect(b" ")
    name = parser.atom().upper()
    if number is not None:
        if name in ("EXISTS", "RECENT", "EXPUNGE"):
            parser.end()
            if name == "EXISTS":
                return Exists(number)
            return Recent(number) if name == "RECENT" else Expunge(number)
        return UntaggedResponse(name, parser.values(), number)
    if name in _UNTAGGED_STATUSES:
        text, code, code_data = parser.resp_text()
        return UntaggedStatus(name, text, code, code_data)  # type: ignore[arg-type]
    if name == "CAPABILITY":
        return CapabilityResponse(parse_capabilities(parser))
    return UntaggedResponse(name, parser.values())


def parse_capabilities(parser: Parser) -> frozenset[str]:
    names: list[str] = []
    for item in parser.values():
        if not isinstance(item, str):
            raise parser.error("capability that is not an atom")
        names.append(item.upper())
    return frozenset(names)


def capabilities_from_code(code_data: str | None) -> frozenset[str]:
    """The names of a ``[CAPABILITY ...]`` response code."""
    return frozenset(name.upper() for name in (code_data or "").split())
