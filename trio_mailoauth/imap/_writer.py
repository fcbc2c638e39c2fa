"""Writing IMAP commands: arguments to bytes, choosing quoted strings or literals safely.

A command becomes one or more *parts*. The first goes out at once; each later part starts
with the bytes of a synchronizing literal and may only be sent after the server's ``+``
continuation request (RFC 9051 §4.3, §7.5). With ``LITERAL+`` (RFC 7888) every literal is
non-synchronizing (``{n+}``) and the command is one part; with ``LITERAL-`` only literals up
to 4096 bytes may be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from trio_mailoauth.errors import LocalProtocolError

__all__ = ["AString", "Arg", "Atom", "CommandWriter"]

# A string longer than this goes as a literal rather than a quoted string, so a command
# line stays short (servers cap lines: Dovecot at 64 KiB, others lower).
MAX_QUOTED: Final = 1024

# RFC 7888 §4: with LITERAL-, a non-synchronizing literal carries at most 4096 bytes.
LITERAL_MINUS_MAX: Final = 4096

# ATOM-CHAR (RFC 9051 §9): any CHAR except atom-specials: ( ) { SP CTL % * " \ ].
_ATOM_SPECIALS: Final = frozenset(b'(){ %*"\\]') | frozenset(range(0x20)) | {0x7F}

# Bytes a quoted string may hold: printable 7-bit ASCII. Never CR, LF or NUL: inside a
# quoted string they would end the command early (command injection). Others go literal.
_QUOTABLE: Final = frozenset(range(0x20, 0x7F))


@dataclass(frozen=True)
class Atom:
    """An atom argument (a keyword, a mechanism name, base64): sent as it is, once checked."""

    text: str


@dataclass(frozen=True)
class AString:
    """A string argument (user name, password, mailbox): quoted or literal, as is safe."""

    value: str | bytes = field(repr=False)


Arg = Atom | AString


class CommandWriter:
    """Turns a tagged command into parts; knows which literal forms the server accepts."""

    def __init__(self) -> None:
        self.literal_plus = False
        self.literal_minus = False

    def write(self, tag: str, name: str, args: Sequence[Arg]) -> list[bytes]:
        """The parts of ``tag name args`` CRLF; every part after the first waits for ``+``.

        Raises LocalProtocolError (nothing is written) for an argument no form can carry.
        """
        parts: list[bytes] = []
        current = bytearray(f"{tag} {name}".encode("ascii"))
        for arg in args:
            current += b" "
            if isinstance(arg, Atom):
                current += _atom(arg.text)
                continue
            data = arg.value.encode("utf-8") if isinstance(arg.value, str) else arg.value
            if b"\x00" in data:
                raise LocalProtocolError(
                    f"{name}: an argument contains NUL, which IMAP cannot send"
                )
            if len(data) <= MAX_QUOTED and all(byte in _QUOTABLE for byte in data):
                current += b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
                continue
            if self.literal_plus or (self.literal_minus and len(data) <= LITERAL_MINUS_MAX):
                current += b"{%d+}\r\n" % len(data)
                current += data
                continue
            current += b"{%d}\r\n" % len(data)
            parts.append(bytes(current))
            current = bytearray(data)
        current += b"\r\n"
        parts.append(bytes(current))
        return parts


def _atom(text: str) -> bytes:
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError:
        data = b"\x00"  # reported below
    if not data or any(byte in _ATOM_SPECIALS or byte > 0x7E for byte in data):
        raise LocalProtocolError(f"{text[:40]!r} is not a valid IMAP atom")
    return data
