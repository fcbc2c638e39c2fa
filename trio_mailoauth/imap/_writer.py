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
from trio_mailoauth.imap._mutf7 import encode_mailbox

__all__ = ["AString", "Arg", "Atom", "CommandWriter", "ListArg", "Literal", "Mailbox", "Raw"]

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


@dataclass(frozen=True)
class Mailbox:
    """A mailbox name: modified UTF-7 or UTF-8 as the session allows, then an astring."""

    name: str


@dataclass(frozen=True)
class Raw:
    """Syntax we built ourselves (a sequence set, ``BODY.PEEK[HEADER]``, ``+FLAGS.SILENT``):
    sent as it is after checking it holds only printable ASCII (no CR, LF, NUL)."""

    text: str


@dataclass(frozen=True)
class Literal:
    """Always a literal (APPEND's message); ``binary`` makes it a literal8 (``~{n}``)."""

    data: bytes = field(repr=False)
    binary: bool = False


@dataclass(frozen=True)
class ListArg:
    """A parenthesized list of arguments: ``(\\Seen \\Flagged)``."""

    items: tuple[Arg, ...]


Arg = Atom | AString | Mailbox | Raw | Literal | ListArg


class CommandWriter:
    """Turns a tagged command into parts; knows which literal forms the server accepts."""

    def __init__(self) -> None:
        self.literal_plus = False
        self.literal_minus = False
        self.utf8 = False  # mailbox names in UTF-8 (IMAP4rev2 or UTF8=ACCEPT enabled)

    def write(self, tag: str, name: str, args: Sequence[Arg]) -> list[bytes]:
        """The parts of ``tag name args`` CRLF; every part after the first waits for ``+``.

        Raises LocalProtocolError (nothing is written) for an argument no form can carry.
        Each part is gathered as a list of chunks and joined once: a literal's bytes (an
        APPENDed message of many MB) are copied exactly once, into the part.
        """
        parts: list[bytes] = []
        chunks: list[bytes] = [f"{tag} {name}".encode("ascii")]
        for arg in args:
            chunks.append(b" ")
            self._arg(name, arg, chunks, parts)
        chunks.append(b"\r\n")
        parts.append(b"".join(chunks))
        return parts

    def _arg(self, name: str, arg: Arg, chunks: list[bytes], parts: list[bytes]) -> None:
        """Append ``arg`` to the part being built (``chunks``); a synchronizing literal
        closes that part (into ``parts``) and starts the next with the literal's bytes."""
        if isinstance(arg, Atom):
            chunks.append(_atom(arg.text))
            return
        if isinstance(arg, Raw):
            chunks.append(_raw(arg.text))
            return
        if isinstance(arg, ListArg):
            chunks.append(b"(")
            for index, item in enumerate(arg.items):
                if index:
                    chunks.append(b" ")
                self._arg(name, item, chunks, parts)
            chunks.append(b")")
            return
        if isinstance(arg, Literal):
            self._literal(arg.data, chunks, parts, binary=arg.binary)
            return
        try:
            if isinstance(arg, Mailbox):
                data = encode_mailbox(arg.name, self.utf8)
            else:
                data = arg.value.encode("utf-8") if isinstance(arg.value, str) else arg.value
        except UnicodeEncodeError:  # a lone surrogate (from surrogateescape): no bytes for it
            raise LocalProtocolError(f"{name}: an argument is not valid Unicode") from None
        if b"\x00" in data:
            raise LocalProtocolError(f"{name}: an argument contains NUL, which IMAP cannot send")
        if len(data) <= MAX_QUOTED and all(byte in _QUOTABLE for byte in data):
            chunks.append(b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"')
            return
        self._literal(data, chunks, parts)

    def _literal(
        self, data: bytes, chunks: list[bytes], parts: list[bytes], *, binary: bool = False
    ) -> None:
        prefix = b"~" if binary else b""
        if self.literal_plus or (self.literal_minus and len(data) <= LITERAL_MINUS_MAX):
            chunks.append(prefix + b"{%d+}\r\n" % len(data))
            chunks.append(data)
            return
        chunks.append(prefix + b"{%d}\r\n" % len(data))
        parts.append(b"".join(chunks))
        chunks.clear()
        chunks.append(data)


def _raw(text: str) -> bytes:
    data = text.encode("utf-8")
    if not data or any(byte < 0x20 or byte > 0x7E for byte in data):
        raise LocalProtocolError(f"{text[:40]!r} is not valid IMAP syntax here")
    return data


def _atom(text: str) -> bytes:
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError:
        data = b"\x00"  # reported below
    if not data or any(byte in _ATOM_SPECIALS or byte > 0x7E for byte in data):
        raise LocalProtocolError(f"{text[:40]!r} is not a valid IMAP atom")
    return data
