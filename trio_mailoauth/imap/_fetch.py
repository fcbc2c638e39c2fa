"""``* n FETCH (...)`` to a typed :class:`~trio_mailoauth.imap.message.Fetch`.

Read straight from the tokenizer, item by item: the common items (UID, FLAGS, sizes, body
sections) cost a few regex matches each, and a body section is the literal the reader
already sliced out, never copied again.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from datetime import datetime
from typing import Final

from trio_mailoauth.errors import RemoteProtocolError
from trio_mailoauth.imap._bodystructure import parse_body_structure, parse_envelope
from trio_mailoauth.imap._tokenizer import MAX_NUMBER64, Parser
from trio_mailoauth.imap.message import Fetch

__all__ = ["parse_fetch", "parse_internal_date"]

_NUMBER_ITEMS: Final = {"UID": "uid", "RFC822.SIZE": "size"}
_NUMBER64_ITEMS: Final = {"X-GM-MSGID": "gmail_message_id", "X-GM-THRID": "gmail_thread_id"}
_SECTION_PREFIXES: Final = ("BODY[", "BINARY[")
_WHOLE_SECTIONS: Final = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT"})


def parse_internal_date(text: str) -> datetime:
    """``"17-Jul-1996 02:44:25 -0700"`` (a leading space for one-digit days is allowed)."""
    try:
        return datetime.strptime(text.strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError as exc:
        raise RemoteProtocolError(f"malformed INTERNALDATE {text[:40]!r}") from exc


def _flags(parser: Parser) -> tuple[str, ...]:
    parser.expect(b"(")
    flags: list[str] = []
    while True:
        parser.skip_spaces()
        if parser.skip(b")"):
            return tuple(flags)
        if parser.peek() is None or parser.at_line_end():
            raise parser.error("unclosed flag list")
        flags.append(parser.atom())


def _labels(parser: Parser) -> tuple[str, ...]:
    """X-GM-LABELS: a list of astrings (``\\Inbox``, ``"My label"``)."""
    parser.expect(b"(")
    labels: list[str] = []
    while True:
        parser.skip_spaces()
        if parser.skip(b")"):
            return tuple(labels)
        if parser.peek() is None or parser.at_line_end():
            raise parser.error("unclosed label list")
        labels.append(parser.astring().decode("utf-8", "replace"))


# One FETCH item in one regex match (the hot path of a big FETCH): spaces, then either the
# ")" closing the list or an item name (UID, FLAGS, RFC822.SIZE, BODY[section]<origin>,
# BINARY[1.2]...), the space after it, and, when the value is a number or a literal marker,
# that too. Other values are read by the tokenizer.
_ITEM_RE: Final = re.compile(
    rb" *(?:(\))|([A-Za-z0-9.\-]+(?:\[[^\]\r\n]*\])?(?:<[0-9]+>)?) +"
    rb"(?:([0-9]{1,10})(?=[ )])|~?\{([0-9]{1,10})\+?\}\r\n)?)"
)
_END_RE: Final = re.compile(rb" *\r\n")

# Item names as the server spells them -> upper-case str; a FETCH of 10,000 messages repeats
# the same two or three names. Bounded: a server inventing names only fills it once.
_NAMES: dict[bytes, str] = {}
_MAX_NAMES: Final = 256


def _name(raw: bytes) -> str:
    name = raw.decode("ascii").upper()
    if len(_NAMES) < _MAX_NAMES:
        _NAMES[raw] = name
    return name


# Fetch is a frozen dataclass: its generated __init__ sets each of its 14 fields through
# object.__setattr__, ~2.5 us a message, a fifth of the parse of a 10 KB FETCH. The parser
# fills the instance dict itself instead; test_imap_fetch checks the result equals
# Fetch(...) field for field, and this refuses to load if Fetch gains slots or a hook.
_FETCH_DEFAULTS: Final = {
    field.name: field.default for field in fields(Fetch) if field.default is not MISSING
}
if (
    hasattr(Fetch, "__slots__")
    or hasattr(Fetch, "__post_init__")
    or set(_FETCH_DEFAULTS) | {"sequence", "sections", "binary_sizes", "extra"}
    != {field.name for field in fields(Fetch)}
):  # pragma: no cover - a guard for whoever changes Fetch
    raise TypeError("Fetch changed shape: update parse_fetch's construction")


def parse_fetch(parser: Parser, sequence: int) -> Fetch:
    """The ``(...)`` after ``* n FETCH``, up to the end of the response."""
    fetch: Fetch = object.__new__(Fetch)
    values = fetch.__dict__  # the items go straight into the instance (see above)
    values.update(_FETCH_DEFAULTS)
    sections: dict[str, bytes | None] = {}
    binary_sizes: dict[str, int] = {}
    extra: dict[str, object] = {}
    data = parser.data
    if data.startswith(b"(", parser.pos):
        parser.pos += 1
    else:
        parser.skip_spaces()
        parser.expect(b"(")
    literals = parser.literals
    item_match = _ITEM_RE.match
    while True:
        match = item_match(data, parser.pos)
        if match is None:
            parser.skip_spaces()
            if parser.peek() is None or parser.at_line_end():
                raise parser.error("unclosed FETCH list")
            name = parser.atom().upper()  # an odd name: the tokenizer says what is wrong
            parser.skip_spaces()
        elif match.group(1) is not None:  # ")"
            parser.pos = match.end()
            break
        else:
            raw_name = match.group(2)
            name = _NAMES.get(raw_name) or _name(raw_name)
            number, size = match.group(3, 4)
            if number is not None and len(number) < 10 and name in _NUMBER_ITEMS:
                values[_NUMBER_ITEMS[name]] = int(number)
                parser.pos = match.end()
                continue
            if size is not None and (name.startswith(_SECTION_PREFIXES) or name in _WHOLE_SECTIONS):
                index = parser.literal_index
                if index >= len(literals) or len(literals[index]) != int(size):
                    raise parser.error("literal missing")
                sections[name] = literals[index]
                parser.literal_index = index + 1
                parser.pos = match.end()
                continue
            parser.pos = match.end(2)
            parser.skip_spaces()
        _item(parser, name, values, sections, binary_sizes, extra)
    end = _END_RE.match(data, parser.pos)
    if end is None or end.end() != len(data):
        raise parser.error("expected the end of the response")
    parser.pos = end.end()
    values["sequence"] = sequence
    values["sections"] = sections
    values["binary_sizes"] = binary_sizes
    values["extra"] = extra
    return fetch


def _item(
    parser: Parser,
    name: str,
    values: dict[str, object],
    sections: dict[str, bytes | None],
    binary_sizes: dict[str, int],
    extra: dict[str, object],
) -> None:
    """One item's value, read by the tokenizer (the general path)."""
    if name in _NUMBER_ITEMS:
        values[_NUMBER_ITEMS[name]] = parser.number()
    elif name == "FLAGS":
        values["flags"] = _flags(parser)
    elif name.startswith(_SECTION_PREFIXES) or name in _WHOLE_SECTIONS:
        sections[name] = parser.nstring()
    elif name.startswith("BINARY.SIZE["):
        binary_sizes[name[len("BINARY.SIZE") :]] = parser.number()
    elif name == "INTERNALDATE":
        values["internal_date"] = parse_internal_date(parser.string().decode("ascii", "replace"))
    elif name == "ENVELOPE":
        values["envelope"] = parse_envelope(parser.value())
    elif name in ("BODYSTRUCTURE", "BODY"):
        values["body_structure"] = parse_body_structure(parser.value())
    elif name == "MODSEQ":  # RFC 7162: MODSEQ (n)
        parser.expect(b"(")
        values["modseq"] = parser.number(MAX_NUMBER64)
        parser.skip_spaces()
        parser.expect(b")")
    elif name in _NUMBER64_ITEMS:
        values[_NUMBER64_ITEMS[name]] = parser.number(MAX_NUMBER64)
    elif name == "X-GM-LABELS":
        values["gmail_labels"] = _labels(parser)
    else:
        extra[name] = parser.value()
