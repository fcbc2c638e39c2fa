"""The commands :meth:`IMAPConnection.send` accepts, one frozen dataclass each.

A command knows its name and its arguments; :mod:`._writer` turns those into bytes
(choosing quoted strings or literals), and :mod:`._state` says when it may be sent.
Secrets (a password, a SASL initial response) are hidden from reprs and from the trace.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Final, Literal

from trio_mailoauth._sansio import encode_sasl
from trio_mailoauth.errors import LocalProtocolError
from trio_mailoauth.imap._writer import Arg, AString, Atom, ListArg, Mailbox, Raw
from trio_mailoauth.imap._writer import Literal as LiteralArg

if TYPE_CHECKING:
    from trio_mailoauth.imap.message import Fetch as FetchData

__all__ = [
    "Append",
    "Authenticate",
    "Capability",
    "Check",
    "Close",
    "Command",
    "Copy",
    "Create",
    "Delete",
    "Enable",
    "Examine",
    "Expunge",
    "Fetch",
    "GetQuota",
    "GetQuotaRoot",
    "Id",
    "Idle",
    "List",
    "Login",
    "Logout",
    "Lsub",
    "Move",
    "Namespace",
    "Noop",
    "QResync",
    "Rename",
    "Search",
    "Select",
    "Sort",
    "StartTLS",
    "Status",
    "Store",
    "Subscribe",
    "Thread",
    "UIDExpunge",
    "Unselect",
    "Unsubscribe",
    "sequence_set",
]

# A sequence set as callers write it: "1", "1:5", "3:*", "1,3:4,9" (RFC 9051 sequence-set),
# or "$" (RFC 5182 SEARCHRES).
_SEQUENCE_SET_RE: Final = re.compile(
    r"(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?(?:,(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?)*|\$"
)
# FETCH item names and section specs we pass through: letters, digits and .-[]<> inside,
# plus spaces and parentheses only within [...] (BODY.PEEK[HEADER.FIELDS (FROM TO)]).
_FETCH_ITEM_RE: Final = re.compile(
    r"[A-Za-z0-9.\-]+(?:\[[A-Za-z0-9.\- ()]*\])?(?:<[0-9]+(?:\.[0-9]+)?>)?"
)
_ATOM_RE: Final = re.compile(r'[^\x00-\x20\x7f-\U0010ffff(){%*"\\\]]+')
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


def sequence_set(value: str | int | Iterable[int]) -> str:
    """A sequence set from ``"1:*"``, ``5`` or numbers (compressed into ranges).

    Raises LocalProtocolError for anything that is not a valid set (no injection possible).
    """
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str):
        if not _SEQUENCE_SET_RE.fullmatch(value):
            raise LocalProtocolError(f"{value[:40]!r} is not a valid sequence set")
        return value
    numbers = sorted(set(value))
    if not numbers or numbers[0] < 1:
        raise LocalProtocolError("a sequence set needs numbers >= 1")
    ranges: list[str] = []
    start = previous = numbers[0]
    for number in [*numbers[1:], -1]:
        if number == previous + 1:
            previous = number
            continue
        ranges.append(str(start) if start == previous else f"{start}:{previous}")
        start = previous = number
    return ",".join(ranges)


class MessageSet:
    """A sequence set for membership tests (which message a FETCH response is about).

    Any ``*`` makes the set match every number: we do not track the mailbox's last message
    number or UID, and ``5:*`` includes the last message even when it is below 5 (RFC 9051
    §9, seq-range). ``$`` (SEARCHRES) matches every number too.
    """

    __slots__ = ("_ends", "_everything", "_starts")

    def __init__(self, text: str) -> None:
        self._everything = "*" in text or text == "$"
        ranges: list[tuple[int, int]] = []
        if not self._everything:
            for item in sequence_set(text).split(","):
                first, _, last = item.partition(":")
                low, high = int(first), int(last or first)
                ranges.append((min(low, high), max(low, high)))
        ranges.sort()
        starts: list[int] = []
        ends: list[int] = []
        for low, high in ranges:  # merged, so one bisection answers
            if ends and low <= ends[-1] + 1:
                ends[-1] = max(ends[-1], high)
            else:
                starts.append(low)
                ends.append(high)
        self._starts = starts
        self._ends = ends

    def __contains__(self, number: int) -> bool:
        if self._everything:
            return True
        index = bisect_right(self._starts, number) - 1
        return index >= 0 and number <= self._ends[index]


def imap_date(value: datetime, *, with_time: bool = True) -> str:
    """``"17-Jul-1996 02:44:25 -0700"`` (INTERNALDATE) or ``"17-Jul-1996"`` (SEARCH)."""
    date = f"{value.day:02d}-{_MONTHS[value.month - 1]}-{value.year:04d}"
    if not with_time:
        return date
    if value.tzinfo is None:
        raise LocalProtocolError("an IMAP date-time needs a time zone (an aware datetime)")
    offset = value.strftime("%z")
    return f"{date} {value:%H:%M:%S} {offset}"


def _flag(flag: str) -> Arg:
    """A flag: ``\\Seen`` (a system flag) or a keyword atom (``$Forwarded``)."""
    if flag.startswith("\\"):
        return Raw("\\" + flag[1:]) if _ATOM_RE.fullmatch(flag[1:]) else Atom(flag)
    return Atom(flag)


def _flag_list(flags: Iterable[str]) -> ListArg:
    return ListArg(tuple(_flag(flag) for flag in flags))


class Command:
    """Base class: ``name`` (the state table's key), ``wire_name()`` on the wire
    (``UID FETCH`` for a UID command), ``arguments()`` after it."""

    name: ClassVar[str]

    def wire_name(self) -> str:
        return self.name

    def arguments(self) -> tuple[Arg, ...]:
        return ()

    def redacted_arguments(self) -> str | None:
        """What the trace shows in place of the arguments; None: show them as they are."""
        return None


@dataclass(frozen=True)
class Capability(Command):
    name: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True)
class Noop(Command):
    name: ClassVar[str] = "NOOP"


@dataclass(frozen=True)
class Logout(Command):
    name: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True)
class StartTLS(Command):
    name: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True)
class Login(Command):
    """``LOGIN user password``; each sent as a quoted string or a literal, whichever is safe."""

    name: ClassVar[str] = "LOGIN"
    user: str
    password: str = field(repr=False)

    def arguments(self) -> tuple[Arg, ...]:
        return (AString(self.user), AString(self.password))

    def redacted_arguments(self) -> str | None:
        return "<redacted>"


@dataclass(frozen=True)
class Authenticate(Command):
    """``AUTHENTICATE mechanism [initial-response]`` (RFC 9051 §6.2.2, RFC 4959 SASL-IR).

    ``initial_response`` is the raw (not base64) first response, sent on the command line;
    ``None`` means the two-step form (the server's empty ``+`` asks for it). While the
    exchange runs the connection emits :class:`~trio_mailoauth.imap.events.SASLChallenge`
    events, answered with :meth:`IMAPConnection.send_sasl_response`.
    """

    name: ClassVar[str] = "AUTHENTICATE"
    mechanism: str
    initial_response: bytes | None = field(default=None, repr=False)

    def arguments(self) -> tuple[Arg, ...]:
        mechanism = Atom(self.mechanism.upper())
        if self.initial_response is None:
            return (mechanism,)
        # Base64 is made of atom characters; an empty response is sent as "=" (RFC 4959).
        encoded = encode_sasl(self.initial_response).decode("ascii") or "="
        return (mechanism, Atom(encoded))

    def redacted_arguments(self) -> str | None:
        if self.initial_response is None:
            return None
        return f"{self.mechanism.upper()} <redacted>"


# --- the mailbox commands (RFC 9051 §6.3, §6.4) ---------------------------------------------


@dataclass(frozen=True)
class QResync:
    """``SELECT mailbox (QRESYNC (uidvalidity modseq [known-uids]))`` (RFC 7162 §3.2.5)."""

    uidvalidity: int
    modseq: int
    known_uids: str | None = None


@dataclass(frozen=True)
class Select(Command):
    """``SELECT mailbox [(CONDSTORE)|(QRESYNC (...))]``."""

    name: ClassVar[str] = "SELECT"
    mailbox: str
    condstore: bool = False
    qresync: QResync | None = None

    def arguments(self) -> tuple[Arg, ...]:
        args: list[Arg] = [Mailbox(self.mailbox)]
        if self.qresync is not None:
            q = self.qresync
            inner: list[Arg] = [Atom(str(q.uidvalidity)), Atom(str(q.modseq))]
            if q.known_uids:
                inner.append(Raw(sequence_set(q.known_uids)))
            args.append(ListArg((Atom("QRESYNC"), ListArg(tuple(inner)))))
        elif self.condstore:
            args.append(ListArg((Atom("CONDSTORE"),)))
        return tuple(args)


@dataclass(frozen=True)
class Examine(Select):
    """``EXAMINE``: SELECT read-only."""

    name: ClassVar[str] = "EXAMINE"


@dataclass(frozen=True)
class Unselect(Command):
    name: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True)
class Close(Command):
    name: ClassVar[str] = "CLOSE"


@dataclass(frozen=True)
class Check(Command):
    name: ClassVar[str] = "CHECK"


@dataclass(frozen=True)
class _MailboxCommand(Command):
    mailbox: str

    def arguments(self) -> tuple[Arg, ...]:
        return (Mailbox(self.mailbox),)


@dataclass(frozen=True)
class Create(Command):
    """``CREATE mailbox [(USE (\\Sent))]`` (RFC 6154 CREATE-SPECIAL-USE)."""

    name: ClassVar[str] = "CREATE"
    mailbox: str
    special_use: str | None = None

    def arguments(self) -> tuple[Arg, ...]:
        if self.special_use is None:
            return (Mailbox(self.mailbox),)
        # A flag (\Sent), checked like any flag: never raw syntax from the caller.
        use = ListArg((Atom("USE"), ListArg((_flag(self.special_use),))))
        return (Mailbox(self.mailbox), use)


@dataclass(frozen=True)
class Delete(_MailboxCommand):
    name: ClassVar[str] = "DELETE"


@dataclass(frozen=True)
class Subscribe(_MailboxCommand):
    name: ClassVar[str] = "SUBSCRIBE"


@dataclass(frozen=True)
class Unsubscribe(_MailboxCommand):
    name: ClassVar[str] = "UNSUBSCRIBE"


@dataclass(frozen=True)
class GetQuotaRoot(_MailboxCommand):
    name: ClassVar[str] = "GETQUOTAROOT"


@dataclass(frozen=True)
class GetQuota(Command):
    name: ClassVar[str] = "GETQUOTA"
    root: str

    def arguments(self) -> tuple[Arg, ...]:
        return (AString(self.root),)


@dataclass(frozen=True)
class Rename(Command):
    name: ClassVar[str] = "RENAME"
    mailbox: str
    new_name: str

    def arguments(self) -> tuple[Arg, ...]:
        return (Mailbox(self.mailbox), Mailbox(self.new_name))


@dataclass(frozen=True)
class List(Command):
    """``LIST reference pattern [RETURN (SPECIAL-USE ...)]`` (RFC 5258, RFC 6154)."""

    name: ClassVar[str] = "LIST"
    reference: str = ""
    pattern: str = "*"
    returns: tuple[str, ...] = ()

    def arguments(self) -> tuple[Arg, ...]:
        args: list[Arg] = [Mailbox(self.reference), Mailbox(self.pattern)]
        if self.returns:
            args += [Atom("RETURN"), ListArg(tuple(Atom(item) for item in self.returns))]
        return tuple(args)


@dataclass(frozen=True)
class Lsub(List):
    name: ClassVar[str] = "LSUB"


@dataclass(frozen=True)
class Status(Command):
    """``STATUS mailbox (MESSAGES UIDNEXT ...)``."""

    name: ClassVar[str] = "STATUS"
    mailbox: str
    items: tuple[str, ...] = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN")

    def arguments(self) -> tuple[Arg, ...]:
        return (Mailbox(self.mailbox), ListArg(tuple(Atom(item) for item in self.items)))


@dataclass(frozen=True)
class _UIDCommand(Command):
    uid: bool = field(default=False, kw_only=True)

    def wire_name(self) -> str:
        return f"UID {self.name}" if self.uid else self.name


@dataclass(frozen=True)
class Search(_UIDCommand):
    """``[UID] SEARCH [RETURN (...)] [CHARSET UTF-8] criteria`` (criteria already built)."""

    name: ClassVar[str] = "SEARCH"
    criteria: tuple[Arg, ...] = (Atom("ALL"),)
    charset: str | None = None
    returns: tuple[str, ...] | None = None  # ESEARCH (RFC 4731): ("MIN", "MAX", "COUNT")

    def arguments(self) -> tuple[Arg, ...]:
        args: list[Arg] = []
        if self.returns is not None:
            args += [Atom("RETURN"), ListArg(tuple(Atom(item) for item in self.returns))]
        if self.charset is not None:
            args += [Atom("CHARSET"), Atom(self.charset)]
        return (*args, *self.criteria)


@dataclass(frozen=True)
class Sort(_UIDCommand):
    """``[UID] SORT (keys) charset criteria`` (RFC 5256); keys like ``("REVERSE", "DATE")``."""

    name: ClassVar[str] = "SORT"
    keys: tuple[str, ...] = ("DATE",)
    criteria: tuple[Arg, ...] = (Atom("ALL"),)
    charset: str = "UTF-8"

    def arguments(self) -> tuple[Arg, ...]:
        keys = tuple(key.upper() for key in self.keys)
        for index, key in enumerate(keys):
            if key == "REVERSE":
                if index + 1 == len(keys) or keys[index + 1] == "REVERSE":
                    raise LocalProtocolError("SORT: REVERSE must come before a sort key")
            elif key not in SORT_KEYS:
                raise LocalProtocolError(f"{key[:40]!r} is not a SORT key")
        if not keys:
            raise LocalProtocolError("SORT needs at least one key")
        return (ListArg(tuple(Atom(key) for key in keys)), Atom(self.charset), *self.criteria)


# RFC 5256 §3 and RFC 5957 (DISPLAYFROM, DISPLAYTO).
SORT_KEYS: Final = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)


@dataclass(frozen=True)
class Thread(_UIDCommand):
    """``[UID] THREAD algorithm charset criteria`` (RFC 5256: REFERENCES, ORDEREDSUBJECT)."""

    name: ClassVar[str] = "THREAD"
    algorithm: str = "REFERENCES"
    criteria: tuple[Arg, ...] = (Atom("ALL"),)
    charset: str = "UTF-8"

    def arguments(self) -> tuple[Arg, ...]:
        return (Atom(self.algorithm.upper()), Atom(self.charset), *self.criteria)


# Which attributes of a FETCH response (``message.Fetch``) each requested item fills. FLAGS,
# UID and MODSEQ are missing on purpose: a flag change the server reports on its own
# carries exactly those, so they cannot tell an answer from an unsolicited update.
_ITEM_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "ALL": ("internal_date", "size", "envelope"),
    "FAST": ("internal_date", "size"),
    "FULL": ("internal_date", "size", "envelope", "body_structure"),
    "INTERNALDATE": ("internal_date",),
    "RFC822.SIZE": ("size",),
    "ENVELOPE": ("envelope",),
    "BODYSTRUCTURE": ("body_structure",),
    "BODY": ("body_structure",),  # BODY without a section: the non-extensible structure
    "RFC822": ("sections",),
    "RFC822.HEADER": ("sections",),
    "RFC822.TEXT": ("sections",),
    "X-GM-MSGID": ("gmail_message_id",),
    "X-GM-THRID": ("gmail_thread_id",),
    "X-GM-LABELS": ("gmail_labels",),
    "FLAGS": (),
    "UID": (),
    "MODSEQ": (),
}
_MAPPING_FIELDS: Final = frozenset({"sections", "binary_sizes", "extra"})


def _answer_fields(items: Iterable[str]) -> tuple[str, ...]:
    fields: set[str] = set()
    for item in items:
        name = item.upper()
        if "[" in name:
            base = name.split("[", 1)[0]
            fields.add("binary_sizes" if base == "BINARY.SIZE" else "sections")
        else:
            fields.update(_ITEM_FIELDS.get(name, ("extra",)))
    # Mappings last: the common answers (a body section) are found by the first test.
    return tuple(sorted(fields, key=lambda name: (name in _MAPPING_FIELDS, name)))


@dataclass(frozen=True)
class Fetch(_UIDCommand):
    """``[UID] FETCH set (items) [(CHANGEDSINCE n [VANISHED])]``.

    :meth:`answered_by` tells this command's answers from FETCH responses the server sends
    on its own meanwhile (RFC 9051 §7.5.2: flag changes may come at any time).
    """

    name: ClassVar[str] = "FETCH"
    sequence_set: str
    items: tuple[str, ...]
    changedsince: int | None = None
    vanished: bool = False

    def arguments(self) -> tuple[Arg, ...]:
        for item in self.items:
            if not _FETCH_ITEM_RE.fullmatch(item):
                raise LocalProtocolError(f"{item[:40]!r} is not a FETCH item")
        items = Raw("(" + " ".join(self.items) + ")")
        args: list[Arg] = [Raw(sequence_set(self.sequence_set)), items]
        if self.changedsince is not None:
            modifiers: list[Arg] = [Atom("CHANGEDSINCE"), Atom(str(self.changedsince))]
            if self.vanished:
                modifiers.append(Atom("VANISHED"))
            args.append(ListArg(tuple(modifiers)))
        return tuple(args)

    @cached_property
    def _messages(self) -> MessageSet:
        return MessageSet(self.sequence_set)

    @cached_property
    def _answer_fields(self) -> tuple[str, ...]:
        return _answer_fields(self.items)

    def answered_by(self, message: FetchData) -> bool:
        """Whether a FETCH response that arrived while this command ran answers it.

        It must carry a requested item that a flag update would not (a body section,
        ENVELOPE...), and name a requested message: its number in the set, or for UID FETCH
        its UID (RFC 9051 §6.4.9: every response to a UID command carries the UID; one
        without a UID is still taken when it carries such an item, which no unsolicited
        response does). When only FLAGS, UID or MODSEQ were asked for, a flag update of a
        requested message cannot be told apart and counts as an answer: it is the newer
        state of what was asked for.
        """
        fields = self._answer_fields
        if fields:
            for name in fields:
                value = getattr(message, name)
                if value is not None and (value or name not in _MAPPING_FIELDS):
                    break
            else:
                return False
        if self.uid:
            if message.uid is None:
                return bool(fields)
            return message.uid in self._messages
        return message.sequence in self._messages


@dataclass(frozen=True)
class Store(_UIDCommand):
    """``[UID] STORE set [(UNCHANGEDSINCE n)] +FLAGS[.SILENT] (flags)``."""

    name: ClassVar[str] = "STORE"
    sequence_set: str
    action: Literal["+", "-", ""]
    flags: tuple[str, ...]
    silent: bool = False
    unchangedsince: int | None = None

    def arguments(self) -> tuple[Arg, ...]:
        args: list[Arg] = [Raw(sequence_set(self.sequence_set))]
        if self.unchangedsince is not None:
            args.append(ListArg((Atom("UNCHANGEDSINCE"), Atom(str(self.unchangedsince)))))
        item = f"{self.action}FLAGS{'.SILENT' if self.silent else ''}"
        return (*args, Raw(item), _flag_list(self.flags))

    @cached_property
    def _messages(self) -> MessageSet:
        return MessageSet(self.sequence_set)

    def answered_by(self, message: FetchData) -> bool:
        """Whether a FETCH response names one of the messages stored to (by UID for UID
        STORE): the others are flag changes the server reports on its own."""
        if self.uid:
            return message.uid is not None and message.uid in self._messages
        return message.sequence in self._messages


@dataclass(frozen=True)
class Copy(_UIDCommand):
    name: ClassVar[str] = "COPY"
    sequence_set: str
    mailbox: str

    def arguments(self) -> tuple[Arg, ...]:
        return (Raw(sequence_set(self.sequence_set)), Mailbox(self.mailbox))


@dataclass(frozen=True)
class Move(Copy):
    name: ClassVar[str] = "MOVE"


@dataclass(frozen=True)
class Expunge(Command):
    name: ClassVar[str] = "EXPUNGE"


@dataclass(frozen=True)
class UIDExpunge(Command):
    """``UID EXPUNGE set`` (UIDPLUS, RFC 4315): only these deleted messages."""

    name: ClassVar[str] = "UID EXPUNGE"
    sequence_set: str

    def arguments(self) -> tuple[Arg, ...]:
        return (Raw(sequence_set(self.sequence_set)),)


@dataclass(frozen=True)
class Append(Command):
    """``APPEND mailbox [(flags)] ["date-time"] {n}`` and the message bytes."""

    name: ClassVar[str] = "APPEND"
    mailbox: str
    message: bytes = field(repr=False)
    flags: tuple[str, ...] = ()
    internal_date: datetime | None = None

    def arguments(self) -> tuple[Arg, ...]:
        args: list[Arg] = [Mailbox(self.mailbox)]
        if self.flags:
            args.append(_flag_list(self.flags))
        if self.internal_date is not None:
            args.append(AString(imap_date(self.internal_date)))
        args.append(LiteralArg(self.message))
        return tuple(args)


@dataclass(frozen=True)
class Idle(Command):
    """``IDLE`` (RFC 2177): the server pushes changes until the client sends ``DONE``."""

    name: ClassVar[str] = "IDLE"


@dataclass(frozen=True)
class Id(Command):
    """``ID ("name" "value" ...)`` or ``ID NIL`` (RFC 2971)."""

    name: ClassVar[str] = "ID"
    fields: Mapping[str, str] | None = None

    def arguments(self) -> tuple[Arg, ...]:
        if not self.fields:
            return (Atom("NIL"),)
        items: list[Arg] = []
        for key, value in self.fields.items():
            items += [AString(key), AString(value)]
        return (ListArg(tuple(items)),)


@dataclass(frozen=True)
class Enable(Command):
    """``ENABLE CONDSTORE QRESYNC UTF8=ACCEPT ...`` (RFC 5161)."""

    name: ClassVar[str] = "ENABLE"
    capabilities: tuple[str, ...]

    def arguments(self) -> tuple[Arg, ...]:
        return tuple(Atom(name) for name in self.capabilities)


@dataclass(frozen=True)
class Namespace(Command):
    name: ClassVar[str] = "NAMESPACE"
