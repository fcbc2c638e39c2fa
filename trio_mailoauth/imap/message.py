"""What a FETCH returns, typed: :class:`Fetch` with its :class:`Envelope` and body structure.

Header-ish strings (subjects, names) are given as the server sent them, decoded as UTF-8
with replacement; RFC 2047 encoded-words are left for the caller (``email.header``), because
decoding them is lossy and locale-dependent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

__all__ = [
    "Address",
    "BodyStructure",
    "Envelope",
    "Fetch",
    "MultiPart",
    "SinglePart",
]


@dataclass(frozen=True)
class Address:
    """One address of an ENVELOPE (RFC 9051 §7.5.2): ``name <mailbox@host>``.

    A group is sent as a start marker (``host`` None, ``mailbox`` the group name) and an end
    marker (``mailbox`` and ``host`` None); both are kept as the server sent them.
    """

    name: str | None
    route: str | None
    mailbox: str | None
    host: str | None

    @property
    def email(self) -> str | None:
        """``mailbox@host``, or None for a group marker."""
        if self.mailbox is None or self.host is None:
            return None
        return f"{self.mailbox}@{self.host}"


@dataclass(frozen=True)
class Envelope:
    """The ENVELOPE of a message: the parsed main headers."""

    date: str | None
    subject: str | None
    from_: tuple[Address, ...]
    sender: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    in_reply_to: str | None
    message_id: str | None


@dataclass(frozen=True)
class SinglePart:
    """A non-multipart body part of a BODYSTRUCTURE (RFC 9051 §7.5.2 body-type-1part).

    ``lines`` is set for ``text/*`` and ``message/rfc822``; ``envelope`` and ``body`` only
    for an attached ``message/rfc822`` (or ``message/global``).
    """

    type: str  # lower-case, e.g. "text"
    subtype: str  # lower-case, e.g. "plain"
    params: Mapping[str, str] = field(default_factory=dict)
    id: str | None = None
    description: str | None = None
    encoding: str = "7bit"
    size: int = 0
    lines: int | None = None
    envelope: Envelope | None = None
    body: BodyStructure | None = None
    md5: str | None = None
    disposition: tuple[str, Mapping[str, str]] | None = None
    language: tuple[str, ...] | None = None
    location: str | None = None

    @property
    def content_type(self) -> str:
        return f"{self.type}/{self.subtype}"


@dataclass(frozen=True)
class MultiPart:
    """A multipart body (``multipart/<subtype>``) and its parts, in order."""

    parts: tuple[BodyStructure, ...]
    subtype: str  # lower-case, e.g. "mixed"
    params: Mapping[str, str] = field(default_factory=dict)
    disposition: tuple[str, Mapping[str, str]] | None = None
    language: tuple[str, ...] | None = None
    location: str | None = None

    @property
    def content_type(self) -> str:
        return f"multipart/{self.subtype}"


BodyStructure: TypeAlias = SinglePart | MultiPart


@dataclass(frozen=True)
class Fetch:
    """``* n FETCH (...)``: what the server returned about message number ``sequence``.

    Attributes the server did not send are None. ``sections`` maps each body section to its
    bytes, keyed as the server named it (``"BODY[]"``, ``"BODY[HEADER]"``, ``"BODY[1]<0>"``,
    ``"BINARY[1]"``, ``"RFC822"``...); :attr:`body` is the whole message if it was fetched.
    ``extra`` holds items this version does not know, as generic values.
    """

    sequence: int
    uid: int | None = None
    flags: tuple[str, ...] | None = None
    internal_date: datetime | None = None
    size: int | None = None
    envelope: Envelope | None = None
    body_structure: BodyStructure | None = None
    sections: Mapping[str, bytes | None] = field(default_factory=dict)
    modseq: int | None = None
    gmail_message_id: int | None = None
    gmail_thread_id: int | None = None
    gmail_labels: tuple[str, ...] | None = None
    binary_sizes: Mapping[str, int] = field(default_factory=dict)
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def body(self) -> bytes | None:
        """The whole message (``BODY[]``, ``BINARY[]`` or ``RFC822``), if fetched."""
        for key in ("BODY[]", "BINARY[]", "RFC822"):
            value = self.sections.get(key)
            if value is not None:
                return value
        for key, value in self.sections.items():  # a partial fetch: BODY[]<0>
            if key.startswith("BODY[]<") and value is not None:
                return value
        return None

    @property
    def header(self) -> bytes | None:
        """The header block (``BODY[HEADER]`` or ``RFC822.HEADER``), if fetched."""
        return self.sections.get("BODY[HEADER]") or self.sections.get("RFC822.HEADER")

    def section(self, name: str) -> bytes | None:
        """One section by name (``"BODY[1]"``; ``BODY.PEEK[...]`` is answered as ``BODY[...]``)."""
        return self.sections.get(name.upper().replace("BODY.PEEK[", "BODY[", 1))
