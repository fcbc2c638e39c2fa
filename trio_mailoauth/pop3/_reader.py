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

from trio_mailoauth._sansio import decode_sasl
from trio_mailoauth.errors import RemoteProtocolError

__all__ = [
    "CAPA_LIMITS",
    "CHALLENGE_LINE_LIMIT",
    "DEFAULT_BODY_LIMITS",
    "STATUS_LINE_LIMIT",
    "BodyLimits",
    "StatusLine",
    "apop_timestamp",
    "is_challenge",
    "parse_capabilities",
    "parse_challenge",
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
    match = _RESP_CODE.match(text)
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
