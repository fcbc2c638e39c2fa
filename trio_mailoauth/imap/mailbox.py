"""What the IMAP client's mailbox commands return, and reading response codes.

Plain data, no I/O: :class:`MailboxInfo` (SELECT/EXAMINE), :class:`AppendUID` and
:class:`CopyUID` (UIDPLUS, RFC 4315), :class:`StoreResult`, :class:`QuotaRoots`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from trio_mailoauth.errors import RemoteProtocolError
from trio_mailoauth.imap.events import (
    Exists,
    Fetch,
    Flags,
    Quota,
    Recent,
    StatusResponse,
    TaggedResponse,
    Vanished,
)

__all__ = ["AppendUID", "CopyUID", "MailboxInfo", "QuotaRoots", "StoreResult"]


def _code_number(data: str | None, code: str) -> int:
    text = (data or "").strip()
    if not text.isdigit() or len(text) > 19:
        raise RemoteProtocolError(f"malformed [{code}] response code: {text[:40]!r}")
    return int(text)


def _flag_list(data: str | None) -> tuple[str, ...]:
    text = (data or "").strip()
    if not (text.startswith("(") and text.endswith(")")):
        raise RemoteProtocolError(f"malformed flag list in a response code: {text[:40]!r}")
    return tuple(text[1:-1].split())


@dataclass(frozen=True)
class MailboxInfo:
    """The state of a mailbox just selected (SELECT/EXAMINE).

    ``highestmodseq`` is None when the server does not keep mod-sequences for it
    (``[NOMODSEQ]``) or CONDSTORE is unknown; ``vanished`` and ``changed`` are the QRESYNC
    resynchronisation (UIDs expunged since, messages changed since).
    """

    name: str
    exists: int = 0
    recent: int | None = None
    flags: tuple[str, ...] = ()
    permanent_flags: tuple[str, ...] | None = None
    uidvalidity: int | None = None
    uidnext: int | None = None
    highestmodseq: int | None = None
    unseen: int | None = None  # IMAP4rev1: the number of the first unseen message
    read_only: bool = False
    vanished: tuple[Vanished, ...] = ()
    changed: tuple[Fetch, ...] = ()

    @classmethod
    def from_responses(
        cls, name: str, events: Iterable[object], response: TaggedResponse
    ) -> MailboxInfo:
        values: dict[str, object] = {}
        vanished: list[Vanished] = []
        changed: list[Fetch] = []
        for event in events:
            if isinstance(event, Exists):
                values["exists"] = event.count
            elif isinstance(event, Recent):
                values["recent"] = event.count
            elif isinstance(event, Flags):
                values["flags"] = event.flags
            elif isinstance(event, Vanished):
                vanished.append(event)
            elif isinstance(event, Fetch):
                changed.append(event)
            elif isinstance(event, StatusResponse) and event.code is not None:
                code = event.code
                if code in ("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ", "UNSEEN"):
                    values[code.lower()] = _code_number(event.code_data, code)
                elif code == "PERMANENTFLAGS":
                    values["permanent_flags"] = _flag_list(event.code_data)
        read_only = response.code == "READ-ONLY"
        return cls(
            name,
            read_only=read_only,
            vanished=tuple(vanished),
            changed=tuple(changed),
            **values,  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class AppendUID:
    """``[APPENDUID uidvalidity uid]``: where APPEND put the message."""

    uidvalidity: int
    uids: str  # a UID set: one UID for a single APPEND

    @property
    def uid(self) -> int:
        return int(self.uids.split(",")[0].split(":")[0])

    @classmethod
    def from_response(cls, response: TaggedResponse) -> AppendUID | None:
        if response.code != "APPENDUID":
            return None
        parts = (response.code_data or "").split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise RemoteProtocolError("malformed [APPENDUID] response code")
        return cls(int(parts[0]), parts[1])


@dataclass(frozen=True)
class CopyUID:
    """``[COPYUID uidvalidity source-uids destination-uids]``: where COPY/MOVE put them."""

    uidvalidity: int
    source: str
    destination: str

    @classmethod
    def from_code(cls, code: str | None, data: str | None) -> CopyUID | None:
        if code != "COPYUID":
            return None
        parts = (data or "").split()
        if len(parts) != 3 or not parts[0].isdigit():
            raise RemoteProtocolError("malformed [COPYUID] response code")
        return cls(int(parts[0]), parts[1], parts[2])


@dataclass(frozen=True)
class StoreResult:
    """What STORE reported: the new flags (unless ``.SILENT``) and, with UNCHANGEDSINCE,
    the messages it did not change because they had changed meanwhile (``[MODIFIED]``)."""

    fetches: tuple[Fetch, ...] = ()
    modified: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class QuotaRoots:
    """GETQUOTAROOT (RFC 9208): the quota roots ``mailbox`` counts against, and what the
    server said about each (``quotas[root].resources["STORAGE"] == (used, limit)``)."""

    mailbox: str
    roots: tuple[str, ...]
    quotas: Mapping[str, Quota] = field(default_factory=dict)
