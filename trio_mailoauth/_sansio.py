"""Pieces every protocol core shares: the receive buffer, sentinels, SASL framing, tracing.

No I/O and nothing async here (the meta tests check the cores' imports).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from trio_mailoauth.errors import RemoteProtocolError

__all__ = [
    "NEED_DATA",
    "ConnectionClosed",
    "NeedData",
    "ReceiveBuffer",
    "SASLChallenge",
    "TraceHook",
    "decode_sasl",
    "encode_sasl",
    "printable_line",
]


class NeedData(Enum):
    """``next_event()`` has no complete event yet: feed more bytes with ``receive_data``."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA


@dataclass(frozen=True)
class ConnectionClosed:
    """The server closed the connection (``receive_data(b"")``) and every event was read."""


@dataclass(frozen=True)
class SASLChallenge:
    """A SASL challenge during AUTHENTICATE/AUTH, already base64-decoded."""

    data: bytes


# Called with one redacted line of the conversation, "C: ..." or "S: ...".
TraceHook = Callable[[str], None]

# A traced line is cut here: enough to debug a conversation, never a whole message body.
TRACE_LINE_LIMIT = 200


def printable_line(prefix: str, line: bytes | bytearray) -> str:
    """A line as it goes into a trace: decoded leniently, stripped, cut to a sane length."""
    text = bytes(line[: TRACE_LINE_LIMIT + 2]).decode("utf-8", "replace").rstrip("\r\n")
    if len(line) > TRACE_LINE_LIMIT + 2:
        text = text[:TRACE_LINE_LIMIT] + f"... ({len(line)} bytes)"
    return f"{prefix}{text}"


def encode_sasl(data: bytes) -> bytes:
    """Base64 for a SASL response on the wire (an empty response is an empty line)."""
    return base64.b64encode(data)


def decode_sasl(text: bytes) -> bytes:
    """A server's base64 challenge, strictly decoded."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RemoteProtocolError("the server sent a SASL challenge that is not base64") from exc


class ReceiveBuffer:
    """Bytes received and not yet parsed, with line extraction that never rescans.

    ``maybe_extract_line`` remembers how far it searched for CRLF, so a long line that
    arrives one byte at a time costs linear time, not quadratic.
    """

    def __init__(self) -> None:
        self._data = bytearray()
        self._searched = 0  # no CRLF before this offset
        self.closed = False

    def __len__(self) -> int:
        return len(self._data)

    def __bool__(self) -> bool:
        return bool(self._data)

    def feed(self, data: bytes) -> None:
        """Append bytes; ``b""`` records that the peer closed the connection."""
        if not data:
            self.closed = True
            return
        if self.closed:
            raise RemoteProtocolError("data received after the connection was closed")
        self._data += data

    def maybe_extract_line(self, max_length: int) -> bytes | None:
        """The next line with its CRLF, or None if incomplete.

        A line longer than ``max_length`` (CRLF included) raises RemoteProtocolError.
        """
        start = max(self._searched - 1, 0)
        end = self._data.find(b"\r\n", start)
        if end < 0:
            self._searched = len(self._data)
            if len(self._data) > max_length:
                raise RemoteProtocolError(f"line longer than {max_length} bytes")
            return None
        if end + 2 > max_length:
            raise RemoteProtocolError(f"line longer than {max_length} bytes")
        return self._take(end + 2)

    def maybe_extract_bytes(self, count: int) -> bytes | None:
        """Exactly ``count`` bytes, or None if fewer have arrived."""
        if len(self._data) < count:
            return None
        return self._take(count)

    def extract_all(self) -> bytes:
        return self._take(len(self._data))

    def _take(self, count: int) -> bytes:
        out = bytes(self._data[:count])
        del self._data[:count]
        self._searched = 0
        return out
