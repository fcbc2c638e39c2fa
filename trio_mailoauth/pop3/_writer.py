"""Building POP3 command lines and SASL response lines, and their redacted trace text.

Everything is checked before a byte is queued: a bad argument or an over-long line raises
``LocalProtocolError`` and the connection is unchanged.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from trio_mailoauth._sansio import encode_sasl
from trio_mailoauth.errors import LocalProtocolError
from trio_mailoauth.pop3._events import Apop, Authenticate, Command, Pass

__all__ = [
    "COMMAND_LINE_LIMIT",
    "apop_digest",
    "format_apop",
    "format_command",
    "format_sasl_response",
    "trace_command",
]

# RFC 2449 §4: "The maximum length of a command line is 255 octets, including the
# terminating CRLF." It covers the AUTH line with its initial response (RFC 5034 §4), but
# NOT the client's responses to challenges, which are not command lines and may be several
# KB (a 2.5 KB Entra token is ~3.4 KB of base64): see format_sasl_response.
COMMAND_LINE_LIMIT: Final = 255

# RFC 4422 §3.1: a SASL mechanism name is 1-20 characters of A-Z, 0-9, "-" and "_".
_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}")


def _check_argument(keyword: str, value: str, *, spaces_allowed: bool) -> None:
    if not value:
        raise LocalProtocolError(f"{keyword}: an argument must not be empty")
    if "\r" in value or "\n" in value or "\x00" in value:
        raise LocalProtocolError(f"{keyword}: an argument must not contain CR, LF or NUL")
    if not spaces_allowed and (" " in value or "\t" in value):
        raise LocalProtocolError(f"{keyword}: an argument must not contain spaces")


def format_command(command: Command) -> bytes:
    """The command line, CRLF included; LocalProtocolError if it is invalid or too long."""
    keyword = command.keyword
    if isinstance(command, Authenticate):
        mechanism = command.mechanism.upper()
        if not _MECHANISM.fullmatch(mechanism):
            raise LocalProtocolError(f"AUTH: {command.mechanism!r} is not a SASL mechanism name")
        parts = [keyword.encode(), mechanism.encode()]
        if command.initial_response is not None:
            # RFC 5034 §4: an empty initial response is sent as "=".
            parts.append(encode_sasl(command.initial_response) or b"=")
    else:
        args = command.arguments()
        for arg in args:
            # RFC 1939 §7: PASS has one argument, and a server may treat spaces as part of it.
            _check_argument(keyword, arg, spaces_allowed=isinstance(command, Pass))
        parts = [keyword.encode(), *(arg.encode("utf-8") for arg in args)]
    return _finish_line(keyword, parts)


def _finish_line(keyword: str, parts: list[bytes]) -> bytes:
    line = b" ".join(parts) + b"\r\n"
    if len(line) > COMMAND_LINE_LIMIT:
        # The length is safe to show; the content may be a secret.
        raise LocalProtocolError(
            f"{keyword} command line is {len(line)} octets; POP3 allows {COMMAND_LINE_LIMIT} "
            "including CRLF (RFC 2449)"
        )
    return line


def apop_digest(timestamp: str, secret: str) -> str:
    """RFC 1939 §7: lower-case hex MD5 of the greeting's timestamp followed by the secret."""
    data = (timestamp + secret).encode("utf-8")
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def format_apop(command: Apop, timestamp: str) -> bytes:
    """``APOP name digest`` CRLF, for the timestamp of this session's greeting."""
    _check_argument(command.keyword, command.name, spaces_allowed=False)
    if any(c in command.secret for c in ("\r", "\n", "\x00")):
        raise LocalProtocolError("APOP: the secret must not contain CR, LF or NUL")
    digest = apop_digest(timestamp, command.secret)
    return _finish_line(command.keyword, [b"APOP", command.name.encode(), digest.encode()])


def trace_command(command: Command) -> str:
    """What the trace shows for ``command``: secrets replaced by ``<redacted>``."""
    if isinstance(command, Authenticate):
        shown = f"AUTH {command.mechanism.upper()}"
        return shown if command.initial_response is None else shown + " <redacted>"
    if isinstance(command, Apop):
        return f"APOP {command.name} <redacted>"
    if command.secret_arguments:
        return f"{command.keyword} <redacted>"
    return " ".join((command.keyword, *command.arguments()))


def format_sasl_response(data: bytes | None) -> bytes:
    """A response line to a challenge: base64 (empty line when empty), ``*`` to cancel.

    Not subject to the 255-octet command-line limit: a response line is not a command line
    (RFC 5034 applies the limit to the AUTH line only), and bearer tokens are often
    1.5-2.5 KB. Dovecot accepts ~6 KB tokens this way.
    """
    if data is None:
        return b"*\r\n"
    return encode_sasl(data) + b"\r\n"
