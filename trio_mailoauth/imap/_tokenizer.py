"""Framing and tokenizing IMAP responses, fast and bounded.

Two steps, each simple on its own:

1. :class:`ResponseReader` cuts one whole response out of an :class:`IMAPBuffer`. A response
   is a line, and every line that ends in a literal marker (``{n}`` CRLF, RFC 9051 §4.3) is
   followed by exactly ``n`` bytes and another line. The lines are kept together (short);
   each literal is sliced out of the buffer once, with no per-byte Python work, and kept
   apart, so a 10 MB message body is copied once from the socket buffer and never joined.
   The reader keeps the parts it already took, so one byte at a time yields the same
   responses as everything at once.
2. :class:`Parser` tokenizes that :class:`RawResponse`: atoms, numbers, quoted strings with
   escapes, literals (``{n}``, ``{n+}``, ``~{n}``), ``NIL``, nested parenthesized lists.
   When it meets a literal marker in the lines it takes the next literal from the list.

Everything malformed or over a limit raises :class:`RemoteProtocolError`; nothing else may
escape (the fuzz tests check it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from trio_mailoauth.errors import RemoteProtocolError
from trio_mailoauth.imap.events import Value

__all__ = [
    "IMAPBuffer",
    "Limits",
    "Parser",
    "RawResponse",
    "ResponseReader",
]

# A response line outside literals. Most lines are short, but a SEARCH of a big mailbox is
# one line of numbers: a million UIDs take ~8 MB. 16 MiB bounds what we hold before seeing
# CRLF while leaving room for that (a server that wants to send more must use ESEARCH).
MAX_LINE: Final = 16 * 1024 * 1024

# One literal: a message body in BODY[] / BINARY[] / RFC822. Providers cap messages at
# 25-150 MB (Gmail 25 MB sent, Microsoft 150 MB with attachments as base64); 64 MiB covers
# what a mail client meets while bounding memory per message. Raise it via Limits.
MAX_LITERAL: Final = 64 * 1024 * 1024

# One whole response, lines and literals together: a FETCH may return a body and a few
# header sections of the same message, so twice the biggest literal.
MAX_RESPONSE: Final = 2 * MAX_LITERAL

# Parenthesized lists nested deeper than this are an attack, not mail: a BODYSTRUCTURE of a
# message with multiparts nested 10 deep is already exotic. Also bounds our recursion.
MAX_DEPTH: Final = 32

# Numbers are unsigned 32-bit (RFC 9051 §4.2: number, nz-number); mod-sequences and Gmail
# ids are 63-bit (RFC 7162 mod-sequence-value, X-GM-MSGID).
MAX_NUMBER: Final = 2**32 - 1
MAX_NUMBER64: Final = 2**63 - 1

# The buffer drops consumed bytes from its front once they are this many and more than half
# of it: amortized O(1) per byte, and at most one extra copy of what is buffered.
_COMPACT_AT: Final = 256 * 1024


@dataclass(frozen=True)
class Limits:
    """The caps a reader enforces; each default is explained at its constant."""

    max_line: int = MAX_LINE
    max_literal: int = MAX_LITERAL
    max_response: int = MAX_RESPONSE
    max_depth: int = MAX_DEPTH


class IMAPBuffer:
    """Bytes received and not yet framed: a bytearray with a read offset.

    Lines are searched from where the last search stopped (a long line arriving in pieces
    costs linear time); literals are sliced out with one copy.
    """

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0  # bytes before this offset were consumed
        self._searched = 0  # no CRLF between _start and this offset
        self.closed = False

    def __len__(self) -> int:
        return len(self._data) - self._start

    def __bool__(self) -> bool:
        return len(self._data) > self._start

    def feed(self, data: bytes) -> None:
        """Append bytes; ``b""`` records that the peer closed the connection."""
        if not data:
            self.closed = True
            return
        if self.closed:
            raise RemoteProtocolError("data received after the connection was closed")
        start = self._start
        if start >= _COMPACT_AT and start * 2 >= len(self._data):
            del self._data[:start]
            self._searched -= start
            self._start = 0
        self._data += data

    def extract_line(self, max_length: int) -> bytes | None:
        """The next line with its CRLF, or None if incomplete; longer than ``max_length``
        (CRLF included) raises RemoteProtocolError."""
        data = self._data
        start = self._start
        end = data.find(b"\r\n", max(self._searched - 1, start))
        if end < 0:
            self._searched = len(data)
            if len(data) - start > max_length:
                raise RemoteProtocolError(f"line longer than {max_length} bytes")
            return None
        if end + 2 - start > max_length:
            raise RemoteProtocolError(f"line longer than {max_length} bytes")
        line = bytes(data[start : end + 2])
        self._start = self._searched = end + 2
        return line

    def extract_bytes(self, count: int) -> bytes | None:
        """Exactly ``count`` bytes, or None if fewer have arrived."""
        start = self._start
        if len(self._data) - start < count:
            return None
        with memoryview(self._data) as view:
            out = bytes(view[start : start + count])
        self._start = self._searched = start + count
        return out


class RawResponse:
    """One whole response: its lines joined (literal markers kept) and its literals apart."""

    # A plain class with slots: one is made per response, so its construction is on the
    # hot path of a big FETCH (a dataclass with a default factory costs several times more).
    __slots__ = ("lines", "literals")

    def __init__(self, lines: bytes, literals: list[bytes] | None = None) -> None:
        self.lines = lines
        self.literals: list[bytes] = [] if literals is None else literals

    def __repr__(self) -> str:
        return f"RawResponse({self.lines[:60]!r}..., {len(self.literals)} literals)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RawResponse):
            return NotImplemented
        return self.lines == other.lines and self.literals == other.literals

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaced

    @property
    def size(self) -> int:
        return len(self.lines) + sum(len(literal) for literal in self.literals)

    def first_line(self) -> bytes:
        end = self.lines.find(b"\r\n")
        return self.lines if end < 0 else self.lines[:end]


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
    """Cuts complete responses (lines plus their literals) out of an :class:`IMAPBuffer`.

    The parts of a response taken so far are kept here until it is whole: a transaction
    that commits when the last line arrives. A failure leaves the connection broken anyway.
    """

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._lines: list[bytes] = []
        self._literals: list[bytes] = []
        self._size = 0
        self._literal: int | None = None  # bytes of a literal still to take

    @property
    def in_progress(self) -> bool:
        """True when part of a response has been taken but not all of it."""
        return bool(self._lines)

    def read(self, buffer: IMAPBuffer) -> RawResponse | None:
        """The next whole response, or None until more data arrives."""
        if not self._lines and self._literal is None and buffer._searched <= buffer._start:
            response = _read_whole(buffer, self._limits)
            if response is not None:
                return response
        return self._read_parts(buffer)

    def _read_parts(self, buffer: IMAPBuffer) -> RawResponse | None:
        """The general path: take the lines and literals of a response as they arrive."""
        limits = self._limits
        max_line = limits.max_line
        while True:
            if self._literal is not None:
                literal = buffer.extract_bytes(self._literal)
                if literal is None:
                    return None
                self._literals.append(literal)
                self._literal = None
            line = buffer.extract_line(max_line)
            if line is None:
                return None
            if not line.endswith(b"}\r\n"):
                if not self._lines:  # the common case: a one-line response
                    if len(line) > limits.max_response:
                        raise RemoteProtocolError(
                            f"response longer than {limits.max_response} bytes"
                        )
                    return RawResponse(line)
                size = None
            elif (self._lines[0] if self._lines else line).startswith(b"+"):
                size = None  # a continuation's text is not followed by a literal
            else:
                size = literal_size(line)
            self._add(len(line))
            self._lines.append(line)
            if size is None:
                response = RawResponse(b"".join(self._lines), self._literals)
                self._lines = []
                self._literals = []
                self._size = 0
                return response
            if size > limits.max_literal:
                raise RemoteProtocolError(
                    f"literal of {size} bytes exceeds the limit of {limits.max_literal}"
                )
            self._add(size)
            self._literal = size

    def _add(self, count: int) -> None:
        self._size += count
        if self._size > self._limits.max_response:
            raise RemoteProtocolError(f"response longer than {self._limits.max_response} bytes")


# Up to this size a literal is sliced out of the buffer (two copies, yet less work than a
# memoryview for a 10 KB message); bigger ones through a memoryview (one copy, so a big
# message never exists three times at once).
_SMALL_LITERAL: Final = 64 * 1024

# A literal marker at the end of a line: "{n}", "{n+}" (LITERAL+), "~{n}" (literal8).
_MARKER_RE: Final = re.compile(rb"\{([0-9]{1,10})\+?\}\r\n")


def _read_whole(buffer: IMAPBuffer, limits: Limits) -> RawResponse | None:
    """The fast path of :meth:`ResponseReader.read`: a response that is already whole in the
    buffer and is one line, or one line, one literal and one line (each FETCH of a big
    mailbox), taken in one step. None means "not that shape, or not whole yet, or over a
    limit": the general path then decides, and raises the right error."""
    data = buffer._data
    start = buffer._start
    end = data.find(b"\r\n", start)
    if end < 0 or end + 2 - start > limits.max_line:
        return None
    if data[end - 1] != 0x7D:  # not "}": a one-line response
        if end + 2 - start > limits.max_response:
            return None
        buffer._start = buffer._searched = end + 2
        return RawResponse(bytes(data[start : end + 2]))
    marker = _MARKER_RE.match(data, data.rfind(b"{", start, end))
    if marker is None or marker.end() != end + 2 or data[start] == 0x2B:
        return None  # a "}" that ends text, a bad marker, or a continuation ("+")
    literal_start = end + 2
    literal_end = literal_start + int(marker.group(1))
    last_end = data.find(b"\r\n", literal_end)
    if (
        last_end < 0
        or data[last_end - 1] == 0x7D  # another literal follows
        or literal_end - literal_start > limits.max_literal
        or last_end + 2 - literal_end > limits.max_line
        or last_end + 2 - start > limits.max_response
    ):
        return None
    if literal_end - literal_start <= _SMALL_LITERAL:
        literal = bytes(data[literal_start:literal_end])
    else:
        with memoryview(data) as view:
            literal = bytes(view[literal_start:literal_end])
    lines = bytes(data[start:literal_start]) + bytes(data[literal_end : last_end + 2])
    buffer._start = buffer._searched = last_end + 2
    return RawResponse(lines, [literal])


