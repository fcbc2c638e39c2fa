"""What the async IMAP, SMTP and POP3 clients share: the I/O loop, the three connection
states, graceful and forceful closing, opening (connect, greeting, STARTTLS) and the
authentication driver that retries once with a fresh token.

A client is OK, BROKEN or CLOSED. A refusal from the server (NO, BAD, 4xx, 5xx, -ERR) is a
completed round trip: a typed error, and the connection stays OK. Anything that interrupts a
round trip midway (cancellation, a transport error, a protocol error) leaves the stream in an
unknown place: the connection becomes BROKEN, is closed at once, and every later use raises
:class:`ConnectionBrokenError` instead of reading a reply meant for someone else.
"""

from __future__ import annotations

import enum
import logging
import ssl
from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

import anyio

from trio_mailoauth._sansio import NEED_DATA, ConnectionClosed, NeedData, TraceHook
from trio_mailoauth.errors import (
    AuthenticationError,
    ConnectError,
    ConnectionBrokenError,
    ConnectionClosedError,
    LocalProtocolError,
    ResponseError,
)
from trio_mailoauth.sasl import SASLFlow, SASLMechanism
from trio_mailoauth.transport import Stream, TLSMode, connect, create_ssl_context, is_loopback

__all__ = ["BaseClient", "ClientState", "Opener", "open_client"]

# aclose() says goodbye (LOGOUT, QUIT) for at most this long before closing forcefully:
# a server that does not answer a goodbye in 5 s will not answer it at all.
GOODBYE_SECONDS = 5.0

# Default bound on connect + TLS handshake + greeting (+ STARTTLS): long enough for a slow
# server across the world, short enough that a dead one does not stall a poller.
DEFAULT_CONNECT_TIMEOUT = 30.0


class SansIOConnection(Protocol):
    """The part of a protocol core the I/O loop drives."""

    def receive_data(self, data: bytes) -> None: ...
    def next_event(self) -> Any: ...
    def data_to_send(self) -> bytes: ...
    def send_failed(self) -> None: ...


ConnT = TypeVar("ConnT", bound=SansIOConnection)
ClientT = TypeVar("ClientT", bound="BaseClient[Any]")


class ClientState(enum.Enum):
    OK = "ok"
    BROKEN = "broken"
    CLOSED = "closed"


class BaseClient(Generic[ConnT]):
    """The I/O loop over one protocol core. Subclasses add the protocol's commands."""

    protocol: ClassVar[str]
    default_ports: ClassVar[dict[TLSMode, int]]

    def __init__(
        self,
        stream: Stream,
        make_connection: Callable[[TraceHook | None], ConnT],
        *,
        host: str,
        port: int,
        allow_insecure: bool = False,
    ) -> None:
        self._stream = stream
        self.host = host
        self.port = port
        self._allow_insecure = allow_insecure
        self._state = ClientState.OK
        self._broken_by: str | None = None
        self._lock = anyio.Lock()
        # Holds nothing but this client, so one serves every round trip (no object per
        # command or message sent).
        self._round_trip_manager = _RoundTrip(self)
        self._logger = logging.getLogger(f"trio_mailoauth.{self.protocol}")
        # The core traces the conversation (secrets redacted) only when somebody listens:
        # formatting every line costs.
        tracing = self._logger.isEnabledFor(logging.DEBUG)
        self._conn = make_connection(self._trace if tracing else None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} {self._state.value}>"

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def is_tls(self) -> bool:
        return self._stream.is_tls

    def _trace(self, line: str) -> None:
        """Hook for the core: one redacted line of the conversation."""
        self._logger.debug("%s:%d %s", self.host, self.port, line)

    # --- the I/O loop -------------------------------------------------------------------

    async def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data:
            try:
                await self._stream.send_all(data)
            except BaseException:
                self._conn.send_failed()
                raise

    async def _next_event(self) -> Any:
        """Flush what the core wants sent, then read until it has a whole event."""
        while True:
            await self._flush()
            event = self._conn.next_event()
            if event is NEED_DATA or isinstance(event, NeedData):
                # next_event() may have queued bytes (a held SASL response released by the
                # server's challenge): they must go out before we wait for the answer.
                await self._flush()
                self._conn.receive_data(await self._stream.receive_some())
                continue
            if isinstance(event, ConnectionClosed):
                raise ConnectionBrokenError("the server closed the connection")
            return event

    def _ensure_usable(self) -> None:
        if self._state is ClientState.CLOSED:
            raise ConnectionClosedError(f"the {self.protocol.upper()} connection was closed")
        if self._state is ClientState.BROKEN:
            raise ConnectionBrokenError(
                f"the {self.protocol.upper()} connection is broken ({self._broken_by})"
            )

    def _round_trip(self) -> _RoundTrip:
        """One command and its complete reply, exclusive on this connection.

        A refusal passes through with the connection OK; anything else breaks it.
        """
        return self._round_trip_manager

    async def _break(self, exc: BaseException) -> None:
        if self._state is ClientState.OK:
            self._state = ClientState.BROKEN
            self._broken_by = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._logger.debug(
                "%s:%d connection broken by %s", self.host, self.port, self._broken_by
            )
        await self._stream.aclose_forcefully()

    # --- opening, STARTTLS, closing ---------------------------------------------------------

    async def _start(self, starttls: bool, ssl_context: ssl.SSLContext) -> None:
        """Read the greeting, upgrade with STARTTLS when asked, learn the capabilities."""
        raise NotImplementedError

    async def _goodbye(self) -> None:
        """Say LOGOUT/QUIT and read the answer (the lock is held)."""
        raise NotImplementedError

    async def _upgrade_to_tls(self, ssl_context: ssl.SSLContext) -> None:
        """Run the TLS handshake after the server's go-ahead to STARTTLS/STLS.

        The core has already checked that no byte arrived after the go-ahead (anything
        there would be a man-in-the-middle injection).
        """
        await self._stream.start_tls(ssl_context)

    async def aclose(self) -> None:
        """Close: LOGOUT/QUIT when the connection is idle and healthy, then close the stream.

        Always closes, even when cancelled or when the server does not answer.
        """
        if self._state is ClientState.CLOSED:
            return
        try:
            if self._state is ClientState.OK and not self._lock.locked():
                with anyio.move_on_after(GOODBYE_SECONDS):
                    async with self._lock:
                        await self._goodbye()
        except Exception as exc:  # a failed goodbye still closes
            self._logger.debug("%s:%d goodbye failed: %s", self.host, self.port, exc)
        finally:
            self._state = ClientState.CLOSED
            await self._stream.aclose_forcefully()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- authentication ---------------------------------------------------------------------

    def _check_can_send_secrets(self) -> None:
        if self._stream.is_tls:
            return
        if self._allow_insecure and is_loopback(self.host):
            return
        raise LocalProtocolError(
            "refusing to send credentials without TLS (use tls='implicit' or 'starttls'; "
            "plaintext is allowed only with allow_insecure=True to a loopback host)"
        )

    async def _sasl_exchange(self, flow: SASLFlow) -> None:
        """Run one SASL exchange; raise AuthenticationError when the server refuses."""
        raise NotImplementedError

    async def authenticate(self, mechanism: SASLMechanism) -> None:
        """Authenticate with a SASL mechanism (XOAuth2, OAuthBearer, Plain, Login).

        With a bearer mechanism whose token the server rejects, the token provider is told
        (``invalidate``) and the exchange is retried exactly once with a fresh token. A
        temporary or permanent failure is never retried.
        """
        self._ensure_usable()
        self._check_can_send_secrets()
        flow = await mechanism.start(self.host, self.port)
        try:
            await self._sasl_exchange(flow)
        except AuthenticationError as exc:
            provider = mechanism.provider
            if not exc.token_rejected or provider is None or flow.token is None:
                raise
            provider.invalidate(flow.token)
            retry = await mechanism.start(self.host, self.port)
            if retry.token == flow.token:
                raise  # the provider has nothing fresher (a static token)
            self._logger.debug("%s:%d token rejected; retrying once", self.host, self.port)
        else:
            return
        await self._sasl_exchange(retry)


