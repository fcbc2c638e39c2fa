"""The async IMAP client: a thin I/O loop over :class:`IMAPConnection`.

    async with open_imap("imap.example.com", auth=XOAuth2(user, tokens)) as imap:
        print(imap.capabilities)
        events = await imap.noop()

Every command is one round trip (``BaseClient._round_trip``): a NO/BAD raises
:class:`IMAPResponseError` and the connection stays usable; anything that interrupts the
round trip (cancellation, network error, protocol error, an unsolicited ``* BYE``) breaks it.
Written against anyio: runs on trio and on asyncio.
"""

from __future__ import annotations

import builtins
import ssl
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import ClassVar, Final, Literal, overload

from trio_mailoauth._client import DEFAULT_CONNECT_TIMEOUT, Opener, open_client
from trio_mailoauth.errors import (
    AuthenticationError,
    AuthFailureKind,
    ConnectError,
    ConnectionBrokenError,
    LocalProtocolError,
    RemoteProtocolError,
    SessionEndedError,
    TLSError,
)
from trio_mailoauth.imap import commands as c
from trio_mailoauth.imap._connection import IMAPConnection
from trio_mailoauth.imap._state import IMAPState
from trio_mailoauth.imap._writer import Arg, Raw
from trio_mailoauth.imap.commands import (
    Authenticate,
    Capability,
    Command,
    Login,
    Logout,
    StartTLS,
)
from trio_mailoauth.imap.events import (
    Bye,
    Enabled,
    ESearch,
    Event,
    Greeting,
    IdResponse,
    ListEntry,
    MailboxStatus,
    Namespace,
    Quota,
    QuotaRoot,
    SASLChallenge,
    Search,
    Sort,
    StatusResponse,
    TaggedResponse,
    Thread,
    ThreadNode,
)
from trio_mailoauth.imap.mailbox import AppendUID, CopyUID, MailboxInfo, QuotaRoots, StoreResult
from trio_mailoauth.imap.message import Fetch
from trio_mailoauth.imap.search import Q
from trio_mailoauth.imap.session import MAX_UNTAGGED, IMAPSession, refusal
from trio_mailoauth.imap.streams import IDLE_REFRESH_SECONDS, FetchStream, IdleSession
from trio_mailoauth.sasl import SASLFlow, SASLMechanism, classify_failure
from trio_mailoauth.transport import Stream, TLSMode

__all__ = ["MAX_UNTAGGED", "IMAPClient", "open_imap"]

# Response codes of a refused AUTHENTICATE/LOGIN that no new token or retry fixes
# (RFC 5530): the identity may not act as that user, TLS is required, an admin must act.
_PERMANENT_CODES: Final = frozenset({"AUTHORIZATIONFAILED", "PRIVACYREQUIRED", "CONTACTADMIN"})

_SESSION_STATES: Final = frozenset(
    {IMAPState.NOT_AUTHENTICATED, IMAPState.AUTHENTICATED, IMAPState.SELECTED}
)


def _items(items: str | Sequence[str]) -> tuple[str, ...]:
    return (items,) if isinstance(items, str) else tuple(items)


