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

import ssl
from typing import ClassVar, Final

from trio_mailoauth._client import DEFAULT_CONNECT_TIMEOUT, BaseClient, Opener, open_client
from trio_mailoauth.errors import (
    AuthenticationError,
    AuthFailureKind,
    ConnectError,
    ConnectionBrokenError,
    IMAPResponseError,
    LocalProtocolError,
    RemoteProtocolError,
    SessionEndedError,
    TLSError,
)
from trio_mailoauth.imap._connection import IMAPConnection
from trio_mailoauth.imap._state import IMAPState
from trio_mailoauth.imap.commands import (
    Authenticate,
    Capability,
    Command,
    Login,
    Logout,
    Noop,
    StartTLS,
)
from trio_mailoauth.imap.events import (
    Bye,
    Event,
    Greeting,
    SASLChallenge,
    TaggedResponse,
)
from trio_mailoauth.sasl import SASLFlow, SASLMechanism, classify_failure
from trio_mailoauth.transport import Stream, TLSMode

__all__ = ["IMAPClient", "open_imap"]

# Untagged responses received and not yet handed to the caller (``noop()`` returns them).
# A mailbox event storm (a mass EXPUNGE) can legitimately produce tens of thousands; a
# server sending more than this between two of our calls is flooding us. ~100 bytes each.
MAX_UNTAGGED: Final = 100_000

# Response codes of a refused AUTHENTICATE/LOGIN that no new token or retry fixes
# (RFC 5530): the identity may not act as that user, TLS is required, an admin must act.
_PERMANENT_CODES: Final = frozenset({"AUTHORIZATIONFAILED", "PRIVACYREQUIRED", "CONTACTADMIN"})

_SESSION_STATES: Final = frozenset(
    {IMAPState.NOT_AUTHENTICATED, IMAPState.AUTHENTICATED, IMAPState.SELECTED}
)


def _refusal(response: TaggedResponse) -> IMAPResponseError:
    return IMAPResponseError(response.status, response.text, response.code)


class IMAPClient(BaseClient[IMAPConnection]):
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
        self._untagged: list[Event] = []

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

    def _keep(self, event: Event) -> None:
        """Hold an untagged response until the caller asks (``noop()``)."""
        if len(self._untagged) >= MAX_UNTAGGED:
            raise RemoteProtocolError(
                f"more than {MAX_UNTAGGED} untagged responses arrived without a pause"
            )
        self._untagged.append(event)

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
                self._keep(event)

    async def _check(self, command: Command) -> TaggedResponse:
        response = await self._run(command)
        if response.status != "OK":
            raise _refusal(response)
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
        async with self._round_trip():
            await self._goodbye()
        await self.aclose()

    # --- commands --------------------------------------------------------------------------

    async def capability(self) -> frozenset[str]:
        """Ask the server for its capabilities again."""
        async with self._round_trip():
            await self._check(Capability())
        return self.capabilities

    async def noop(self) -> list[Event]:
        """NOOP: returns the untagged responses seen since the last call (EXISTS, ...)."""
        async with self._round_trip():
            await self._check(Noop())
            events, self._untagged = self._untagged, []
        return events

    async def login(self, user: str, password: str) -> None:
        """The LOGIN command (user name and password), refused if the server says LOGINDISABLED."""
        self._ensure_usable()
        self._check_can_send_secrets()
        async with self._round_trip():
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
                    response.text, mechanism="LOGIN", kind=kind, response=_refusal(response)
                )
            await self._ensure_capabilities()

    async def _sasl_exchange(self, flow: SASLFlow) -> None:
        async with self._round_trip():
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
                response=_refusal(response),
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
            IMAPClient.default_ports,
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
