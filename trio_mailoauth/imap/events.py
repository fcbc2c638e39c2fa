"""What :class:`~trio_mailoauth.imap.IMAPConnection` reports: one frozen dataclass per event.

Server responses become events; unsolicited ones (EXISTS, EXPUNGE, BYE, anything unknown)
are ordinary events too, never silently dropped. ``SASLChallenge`` and ``ConnectionClosed``
are shared with the other protocol cores.

:class:`EventQueue` holds the unsolicited ones for the async client, bounded and coalesced.

Generic response data (:class:`UntaggedResponse`) is a tuple of :data:`Value`: an atom is a
``str`` (numbers stay atoms), a quoted string or a literal is ``bytes``, ``NIL`` is ``None``,
a parenthesized list is a tuple.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
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
    "EventQueue",
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
    "Overflow",
    "Quota",
    "QuotaRoot",
    "Recent",
    "SASLChallenge",
    "Search",
    "Sort",
    "StatusResponse",
    "TaggedResponse",
    "Thread",
    "ThreadNode",
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

    @property
    def ranges(self) -> tuple[tuple[int, int], ...]:
        """``all`` as inclusive (first, last) pairs: ``"1:3,9"`` -> ((1, 3), (9, 9))."""
        if not self.all:
            return ()
        pairs: list[tuple[int, int]] = []
        for item in self.all.split(","):
            first, _, last = item.partition(":")
            low, high = int(first), int(last or first)
            pairs.append((min(low, high), max(low, high)))
        return tuple(pairs)

    def numbers(self) -> list[int]:
        """``all`` expanded (mind the size: ``1:1000000`` is a million numbers)."""
        return [number for first, last in self.ranges for number in range(first, last + 1)]


@dataclass(frozen=True)
class Sort:
    """``* SORT n n n`` (RFC 5256): message numbers or UIDs in the requested order."""

    numbers: tuple[int, ...]
    modseq: int | None = None


@dataclass(frozen=True)
class ThreadNode:
    """One thread, or one branch of a thread, of a THREAD response (RFC 5256).

    ``messages`` is a chain: each message is the parent of the next (a reply chain needs
    no nesting, so a 10,000-message chain is one node, not 10,000 levels). ``children``
    are the branches that follow the chain's last message. A node with no ``messages`` is
    a missing parent that the server did not name (RFC 5256 ``((3)(5))``): its children
    are siblings.
    """

    messages: tuple[int, ...]
    children: tuple[ThreadNode, ...] = ()

    def __iter__(self) -> Iterator[int]:
        """Every message of this (sub)thread, depth first, parents before replies."""
        stack: list[ThreadNode] = [self]
        while stack:
            node = stack.pop()
            yield from node.messages
            stack.extend(reversed(node.children))


@dataclass(frozen=True)
class Thread:
    """``* THREAD (2)(3 6 (4 23)(44 7 96))`` (RFC 5256): the threads, in the server's order."""

    threads: tuple[ThreadNode, ...]


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
class Overflow:
    """Not from the server: the oldest ``dropped`` unsolicited events were discarded
    because nobody drained the queue (``drain_events()``, ``noop()``, ``idle()``) for too
    long. Whatever the caller mirrors of the mailbox (counts, flags, message numbers) may
    now be wrong: resynchronise (SELECT again, or SEARCH/FETCH FLAGS, or QRESYNC)."""

    dropped: int


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
    | Sort
    | Thread
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
    | Overflow
    | UntaggedResponse
    | SASLChallenge
    | ConnectionClosed
)


def _flag_update(event: Fetch) -> bool:
    """A FETCH carrying only what a flag change carries: FLAGS, and maybe UID and MODSEQ."""
    return (
        event.flags is not None
        and not (event.sections or event.binary_sizes or event.extra)
        and event.internal_date is None
        and event.size is None
        and event.envelope is None
        and event.body_structure is None
        and event.gmail_message_id is None
        and event.gmail_thread_id is None
        and event.gmail_labels is None
    )


class EventQueue:
    """The unsolicited events not yet handed to the caller, oldest first, bounded.

    Coalescing keeps a caller who rarely drains at a few events per message: a newer
    EXISTS, RECENT or FLAGS replaces the queued one of its kind, and a newer flag change of
    a message replaces the queued one of that message (keeping its place), unless an
    EXPUNGE or VANISHED (which renumber messages) or a mailbox change came in between.
    Beyond ``limit`` the oldest events are dropped; an :class:`Overflow` then comes first,
    so the loss is never silent.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # One-item lists ("cells"), so that an event can be replaced in place in O(1).
        self._cells: deque[list[Event]] = deque()
        self._latest: dict[type, list[Event]] = {}  # EXISTS/RECENT/FLAGS cells
        self._flag_changes: dict[int, list[Event]] = {}  # message number -> cell
        self.dropped = 0  # events dropped and not yet reported by an Overflow

    def __len__(self) -> int:
        return len(self._cells) + (1 if self.dropped else 0)

    def append(self, event: Event) -> None:
        if isinstance(event, Exists | Recent | Flags):
            cell = self._latest.get(type(event))
            if cell is not None:
                cell[0] = event
                return
            self._add(event)
            self._latest[type(event)] = self._cells[-1]
            return
        if isinstance(event, Fetch):
            cell = self._flag_changes.get(event.sequence)
            if not _flag_update(event):
                self._flag_changes.pop(event.sequence, None)  # keep the order from here
            elif cell is not None:
                older = cell[0]
                assert isinstance(older, Fetch)
                cell[0] = replace(
                    event,
                    uid=older.uid if event.uid is None else event.uid,
                    modseq=older.modseq if event.modseq is None else event.modseq,
                )
                return
            else:
                self._add(event)
                self._flag_changes[event.sequence] = self._cells[-1]
                return
        elif isinstance(event, Expunge | Vanished | Bye):
            self.barrier()
        self._add(event)

    def barrier(self) -> None:
        """Nothing queued so far is merged with what comes next (numbers changed)."""
        self._latest.clear()
        self._flag_changes.clear()

    def _add(self, event: Event) -> None:
        if len(self._cells) >= self.limit:
            self._forget(self._cells.popleft())
            self.dropped += 1
        self._cells.append([event])

    def _forget(self, cell: list[Event]) -> None:
        """``cell`` left the queue: a newer event must not be merged into it."""
        event = cell[0]
        if self._latest.get(type(event)) is cell:
            del self._latest[type(event)]
        elif isinstance(event, Fetch) and self._flag_changes.get(event.sequence) is cell:
            del self._flag_changes[event.sequence]

    def popleft(self) -> Event:
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            return Overflow(dropped)
        cell = self._cells.popleft()
        self._forget(cell)
        return cell[0]

    def drain(self) -> list[Event]:
        events: list[Event] = [Overflow(self.dropped)] if self.dropped else []
        events.extend(cell[0] for cell in self._cells)
        self._cells.clear()
        self.barrier()
        self.dropped = 0
        return events