class IMAPClient(IMAPSession):
    """An IMAP connection. Get one from :func:`open_imap`."""

    protocol: ClassVar[str] = "imap"
    default_ports: ClassVar[dict[TLSMode, int]] = {"implicit": 993, "starttls": 143, "none": 143}

    def __init__(
        self, stream: Stream, *, host: str, port: int, allow_insecure: bool = False
    ) -> None:
        super().__init__(
            stream,
            lambda trace: IMAPConnection(trace=trace),
            host=host,
            port=port,
            allow_insecure=allow_insecure,
        )
        self._init_session()

    # --- what callers look at --------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[str]:
        """The server's capabilities, upper-case (re-read after STARTTLS and authentication)."""
        return self._conn.capabilities or frozenset()

    def has_capability(self, name: str) -> bool:
        return name.upper() in self.capabilities

    @property
    def greeting(self) -> str:
        """The text of the server's greeting."""
        return self._conn.greeting.text if self._conn.greeting is not None else ""

    @property
    def protocol_state(self) -> IMAPState:
        """Where the IMAP conversation stands: NOT_AUTHENTICATED, AUTHENTICATED, ...

        (``state`` is the connection's health: OK, BROKEN or CLOSED, as on every client.)
        """
        return self._conn.state

    # --- the event loop of one command ----------------------------------------------------

    async def _run(self, command: Command, flow: SASLFlow | None = None) -> TaggedResponse:
        """Send ``command`` and read until its tagged response (the lock is held)."""
        tag = self._conn.send(command)
        while True:
            event = await self._next_event()
            if isinstance(event, TaggedResponse) and event.tag == tag:
                return event
            if isinstance(event, SASLChallenge):
                if flow is None:  # the core only emits them during AUTHENTICATE
                    raise RemoteProtocolError("SASL challenge outside AUTHENTICATE")
                self._conn.send_sasl_response(flow.respond(event.data))
            elif isinstance(event, Bye):
                raise SessionEndedError(event.text, event.code)
            else:
                self._dispatch(event)

    async def _check(self, command: Command) -> TaggedResponse:
        response = await self._run(command)
        if response.status != "OK":
            raise refusal(response)
        return response

    async def _ensure_capabilities(self) -> None:
        if self._conn.capabilities is None:
            await self._check(Capability())

    # --- opening and closing ---------------------------------------------------------------

    async def _start(self, starttls: bool, ssl_context: ssl.SSLContext) -> None:
        async with self._round_trip():
            greeting = await self._next_event()
            if not isinstance(greeting, Greeting):  # pragma: no cover - the core ensures it
                raise RemoteProtocolError(f"expected a greeting, got {greeting!r}")
            if greeting.status == "BYE":
                raise ConnectError(f"the server refused the connection: {greeting.text}")
            if starttls:
                await self._starttls(greeting, ssl_context)
            await self._ensure_capabilities()

    async def _starttls(self, greeting: Greeting, ssl_context: ssl.SSLContext) -> None:
        if greeting.status == "PREAUTH":
            # Already authenticated in plaintext: STARTTLS is only allowed before that.
            raise TLSError("the server greeted with PREAUTH, which makes STARTTLS impossible")
        await self._ensure_capabilities()
        if "STARTTLS" not in self.capabilities:
            raise TLSError("the server does not offer STARTTLS")
        response = await self._run(StartTLS())
        if response.status != "OK":
            raise TLSError(f"the server refused STARTTLS: {response.status} {response.text}")
        await self._upgrade_to_tls(ssl_context)
        self._conn.tls_established()

    async def _goodbye(self) -> None:
        if self._conn.state not in _SESSION_STATES or self._conn.in_flight:
            return
        tag = self._conn.send(Logout())
        bye_seen = False
        try:
            while True:
                event = await self._next_event()
                if isinstance(event, Bye):
                    bye_seen = True
                elif isinstance(event, TaggedResponse) and event.tag == tag:
                    return
        except ConnectionBrokenError:
            if not bye_seen:  # after BYE the server may close before its tagged OK
                raise

    async def logout(self) -> None:
        """Say LOGOUT (the server answers ``* BYE`` and its OK), then close the connection."""
        async with self._exclusive():
            await self._goodbye()
        await self.aclose()

    # --- commands --------------------------------------------------------------------------

    async def capability(self) -> frozenset[str]:
        """Ask the server for its capabilities again."""
        await self._command(Capability())
        return self.capabilities

    async def noop(self) -> builtins.list[Event]:
        """NOOP: returns the unsolicited responses seen so far (EXISTS, EXPUNGE, FETCH...)
        and removes them from the queue (see :meth:`drain_events`).

        While an ``idle()`` block is open (in any task) they are its events: NOOP leaves
        them queued and returns ``[]``.
        """
        await self._command(c.Noop())
        if self._idle_blocks:
            return []
        return self.drain_events()

    async def login(self, user: str, password: str) -> None:
        """The LOGIN command (user name and password), refused if the server says LOGINDISABLED."""
        self._ensure_usable()
        self._check_can_send_secrets()
        async with self._exclusive():
            if "LOGINDISABLED" in self.capabilities:
                raise LocalProtocolError(
                    "the server advertises LOGINDISABLED: LOGIN is not allowed"
                )
            response = await self._run(Login(user, password))
            if response.status != "OK":
                kind: AuthFailureKind = (
                    "temporary" if response.code == "UNAVAILABLE" else "permanent"
                )
                raise AuthenticationError(
                    response.text, mechanism="LOGIN", kind=kind, response=refusal(response)
                )
            await self._ensure_capabilities()

    async def _sasl_exchange(self, flow: SASLFlow) -> None:
        async with self._exclusive():
            # RFC 4959: the initial response goes on the command line only with SASL-IR.
            initial = flow.initial_response() if "SASL-IR" in self.capabilities else None
            response = await self._run(Authenticate(flow.mechanism, initial), flow)
            if response.status == "OK":
                await self._ensure_capabilities()
                return
            kind = classify_failure(
                flow,
                temporary=response.code == "UNAVAILABLE",
                permanent=response.status == "BAD" or response.code in _PERMANENT_CODES,
            )
            raise AuthenticationError(
                response.text,
                mechanism=flow.mechanism,
                kind=kind,
                detail=flow.error_detail,
                response=refusal(response),
            )

    # --- mailboxes (RFC 9051 §6.3) ---------------------------------------------------------

    async def select(
        self,
        mailbox: str = "INBOX",
        *,
        readonly: bool = False,
        condstore: bool = False,
        qresync: c.QResync | None = None,
    ) -> MailboxInfo:
        """SELECT (EXAMINE with ``readonly``) a mailbox: its :class:`MailboxInfo`.

        ``condstore`` asks for mod-sequences (RFC 7162); ``qresync`` (after
        ``enable("QRESYNC")``) also returns what vanished and changed since.
        """
        command_type = c.Examine if readonly else c.Select
        pending = await self._command(command_type(mailbox, condstore, qresync))
        assert pending.response is not None
        return MailboxInfo.from_responses(mailbox, pending.events, pending.response)

    async def examine(self, mailbox: str = "INBOX", *, condstore: bool = False) -> MailboxInfo:
        """EXAMINE: SELECT read-only (nothing changes the mailbox, not even \\Seen)."""
        return await self.select(mailbox, readonly=True, condstore=condstore)

    async def unselect(self) -> None:
        """UNSELECT (RFC 3691): close the mailbox without expunging; CLOSE when absent."""
        await self._command(c.Unselect() if self.has_capability("UNSELECT") else c.Close())

    async def close_mailbox(self) -> None:
        """CLOSE: expunge the \\Deleted messages silently and close the mailbox."""
        await self._command(c.Close())

    async def list(
        self, reference: str = "", pattern: str = "*", *, special_use: bool = False
    ) -> builtins.list[ListEntry]:
        """LIST: the mailboxes matching ``pattern`` (``*`` all, ``%`` one level).

        ``special_use`` asks for the RFC 6154 attributes (``\\Sent``, ``\\Trash``...) when
        the server offers SPECIAL-USE (most send them anyway).
        """
        returns = ("SPECIAL-USE",) if special_use and self.has_capability("SPECIAL-USE") else ()
        pending = await self._command(c.List(reference, pattern, returns))
        return [event for event in pending.events if isinstance(event, ListEntry)]

    async def lsub(self, reference: str = "", pattern: str = "*") -> builtins.list[ListEntry]:
        """LSUB: the subscribed mailboxes (IMAP4rev1)."""
        pending = await self._command(c.Lsub(reference, pattern))
        return [event for event in pending.events if isinstance(event, ListEntry)]

    async def status(
        self,
        mailbox: str,
        items: Sequence[str] = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"),
    ) -> MailboxStatus:
        """STATUS: counters of a mailbox without selecting it."""
        pending = await self._command(c.Status(mailbox, tuple(item.upper() for item in items)))
        for event in pending.events:
            if isinstance(event, MailboxStatus):
                return event
        raise RemoteProtocolError(f"STATUS {mailbox!r} completed without a STATUS response")

    async def create(self, mailbox: str, *, special_use: str | None = None) -> None:
        """CREATE a mailbox (``special_use="\\\\Archive"`` with CREATE-SPECIAL-USE)."""
        await self._command(c.Create(mailbox, special_use))

    async def delete(self, mailbox: str) -> None:
        await self._command(c.Delete(mailbox))

    async def rename(self, mailbox: str, new_name: str) -> None:
        await self._command(c.Rename(mailbox, new_name))

    async def subscribe(self, mailbox: str) -> None:
        await self._command(c.Subscribe(mailbox))

    async def unsubscribe(self, mailbox: str) -> None:
        await self._command(c.Unsubscribe(mailbox))

    # --- messages (RFC 9051 §6.4) ------------------------------------------------------------

    def _criteria(
        self, criteria: Q | str, charset: str | None
    ) -> tuple[tuple[Arg, ...], str | None]:
        """Search criteria as arguments, and the charset they need (UTF-8 for non-ASCII
        values, unless the session already speaks UTF-8)."""
        if isinstance(criteria, str):
            return (Raw(criteria),), charset
        if charset is None and criteria.non_ascii and not self._conn.utf8:
            charset = "UTF-8"
        return criteria.args, charset

    @overload
    async def search(
        self,
        criteria: Q | str = "ALL",
        *,
        uid: bool = False,
        charset: str | None = None,
        returns: None = None,
    ) -> builtins.list[int]: ...

    @overload
    async def search(
        self,
        criteria: Q | str = "ALL",
        *,
        uid: bool = False,
        charset: str | None = None,
        returns: Sequence[str],
    ) -> ESearch: ...

    async def search(
        self,
        criteria: Q | str = "ALL",
        *,
        uid: bool = False,
        charset: str | None = None,
        returns: Sequence[str] | None = None,
    ) -> builtins.list[int] | ESearch:
        """SEARCH: message numbers (UIDs with ``uid``) matching ``criteria``.

        Build criteria with :class:`~trio_mailoauth.imap.search.Q` from any values; a plain
        string is sent as it is and must hold only constant criteria (``"UNSEEN"``).

        With ``returns`` (any of ``"MIN"``, ``"MAX"``, ``"COUNT"``, ``"ALL"``; ESEARCH, RFC
        4731) the result is an :class:`~trio_mailoauth.imap.events.ESearch` holding just
        those: a count of a million matches without a million numbers on the wire. Without
        ESEARCH on the server, the client computes them from a plain SEARCH.
        """
        args, charset = self._criteria(criteria, charset)
        if returns is not None:
            return await self._esearch(args, charset, uid, returns)
        return await self._search(args, charset, uid)

    async def _search(
        self, args: tuple[Arg, ...], charset: str | None, uid: bool
    ) -> builtins.list[int]:
        pending = await self._command(c.Search(criteria=args, charset=charset, uid=uid))
        numbers: list[int] = []
        for event in pending.events:
            if isinstance(event, Search):
                numbers.extend(event.numbers)
            elif isinstance(event, ESearch) and event.all:  # pragma: no cover - not asked
                numbers.extend(event.numbers())
        return numbers

    async def _esearch(
        self, args: tuple[Arg, ...], charset: str | None, uid: bool, returns: Sequence[str]
    ) -> ESearch:
        wanted = tuple(item.upper() for item in returns) or ("ALL",)  # RFC 4731: () is ALL
        if not self.has_capability("ESEARCH"):
            if "SAVE" in wanted:
                raise LocalProtocolError("the server does not offer ESEARCH: no RETURN (SAVE)")
            return _esearch_from(await self._search(args, charset, uid), uid, wanted)
        command = c.Search(criteria=args, charset=charset, uid=uid, returns=wanted)
        pending = await self._command(command)
        numbers: list[int] = []
        plain = False
        for event in pending.events:
            # RFC 4731 §3.1: the ESEARCH answering us is tagged with our tag.
            if isinstance(event, ESearch) and event.tag in (None, pending.tag):
                return event
            if isinstance(event, Search):  # a server that ignored RETURN
                plain = True
                numbers.extend(event.numbers)
        if plain:
            return _esearch_from(numbers, uid, wanted)
        return ESearch(pending.tag, uid, count=0 if "COUNT" in wanted else None)

    async def sort(
        self,
        criteria: str | Sequence[str] = ("DATE",),
        search: Q | str = "ALL",
        charset: str = "UTF-8",
        *,
        uid: bool = False,
    ) -> builtins.list[int]:
        """SORT (RFC 5256): the messages matching ``search``, ordered by ``criteria``.

        ``criteria`` are sort keys, most significant first, each optionally preceded by
        ``"REVERSE"``: ``["REVERSE", "DATE"]`` or ``"REVERSE DATE SUBJECT"`` (ARRIVAL, CC,
        DATE, FROM, SIZE, SUBJECT, TO; DISPLAYFROM, DISPLAYTO with SORT=DISPLAY).
        """
        if not self.has_capability("SORT"):
            raise LocalProtocolError("the server does not offer SORT")
        keys = tuple(criteria.split()) if isinstance(criteria, str) else tuple(criteria)
        args, _ = self._criteria(search, charset)
        pending = await self._command(c.Sort(keys, args, charset, uid=uid))
        numbers: list[int] = []
        for event in pending.events:
            if isinstance(event, Sort):
                numbers.extend(event.numbers)
        return numbers

    async def thread(
        self,
        algorithm: str = "REFERENCES",
        search: Q | str = "ALL",
        charset: str = "UTF-8",
        *,
        uid: bool = False,
    ) -> builtins.list[ThreadNode]:
        """THREAD (RFC 5256): the messages matching ``search`` grouped into threads by
        ``algorithm`` (``"REFERENCES"``, ``"ORDEREDSUBJECT"``, ``"REFS"`` as offered).

        Each :class:`~trio_mailoauth.imap.events.ThreadNode` holds a chain of messages (each
        the parent of the next) and the branches after it; iterate one for all its
        messages.
        """
        algorithm = algorithm.upper()
        if not self.has_capability(f"THREAD={algorithm}"):
            raise LocalProtocolError(f"the server does not offer THREAD={algorithm[:40]}")
        args, _ = self._criteria(search, charset)
        pending = await self._command(c.Thread(algorithm, args, charset, uid=uid))
        threads: list[ThreadNode] = []
        for event in pending.events:
            if isinstance(event, Thread):
                threads.extend(event.threads)
        return threads

    def fetch(
        self,
        messages: str | int | Iterable[int],
        items: str | Sequence[str] = ("UID", "FLAGS", "BODY.PEEK[]"),
        *,
        uid: bool = False,
        changedsince: int | None = None,
        vanished: bool = False,
    ) -> FetchStream:
        """FETCH, streamed: ``async for message in imap.fetch("1:*", ["UID", "BODY.PEEK[]"])``.

        Yields one :class:`~trio_mailoauth.imap.message.Fetch` per message as it arrives;
        memory is bounded by the largest message, not the mailbox. Other tasks' commands
        wait for the FETCH (reading ahead into a bounded buffer while this task is not in
        the loop: see FetchInterruptedError). Leave early with ``aclose()`` (or ``async
        with``). Flag changes the server sends meanwhile go to the event queue, not to the
        stream (``commands.Fetch.answered_by``). ``changedsince``
        (CONDSTORE) fetches only messages changed since that mod-sequence; with ``vanished``
        (QRESYNC, UID FETCH) the server's ``Vanished`` report goes to the event queue
        (:meth:`drain_events`).
        """
        command = c.Fetch(
            c.sequence_set(messages),
            _items(items),
            changedsince,
            vanished,
            uid=uid,
        )
        command.arguments()  # validate now: a bad item raises here, not mid-iteration
        return FetchStream(self, command)

    async def store(
        self,
        messages: str | int | Iterable[int],
        flags: Iterable[str],
        action: Literal["+", "-", ""] = "+",
        *,
        uid: bool = False,
        silent: bool = False,
        unchangedsince: int | None = None,
    ) -> StoreResult:
        """STORE flags: add (``"+"``), remove (``"-"``) or replace (``""``) them."""
        command = c.Store(
            c.sequence_set(messages), action, tuple(flags), silent, unchangedsince, uid=uid
        )
        pending = await self._command(command)
        assert pending.response is not None
        modified = pending.response.code_data if pending.response.code == "MODIFIED" else None
        fetches = tuple(event for event in pending.events if isinstance(event, Fetch))
        return StoreResult(fetches, modified)

    async def copy(
        self, messages: str | int | Iterable[int], mailbox: str, *, uid: bool = False
    ) -> CopyUID | None:
        """COPY messages to ``mailbox``; where they went (UIDPLUS) when the server says."""
        pending = await self._command(c.Copy(c.sequence_set(messages), mailbox, uid=uid))
        assert pending.response is not None
        return CopyUID.from_code(pending.response.code, pending.response.code_data)

    async def move(
        self, messages: str | int | Iterable[int], mailbox: str, *, uid: bool = False
    ) -> CopyUID | None:
        """MOVE messages to ``mailbox`` (RFC 6851).

        Without MOVE: COPY, then STORE ``+FLAGS.SILENT (\\Deleted)`` and ``UID EXPUNGE`` of
        exactly those messages (UIDPLUS), never a plain EXPUNGE that would also remove
        other messages marked \\Deleted.
        """
        sequence = c.sequence_set(messages)
        if self.has_capability("MOVE"):
            pending = await self._command(c.Move(sequence, mailbox, uid=uid))
            assert pending.response is not None
            code, data = pending.response.code, pending.response.code_data
            # Dovecot and others send COPYUID untagged, before the EXPUNGEs: the MOVE
            # collects untagged status responses; any other (an ALERT) goes to the queue.
            for event in pending.events:
                if isinstance(event, StatusResponse) and event.code == "COPYUID":
                    if code != "COPYUID":
                        code, data = "COPYUID", event.code_data
                else:
                    self._keep(event)
            return CopyUID.from_code(code, data)
        if not self.has_capability("UIDPLUS"):
            raise LocalProtocolError(
                "the server offers neither MOVE nor UIDPLUS: a move could expunge other "
                "messages marked \\Deleted"
            )
        if not uid:  # name the messages by UID first: the expunge must hit only them
            sequence = c.sequence_set(await self.search(Q.messages(sequence), uid=True) or [])
        result = await self.copy(sequence, mailbox, uid=True)
        await self.store(sequence, ["\\Deleted"], "+", uid=True, silent=True)
        await self.uid_expunge(sequence)
        return result

    async def expunge(self) -> None:
        """EXPUNGE: remove every \\Deleted message (the Expunge events are queued)."""
        await self._command(c.Expunge())

    async def uid_expunge(self, uids: str | int | Iterable[int]) -> None:
        """UID EXPUNGE (UIDPLUS): remove only these \\Deleted messages."""
        await self._command(c.UIDExpunge(c.sequence_set(uids)))

    async def append(
        self,
        mailbox: str,
        message: bytes,
        *,
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
    ) -> AppendUID | None:
        """APPEND a message (bytes with CRLF line ends); its UID when the server says."""
        pending = await self._command(c.Append(mailbox, message, tuple(flags), internal_date))
        assert pending.response is not None
        return AppendUID.from_response(pending.response)

    def idle(self, *, refresh_after: float = IDLE_REFRESH_SECONDS) -> IdleSession:
        """IDLE: ``async with imap.idle() as events: async for event in events: ...``.

        Yields the unsolicited events (queued ones first): Exists, Expunge, Fetch,
        Vanished, ... (an Overflow if some were dropped) and a final Bye when the server
        ends the session (the client is then broken). DONE is sent on exit or cancellation;
        IDLE is re-issued every ``refresh_after`` seconds (servers drop it after ~30
        minutes). A command from any task ends the IDLE (DONE) and runs; the next iteration
        issues IDLE again once no command waits. A tagged NO/BAD ending the IDLE raises
        IMAPResponseError and leaves the connection usable.
        """
        return IdleSession(self, refresh_after)

    # --- session -------------------------------------------------------------------------------

    async def id(self, fields: Mapping[str, str] | None = None) -> dict[str, str | None] | None:
        """ID (RFC 2971): tell the server who we are; what it says about itself."""
        pending = await self._command(c.Id(fields))
        for event in pending.events:
            if isinstance(event, IdResponse):
                return None if event.fields is None else dict(event.fields)
        return None

    async def enable(self, *capabilities: str) -> frozenset[str]:
        """ENABLE extensions (CONDSTORE, QRESYNC, UTF8=ACCEPT); those the server enabled."""
        pending = await self._command(c.Enable(tuple(name.upper() for name in capabilities)))
        enabled: set[str] = set()
        for event in pending.events:
            if isinstance(event, Enabled):
                enabled |= event.capabilities
        return frozenset(enabled)

    async def get_quota(self, root: str = "") -> Quota:
        """GETQUOTA (RFC 9208): ``quota.resources["STORAGE"] == (used_kib, limit_kib)``."""
        self._check_quota()
        pending = await self._command(c.GetQuota(root))
        for event in pending.events:
            if isinstance(event, Quota):
                return event
        raise RemoteProtocolError("GETQUOTA completed without a QUOTA response")

    async def get_quota_root(self, mailbox: str = "INBOX") -> QuotaRoots:
        """GETQUOTAROOT (RFC 9208): the quota roots of ``mailbox`` and their resources."""
        self._check_quota()
        pending = await self._command(c.GetQuotaRoot(mailbox))
        roots: tuple[str, ...] = ()
        quotas: dict[str, Quota] = {}
        for event in pending.events:
            if isinstance(event, QuotaRoot):
                roots += event.roots
            elif isinstance(event, Quota):
                quotas[event.root] = event
        return QuotaRoots(mailbox, roots, quotas)

    def _check_quota(self) -> None:
        if not any(name.startswith("QUOTA") for name in self.capabilities):
            raise LocalProtocolError("the server does not offer QUOTA")

    async def namespace(self) -> Namespace:
        """NAMESPACE (RFC 2342): the personal, other users' and shared prefixes."""
        pending = await self._command(c.Namespace())
        for event in pending.events:
            if isinstance(event, Namespace):
                return event
        raise RemoteProtocolError("NAMESPACE completed without a NAMESPACE response")