class _RoundTrip:
    """``async with client._round_trip():`` — a class, not ``@asynccontextmanager``: it is
    entered for every command and every message sent, and a generator-based context manager
    costs more than the rest of a small command's bookkeeping."""

    __slots__ = ("_client",)

    def __init__(self, client: BaseClient[Any]) -> None:
        self._client = client

    async def __aenter__(self) -> None:
        client = self._client
        await client._lock.acquire()
        try:
            client._ensure_usable()
        except BaseException:
            client._lock.release()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client = self._client
        try:
            # A completed refusal, or a command refused before a byte was written, leaves
            # the connection OK; anything else interrupted the round trip midway.
            if exc is not None and not isinstance(exc, ResponseError | LocalProtocolError):
                await client._break(exc)
        finally:
            client._lock.release()


class Opener(Generic[ClientT]):
    """What ``open_imap`` & co. return: ``await`` it, or use it with ``async with``."""

    def __init__(self, open_: Callable[[], Awaitable[ClientT]]) -> None:
        self._open = open_
        self._client: ClientT | None = None

    def __await__(self) -> Generator[Any, None, ClientT]:
        return self._open().__await__()

    async def __aenter__(self) -> ClientT:
        self._client = await self._open()
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.__aexit__(exc_type, exc, tb)


async def open_client(
    client_cls: type[ClientT],
    host: str,
    port: int | None,
    *,
    tls: TLSMode,
    ssl_context: ssl.SSLContext | None,
    auth: SASLMechanism | None,
    connect_timeout: float,
    allow_insecure: bool,
    source_address: str | None,
    **client_options: Any,
) -> ClientT:
    """Connect, read the greeting, STARTTLS if asked, authenticate if asked.

    The port defaults to ``client_cls.default_ports[tls]``; ``client_options`` go to the
    client's constructor (SMTP's ``local_hostname``).
    """
    if tls not in ("implicit", "starttls", "none"):
        raise ValueError(f"tls must be 'implicit', 'starttls' or 'none', not {tls!r}")
    if tls == "none" and not allow_insecure:
        raise ValueError(
            "tls='none' sends everything in plaintext; pass allow_insecure=True to mean it "
            "(credentials still go only to a loopback host)"
        )
    port = client_cls.default_ports[tls] if port is None else port
    context = ssl_context if ssl_context is not None else create_ssl_context()
    try:
        with anyio.fail_after(connect_timeout):
            stream = await connect(
                host,
                port,
                tls=tls == "implicit",
                ssl_context=context,
                source_address=source_address,
            )
            try:
                client = client_cls(
                    stream, host=host, port=port, allow_insecure=allow_insecure, **client_options
                )
                await client._start(tls == "starttls", context)
            except BaseException:
                # Whatever failed (a constructor check, the greeting, STARTTLS), the stream
                # must not outlive it.
                await stream.aclose_forcefully()
                raise
    except TimeoutError as exc:
        raise ConnectError(f"no greeting from {host}:{port} within {connect_timeout} s") from exc
    if auth is not None:
        try:
            await client.authenticate(auth)
        except BaseException:
            await client.aclose()
            raise
    return client
