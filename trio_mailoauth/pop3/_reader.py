"""Parsing what a POP3 server sends: status lines, SASL challenges, multi-line bodies, CAPA.

Pure functions over one complete line (CRLF included or stripped, as documented); the
connection extracts lines from its receive buffer and keeps the multi-line state. Only
``RemoteProtocolError`` escapes from here, whatever the bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from trio_mailoauth._sansio import ReceiveBuffer, decode_sasl
from trio_mailoauth.errors import RemoteProtocolError

__all__ = [
    "CAPA_LIMITS",
    "CHALLENGE_LINE_LIMIT",
    "DEFAULT_BODY_LIMITS",
    "DEFAULT_MESSAGE_LIMIT",
    "LISTING_LIMITS",
    "STATUS_LINE_LIMIT",
    "BodyLimits",
    "MessageBody",
    "POP3Buffer",
    "StatusLine",
    "apop_timestamp",
    "is_challenge",
    "parse_capabilities",
    "parse_challenge",
    "parse_listing_line",
    "parse_stat",
    "parse_status_line",
    "unstuff",
]

# RFC 2449 §4 limits a status line to 512 octets including CRLF. Greetings and -ERR texts in
# the wild stay far below that, but some servers add long banners; 4 KiB tolerates them and
# still bounds what one line can make us hold.
STATUS_LINE_LIMIT: Final = 4096

# While AUTH runs, a line may be a challenge "+ <base64>". Our mechanisms' challenges are
# short JSON errors (~100-300 bytes of base64); GSSAPI-sized tokens stay under 12 KiB. The
# limit covers "+ ", the base64 and CRLF.
CHALLENGE_LINE_LIMIT: Final = 12 * 1024


@dataclass(frozen=True)
class BodyLimits:
    """Caps for one multi-line response; each command picks its own (see the connection)."""

    # Longest body line, CRLF included. RFC 5322 caps message lines at 1000 octets, and a
    # CAPA line is a keyword and a few arguments; later commands (RETR) choose larger caps.
    line: int = 1000
    # Total body octets (CRLFs included).
    total: int = 64 * 1024
    # Number of body lines.
    count: int = 1024


# For multi-line replies that choose no caps of their own.
DEFAULT_BODY_LIMITS: Final = BodyLimits()

# CAPA: RFC 2449 lists about a dozen capabilities, each on a short line. 256 lines and 64 KiB
# leave room for vendor extensions and long SASL lists while bounding a hostile server.
CAPA_LIMITS: Final = BodyLimits(line=1000, total=64 * 1024, count=256)

# LIST and UIDL without argument: one short line per message ("n size", "n uid" with a uid of
# at most 70 characters, RFC 1939 §7), so 512 octets (RFC 2449's response-line limit) is
# plenty. A million messages is far beyond any real maildrop served over POP3; 64 MiB bounds
# what a hostile server can make us hold while it claims so many.
LISTING_LIMITS: Final = BodyLimits(line=512, total=64 * 1024 * 1024, count=1_000_000)

# RETR/TOP are streamed (the core holds at most 4 octets of them), but an endless answer must
# still end: 1 GiB is far above any provider's message size limit (Gmail 50 MB, Microsoft
# 150 MB, both after base64), and the connection's ``max_message_size`` can lower it.
DEFAULT_MESSAGE_LIMIT: Final = 1024 * 1024 * 1024


@dataclass(frozen=True)
class StatusLine:
    ok: bool
    text: str
    code: str | None = None


# RFC 2449 §8: resp-code = "[" resp-level *("/" resp-level) "]"; resp-level = 1*rchar, and
# rchar is any visible character but "[", "]" and "/" (case-insensitive, so we upper-case).
_RESP_CODE = re.compile(r"\[([!-.0-Z\\^-~]+(?:/[!-.0-Z\\^-~]+)*)\]")
_APOP_TIMESTAMP = re.compile(r"<[!-;=?-~]*@[!-;=?-~]*>")


def _strip_crlf(line: bytes) -> bytes:
    return line[:-2] if line.endswith(b"\r\n") else line


def _decode(data: bytes) -> str:
    # Servers put free text (and sometimes Latin-1 or UTF-8) after the indicator; never fail.
    return data.decode("utf-8", "replace")


def parse_status_line(line: bytes) -> StatusLine:
    """``+OK [CODE] text`` or ``-ERR [CODE] text`` (CRLF optional)."""
    body = _strip_crlf(line)
    head, sep, rest = body.partition(b" ")
    indicator = head.upper()
    if indicator == b"+OK":
        ok = True
    elif indicator == b"-ERR":
        ok = False
    else:
        raise RemoteProtocolError(f"expected a +OK or -ERR status line, got {_decode(body[:40])!r}")
    text = _decode(rest) if sep else ""
    code = None
    match = _RESP_CODE.match(text) if text[:1] == "[" else None
    if match:
        code = match.group(1).upper()
        text = text[match.end() :].lstrip(" ")
    return StatusLine(ok, text, code)


def is_challenge(line: bytes) -> bool:
    """A SASL continuation: ``+`` then a space (or nothing), never ``+OK``."""
    body = _strip_crlf(line)
    return body == b"+" or body.startswith(b"+ ")


def parse_challenge(line: bytes) -> bytes:
    """The decoded data of a ``+ <base64>`` line (``+ `` and a bare ``+`` are empty)."""
    return decode_sasl(_strip_crlf(line)[2:])


def unstuff(line: bytes) -> bytes:
    """RFC 1939 §3: a body line starting with ``.`` lost its first octet on the wire."""
    return line[1:] if line.startswith(b".") else line


def _is_number(word: str) -> bool:
    # ASCII digits only: str.isdigit() also accepts "²" or "١", which int() refuses or reads.
    return word.isascii() and word.isdigit()


def parse_stat(text: str) -> tuple[int, int]:
    """STAT's ``+OK`` text: ``count size`` (RFC 1939 §5; more words may follow)."""
    words = text.split()
    if len(words) < 2 or not (_is_number(words[0]) and _is_number(words[1])):
        raise RemoteProtocolError(f"malformed STAT answer: {text[:40]!r}")
    return int(words[0]), int(words[1])


