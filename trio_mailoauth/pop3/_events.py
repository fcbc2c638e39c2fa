"""What flows through the POP3 core: commands the client sends, events the server causes.

Commands are frozen dataclasses that know their keyword, their arguments and whether the
server answers them with a multi-line response (RFC 1939 §3). Events are frozen dataclasses;
``SASLChallenge`` and ``ConnectionClosed`` are shared with the other protocols.

Secrets (a password, a SASL initial response) never show in a repr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trio_mailoauth._sansio import ConnectionClosed, SASLChallenge

__all__ = [
    "Authenticate",
    "Capa",
    "Command",
    "ConnectionClosed",
    "ErrResponse",
    "Event",
    "Greeting",
    "MultilineResponse",
    "Noop",
    "OkResponse",
    "Pass",
    "Quit",
    "SASLChallenge",
    "Stls",
    "User",
]


# --- commands ---------------------------------------------------------------------------------


class Command:
    """Base class of the commands ``POP3Connection.send`` accepts."""

    keyword: ClassVar[str]
    # True when the arguments must not appear in a trace (they are replaced by <redacted>).
    secret_arguments: ClassVar[bool] = False

    def arguments(self) -> tuple[str, ...]:
        """The arguments as they go on the command line."""
        return ()

    @property
    def multiline(self) -> bool:
        """Does a +OK answer to this command carry a multi-line body ending in ``.``?"""
        return False


@dataclass(frozen=True)
class Capa(Command):
    """RFC 2449 CAPA: the capabilities, one per line."""

    keyword: ClassVar[str] = "CAPA"

    @property
    def multiline(self) -> bool:
        return True


@dataclass(frozen=True)
class Stls(Command):
    """RFC 2595 STLS: after +OK, the client starts the TLS handshake."""

    keyword: ClassVar[str] = "STLS"


@dataclass(frozen=True)
class User(Command):
    """RFC 1939 USER: the mailbox name; PASS must follow."""

    keyword: ClassVar[str] = "USER"
    name: str

    def arguments(self) -> tuple[str, ...]:
        return (self.name,)


@dataclass(frozen=True)
class Pass(Command):
    """RFC 1939 PASS: the password (it may contain spaces; it is never traced)."""

    keyword: ClassVar[str] = "PASS"
    secret_arguments: ClassVar[bool] = True
    password: str = field(repr=False)

    def arguments(self) -> tuple[str, ...]:
        return (self.password,)


@dataclass(frozen=True)
class Authenticate(Command):
    """RFC 5034 AUTH with a mechanism, optionally with an initial response.

    The POP3 client always uses the two-step form (``initial_response=None``): the
    255-octet command-line limit leaves no room for a bearer token, and Microsoft rejects a
    token on the AUTH line. The core still supports an initial response (sent as ``=``
    when empty, RFC 5034 §4) as long as the line fits.
    """

    keyword: ClassVar[str] = "AUTH"
    secret_arguments: ClassVar[bool] = True
    mechanism: str
    initial_response: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Noop(Command):
    """RFC 1939 NOOP (TRANSACTION state only)."""

    keyword: ClassVar[str] = "NOOP"


@dataclass(frozen=True)
class Quit(Command):
    """RFC 1939 QUIT: +OK, then the server closes (after deleting, in TRANSACTION state)."""

    keyword: ClassVar[str] = "QUIT"


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Greeting:
    """The server's ``+OK`` greeting.

    ``timestamp`` is the ``<...@...>`` banner APOP needs (RFC 1939 §7), when present.
    """

    text: str
    code: str | None = None
    timestamp: str | None = None


@dataclass(frozen=True)
class OkResponse:
    """A single-line ``+OK`` answering ``command`` (a keyword such as ``"NOOP"``)."""

    command: str
    text: str
    code: str | None = None


@dataclass(frozen=True)
class MultilineResponse:
    """A ``+OK`` with its body: ``lines`` without CRLF, already dot-unstuffed."""

    command: str
    text: str
    code: str | None = None
    lines: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class ErrResponse:
    """A ``-ERR`` answering ``command``, or refusing the connection (``command="GREETING"``).

    ``code`` is the RFC 2449 response code without brackets, upper-cased (``"SYS/TEMP"``).
    """

    command: str
    text: str
    code: str | None = None


Event = Greeting | OkResponse | MultilineResponse | ErrResponse | SASLChallenge | ConnectionClosed
