"""SEARCH criteria built from values, never by pasting strings (RFC 9051 §6.4.4).

    from trio_mailoauth.imap.search import Q

    criteria = Q.unseen() & Q.from_("bob@example.com") & Q.since(date(2024, 1, 1))
    criteria |= Q.subject("Invoice \\"42\\"")     # any value: quoted or literal as needed
    uids = await imap.search(criteria, uid=True)

Every value becomes a string argument (quoted, or a literal when it holds CR/LF/8-bit), so
no value can inject criteria or commands; a non-ASCII value makes the client send
``CHARSET UTF-8`` (unless the session already speaks UTF-8).
"""

from __future__ import annotations

from datetime import date, datetime

from trio_mailoauth.imap._writer import Arg, AString, Atom, ListArg, Raw
from trio_mailoauth.imap.commands import imap_date, sequence_set

__all__ = ["Q"]


class Q:
    """A search criterion; combine with ``&`` (all of), ``|`` (either) and ``~`` (not)."""

    __slots__ = ("args",)

    def __init__(self, *args: Arg) -> None:
        self.args: tuple[Arg, ...] = args

    def __repr__(self) -> str:
        return f"Q({len(self.args)} args)"

    def __and__(self, other: Q) -> Q:
        return Q(*self.args, *other.args)

    def __or__(self, other: Q) -> Q:
        return Q(Atom("OR"), _group(self), _group(other))

    def __invert__(self) -> Q:
        return Q(Atom("NOT"), _group(self))

    @property
    def non_ascii(self) -> bool:
        """True when a value needs CHARSET UTF-8."""
        return _non_ascii(self.args)

    # --- flags and states --------------------------------------------------------------
    @classmethod
    def all(cls) -> Q:
        return cls(Atom("ALL"))

    @classmethod
    def seen(cls) -> Q:
        return cls(Atom("SEEN"))

    @classmethod
    def unseen(cls) -> Q:
        return cls(Atom("UNSEEN"))

    @classmethod
    def flagged(cls) -> Q:
        return cls(Atom("FLAGGED"))

    @classmethod
    def unflagged(cls) -> Q:
        return cls(Atom("UNFLAGGED"))

    @classmethod
    def answered(cls) -> Q:
        return cls(Atom("ANSWERED"))

    @classmethod
    def deleted(cls) -> Q:
        return cls(Atom("DELETED"))

    @classmethod
    def undeleted(cls) -> Q:
        return cls(Atom("UNDELETED"))

    @classmethod
    def draft(cls) -> Q:
        return cls(Atom("DRAFT"))

    @classmethod
    def keyword(cls, flag: str) -> Q:
        return cls(Atom("KEYWORD"), Atom(flag))

    @classmethod
    def unkeyword(cls, flag: str) -> Q:
        return cls(Atom("UNKEYWORD"), Atom(flag))

    # --- addresses and text --------------------------------------------------------------
    @classmethod
    def from_(cls, value: str) -> Q:
        return cls(Atom("FROM"), AString(value))

    @classmethod
    def to(cls, value: str) -> Q:
        return cls(Atom("TO"), AString(value))

    @classmethod
    def cc(cls, value: str) -> Q:
        return cls(Atom("CC"), AString(value))

    @classmethod
    def bcc(cls, value: str) -> Q:
        return cls(Atom("BCC"), AString(value))

    @classmethod
    def subject(cls, value: str) -> Q:
        return cls(Atom("SUBJECT"), AString(value))

    @classmethod
    def body(cls, value: str) -> Q:
        return cls(Atom("BODY"), AString(value))

    @classmethod
    def text(cls, value: str) -> Q:
        return cls(Atom("TEXT"), AString(value))

    @classmethod
    def header(cls, name: str, value: str = "") -> Q:
        return cls(Atom("HEADER"), AString(name), AString(value))

    # --- dates and sizes -----------------------------------------------------------------
    @classmethod
    def since(cls, day: date) -> Q:
        return cls(Atom("SINCE"), Atom(_day(day)))

    @classmethod
    def before(cls, day: date) -> Q:
        return cls(Atom("BEFORE"), Atom(_day(day)))

    @classmethod
    def on(cls, day: date) -> Q:
        return cls(Atom("ON"), Atom(_day(day)))

    @classmethod
    def sent_since(cls, day: date) -> Q:
        return cls(Atom("SENTSINCE"), Atom(_day(day)))

    @classmethod
    def sent_before(cls, day: date) -> Q:
        return cls(Atom("SENTBEFORE"), Atom(_day(day)))

    @classmethod
    def larger(cls, size: int) -> Q:
        return cls(Atom("LARGER"), Atom(str(_count(size))))

    @classmethod
    def smaller(cls, size: int) -> Q:
        return cls(Atom("SMALLER"), Atom(str(_count(size))))

    # --- sets and extensions ---------------------------------------------------------------
    @classmethod
    def uid(cls, uids: str | int | list[int]) -> Q:
        return cls(Atom("UID"), Raw(sequence_set(uids)))

    @classmethod
    def messages(cls, numbers: str | int | list[int]) -> Q:
        return cls(Raw(sequence_set(numbers)))

    @classmethod
    def modseq(cls, value: int) -> Q:
        """CONDSTORE: changed since this mod-sequence (RFC 7162 §3.1.5)."""
        return cls(Atom("MODSEQ"), Atom(str(_count(value))))

    @classmethod
    def gmail_raw(cls, query: str) -> Q:
        """Gmail's own search syntax (``X-GM-RAW "has:attachment in:unread"``)."""
        return cls(Atom("X-GM-RAW"), AString(query))

    @classmethod
    def gmail_message_id(cls, value: int) -> Q:
        return cls(Atom("X-GM-MSGID"), Atom(str(_count(value))))

    @classmethod
    def gmail_thread_id(cls, value: int) -> Q:
        return cls(Atom("X-GM-THRID"), Atom(str(_count(value))))


def _group(query: Q) -> Arg:
    return query.args[0] if len(query.args) == 1 else ListArg(query.args)


def _day(day: date) -> str:
    if isinstance(day, datetime):
        day = day.date()
    return imap_date(datetime(day.year, day.month, day.day), with_time=False)


def _count(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


def _non_ascii(args: tuple[Arg, ...]) -> bool:
    for arg in args:
        if isinstance(arg, AString):
            if not arg.value.isascii():
                return True
        elif isinstance(arg, ListArg) and _non_ascii(arg.items):
            return True
    return False
