"""The async POP3 client: a thin I/O loop over :class:`POP3Connection`.

    async with open_pop3("pop.example.com", auth=XOAuth2(user, tokens)) as pop:
        count, size = await pop.stat()
        for number, uid in await pop.uidl():
            data = await pop.retr(number)

Retrieval streams: :meth:`POP3Client.retr_to` writes a message of any size to a sink in
network-sized chunks; :meth:`POP3Client.retrieve` and :meth:`POP3Client.fetch_new` pipeline
RETR (and DELE) commands when the server offers PIPELINING.

A ``-ERR`` is a :class:`POP3ResponseError` (``.code`` is the RFC 2449 response code) and the
connection stays usable; a refused login is an :class:`AuthenticationError`. Anything that
interrupts a round trip breaks the connection (see :mod:`trio_mailoauth._client`).
"""

from __future__ import annotations

import builtins
import inspect
import ssl
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Container,
    Iterable,
    Mapping,
)
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, ClassVar, Protocol, overload

from trio_mailoauth._client import DEFAULT_CONNECT_TIMEOUT, BaseClient, ClientState, Opener
from trio_mailoauth._client import open_client as _open_client
from trio_mailoauth._sansio import NEED_DATA, SASLChallenge
from trio_mailoauth.errors import (
    AuthenticationError,
    LocalProtocolError,
    POP3ResponseError,
    RemoteProtocolError,
    TLSError,
)
from trio_mailoauth.pop3._connection import POP3Connection
from trio_mailoauth.pop3._events import (
    Apop,
    Authenticate,
    Capa,
    Command,
    Dele,
    ErrResponse,
    Event,
    Greeting,
    List,
    MessageData,
    MessageEnd,
    MessageStart,
    Noop,
    OkResponse,
    Pass,
    Quit,
    Retr,
    Rset,
    ScanListing,
    Stat,
    StatResponse,
    Stls,
    Top,
    Uidl,
    UidListing,
    User,
)
from trio_mailoauth.pop3._state import State
from trio_mailoauth.sasl import SASLFlow, SASLMechanism, classify_failure
from trio_mailoauth.transport import Stream, TLSMode

__all__ = ["MessageSink", "POP3Client", "open_pop3"]

# Commands kept in flight by retrieve()/fetch_new() when the server offers PIPELINING. Replies
# wait in the kernel's socket buffers, not in our memory, so the window costs nothing but
# keeps the server busy while we process a message. 32 RETRs are ~400 octets of commands:
# far below any socket buffer, so sending them never blocks on a server that is writing.
PIPELINE_WINDOW = 32


class MessageSink(Protocol):
    """Where :meth:`POP3Client.retr_to` writes: a binary file, ``io.BytesIO``, an anyio
    ``AsyncFile``... anything with ``write(bytes)``, sync or async."""

    def write(self, data: bytes, /) -> Any: ...


# RFC 2449 response codes after which the same credentials may work later: the auth backend
# is down (SYS/TEMP), the mailbox is locked by another session (IN-USE), or the server
# wants a pause between logins (LOGIN-DELAY). SYS/PERM is never worth a retry.
_TEMPORARY_CODES = frozenset({"SYS/TEMP", "IN-USE", "LOGIN-DELAY"})
_PERMANENT_CODES = frozenset({"SYS/PERM"})


def _code_class(code: str | None) -> str | None:
    # "SYS/TEMP/EXTRA" still belongs to SYS/TEMP (RFC 2449 §8: hierarchical codes).
    if code is None:
        return None
    for known in (*_TEMPORARY_CODES, *_PERMANENT_CODES):
        if code == known or code.startswith(known + "/"):
            return known
    return code