def _esearch_from(numbers: builtins.list[int], uid: bool, wanted: tuple[str, ...]) -> ESearch:
    """What an ESEARCH with RETURN ``wanted`` would have said about ``numbers``."""
    return ESearch(
        None,
        uid,
        min=min(numbers) if numbers and "MIN" in wanted else None,
        max=max(numbers) if numbers and "MAX" in wanted else None,
        count=len(numbers) if "COUNT" in wanted else None,
        all=c.sequence_set(numbers) if numbers and "ALL" in wanted else None,
    )


def open_imap(
    host: str,
    port: int | None = None,
    *,
    tls: TLSMode = "implicit",
    ssl_context: ssl.SSLContext | None = None,
    auth: SASLMechanism | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    allow_insecure: bool = False,
    source_address: str | None = None,
) -> Opener[IMAPClient]:
    """Connect to an IMAP server: ``async with open_imap(...) as imap`` or ``await open_imap(...)``.

    Default ports: 993 with implicit TLS, 143 with STARTTLS or without TLS. With ``auth``,
    authenticates before returning (retrying once with a fresh token if it was rejected).
    """

    async def open_() -> IMAPClient:
        return await open_client(
            IMAPClient,
            host,
            port,
            tls=tls,
            ssl_context=ssl_context,
            auth=auth,
            connect_timeout=connect_timeout,
            allow_insecure=allow_insecure,
            source_address=source_address,
        )

    return Opener(open_)
