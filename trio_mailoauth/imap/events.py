"""What :class:`~trio_mailoauth.imap.IMAPConnection` reports: one frozen dataclass per event.

Server responses become events; unsolicited ones (EXISTS, EXPUNGE, BYE, anything unknown)
are ordinary events too, never silently dropped. ``SASLChallenge`` and ``ConnectionClosed``
are shared with the other protocol cores.

Generic response data (:class:`UntaggedResponse`) is a tuple of :data:`Value`: an atom is a
``str`` (numbers stay atoms), a quoted string or a literal is ``bytes``, ``NIL`` is ``None``,
a parenthesized list is a tuple.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from trio_mailoauth._sansio import ConnectionClosed, SASLChallenge
from trio_mailoauth.imap.message import Fetch

__all__ = [
    "Bye",
    "CapabilityResponse",
    "ConnectionClosed",
    "ESearch",
    "Enabled",
    "Event",
    "Exists",
    "Expunge",
    "Fetch",
    "Flags",
    "Greeting",
    "IdResponse",
    "IdleStarted",
    "ListEntry",
    "MailboxStatus",
    "Namespace",
    "Quota",
    "QuotaRoot",
    "Recent",
    "SASLChallenge",
    "Search",
    "StatusResponse",
    "TaggedResponse",
    "UntaggedData",
    "UntaggedResponse",
    "Value",
    "Vanished",
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


@dataclass(frozen=True)
class Flags:
    """``* FLAGS (...)``: the flags defined in the selected mailbox."""

    flags: tuple[str, ...]


# RFC 6154 special-use attributes, as servers send them in LIST.
SPECIAL_USE: frozenset[str] = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash", "\\Important"}
)


@dataclass(frozen=True)
class ListEntry:
    """``* LIST (attributes) "delimiter" name`` (or LSUB): one mailbox.

    ``name`` is decoded (modified UTF-7 or UTF-8, whichever the session uses); ``attributes``
    keep the server's spelling (``\\HasNoChildren``, ``\\Sent``...).
    """

    name: str
    delimiter: str | None
    attributes: tuple[str, ...] = ()
    command: Literal["LIST", "LSUB"] = "LIST"
    extended: tuple[Value, ...] = ()

    def has(self, attribute: str) -> bool:
        wanted = attribute.lower()
        return any(item.lower() == wanted for item in self.attributes)

    @property
    def special_use(self) -> str | None:
        """``\\Sent``, ``\\Trash``... (RFC 6154), if the server marked this mailbox."""
        lowered = {item.lower(): item for item in SPECIAL_USE}
        for item in self.attributes:
            if item.lower() in lowered:
                return lowered[item.lower()]
        return None

    @property
    def selectable(self) -> bool:
        return not (self.has("\\Noselect") or self.has("\\NonExistent"))

    @property
    def has_children(self) -> bool | None:
        """True/False when the server said (CHILDREN, RFC 3348), None when it did not."""
        if self.has("\\HasChildren"):
            return True
        if self.has("\\HasNoChildren"):
            return False
        return None


@dataclass(frozen=True)
class MailboxStatus:
    """``* STATUS mailbox (MESSAGES n UIDNEXT n ...)``; item names upper-cased."""

    mailbox: str
    items: Mapping[str, int] = field(default_factory=dict)

    @property
    def messages(self) -> int | None:
        return self.items.get("MESSAGES")

    @property
    def uidnext(self) -> int | None:
        return self.items.get("UIDNEXT")

    @property
    def uidvalidity(self) -> int | None:
        return self.items.get("UIDVALIDITY")

    @property
    def unseen(self) -> int | None:
        return self.items.get("UNSEEN")

    @property
    def highestmodseq(self) -> int | None:
        return self.items.get("HIGHESTMODSEQ")


@dataclass(frozen=True)
class Search:
    """``* SEARCH n n n`` (message numbers or UIDs); ``modseq`` with CONDSTORE."""

    numbers: tuple[int, ...]
    modseq: int | None = None


@dataclass(frozen=True)
class ESearch:
    """``* ESEARCH (TAG "A1") UID MIN 1 MAX 9 COUNT 5 ALL 1:3,9`` (RFC 4731)."""

    tag: str | None
    uid: bool
    min: int | None = None
    max: int | None = None
    count: int | None = None
    all: str | None = None  # a sequence set, e.g. "1:3,9"
    modseq: int | None = None
    extra: Mapping[str, Value] = field(default_factory=dict)


@dataclass(frozen=True)
class Vanished:
    """``* VANISHED [(EARLIER)] uid-set`` (RFC 7162 QRESYNC): these UIDs are gone.

    ``ranges`` are inclusive (first, last) pairs; ``earlier`` marks the answer to a
    ``SELECT (QRESYNC ...)``/``FETCH (VANISHED)`` rather than a live expunge.
    """

    ranges: tuple[tuple[int, int], ...]
    earlier: bool = False

    def __iter__(self) -> Iterator[int]:
        for first, last in self.ranges:
            yield from range(first, last + 1)

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)


@dataclass(frozen=True)
class Enabled:
    """``* ENABLED ...``: the extensions ENABLE switched on (upper-case)."""

    capabilities: frozenset[str]


@dataclass(frozen=True)
class IdResponse:
    """``* ID (...)`` (RFC 2971): the server's identification, or None (``* ID NIL``)."""

    fields: Mapping[str, str | None] | None


@dataclass(frozen=True)
class Namespace:
    """``* NAMESPACE`` (RFC 2342): (prefix, delimiter) pairs for each kind of namespace."""

    personal: tuple[tuple[str, str | None], ...]
    other: tuple[tuple[str, str | None], ...]
    shared: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class Quota:
    """``* QUOTA root (STORAGE used limit ...)`` (RFC 9208): resource -> (usage, limit)."""

    root: str
    resources: Mapping[str, tuple[int, int]]


@dataclass(frozen=True)
class QuotaRoot:
    """``* QUOTAROOT mailbox root...`` (RFC 9208)."""

    mailbox: str
    roots: tuple[str, ...]


@dataclass(frozen=True)
class IdleStarted:
    """The server's ``+`` after IDLE: it is now pushing mailbox changes until ``DONE``."""

    text: str


# Untagged data responses: what the reader parses and the connection passes on unchanged.
UntaggedData: TypeAlias = (
    Exists
    | Recent
    | Expunge
    | Fetch
    | Flags
    | ListEntry
    | MailboxStatus
    | Search
    | ESearch
    | Vanished
    | Enabled
    | IdResponse
    | Namespace
    | Quota
    | QuotaRoot
)

Event: TypeAlias = (
    Greeting
    | TaggedResponse
    | StatusResponse
    | Bye
    | CapabilityResponse
    | UntaggedData
    | IdleStarted
    | UntaggedResponse
    | SASLChallenge
    | ConnectionClosed
)
