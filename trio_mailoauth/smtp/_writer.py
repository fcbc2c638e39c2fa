"""The SMTP command writer: a command in, its bytes and its (redacted) trace line out.

Validation happens here, before anything is queued: a host name with a space or CR/LF, or
a mechanism name that is not one, would let a caller inject a second command. (Addresses
and ESMTP parameters are checked earlier, when MAIL/RCPT are constructed: ``_envelope.py``.)

Message data after DATA is normalised to CRLF line endings and dot-stuffed with a few
``bytes`` methods over the whole message (each a C loop), never a Python loop over lines:
a 25 MB attachment costs milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trio_mailoauth._sansio import encode_sasl
from trio_mailoauth.errors import LocalProtocolError
from trio_mailoauth.smtp._envelope import orcpt_value, xtext
from trio_mailoauth.smtp._events import (
    Authenticate,
    Bdat,
    Command,
    Data,
    Ehlo,
    Helo,
    Mail,
    MessageData,
    Noop,
    Quit,
    Rcpt,
    Rset,
    StartTLS,
    Vrfy,
)

__all__ = [
    "MAX_COMMAND_LINE",
    "Written",
    "check_local_name",
    "dot_stuff",
    "normalize_line_endings",
    "write_command",
    "write_response",
]

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


@dataclass(slots=True)  # not frozen: made for every command, and never kept
class Written:
    """A command ready to go: ``data`` now, ``held_response`` after the first challenge.

    ``trace`` is the redacted trace line when ``data`` holds a secret or a message; ``None``
    means the command line itself is the trace, formatted only when somebody traces.
    """

    data: bytes
    trace: str | None = None
    held_response: bytes | None = None
    # Sent right after ``data``; kept apart so a big message is not copied to prepend a line.
    payload: bytes = b""
    payload_end: bytes = b""


def check_local_name(name: str) -> str | None:
    """Why ``name`` cannot follow EHLO/HELO, or None when it can."""
    if not name:
        return "the local host name is empty"
    if len(name) > _MAX_DOMAIN:
        return f"the local host name is longer than {_MAX_DOMAIN} characters"
    if not name.isascii() or not all(33 <= ord(c) < 127 for c in name):
        return "the local host name must be printable ASCII without spaces, CR or LF"
    return None


def write_command(command: Command, *, smtputf8: bool = False) -> Written:
    """The wire bytes of ``command``; LocalProtocolError if it cannot be written.

    ``smtputf8``: the transaction uses SMTPUTF8 (how RCPT writes a non-ASCII ORCPT).
    """
    # The commands of a mail transaction first: they are the ones sent per message.
    if isinstance(command, Mail):
        return _write_mail(command)
    if isinstance(command, Rcpt):
        return _write_rcpt(command, smtputf8)
    if isinstance(command, Bdat):
        head = b"BDAT %d LAST\r\n" if command.last else b"BDAT %d\r\n"
        return Written(head % len(command.chunk), None, None, command.chunk)
    if isinstance(command, MessageData):
        stuffed = dot_stuff(command.content)
        end = b".\r\n" if not stuffed or stuffed.endswith(b"\r\n") else b"\r\n.\r\n"
        return Written(b"", f"C: <message data: {len(stuffed)} bytes>", None, stuffed, end)
    if isinstance(command, Ehlo | Helo):
        problem = check_local_name(command.hostname)
        if problem is not None:
            raise LocalProtocolError(problem)
        return _line(f"{command.verb} {command.hostname}")
    if isinstance(command, StartTLS | Noop | Rset | Quit | Data):
        return _line(command.verb)
    if isinstance(command, Authenticate):
        return _write_auth(command)
    if isinstance(command, Vrfy):
        return _line(f"VRFY {command.address}")
    raise LocalProtocolError(f"not an SMTP command: {type(command).__name__}")


def _write_mail(command: Mail) -> Written:
    # A string grown in place rather than a list joined: this runs for every message sent.
    line = f"MAIL FROM:<{command.sender}>"
    if command.size is not None:
        line += f" SIZE={command.size}"
    if command.body is not None:
        line += f" BODY={command.body}"
    if command.smtputf8:
        line += " SMTPUTF8"
    if command.ret is not None:
        line += f" RET={command.ret}"
    if command.envid is not None:
        line += f" ENVID={xtext(command.envid)}"
    if command.requiretls:
        line += " REQUIRETLS"
    return _utf8_line(line)


def _write_rcpt(command: Rcpt, smtputf8: bool) -> Written:
    line = f"RCPT TO:<{command.recipient}>"
    if command.notify is not None:
        line += " NOTIFY=" + ",".join(command.notify)
    if command.orcpt is not None:
        line += " ORCPT=" + orcpt_value(command.orcpt, smtputf8=smtputf8)
    return _utf8_line(line)


def _utf8_line(text: str) -> Written:
    # Non-ASCII only reaches here with SMTPUTF8 (checked by the command and the connection).
    return Written(f"{text}\r\n".encode())


def normalize_line_endings(data: bytes) -> bytes:
    """Every line ending CRLF: bare CR and bare LF become CRLF (RFC 5321 §2.3.8).

    A message that is already canonical is returned as it is.
    """
    # Canonical when no CR or LF is left once every CRLF is taken out. This runs for every
    # message sent: one replace (a C search and copy) and two memchr scans cost a third
    # less than counting CR, LF and CRLF, three byte-by-byte loops (~140k instructions for
    # a 10 KB message). The copy is transient, and only as big as the message.
    rest = data.replace(b"\r\n", b"")
    if b"\r" not in rest and b"\n" not in rest:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def dot_stuff(data: bytes) -> bytes:
    """CRLF-normalised ``data`` with a ``.`` added before every line that starts with one.

    After this no line of the message is a lone ``.``, whatever bare CR/LF it held, so the
    content cannot end the DATA early and smuggle a second message (RFC 5321 §4.5.2).
    """
    data = normalize_line_endings(data)
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..")


def _line(text: str) -> Written:
    return Written(text.encode("ascii") + b"\r\n")


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
    return Written(head.encode("ascii") + b"\r\n", held_response=response)


def write_response(response: bytes | None) -> Written:
    """A SASL response line: base64, an empty line, or ``*`` to cancel (``None``)."""
    if response is None:
        return Written(b"*\r\n", "C: *")
    if not response:
        # The empty answer to an error challenge: nothing secret in it, and worth seeing.
        return Written(b"\r\n", "C: ")
    return Written(encode_sasl(response) + b"\r\n", "C: <redacted SASL response>")
