"""What :class:`~trio_mailoauth.imap.IMAPConnection` reports: one frozen dataclass per event.

Server responses become events; unsolicited ones (EXISTS, EXPUNGE, BYE, anything unknown)
are ordinary events too, never silently dropped. ``SASLChallenge`` and ``ConnectionClosed``
are shared with the other protocol cores.

Generic response data (:class:`UntaggedResponse`) is a tuple of :data:`Value`: an atom is a
``str`` (numbers stay atoms), a quoted string or a literal is ``bytes``, ``NIL`` is ``None``,
a parenthesized list is a tuple.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from trio_mailoauth._sansio import ConnectionClosed, SASLChallenge

__all__ = [
    "Bye",
    "CapabilityResponse",
    "ConnectionClosed",
    "Event",
    "Exists",
    "Expunge",
    "Greeting",
    "Recent",
    "SASLChallenge",
    "StatusResponse",
    "TaggedResponse",
    "UntaggedResponse",
    "Value",
]

Value: TypeAlias = "str | bytes | tuple[Value, ...] | None"


@dataclass(frozen=True)
class Greeting:
    """The server's first words: ``* OK``, ``* PREAUTH`` (already authenticated) or ``* BYE``.

    ``code`` is the response code's name (``CAPABILITY``, ``ALERT``...) and ``code_data``
    the rest of the code's text, if any.
    """

    status: Literal["OK", "PREAUTH", "BYE"]
    text: str
    code: str | None = None
    code_data: str | None = None


@dataclass(frozen=True)
class TaggedResponse:
    """The completion of one command: ``A1 OK``, ``A1 NO``, ``A1 BAD``.

    ``command`` is the name of the command this tag belonged to (``LOGIN``...).
    """

    tag: str
    command: str
    status: Literal["OK", "NO", "BAD"]
    text: str
    code: str | None = None
    code_data: str | None = None


@dataclass(frozen=True)
class StatusResponse:
    """An untagged ``* OK``, ``* NO`` or ``* BAD`` (warnings, alerts, response codes)."""

    status: Literal["OK", "NO", "BAD"]
    text: str
    code: str | None = None
    code_data: str | None = None


@dataclass(frozen=True)
class Bye:
    """``* BYE``: the server is about to close the connection (after LOGOUT, or on its own:
    ``Session invalidated - AccessTokenExpired``, an administrator's kick, a shutdown)."""

    text: str
    code: str | None = None
    code_data: str | None = None


@dataclass(frozen=True)
class CapabilityResponse:
    """``* CAPABILITY ...``; names are upper-cased."""

    capabilities: frozenset[str]


@dataclass(frozen=True)
class Exists:
    """``* n EXISTS``: the mailbox now holds ``count`` messages."""

    count: int


@dataclass(frozen=True)
class Recent:
    """``* n RECENT`` (IMAP4rev1 only)."""

    count: int


@dataclass(frozen=True)
class Expunge:
    """``* n EXPUNGE``: message number ``sequence`` is gone; later numbers shift down."""

    sequence: int


@dataclass(frozen=True)
class UntaggedResponse:
    """Any other untagged response, kept generic: ``* FLAGS (...)``, ``* 3 FETCH (...)``,
    ``* ENABLED ...``, or a response this version does not know.

    ``number`` is the leading number of ``* n NAME ...`` responses; ``name`` is upper-cased.
    """

    name: str
    data: tuple[Value, ...] = ()
    number: int | None = None


Event: TypeAlias = (
    Greeting
    | TaggedResponse
    | StatusResponse
    | Bye
    | CapabilityResponse
    | Exists
    | Recent
    | Expunge
    | UntaggedResponse
    | SASLChallenge
    | ConnectionClosed
)
