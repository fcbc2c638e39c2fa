"""The SMTP command writer: a command in, its bytes and its (redacted) trace line out.

Validation happens here, before anything is queued: a host name with a space or CR/LF, or
a mechanism name that is not one, would let a caller inject a second command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trio_mailoauth._sansio import encode_sasl
from trio_mailoauth.errors import LocalProtocolError
from trio_mailoauth.smtp._events import (
    Authenticate,
    Command,
    Ehlo,
    Helo,
    Noop,
    Quit,
    Rset,
    StartTLS,
)

__all__ = ["MAX_COMMAND_LINE", "Written", "check_local_name", "write_command", "write_response"]

# RFC 5321 §4.5.3.1.4: a command line is at most 512 octets, but AUTH lines carry long
# base64 responses and servers accept more: Dovecot submission up to 1024 characters,
# Postfix about 2 KB. 1000 octets (CRLF included, the RFC 5321 text-line limit) fits every
# server we know; a longer initial response goes in the two-step form (``AUTH X`` then the
# response after the server's ``334``), which works up to ~6 KB tokens on both.
MAX_COMMAND_LINE = 1000

# RFC 4422 §3.1: SASL mechanism names are 1-20 upper-case letters, digits, '-' and '_'.
_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}")

# A domain (RFC 5321 §4.1.2 allows 255 octets) or an address literal such as "[127.0.0.1]"
# or "[IPv6:::1]": printable ASCII without spaces is all the wire syntax needs from us.
_MAX_DOMAIN = 255


@dataclass(frozen=True)
class Written:
    """A command ready to go: ``data`` now, ``held_response`` after the first challenge."""

    data: bytes
    trace: str
    held_response: bytes | None = None


def check_local_name(name: str) -> str | None:
    """Why ``name`` cannot follow EHLO/HELO, or None when it can."""
    if not name:
        return "the local host name is empty"
    if len(name) > _MAX_DOMAIN:
        return f"the local host name is longer than {_MAX_DOMAIN} characters"
    if not name.isascii() or not all(33 <= ord(c) < 127 for c in name):
        return "the local host name must be printable ASCII without spaces, CR or LF"
    return None


def write_command(command: Command) -> Written:
    """The wire bytes of ``command``; LocalProtocolError if it cannot be written."""
    if isinstance(command, Ehlo | Helo):
        problem = check_local_name(command.hostname)
        if problem is not None:
            raise LocalProtocolError(problem)
        return _line(f"{command.verb} {command.hostname}")
    if isinstance(command, StartTLS | Noop | Rset | Quit):
        return _line(command.verb)
    if isinstance(command, Authenticate):
        return _write_auth(command)
    raise LocalProtocolError(f"not an SMTP command: {type(command).__name__}")


def _line(text: str) -> Written:
    return Written(text.encode("ascii") + b"\r\n", f"C: {text}")


def _write_auth(command: Authenticate) -> Written:
    mechanism = command.mechanism
    if not _MECHANISM.fullmatch(mechanism):
        raise LocalProtocolError(f"not a SASL mechanism name: {mechanism[:40]!r}")
    head = f"AUTH {mechanism}"
    response = command.initial_response
    if response is None:
        return _line(head)
    # RFC 4954 §4: an empty initial response is sent as "=".
    encoded = encode_sasl(response) if response else b"="
    data = head.encode("ascii") + b" " + encoded + b"\r\n"
    if len(data) <= MAX_COMMAND_LINE:
        return Written(data, f"C: {head} <redacted>")
    return Written(head.encode("ascii") + b"\r\n", f"C: {head}", held_response=response)


def write_response(response: bytes | None) -> Written:
    """A SASL response line: base64, an empty line, or ``*`` to cancel (``None``)."""
    if response is None:
        return Written(b"*\r\n", "C: *")
    if not response:
        # The empty answer to an error challenge: nothing secret in it, and worth seeing.
        return Written(b"\r\n", "C: ")
    return Written(encode_sasl(response) + b"\r\n", "C: <redacted SASL response>")
