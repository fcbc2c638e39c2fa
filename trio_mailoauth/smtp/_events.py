"""What the SMTP core hands out (server replies) and takes in (client commands).

Server side: one :class:`Reply` per complete (possibly multi-line) reply, :class:`SASLChallenge`
during AUTH, :class:`ConnectionClosed` once the server closed and everything was read.

Client side: the commands :class:`SMTPConnection.send` accepts. Each names its ``verb``; the
state table in ``_state.py`` is keyed on it. All are frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from trio_mailoauth._sansio import ConnectionClosed, SASLChallenge

__all__ = [
    "Authenticate",
    "Command",
    "ConnectionClosed",
    "Ehlo",
    "Event",
    "Helo",
    "Noop",
    "Quit",
    "Reply",
    "Rset",
    "SASLChallenge",
    "StartTLS",
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


Command = Ehlo | Helo | StartTLS | Authenticate | Noop | Rset | Quit