class POP3Client(BaseClient[POP3Connection]):
    """An open POP3 session. Get one from :func:`open_pop3`."""

    protocol: ClassVar[str] = "pop3"
    default_ports: ClassVar[dict[TLSMode, int]] = {"implicit": 995, "starttls": 110, "none": 110}

    def __init__(
        self, stream: Stream, *, host: str, port: int, allow_insecure: bool = False
    ) -> None:
        super().__init__(
            stream,
            lambda trace: POP3Connection(trace=trace),
            host=host,
            port=port,
            allow_insecure=allow_insecure,
        )
        self.greeting: str = ""

    # --- what we know about the server ----------------------------------------------------

    @property
    def capabilities(self) -> Mapping[str, tuple[str, ...]]:
        """The server's CAPA answer: ``{"SASL": ("PLAIN", "XOAUTH2"), "TOP": (), ...}``."""
        return self._conn.capabilities

    @property
    def sasl_mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms the server offers now (empty if it did not say)."""
        return self._conn.capabilities.get("SASL", ())

    @property
    def authenticated(self) -> bool:
        return self._conn.state is State.TRANSACTION

    # --- the round trip -------------------------------------------------------------------

    async def _command(self, command: Command) -> Event:
        """Send one command and read its reply (the caller holds the round trip)."""
        self._conn.send(command)
        event: Event = await self._next_event()
        if isinstance(event, MessageStart | MessageData | MessageEnd):
            raise RemoteProtocolError(f"unexpected {type(event).__name__} in reply to {command}")
        return event

    async def _simple(self, command: Command) -> Event:
        async with self._round_trip():
            reply = await self._command(command)
        if isinstance(reply, ErrResponse):
            raise POP3ResponseError(reply.text, reply.code)
        return reply

    async def _read_message(self, keyword: str, write: Callable[[bytes], Any]) -> int | ErrResponse:
        """Read one RETR/TOP answer, handing each chunk to ``write``; the size or the -ERR."""
        event = await self._next_event()
        if isinstance(event, ErrResponse):
            return event
        if not isinstance(event, MessageStart):
            raise RemoteProtocolError(f"unexpected {type(event).__name__} in reply to {keyword}")
        conn = self._conn
        while True:
            # The hot path of retrieval: take the events already buffered straight from the
            # core; only go through the I/O loop (flush, receive) when it needs data.
            event = conn.next_event()
            if event is NEED_DATA:
                event = await self._next_event()
            if type(event) is MessageData:
                try:
                    result = write(event.data)
                    if inspect.isawaitable(result):
                        await result
                except BaseException as exc:
                    # The rest of the message is unread: the connection is out of step,
                    # whatever the sink raised (a round trip lets our own refusals and
                    # LocalProtocolError through without breaking it).
                    await self._break(exc)
                    raise
            elif type(event) is MessageEnd:
                return event.size
            else:  # pragma: no cover - the core emits nothing else inside a message
                raise RemoteProtocolError(f"unexpected {type(event).__name__} in a message")

    async def _message(self, command: Retr | Top, write: Callable[[bytes], Any]) -> int:
        async with self._round_trip():
            self._conn.send(command)
            result = await self._read_message(command.keyword, write)
        if isinstance(result, ErrResponse):
            raise POP3ResponseError(result.text, result.code)
        return result

    # --- opening and closing --------------------------------------------------------------

    async def _start(self, starttls: bool, ssl_context: ssl.SSLContext) -> None:
        async with self._round_trip():
            event = await self._next_event()
        if isinstance(event, ErrResponse):
            raise POP3ResponseError(event.text, event.code)
        if not isinstance(event, Greeting):  # pragma: no cover - the core emits nothing else
            raise RemoteProtocolError(f"expected a greeting, got {type(event).__name__}")
        self.greeting = event.text
        await self._read_capabilities()
        if not starttls:
            return
        if "STLS" not in self._conn.capabilities:
            # No silent fallback to plaintext: nothing but CAPA was sent.
            raise TLSError(
                f"{self.host}:{self.port} does not offer STLS; refusing to continue in plaintext"
            )
        async with self._round_trip():
            reply = await self._command(Stls())
            if isinstance(reply, ErrResponse):
                raise TLSError(f"the server refused STLS: {reply.text}")
            await self._upgrade_to_tls(ssl_context)
            self._conn.tls_established()
        await self._read_capabilities()

    async def _read_capabilities(self) -> None:
        """CAPA; a server without it (RFC 1939 only) answers -ERR and has no capabilities."""
        try:
            await self.capa()
        except POP3ResponseError as exc:
            self._logger.debug("%s:%d CAPA refused: %s", self.host, self.port, exc)

    async def _goodbye(self) -> None:
        if self._conn.can_send(Quit.keyword):
            self._conn.send(Quit())
            await self._next_event()

    async def quit(self) -> None:
        """QUIT (in TRANSACTION state the server now deletes marked messages), then close.

        A ``-ERR`` (some deletions failed) is raised as POP3ResponseError after closing.
        """
        async with self._round_trip():
            reply = await self._command(Quit())
            self._state = ClientState.CLOSED
            await self._stream.aclose()
        if isinstance(reply, ErrResponse):
            raise POP3ResponseError(reply.text, reply.code)

    async def abort(self) -> None:
        """Close without QUIT: the server deletes nothing this session marked (RFC 1939 §6)."""
        if self._state is ClientState.CLOSED:
            return
        self._state = ClientState.CLOSED
        await self._stream.aclose()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # QUIT commits deletions. Leaving the block because of an exception is no confirmation
        # that the messages marked for deletion were stored: end the session without it.
        if exc is not None:
            await self.abort()
        else:
            await self.aclose()

    # --- commands -------------------------------------------------------------------------

    async def capa(self) -> Mapping[str, tuple[str, ...]]:
        """Ask for the capabilities again; also updates :attr:`capabilities`."""
        await self._simple(Capa())
        return self._conn.capabilities

    async def noop(self) -> None:
        """NOOP: keeps the session alive (TRANSACTION state only)."""
        await self._simple(Noop())

    @property
    def pipelining(self) -> bool:
        """Does the server take several commands in flight (RFC 2449 PIPELINING)?"""
        return self._conn.pipelining

    @property
    def max_message_size(self) -> int:
        """RETR/TOP answers longer than this break the connection (RemoteProtocolError).

        Bounds what a broken or hostile server can make ``retr()`` hold or a sink receive.
        """
        return self._conn.max_message_size

    @max_message_size.setter
    def max_message_size(self, value: int) -> None:
        self._conn.max_message_size = value

    async def stat(self) -> tuple[int, int]:
        """STAT: ``(message count, total size in octets)``, deleted messages excluded."""
        reply = await self._simple(Stat())
        if not isinstance(reply, StatResponse):
            raise RemoteProtocolError(f"unexpected {type(reply).__name__} in reply to STAT")
        return reply.count, reply.size

    @overload
    async def list(self) -> builtins.list[tuple[int, int]]: ...
    @overload
    async def list(self, number: int) -> int: ...
    async def list(self, number: int | None = None) -> builtins.list[tuple[int, int]] | int:
        """LIST: ``[(number, size), ...]`` for every message, or the size of ``number``."""
        reply = await self._simple(List(number))
        if not isinstance(reply, ScanListing):
            raise RemoteProtocolError(f"unexpected {type(reply).__name__} in reply to LIST")
        if number is None:
            return builtins.list(reply.entries)
        return reply.entries[0][1]

    @overload
    async def uidl(self) -> builtins.list[tuple[int, str]]: ...
    @overload
    async def uidl(self, number: int) -> str: ...
    async def uidl(self, number: int | None = None) -> builtins.list[tuple[int, str]] | str:
        """UIDL: ``[(number, unique id), ...]`` for every message, or the id of ``number``."""
        reply = await self._simple(Uidl(number))
        if not isinstance(reply, UidListing):
            raise RemoteProtocolError(f"unexpected {type(reply).__name__} in reply to UIDL")
        if number is None:
            return builtins.list(reply.entries)
        return reply.entries[0][1]

    async def retr(self, number: int) -> bytes:
        """RETR: the whole message in memory, dot-unstuffed, with CRLF line endings."""
        chunks: builtins.list[bytes] = []
        await self._message(Retr(number), chunks.append)
        return b"".join(chunks)

    async def retr_to(self, number: int, sink: MessageSink) -> int:
        """RETR into ``sink`` (sync or async ``write``) chunk by chunk; the octets written.

        Memory stays bounded whatever the message size. If ``sink.write`` raises, the rest of
        the message is unread: the connection is broken (ConnectionBrokenError afterwards).
        """
        return await self._message(Retr(number), sink.write)

    async def top(self, number: int, lines: int = 0) -> bytes:
        """TOP: the header, the blank line and the first ``lines`` lines of the body."""
        chunks: builtins.list[bytes] = []
        await self._message(Top(number, lines), chunks.append)
        return b"".join(chunks)

    async def dele(self, number: int) -> None:
        """DELE: mark ``number`` deleted. Only QUIT deletes: :meth:`quit`, :meth:`aclose`, or
        leaving ``async with`` normally. Leaving it because of an exception, or a broken
        session (connection lost, cancelled, a protocol error), deletes nothing."""
        await self._simple(Dele(number))

    async def rset(self) -> None:
        """RSET: unmark every message marked deleted in this session."""
        await self._simple(Rset())

    @asynccontextmanager
    async def retrieve(
        self, numbers: Iterable[int], *, delete: bool = False
    ) -> AsyncIterator[AsyncIterator[tuple[int, bytes]]]:
        """Retrieve several messages, pipelined when the server offers PIPELINING::

            async with pop.retrieve(range(1, count + 1)) as messages:
                async for number, data in messages:
                    store(number, data)

        With ``delete=True`` a message is marked deleted (DELE, pipelined with the next
        RETRs) only once the loop asks for the *next* message or ends normally: that is the
        caller's confirmation that it stored the message. A message whose loop body raised
        or broke out is not deleted. Nothing is deleted before :meth:`quit`.

        The connection is held for the whole block. Leaving early reads and discards the
        few answers in flight; the connection stays usable. A ``-ERR`` to RETR or DELE ends
        the loop with POP3ResponseError (connection still usable).
        """
        failure: Exception | None = None
        async with self._round_trip():
            in_flight: deque[Command] = deque()
            messages = self._pipeline(iter(numbers), in_flight, delete)
            try:
                yield messages
            except Exception as exc:  # from the caller's loop body (or a -ERR): not ours
                failure = exc
            finally:
                await messages.aclose()
            # Answers to commands already sent are read and dropped, to leave the
            # connection in step with the server.
            while in_flight:
                command = in_flight.popleft()
                if isinstance(command, Retr):
                    await self._read_message(command.keyword, _discard)
                else:
                    await self._next_event()
        if failure is not None:
            raise failure

    async def _pipeline(
        self, numbers: Iterable[int], in_flight: deque[Command], delete: bool
    ) -> AsyncGenerator[tuple[int, bytes]]:
        todo = iter(numbers)
        confirmed: int | None = None
        window = PIPELINE_WINDOW if self._conn.pipelining else 1
        exhausted = False
        while True:
            # The previous message is confirmed (the caller came back for more): DELE it
            # first, then top up the window with RETRs.
            # Each command joins in_flight only once the core took it: retrieve() reads an
            # answer for everything in in_flight, and waiting for one never sent would hang.
            if confirmed is not None and len(in_flight) < window:
                dele = Dele(confirmed)
                self._conn.send(dele)
                in_flight.append(dele)
                confirmed = None
            # Top up from half empty to full: one write carries many commands.
            if len(in_flight) <= window // 2:
                while not exhausted and len(in_flight) < window:
                    number = next(todo, None)
                    if number is None:
                        exhausted = True
                        break
                    retr = Retr(number)
                    self._conn.send(retr)
                    in_flight.append(retr)
            if not in_flight:  # a confirmed DELE would have gone out above
                return
            command = in_flight[0]
            if isinstance(command, Retr):
                chunks: builtins.list[bytes] = []
                result = await self._read_message(command.keyword, chunks.append)
                in_flight.popleft()
                if isinstance(result, ErrResponse):
                    raise POP3ResponseError(result.text, result.code)
                yield command.number, b"".join(chunks)
                if delete:
                    confirmed = command.number
            else:
                reply = await self._next_event()
                in_flight.popleft()
                if isinstance(reply, ErrResponse):
                    raise POP3ResponseError(reply.text, reply.code)

    @asynccontextmanager
    async def fetch_new(
        self, seen_uids: Container[str], *, delete: bool = False
    ) -> AsyncIterator[AsyncIterator[tuple[str, bytes]]]:
        """Download every message whose UIDL is not in ``seen_uids``, as ``(uid, data)``::

            async with pop.fetch_new(known, delete=True) as messages:
                async for uid, data in messages:
                    save(uid, data)          # must succeed before the next message is asked
                    known.add(uid)
            await pop.quit()                 # commits the deletions

        Deletion (``delete=True``) follows :meth:`retrieve`'s rule: a message is marked
        deleted only after the caller asks for the next one (or the loop ends normally),
        and only QUIT commits. Pipelined when the server offers PIPELINING.
        """
        listing = await self.uidl()
        wanted = [(number, uid) for number, uid in listing if uid not in seen_uids]
        uids = dict(wanted)

        async def by_uid(
            messages: AsyncIterator[tuple[int, bytes]],
        ) -> AsyncGenerator[tuple[str, bytes]]:
            async for number, data in messages:
                yield uids[number], data

        async with self.retrieve([number for number, _ in wanted], delete=delete) as messages:
            wrapped = by_uid(messages)
            try:
                yield wrapped
            finally:
                await wrapped.aclose()

    async def apop(self, user: str, secret: str) -> None:
        """Log in with APOP (RFC 1939 §7): MD5 of the greeting's timestamp and ``secret``.

        LocalProtocolError if the greeting carried no timestamp (the server does not do
        APOP); a refusal raises AuthenticationError (mechanism "APOP"). MD5 is weak: like
        every login here, APOP is refused without TLS.
        """
        self._ensure_usable()
        self._check_can_send_secrets()
        async with self._round_trip():
            reply = await self._command(Apop(user, secret))
        if isinstance(reply, ErrResponse):
            self._raise_login_refused(reply, "APOP")

    def _raise_login_refused(self, reply: ErrResponse, mechanism: str) -> None:
        temporary = _code_class(reply.code) in _TEMPORARY_CODES
        raise AuthenticationError(
            reply.text,
            mechanism=mechanism,
            kind="temporary" if temporary else "permanent",
            response=POP3ResponseError(reply.text, reply.code),
        )

    async def user_pass(self, user: str, password: str) -> None:
        """Log in with USER and PASS. A refusal raises AuthenticationError (mechanism "USER")."""
        self._ensure_usable()
        self._check_can_send_secrets()
        for command in (User(user), Pass(password)):
            async with self._round_trip():
                reply = await self._command(command)
            if isinstance(reply, ErrResponse):
                self._raise_login_refused(reply, "USER")

    async def _sasl_exchange(self, flow: SASLFlow) -> None:
        # Always the two-step form: "AUTH XOAUTH2", "+ ", then the response on its own line.
        # The 255-octet command-line limit leaves no room for a token on the AUTH line, and
        # Microsoft rejects one there anyway.
        async with self._round_trip():
            self._conn.send(Authenticate(flow.mechanism))
            while True:
                event = await self._next_event()
                if isinstance(event, SASLChallenge):
                    self._conn.send_sasl_response(flow.respond(event.data))
                    continue
                break
        if isinstance(event, OkResponse):
            return
        if not isinstance(event, ErrResponse):  # pragma: no cover - the core emits nothing else
            raise RemoteProtocolError(f"unexpected {type(event).__name__} in reply to AUTH")
        code = _code_class(event.code)
        kind = classify_failure(
            flow, temporary=code in _TEMPORARY_CODES, permanent=code in _PERMANENT_CODES
        )
        raise AuthenticationError(
            event.text,
            mechanism=flow.mechanism,
            kind=kind,
            detail=flow.error_detail,
            response=POP3ResponseError(event.text, event.code),
        )

    async def authenticate(self, mechanism: SASLMechanism) -> None:
        """Authenticate with SASL (XOAuth2, OAuthBearer, Plain, Login); see BaseClient."""
        self._ensure_usable()
        if self._conn.state is not State.AUTHORIZATION:
            raise LocalProtocolError(f"cannot authenticate in state {self._conn.state.value}")
        await super().authenticate(mechanism)


def _discard(data: bytes) -> None:
    """A sink for the answers nobody wants any more."""


def open_pop3(
    host: str,
    port: int | None = None,
    *,
    tls: TLSMode = "implicit",
    ssl_context: ssl.SSLContext | None = None,
    auth: SASLMechanism | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    allow_insecure: bool = False,
    source_address: str | None = None,
) -> Opener[POP3Client]:
    """Connect to a POP3 server; use as ``async with open_pop3(...) as pop`` or ``await``.

    Default ports: 995 for implicit TLS, 110 for ``tls="starttls"`` and ``tls="none"``.
    ``tls="starttls"`` fails (TLSError) if the server does not offer STLS. A ``-ERR``
    greeting raises POP3ResponseError. With ``auth``, the session is authenticated (one
    retry with a fresh token if the server rejects the first).
    """
    return Opener(
        lambda: _open_client(
            POP3Client,
            host,
            port,
            tls=tls,
            ssl_context=ssl_context,
            auth=auth,
            connect_timeout=connect_timeout,
            allow_insecure=allow_insecure,
            source_address=source_address,
        )
    )
