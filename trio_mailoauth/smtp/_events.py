"""What the SMTP core hands out (server replies) and takes in (client commands).

Server side: one :class:`Reply` per complete (possibly multi-line) reply, :class:`SASLChallenge`
during AUTH, :class:`ConnectionClosed` once the server closed and everything was read.

Client side: the commands :class:`SMTPConnection.send` accepts. Each names its ``verb``; the
state table in ``_state.py`` is keyed on it. All are frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from trio_mailoauth._sansio import ConnectionClosed, SASLChallenge
from trio_mailoauth.errors import LocalProtocolError
from trio_mailoauth.smtp._envelope import (
    check_address,
    check_envid,
    check_notify,
    needs_smtputf8,
)

__all__ = [
    "Authenticate",
    "Bdat",
    "BodyType",
    "Command",
    "ConnectionClosed",
    "Data",
    "Ehlo",
    "Event",
    "Helo",
    "Mail",
    "MessageData",
    "Noop",
    "Quit",
    "Rcpt",
    "Reply",
    "Rset",
    "SASLChallenge",
    "StartTLS",
    "Vrfy",
    "command_key",
]


# --- from the server ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One complete server reply (RFC 5321 §4.2).

    ``lines`` hold each line's text without the code, the separator and (when the reply
    carries one, RFC 2034) the enhanced status code, which is in ``enhanced_status``
    (``"5.7.8"``). A ``334`` SASL challenge keeps its base64 text in ``lines[0]``.
    """

    code: int
    enhanced_status: str | None
    lines: tuple[str, ...]

    def __init__(self, code: int, enhanced_status: str | None, lines: tuple[str, ...]) -> None:
        # What @dataclass(frozen=True) would generate, minus its object.__setattr__ call per
        # field: a Reply is made for every reply (three per message sent), and that way
        # costs twice as much as the rest of making one.
        fields = self.__dict__
        fields["code"] = code
        fields["enhanced_status"] = enhanced_status
        fields["lines"] = lines

    @property
    def text(self) -> str:
        """All lines joined with a space: how the reply reads in an error message."""
        return " ".join(line for line in self.lines if line)

    @property
    def is_positive(self) -> bool:
        """2xx: the command succeeded."""
        return 200 <= self.code < 300

    @property
    def is_intermediate(self) -> bool:
        """3xx: the server waits for more (a SASL challenge, DATA's go-ahead)."""
        return 300 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """4xx: refused for now; the same command may succeed later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5xx: refused; the same command will fail again."""
        return 500 <= self.code < 600


Event = Reply | SASLChallenge | ConnectionClosed


# --- from the client ------------------------------------------------------------------------


@dataclass(frozen=True)
class Ehlo:
    """``EHLO <hostname>``: greet and ask for the service extensions."""

    verb: ClassVar[str] = "EHLO"
    hostname: str


@dataclass(frozen=True)
class Helo:
    """``HELO <hostname>``: the fallback greeting for servers without extensions."""

    verb: ClassVar[str] = "HELO"
    hostname: str


@dataclass(frozen=True)
class StartTLS:
    """``STARTTLS`` (RFC 3207)."""

    verb: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True)
class Authenticate:
    """``AUTH <mechanism> [<initial response>]`` (RFC 4954).

    ``initial_response`` is the raw (not base64) first response, or ``None`` to let the
    server's first challenge ask for it. The core sends it on the AUTH line when that line
    fits the limit, otherwise it answers the server's first empty challenge with it. Its
    repr never shows the response.
    """

    verb: ClassVar[str] = "AUTH"
    mechanism: str
    initial_response: bytes | None = None

    def __repr__(self) -> str:
        shown = "None" if self.initial_response is None else "<redacted>"
        return f"Authenticate(mechanism={self.mechanism!r}, initial_response={shown})"


@dataclass(frozen=True)
class Noop:
    """``NOOP``: does nothing; keeps the connection alive or checks it."""

    verb: ClassVar[str] = "NOOP"


@dataclass(frozen=True)
class Rset:
    """``RSET``: abort the current mail transaction."""

    verb: ClassVar[str] = "RSET"


@dataclass(frozen=True)
class Quit:
    """``QUIT``: the server answers 221 and closes the connection."""

    verb: ClassVar[str] = "QUIT"


BodyType = Literal["7BIT", "8BITMIME", "BINARYMIME"]


