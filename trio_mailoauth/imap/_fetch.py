"""``* n FETCH (...)`` to a typed :class:`~trio_mailoauth.imap.message.Fetch`.

Read straight from the tokenizer, item by item: the common items (UID, FLAGS, sizes, body
sections) cost a few regex matches each, and a body section is the literal the reader
already sliced out, never copied again.
"""

from __future__ import annotations

import re
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


# One FETCH item name and the space after it, in one regex match (the hot path of a big
# FETCH): UID, FLAGS, RFC822.SIZE, BODY[section]<origin>, BINARY[1.2]...
_ITEM_RE: Final = re.compile(rb"([A-Za-z0-9.\-]+(?:\[[^\]\r\n]*\])?(?:<[0-9]+>)?) +")
_NUMBER_RE: Final = re.compile(rb"([0-9]{1,10})(?= |\))")


def parse_fetch(parser: Parser, sequence: int) -> Fetch:
    """The ``(...)`` after ``* n FETCH``, up to the end of the response."""
    fields: dict[str, object] = {}
    sections: dict[str, bytes | None] = {}
    binary_sizes: dict[str, int] = {}
    extra: dict[str, object] = {}
    parser.skip_spaces()
    parser.expect(b"(")
    data = parser.data
    item_match = _ITEM_RE.match
    number_match = _NUMBER_RE.match
    while True:
        pos = parser.pos
        while pos < len(data) and data[pos] == 0x20:
            pos += 1
        parser.pos = pos
        if data.startswith(b")", pos):
            parser.pos = pos + 1
            break
        if pos >= len(data) or data.startswith(b"\r\n", pos):
            raise parser.error("unclosed FETCH list")
        match = item_match(data, pos)
        if match is not None:
            name = match.group(1).decode("ascii").upper()
            parser.pos = match.end()
        else:
            name = parser.atom().upper()
            parser.skip_spaces()
        if name in _NUMBER_ITEMS:
            number = number_match(data, parser.pos)
            if number is not None and len(number.group(1)) < 10:
                fields[_NUMBER_ITEMS[name]] = int(number.group(1))
                parser.pos = number.end()
            else:
                fields[_NUMBER_ITEMS[name]] = parser.number()
        elif name == "FLAGS":
            fields["flags"] = _flags(parser)
        elif name.startswith(_SECTION_PREFIXES) or name in _WHOLE_SECTIONS:
            sections[name] = parser.nstring()
        elif name.startswith("BINARY.SIZE["):
            binary_sizes[name[len("BINARY.SIZE") :]] = parser.number()
        elif name == "INTERNALDATE":
            fields["internal_date"] = parse_internal_date(
                parser.string().decode("ascii", "replace")
            )
        elif name == "ENVELOPE":
            fields["envelope"] = parse_envelope(parser.value())
        elif name in ("BODYSTRUCTURE", "BODY"):
            fields["body_structure"] = parse_body_structure(parser.value())
        elif name == "MODSEQ":  # RFC 7162: MODSEQ (n)
            parser.expect(b"(")
            fields["modseq"] = parser.number(MAX_NUMBER64)
            parser.skip_spaces()
            parser.expect(b")")
        elif name in _NUMBER64_ITEMS:
            fields[_NUMBER64_ITEMS[name]] = parser.number(MAX_NUMBER64)
        elif name == "X-GM-LABELS":
            fields["gmail_labels"] = _labels(parser)
        else:
            extra[name] = parser.value()
    parser.end()
    return Fetch(
        sequence,
        sections=sections,
        binary_sizes=binary_sizes,
        extra=extra,
        **fields,  # type: ignore[arg-type]
    )