def parse_listing_line(keyword: str, line: bytes | str) -> tuple[int, str]:
    """``n value`` from a LIST/UIDL body line or single-line answer; value is the 2nd word."""
    text = _decode(line) if isinstance(line, bytes) else line
    words = text.split()
    if len(words) < 2 or not _is_number(words[0]) or int(words[0]) < 1:
        raise RemoteProtocolError(f"malformed {keyword} line: {text[:40]!r}")
    value = words[1]
    if keyword == "LIST" and not _is_number(value):
        raise RemoteProtocolError(f"malformed {keyword} size: {text[:40]!r}")
    return int(words[0]), value


# CRLF "." CRLF ends a body; a chunk may end in any proper prefix of it.
_TERMINATOR_LINE: Final = b"\r\n.\r\n"
_PARTIAL_TERMINATORS: Final = (b"\r\n.\r", b"\r\n.", b"\r\n", b"\r")


class MessageBody:
    """Where a RETR/TOP body stands: the two wire octets before the unread data, the size.

    The first line's context is the status line's CRLF. ``POP3Buffer.extract_message``
    does the work.
    """

    def __init__(self) -> None:
        self.context = b"\r\n"
        self.size = 0  # unstuffed octets handed out so far


class POP3Buffer(ReceiveBuffer):
    """ReceiveBuffer plus the RETR/TOP body scan, done in place on the buffered bytes.

    Works on whole chunks with bytes operations (``find``, ``replace``), not line by line,
    and copies only the part of the buffer that belongs to the message: the answers queued
    behind it (PIPELINING) stay where they are.
    """

    def extract_message(self, body: MessageBody) -> tuple[bytes, bool]:
        """The next dot-unstuffed octets of the body, and whether its terminator was read.

        Leaves at most four octets that may start a terminator (and everything after the
        terminator) in the buffer. A bare LF before "." ends nothing.
        """
        data = self._data
        context = body.context
        # A terminator or a stuffed "." may begin in the context (the previous chunk's end).
        if context == b"\r\n" and data[:3] == b".\r\n":
            end: int | None = -2
        elif context[1:] == b"\r" and data[:4] == b"\n.\r\n":
            end = -1
        else:
            found = data.find(_TERMINATOR_LINE)
            end = found if found >= 0 else None
        if end is not None:
            cut, consumed = end + 2, end + 5  # the CRLF before "." ends the last line
        else:
            # Keep what may start a terminator, including one that began in the context.
            tail = context + bytes(data[-4:])
            keep = 0
            for partial in _PARTIAL_TERMINATORS:
                if tail.endswith(partial):
                    keep = min(len(partial), len(data))
                    break
            cut = consumed = len(data) - keep
        with memoryview(data) as view:
            chunk = bytes(view[:cut])
        if context == b"\r\n" and chunk[:1] == b".":
            chunk = chunk[1:]
        elif context[1:] == b"\r" and chunk[:2] == b"\n.":
            chunk = b"\n" + chunk[2:]
        # "\r\n." cannot straddle the cut: what is kept starts with "\r" (or is empty).
        # split + join scans once; replace() scans twice (it counts first). With nothing to
        # unstuff, join() hands back the one piece as it is.
        chunk = b"\r\n".join(chunk.split(b"\r\n."))
        if consumed >= 2:
            body.context = bytes(data[consumed - 2 : consumed])
        elif consumed == 1:
            body.context = context[1:] + bytes(data[:1])
        del data[:consumed]
        self._searched = 0
        body.size += len(chunk)
        return chunk, end is not None


def apop_timestamp(text: str) -> str | None:
    """The ``<process-ID.clock@hostname>`` banner of a greeting, for APOP."""
    match = _APOP_TIMESTAMP.search(text)
    return match.group(0) if match else None


def parse_capabilities(lines: Iterable[bytes]) -> dict[str, tuple[str, ...]]:
    """CAPA lines to ``{"SASL": ("PLAIN", "XOAUTH2"), "TOP": (), ...}``.

    Names are upper-cased (RFC 2449: case-insensitive); arguments keep their case except
    SASL mechanism names, which are upper-cased too. A repeated name keeps its last line.
    """
    capabilities: dict[str, tuple[str, ...]] = {}
    for line in lines:
        words = _decode(line).split()
        if not words:
            continue
        name = words[0].upper()
        args = tuple(words[1:])
        if name == "SASL":
            args = tuple(arg.upper() for arg in args)
        capabilities[name] = args
    return capabilities
