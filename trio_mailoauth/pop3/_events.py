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
from trio_mailoauth.errors import LocalProtocolError

__all__ = [
    "Apop",
    "Authenticate",
    "Capa",
    "Command",
    "ConnectionClosed",
    "Dele",
    "ErrResponse",
    "Event",
    "Greeting",
    "List",
    "MessageData",
    "MessageEnd",
    "MessageStart",
    "MultilineResponse",
    "Noop",
    "OkResponse",
    "Pass",
    "Quit",
    "Retr",
    "Rset",
    "SASLChallenge",
    "ScanListing",
    "Stat",
    "StatResponse",
    "Stls",
    "Top",
    "UidListing",
    "Uidl",
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
class Apop(Command):
    """RFC 1939 APOP: the name and MD5(greeting timestamp + secret), computed by the core.

    The core refuses it (LocalProtocolError) when the greeting carried no valid timestamp.
    """

    keyword: ClassVar[str] = "APOP"
    secret_arguments: ClassVar[bool] = True
    name: str
    secret: str = field(repr=False)


def _check_number(keyword: str, number: int) -> None:
    # RFC 1939: message numbers start at 1; bool is an int but never a message number.
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise LocalProtocolError(f"{keyword}: a message number is an int >= 1, not {number!r}")


@dataclass(frozen=True)
class Stat(Command):
    """RFC 1939 STAT: answered by ``StatResponse`` (count and size of the maildrop)."""

    keyword: ClassVar[str] = "STAT"


@dataclass(frozen=True)
class _Listing(Command):
    """LIST and UIDL: every message (multi-line), or ``number`` alone (one line)."""

    number: int | None = None

    def __post_init__(self) -> None:
        if self.number is not None:
            _check_number(self.keyword, self.number)

    def arguments(self) -> tuple[str, ...]:
        return () if self.number is None else (str(self.number),)

    @property
    def multiline(self) -> bool:
        return self.number is None


@dataclass(frozen=True)
class List(_Listing):
    """RFC 1939 LIST: sizes of all messages (multi-line), or of ``number`` (one line)."""

    keyword: ClassVar[str] = "LIST"


@dataclass(frozen=True)
class Uidl(_Listing):
    """RFC 1939 UIDL: unique ids of all messages (multi-line), or of ``number`` (one line)."""

    keyword: ClassVar[str] = "UIDL"


@dataclass(frozen=True)
class _OneMessage(Command):
    """A command about one message, by its number."""

    number: int

    def __post_init__(self) -> None:
        _check_number(self.keyword, self.number)

    def arguments(self) -> tuple[str, ...]:
        return (str(self.number),)


@dataclass(frozen=True)
class Retr(_OneMessage):
    """RFC 1939 RETR: the message, streamed as MessageStart, MessageData..., MessageEnd."""

    keyword: ClassVar[str] = "RETR"

    @property
    def multiline(self) -> bool:
        return True


@dataclass(frozen=True)
class Top(_OneMessage):
    """RFC 1939 TOP: the header, a blank line and the first ``lines`` body lines (streamed)."""

    keyword: ClassVar[str] = "TOP"
    lines: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.lines, bool) or not isinstance(self.lines, int) or self.lines < 0:
            raise LocalProtocolError(f"TOP: the line count is an int >= 0, not {self.lines!r}")

    def arguments(self) -> tuple[str, ...]:
        return (str(self.number), str(self.lines))

    @property
    def multiline(self) -> bool:
        return True


@dataclass(frozen=True)
class Dele(_OneMessage):
    """RFC 1939 DELE: mark a message deleted; only QUIT in TRANSACTION state commits."""

    keyword: ClassVar[str] = "DELE"


@dataclass(frozen=True)
class Rset(Command):
    """RFC 1939 RSET: unmark every message marked deleted in this session."""

    keyword: ClassVar[str] = "RSET"


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


@dataclass(frozen=True)
class StatResponse:
    """``+OK count size`` answering STAT (RFC 1939 §5: size in octets, as the server counts)."""

    count: int
    size: int
    code: str | None = None


@dataclass(frozen=True)
class ScanListing:
    """LIST's answer: ``(number, size)`` pairs; one pair for ``LIST n``."""

    entries: tuple[tuple[int, int], ...]
    code: str | None = None


@dataclass(frozen=True)
class UidListing:
    """UIDL's answer: ``(number, unique id)`` pairs; one pair for ``UIDL n``."""

    entries: tuple[tuple[int, str], ...]
    code: str | None = None


@dataclass(frozen=True)
class MessageStart:
    """``+OK`` to RETR or TOP: ``MessageData`` chunks follow, then ``MessageEnd``."""

    command: str
    text: str
    code: str | None = None


@dataclass(frozen=True)
class MessageData:
    """A piece of the message, dot-unstuffed, CRLF line endings as on the wire.

    Chunks follow the network's, not line boundaries; their concatenation is the message.
    """

    data: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"MessageData(<{len(self.data)} bytes>)"


@dataclass(frozen=True)
class MessageEnd:
    """The terminating ``.`` of a RETR or TOP answer; ``size`` counts the unstuffed octets."""

    command: str
    size: int


Event = (
    Greeting
    | OkResponse
    | MultilineResponse
    | ErrResponse
    | StatResponse
    | ScanListing
    | UidListing
    | MessageStart
    | MessageData
    | MessageEnd
    | SASLChallenge
    | ConnectionClosed
)
