"""The async POP3 client: a thin I/O loop over :class:`POP3Connection`.

    async with open_pop3("pop.example.com", auth=XOAuth2(user, tokens)) as pop:
        await pop.noop()

A ``-ERR`` is a :class:`POP3ResponseError` (``.code`` is the RFC 2449 response code) and the
connection stays usable; a refused login is an :class:`AuthenticationError`. Anything that
interrupts a round trip breaks the connection (see :mod:`trio_mailoauth._client`).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import ClassVar

from trio_mailoauth._client import DEFAULT_CONNECT_TIMEOUT, BaseClient, ClientState, Opener
from trio_mailoauth._client import open_client as _open_client
from trio_mailoauth._sansio import SASLChallenge
from trio_mailoauth.errors import (
    AuthenticationError,
    LocalProtocolError,
    POP3ResponseError,
    RemoteProtocolError,
    TLSError,
)
from trio_mailoauth.pop3._connection import POP3Connection
from trio_mailoauth.pop3._events import (
    Authenticate,
    Capa,
    Command,
    ErrResponse,
    Greeting,
    MultilineResponse,
    Noop,
    OkResponse,
    Pass,
    Quit,
    Stls,
    User,
)
from trio_mailoauth.pop3._state import State
from trio_mailoauth.sasl import SASLFlow, SASLMechanism, classify_failure
from trio_mailoauth.transport import Stream, TLSMode

__all__ = ["POP3Client", "open_pop3"]

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

    async def _command(self, command: Command) -> OkResponse | MultilineResponse | ErrResponse:
        """Send one command and read its reply (the caller holds the round trip)."""
        self._conn.send(command)
        event = await self._next_event()
        if isinstance(event, OkResponse | MultilineResponse | ErrResponse):
            return event
        raise RemoteProtocolError(f"unexpected {type(event).__name__} in reply to {command}")

    async def _simple(self, command: Command) -> OkResponse | MultilineResponse:
        async with self._round_trip():
            reply = await self._command(command)
        if isinstance(reply, ErrResponse):
            raise POP3ResponseError(reply.text, reply.code)
        return reply

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

    # --- commands -------------------------------------------------------------------------

    async def capa(self) -> Mapping[str, tuple[str, ...]]:
        """Ask for the capabilities again; also updates :attr:`capabilities`."""
        await self._simple(Capa())
        return self._conn.capabilities

    async def noop(self) -> None:
        """NOOP: keeps the session alive (TRANSACTION state only)."""
        await self._simple(Noop())

    async def user_pass(self, user: str, password: str) -> None:
        """Log in with USER and PASS. A refusal raises AuthenticationError (mechanism "USER")."""
        self._ensure_usable()
        self._check_can_send_secrets()
        for command in (User(user), Pass(password)):
            async with self._round_trip():
                reply = await self._command(command)
            if isinstance(reply, ErrResponse):
                temporary = _code_class(reply.code) in _TEMPORARY_CODES
                raise AuthenticationError(
                    reply.text,
                    mechanism="USER",
                    kind="temporary" if temporary else "permanent",
                    response=POP3ResponseError(reply.text, reply.code),
                )

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
            POP3Client.default_ports,
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