# An atom (RFC 9051 atom, leniently: "]", "%", "*" and "\" are accepted inside atoms as real
# servers send them in flags, mailbox names and FETCH items). A "[" starts a section kept
# inside the atom (BODY[HEADER.FIELDS (TO)]<0>), handled by Parser.atom.
_ATOM_RE: Final = re.compile(rb'[^ ()"\x00-\x1f\x7f\[{]+')
_NUMBER_RE: Final = re.compile(rb"[0-9]+")
# A quoted string's body: anything but CR, LF, '"' and "\", or a backslash pair.
_QUOTED_RE: Final = re.compile(rb'"((?:[^"\\\r\n]|\\[^\r\n])*)"')
_LITERAL_RE: Final = re.compile(rb"~?\{([0-9]{1,10})\+?\}\r\n")
_ESCAPE_RE: Final = re.compile(rb'\\(["\\])')
_SP: Final = 0x20


class Parser:
    """A tokenizer over one complete response (as returned by :class:`ResponseReader`)."""

    __slots__ = ("_max_depth", "data", "literal_index", "literals", "pos")

    def __init__(self, response: RawResponse, max_depth: int = MAX_DEPTH) -> None:
        self.data = response.lines
        self.literals = response.literals
        self.pos = 0
        self.literal_index = 0
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

    def at_end(self) -> bool:
        """At CRLF or ")" (end of the current list or response), spaces skipped."""
        self.skip_spaces()
        return self.at_line_end() or self.peek() in (None, 0x29)

    def skip(self, token: bytes) -> bool:
        if self.data.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def skip_spaces(self) -> None:
        data = self.data
        while self.pos < len(data) and data[self.pos] == _SP:
            self.pos += 1

    def expect(self, token: bytes) -> None:
        if not self.skip(token):
            raise self.error(f"expected {token.decode()!r}")

    def end(self) -> None:
        """The response must end here (trailing spaces are tolerated: some servers add one)."""
        self.skip_spaces()
        if not self.at_line_end() or self.pos + 2 != len(self.data):
            raise self.error("expected the end of the response")
        self.pos += 2

    def atom_bytes(self) -> bytes:
        """An atom; a ``[...]`` section inside it (``BODY[HEADER.FIELDS (TO)]``) is kept whole."""
        start = self.pos
        data = self.data
        while True:
            match = _ATOM_RE.match(data, self.pos)
            if match is not None:
                self.pos = match.end()
            if self.peek() == 0x5B:  # "["
                self._skip_section()
                continue
            break
        if self.pos == start:
            raise self.error("expected an atom")
        return data[start : self.pos]

    def atom(self) -> str:
        return self.atom_bytes().decode("utf-8", "replace")

    def _skip_section(self) -> None:
        depth = 0
        data = self.data
        while self.pos < len(data):
            byte = data[self.pos]
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

    def number(self, maximum: int = MAX_NUMBER) -> int:
        match = _NUMBER_RE.match(self.data, self.pos)
        if match is None or match.end() - self.pos > 19:
            raise self.error("expected a number")
        value = int(match.group())
        if value > maximum:
            raise self.error(
                f"number larger than {maximum} (32-bit)"
                if maximum == MAX_NUMBER
                else f"number larger than {maximum}"
            )
        self.pos = match.end()
        return value

    def quoted(self) -> bytes:
        """A quoted string; ``\\"`` and ``\\\\`` are the escapes (RFC 9051 quoted-specials).

        Any other backslash pair is kept as it is, as lenient clients do.
        """
        match = _QUOTED_RE.match(self.data, self.pos)
        if match is None:
            raise self.error("unterminated quoted string")
        self.pos = match.end()
        body = match.group(1)
        return _ESCAPE_RE.sub(rb"\1", body) if b"\\" in body else body

    def literal(self) -> bytes:
        """``{n}`` CRLF and n bytes (``~{n}`` literal8 and ``{n+}`` accepted too)."""
        match = _LITERAL_RE.match(self.data, self.pos)
        if match is None:
            raise self.error("bad literal")
        if self.literal_index >= len(self.literals):
            raise self.error("literal missing")
        value = self.literals[self.literal_index]
        if len(value) != int(match.group(1)):  # pragma: no cover - the reader ensures it
            raise self.error("literal shorter than announced")
        self.literal_index += 1
        self.pos = match.end()
        return value

    def string(self) -> bytes:
        """A quoted string or a literal (RFC 9051 ``string``)."""
        byte = self.peek()
        if byte == 0x22:
            return self.quoted()
        if byte in (0x7B, 0x7E):
            return self.literal()
        raise self.error("expected a string")

    def nstring(self) -> bytes | None:
        """A string or NIL."""
        if self.data.startswith((b"NIL", b"nil", b"Nil"), self.pos):
            self.pos += 3
            return None
        return self.string()

    def astring(self) -> bytes:
        """An atom or a string (RFC 9051 ``astring``)."""
        byte = self.peek()
        if byte in (0x22, 0x7B, 0x7E):
            return self.string()
        return self.atom_bytes()

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

    def parenthesized(self, depth: int = 1) -> tuple[Value, ...]:
        if depth > self._max_depth:
            raise self.error(f"lists nested deeper than {self._max_depth}")
        self.expect(b"(")
        items: list[Value] = []
        while True:
            self.skip_spaces()
            if self.skip(b")"):
                return tuple(items)
            if self.peek() is None or self.at_line_end():
                raise self.error("unclosed '('")
            items.append(self.value(depth))

    def values(self) -> tuple[Value, ...]:
        """Space-separated values up to the end of the response."""
        items: list[Value] = []
        while True:
            self.skip_spaces()
            if self.at_line_end():
                self.end()
                return tuple(items)
            if self.peek() is None:
                raise self.error("missing CRLF")
            items.append(self.value())

    def rest_of_line(self) -> bytes:
        """Everything up to the final CRLF (which must end the response)."""
        line_end = self.data.find(b"\r\n", self.pos)
        if line_end < 0 or line_end + 2 != len(self.data):
            raise self.error("expected text up to the end of the response")
        text = self.data[self.pos : line_end]
        self.pos = len(self.data)
        return text