@dataclass(frozen=True)
class Mail:
    """``MAIL FROM:<sender> [parameters]``: start a mail transaction.

    ``sender`` ``""`` is the null reverse-path (bounces). The parameters are those of the
    extensions the server must offer for them: ``size`` SIZE (RFC 1870), ``body``
    8BITMIME/BINARYMIME (RFC 6152, RFC 3030), ``smtputf8`` SMTPUTF8 (RFC 6531, required for a
    non-ASCII address), ``ret``/``envid`` DSN (RFC 3461), ``requiretls`` REQUIRETLS (RFC 8689).
    The address is checked when the command is made: LocalProtocolError for anything that
    could end the path early (CR, LF, NUL, ``<``, ``>``, an unquoted space).
    """

    verb: ClassVar[str] = "MAIL"
    sender: str
    size: int | None = None
    body: BodyType | None = None
    smtputf8: bool = False
    ret: Literal["FULL", "HDRS"] | None = None
    envid: str | None = None
    requiretls: bool = False

    def __init__(
        self,
        sender: str,
        size: int | None = None,
        body: BodyType | None = None,
        smtputf8: bool = False,
        ret: Literal["FULL", "HDRS"] | None = None,
        envid: str | None = None,
        requiretls: bool = False,
    ) -> None:
        # The __init__ @dataclass(frozen=True) would make, checks included, but filling
        # __dict__ at once: its object.__setattr__ per field cost more than the checks, and
        # a MAIL is made for every message sent. (Reply does the same.)
        check_address(sender, what="sender", allow_empty=True)
        if not smtputf8 and needs_smtputf8(sender):
            raise LocalProtocolError("a non-ASCII sender address needs SMTPUTF8 (smtputf8=True)")
        if size is not None and (not isinstance(size, int) or size < 0):
            raise LocalProtocolError(f"SIZE must be a non-negative int, not {size!r}")
        if body not in (None, "7BIT", "8BITMIME", "BINARYMIME"):
            raise LocalProtocolError(f"BODY must be 7BIT, 8BITMIME or BINARYMIME: {body!r}")
        if ret not in (None, "FULL", "HDRS"):
            raise LocalProtocolError(f"RET must be FULL or HDRS, not {ret!r}")
        if envid is not None:
            check_envid(envid)
        fields = self.__dict__
        fields["sender"] = sender
        fields["size"] = size
        fields["body"] = body
        fields["smtputf8"] = smtputf8
        fields["ret"] = ret
        fields["envid"] = envid
        fields["requiretls"] = requiretls


@dataclass(frozen=True)
class Rcpt:
    """``RCPT TO:<recipient> [NOTIFY=...] [ORCPT=rfc822;...]``: add one recipient.

    ``notify`` (DSN): ``("NEVER",)`` or some of ``"SUCCESS"``, ``"FAILURE"``, ``"DELAY"``.
    ``orcpt`` (DSN): the original recipient address. An ASCII one goes as ``rfc822;`` and
    xtext (RFC 3461 §4.2), a non-ASCII one as ``utf-8;`` and RFC 6533's utf-8-addr-unitext
    when the transaction uses SMTPUTF8, its 7-bit utf-8-addr-xtext otherwise.
    """

    verb: ClassVar[str] = "RCPT"
    recipient: str
    notify: tuple[str, ...] | None = None
    orcpt: str | None = None

    def __init__(
        self, recipient: str, notify: tuple[str, ...] | None = None, orcpt: str | None = None
    ) -> None:
        # Made for every recipient of every message: see Mail.__init__.
        check_address(recipient, what="recipient")
        if notify is not None:
            check_notify(tuple(notify))
        if orcpt is not None:
            check_address(orcpt, what="original recipient (ORCPT)")
        fields = self.__dict__
        fields["recipient"] = recipient
        fields["notify"] = notify
        fields["orcpt"] = orcpt


@dataclass(frozen=True)
class Data:
    """``DATA``: the server answers 354, then the content goes as :class:`MessageData`."""

    verb: ClassVar[str] = "DATA"


@dataclass(frozen=True)
class MessageData:
    """The message after DATA's 354: sent with CRLF line endings, dot-stuffed, ``.`` ended.

    Bare CR and bare LF become CRLF and every line starting with ``.`` gets a second one,
    so no content can end the data early (no SMTP smuggling). Its repr shows the size only.
    """

    verb: ClassVar[str] = "MESSAGE DATA"
    content: bytes

    def __repr__(self) -> str:
        return f"MessageData(<{len(self.content)} bytes>)"


@dataclass(frozen=True)
class Bdat:
    """``BDAT <size> [LAST]`` and the chunk's bytes (CHUNKING, RFC 3030).

    The chunk goes as is: length-framed, it needs no dot-stuffing. Its repr shows the size.
    """

    verb: ClassVar[str] = "BDAT"
    chunk: bytes
    last: bool = False

    def __init__(self, chunk: bytes, last: bool = False) -> None:
        # Made for every message sent over BDAT: see Mail.__init__.
        fields = self.__dict__
        fields["chunk"] = chunk
        fields["last"] = last

    def __repr__(self) -> str:
        return f"Bdat(<{len(self.chunk)} bytes>, last={self.last})"


@dataclass(frozen=True)
class Vrfy:
    """``VRFY <string>``: ask whether the server knows a user or mailbox."""

    verb: ClassVar[str] = "VRFY"
    address: str

    def __post_init__(self) -> None:
        if not self.address or not self.address.isprintable() or not self.address.isascii():
            raise LocalProtocolError("VRFY needs a non-empty printable ASCII string")


Command = (
    Ehlo
    | Helo
    | StartTLS
    | Authenticate
    | Noop
    | Rset
    | Quit
    | Mail
    | Rcpt
    | Data
    | MessageData
    | Bdat
    | Vrfy
)


def command_key(command: Command) -> str:
    """The name the state table knows ``command`` by: its verb, or ``"BDAT LAST"``."""
    if isinstance(command, Bdat) and command.last:
        return "BDAT LAST"
    return command.verb
