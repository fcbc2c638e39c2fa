"""Reading IMAP responses: one framed response (:mod:`._tokenizer`) to an event.

:func:`parse_response` turns a :class:`RawResponse` into an event or an internal record the
connection interprets (a continuation request, a tagged completion, an untagged status).
Every untagged response RFC 9051 and the extensions we speak define gets a typed event;
anything else stays a generic :class:`UntaggedResponse`, never dropped.

Everything malformed or over a limit raises :class:`RemoteProtocolError`; nothing else may
escape (the fuzz tests check it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from trio_mailoauth.errors import RemoteProtocolError
from trio_mailoauth.imap._fetch import parse_fetch
from trio_mailoauth.imap._mutf7 import decode_mailbox
from trio_mailoauth.imap._tokenizer import (
    MAX_DEPTH,
    MAX_NUMBER,
    MAX_NUMBER64,
    IMAPBuffer,
    Limits,
    Parser,
    RawResponse,
    ResponseReader,
)
from trio_mailoauth.imap.events import (
    CapabilityResponse,
    Enabled,
    ESearch,
    Exists,
    Expunge,
    Flags,
    IdResponse,
    ListEntry,
    MailboxStatus,
    Namespace,
    Quota,
    QuotaRoot,
    Recent,
    Search,
    Sort,
    Thread,
    ThreadNode,
    UntaggedData,
    UntaggedResponse,
    Value,
    Vanished,
)

__all__ = [
    "Continuation",
    "IMAPBuffer",
    "Limits",
    "Parser",
    "RawResponse",
    "ResponseReader",
    "TaggedCompletion",
    "UntaggedStatus",
    "parse_response",
    "parse_sequence_set",
]


@dataclass(frozen=True)
class Continuation:
    """``+ text``: the server waits for a literal's bytes, a SASL response, or IDLE's DONE."""

    text: bytes


@dataclass(frozen=True)
class TaggedCompletion:
    """``tag OK|NO|BAD [code] text``, before the connection matches the tag to a command."""

    tag: str
    status: Literal["OK", "NO", "BAD"]
    text: str
    code: str | None
    code_data: str | None


@dataclass(frozen=True)
class UntaggedStatus:
    """``* OK|NO|BAD|BYE|PREAUTH [code] text``; its meaning depends on the state."""

    status: Literal["OK", "NO", "BAD", "BYE", "PREAUTH"]
    text: str
    code: str | None
    code_data: str | None


Parsed = (
    Continuation
    | TaggedCompletion
    | UntaggedStatus
    | CapabilityResponse
    | UntaggedData
    | UntaggedResponse
)

_STATUSES: Final = ("OK", "NO", "BAD")
_UNTAGGED_STATUSES: Final = ("OK", "NO", "BAD", "BYE", "PREAUTH")

# A VANISHED or ESEARCH ALL sequence set expands to at most this many ranges: each range is
# ~10 bytes on the wire, so the line limit bounds it too; this keeps the tuple small.
MAX_RANGES: Final = 1_000_000


# ``* n FETCH `` up to the item list (upper case, as every server sends it; anything else
# takes the general path).
_FETCH_START: Final = re.compile(rb"\* ([0-9]{1,10}) FETCH (?=\()")


def parse_response(
    raw: RawResponse | bytes, max_depth: int = MAX_DEPTH, *, utf8: bool = False
) -> Parsed:
    """One complete response → an event or an internal record.

    ``raw`` may be plain bytes (a whole response with its literals inline: tests, tools).
    ``utf8``: mailbox names are UTF-8 (IMAP4rev2, UTF8=ACCEPT) rather than modified UTF-7.
    """
    if isinstance(raw, bytes):
        raw = _frame(raw)
    parser = Parser(raw, max_depth)
    data = raw.lines
    if data.startswith(b"+") and parser.skip(b"+"):
        parser.skip(b" ")
        end = data.find(b"\r\n", parser.pos)
        if end + 2 != len(data) or raw.literals:
            raise parser.error("continuation request with trailing data")
        return Continuation(data[parser.pos : end])
    fetch = _FETCH_START.match(data)
    if fetch is not None:  # the hot path of a big FETCH: straight to its items
        number = int(fetch.group(1))
        if number <= MAX_NUMBER:
            parser.pos = fetch.end()
            return parse_fetch(parser, number)
    if parser.skip(b"* "):
        return _untagged(parser, utf8)
    tag = parser.atom()
    if "+" in tag or tag == "*":
        raise parser.error("bad tag")
    parser.expect(b" ")
    status = parser.atom().upper()
    if status not in _STATUSES:
        raise parser.error(f"tagged response with status {status[:20]!r}")
    text, code, code_data = resp_text(parser)
    return TaggedCompletion(tag, status, text, code, code_data)  # type: ignore[arg-type]


def _frame(data: bytes) -> RawResponse:
    """Frame a whole response given as bytes (it must be exactly one)."""
    buffer = IMAPBuffer()
    if data:
        buffer.feed(data)
    reader = ResponseReader(Limits(max_line=len(data) + 2, max_response=len(data) + 2))
    raw = reader.read(buffer)
    if raw is None or buffer:
        raise RemoteProtocolError("malformed IMAP response: not exactly one response")
    return raw


def resp_text(parser: Parser) -> tuple[str, str | None, str | None]:
    """``[code data] text`` up to the end: (text, code, code_data)."""
    code: str | None = None
    code_data: str | None = None
    parser.skip(b" ")
    data = parser.data
    line_end = data.find(b"\r\n", parser.pos)
    if line_end < 0 or line_end + 2 != len(data) or parser.literals:
        raise parser.error("expected text up to the end of the response")
    if parser.skip(b"["):
        close = _code_end(data, parser.pos, line_end)
        if close < 0:
            raise parser.error("unclosed response code")
        name, _, rest = data[parser.pos : close].partition(b" ")
        if not name or not name.replace(b"-", b"").replace(b".", b"").isalnum():
            raise parser.error("bad response code")
        code = name.decode("ascii", "replace").upper()
        code_data = rest.decode("utf-8", "replace") if rest else None
        parser.pos = close + 1
        parser.skip(b" ")
    text = data[parser.pos : line_end].decode("utf-8", "replace")
    parser.pos = len(data)
    return text, code, code_data


def _code_end(data: bytes, start: int, end: int) -> int:
    """The "]" closing a response code, skipping brackets and quoted strings inside it
    (``[BADCHARSET (UTF-8)]``, ``[PERMANENTFLAGS (\\Seen \\*)]``)."""
    depth = 0
    index = start
    quoted = False
    while index < end:
        byte = data[index]
        if quoted:
            if byte == 0x5C:
                index += 1
            elif byte == 0x22:
                quoted = False
        elif byte == 0x22:
            quoted = True
        elif byte == 0x5B:
            depth += 1
        elif byte == 0x5D:
            if depth == 0:
                return index
            depth -= 1
        index += 1
    return -1


def _untagged(parser: Parser, utf8: bool) -> Parsed:
    number: int | None = None
    peek = parser.peek()
    if peek is not None and 0x30 <= peek <= 0x39:
        number = parser.number()
        parser.expect(b" ")
    name = parser.atom().upper()
    if number is not None:
        if name == "FETCH":
            return parse_fetch(parser, number)
        if name in ("EXISTS", "RECENT", "EXPUNGE"):
            parser.end()
            if name == "EXISTS":
                return Exists(number)
            return Recent(number) if name == "RECENT" else Expunge(number)
        return UntaggedResponse(name, parser.values(), number)
    if name in _UNTAGGED_STATUSES:
        text, code, code_data = resp_text(parser)
        return UntaggedStatus(name, text, code, code_data)  # type: ignore[arg-type]
    handler = _HANDLERS.get(name)
    if handler is not None:
        parser.skip_spaces()
        return handler(parser, utf8)
    return UntaggedResponse(name, parser.values())


def parse_capabilities(parser: Parser) -> frozenset[str]:
    names: list[str] = []
    for item in parser.values():
        if not isinstance(item, str):
            raise parser.error("capability that is not an atom")
        names.append(item.upper())
    return frozenset(names)


def capabilities_from_code(code_data: str | None) -> frozenset[str]:
    """The names of a ``[CAPABILITY ...]`` response code."""
    return frozenset(name.upper() for name in (code_data or "").split())


def parse_sequence_set(text: str) -> tuple[tuple[int, int], ...]:
    """``"1:3,7,9:8"`` → ((1, 3), (7, 7), (8, 9)); ``*`` is not allowed in server data."""
    ranges: list[tuple[int, int]] = []
    for item in text.split(","):
        first, _, last = item.partition(":")
        if not first.isdigit() or (last and not last.isdigit()) or len(ranges) >= MAX_RANGES:
            raise RemoteProtocolError(f"malformed sequence set {text[:40]!r}")
        low, high = int(first), int(last or first)
        if max(low, high) > MAX_NUMBER64:
            raise RemoteProtocolError(f"malformed sequence set {text[:40]!r}")
        ranges.append((min(low, high), max(low, high)))
    return tuple(ranges)


def _capability(parser: Parser, utf8: bool) -> Parsed:
    return CapabilityResponse(parse_capabilities(parser))


def _enabled(parser: Parser, utf8: bool) -> Parsed:
    return Enabled(parse_capabilities(parser))


def _flags(parser: Parser, utf8: bool) -> Parsed:
    items = parser.parenthesized()
    parser.end()
    if not all(isinstance(item, str) for item in items):
        raise parser.error("FLAGS with a non-atom")
    return Flags(tuple(str(item) for item in items))


def _list(parser: Parser, utf8: bool, command: Literal["LIST", "LSUB"] = "LIST") -> Parsed:
    attributes = parser.parenthesized()
    if not all(isinstance(item, str) for item in attributes):
        raise parser.error("LIST attribute that is not an atom")
    parser.expect(b" ")
    delimiter_raw = parser.nstring()
    parser.expect(b" ")
    name = decode_mailbox(parser.astring(), utf8)
    extended = parser.values()  # RFC 5258 extended data, e.g. ("CHILDINFO" ("SUBSCRIBED"))
    delimiter = None if delimiter_raw is None else delimiter_raw.decode("utf-8", "replace")
    return ListEntry(name, delimiter, tuple(str(a) for a in attributes), command, extended)


def _lsub(parser: Parser, utf8: bool) -> Parsed:
    return _list(parser, utf8, "LSUB")


def _status(parser: Parser, utf8: bool) -> Parsed:
    mailbox = decode_mailbox(parser.astring(), utf8)
    parser.skip_spaces()
    items = parser.parenthesized()
    parser.end()
    if len(items) % 2:
        raise parser.error("STATUS with an odd number of items")
    values: dict[str, int] = {}
    for index in range(0, len(items), 2):
        key, value = items[index], items[index + 1]
        if not isinstance(key, str) or not isinstance(value, str) or not value.isdigit():
            raise parser.error("STATUS item that is not a name and a number")
        if len(value) > 19 or int(value) > MAX_NUMBER64:
            raise parser.error("STATUS number too large")
        values[key.upper()] = int(value)
    return MailboxStatus(mailbox, values)


def _search(parser: Parser, utf8: bool) -> Parsed:
    # Fast path: a long line of numbers (a SEARCH of a big mailbox), split in C.
    rest = parser.rest_of_line()
    modseq: int | None = None
    if rest.endswith(b")"):
        start = rest.rfind(b"(")
        inner = rest[start + 1 : -1].split()
        if start < 0 or len(inner) != 2 or inner[0].upper() != b"MODSEQ":
            raise parser.error("malformed SEARCH modseq")
        modseq = _int64(inner[1], parser)
        rest = rest[:start]
    words = rest.split()
    if not all(word.isdigit() and len(word) <= 10 for word in words):
        raise parser.error("SEARCH result that is not a number")
    return Search(tuple(map(int, words)), modseq)


def _sort(parser: Parser, utf8: bool) -> Parsed:
    result = _search(parser, utf8)
    assert isinstance(result, Search)
    return Sort(result.numbers, result.modseq)


# THREAD (RFC 5256): its nesting is the number of branch points on a path of a thread,
# deeper than the generic lists' limit in a long discussion but never near this; the tree
# is built without recursion, and code that recurses over it stays far from Python's
# 1000-frame limit.
MAX_THREAD_DEPTH: Final = 256
# Messages and nodes of one THREAD response: a thread of every message of a mailbox of a
# million messages (~100 MB of Python objects at most).
MAX_THREAD_ITEMS: Final = 1_000_000
_THREAD_CHARS: Final = re.compile(rb"[0-9() ]*")
_THREAD_TOKEN: Final = re.compile(rb"[()]|[0-9]+")


def _thread(parser: Parser, utf8: bool) -> Parsed:
    """``* THREAD (2)(3 6 (4 23)(44 7 96))``: thread-list = "(" numbers [nested] ")" where
    the numbers form a chain and the nested lists are the branches after it."""
    rest = parser.rest_of_line()
    if not _THREAD_CHARS.fullmatch(rest):
        raise parser.error("THREAD with something other than numbers and parentheses")
    threads: list[ThreadNode] = []
    # One frame per open "(": the chain of numbers and the branches closed so far.
    stack: list[tuple[list[int], list[ThreadNode]]] = []
    for items, match in enumerate(_THREAD_TOKEN.finditer(rest)):
        token = match.group()
        if items >= MAX_THREAD_ITEMS:
            raise parser.error(f"THREAD with more than {MAX_THREAD_ITEMS} items")
        if token == b"(":
            if len(stack) >= MAX_THREAD_DEPTH:
                raise parser.error(f"THREAD nested deeper than {MAX_THREAD_DEPTH}")
            stack.append(([], []))
        elif token == b")":
            if not stack:
                raise parser.error("THREAD with an unbalanced ')'")
            messages, children = stack.pop()
            if not messages and not children:
                raise parser.error("THREAD with an empty list")
            node = ThreadNode(tuple(messages), tuple(children))
            (stack[-1][1] if stack else threads).append(node)
        else:
            if not stack or stack[-1][1]:  # a number outside a list, or after a branch
                raise parser.error("THREAD with a misplaced number")
            if len(token) > 10 or not 0 < int(token) <= MAX_NUMBER:
                raise parser.error("THREAD with a number out of range")
            stack[-1][0].append(int(token))
    if stack:
        raise parser.error("THREAD with an unclosed '('")
    return Thread(tuple(threads))


def _int64(word: bytes, parser: Parser) -> int:
    if not word.isdigit() or len(word) > 19 or int(word) > MAX_NUMBER64:
        raise parser.error("expected a 63-bit number")
    return int(word)


def _esearch(parser: Parser, utf8: bool) -> Parsed:
    tag: str | None = None
    if parser.peek() == 0x28:  # (TAG "A1")
        correlator = parser.parenthesized()
        if len(correlator) == 2 and isinstance(correlator[1], bytes):
            tag = correlator[1].decode("ascii", "replace")
    items = parser.values()
    uid = False
    fields: dict[str, Value] = {}
    index = 0
    if items and isinstance(items[0], str) and items[0].upper() == "UID":
        uid = True
        index = 1
    while index + 1 < len(items):
        key = items[index]
        if not isinstance(key, str):
            raise parser.error("ESEARCH item name that is not an atom")
        fields[key.upper()] = items[index + 1]
        index += 2
    if index != len(items):
        raise parser.error("ESEARCH with an odd number of items")
    numbers: dict[str, int | None] = {}
    for key in ("MIN", "MAX", "COUNT", "MODSEQ"):
        value = fields.pop(key, None)
        if value is not None and (not isinstance(value, str) or not value.isdigit()):
            raise parser.error(f"ESEARCH {key} that is not a number")
        numbers[key] = None if value is None else _int64(value.encode(), parser)
    all_ = fields.pop("ALL", None)
    if all_ is not None:
        if not isinstance(all_, str):
            raise parser.error("ESEARCH ALL that is not a sequence set")
        parse_sequence_set(all_)
    return ESearch(
        tag,
        uid,
        numbers["MIN"],
        numbers["MAX"],
        numbers["COUNT"],
        all_,
        numbers["MODSEQ"],
        fields,
    )


def _vanished(parser: Parser, utf8: bool) -> Parsed:
    earlier = False
    if parser.peek() == 0x28:
        tags = parser.parenthesized()
        earlier = any(isinstance(t, str) and t.upper() == "EARLIER" for t in tags)
        parser.skip_spaces()
    uid_set = parser.atom()
    parser.end()
    return Vanished(parse_sequence_set(uid_set), earlier)


def _id(parser: Parser, utf8: bool) -> Parsed:
    value = parser.value()
    parser.end()
    if value is None:
        return IdResponse(None)
    if not isinstance(value, tuple) or len(value) % 2:
        raise parser.error("ID that is not a list of pairs")
    fields: dict[str, str | None] = {}
    for index in range(0, len(value), 2):
        key, item = value[index], value[index + 1]
        if not isinstance(key, bytes) or isinstance(item, tuple):
            raise parser.error("ID field that is not a string")
        fields[key.decode("utf-8", "replace")] = (
            item.decode("utf-8", "replace") if isinstance(item, bytes) else item
        )
    return IdResponse(fields)


def _namespace(parser: Parser, utf8: bool) -> Parsed:
    kinds: list[tuple[tuple[str, str | None], ...]] = []
    for _ in range(3):
        parser.skip_spaces()
        value = parser.value()
        entries: list[tuple[str, str | None]] = []
        if value is not None:
            if not isinstance(value, tuple):
                raise parser.error("NAMESPACE that is not a list")
            for entry in value:
                if not isinstance(entry, tuple) or len(entry) < 2:
                    raise parser.error("NAMESPACE entry that is not a list")
                prefix, delimiter = entry[0], entry[1]
                if not isinstance(prefix, bytes) or isinstance(delimiter, tuple | str):
                    raise parser.error("NAMESPACE entry that is not two strings")
                entries.append(
                    (
                        decode_mailbox(prefix, utf8),
                        None if delimiter is None else delimiter.decode("utf-8", "replace"),
                    )
                )
        kinds.append(tuple(entries))
    parser.values()  # trailing extension data, if any
    return Namespace(kinds[0], kinds[1], kinds[2])


def _quota(parser: Parser, utf8: bool) -> Parsed:
    root = parser.astring().decode("utf-8", "replace")
    parser.skip_spaces()
    items = parser.parenthesized()
    parser.end()
    if len(items) % 3:
        raise parser.error("QUOTA resources that are not triples")
    resources: dict[str, tuple[int, int]] = {}
    for index in range(0, len(items), 3):
        name, used, limit = items[index : index + 3]
        if not (isinstance(name, str) and isinstance(used, str) and isinstance(limit, str)):
            raise parser.error("QUOTA resource that is not atoms")
        resources[name.upper()] = (_int64(used.encode(), parser), _int64(limit.encode(), parser))
    return Quota(root, resources)


def _quotaroot(parser: Parser, utf8: bool) -> Parsed:
    mailbox = decode_mailbox(parser.astring(), utf8)
    roots: list[str] = []
    while not parser.at_end():
        roots.append(parser.astring().decode("utf-8", "replace"))
    parser.end()
    return QuotaRoot(mailbox, tuple(roots))


_HANDLERS: Final = {
    "CAPABILITY": _capability,
    "ENABLED": _enabled,
    "FLAGS": _flags,
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "SEARCH": _search,
    "SORT": _sort,
    "THREAD": _thread,
    "ESEARCH": _esearch,
    "VANISHED": _vanished,
    "ID": _id,
    "NAMESPACE": _namespace,
    "QUOTA": _quota,
    "QUOTAROOT": _quotaroot,
}
