"""The async SMTP client: :func:`open_smtp` and :class:`SMTPClient`.

A thin I/O loop over :class:`SMTPConnection`. Each command is one round trip under the
connection's lock; a 4xx/5xx reply raises :class:`SMTPTransientError` /
:class:`SMTPPermanentError` and leaves the connection usable, anything that interrupts a
round trip (cancellation, network or protocol error) breaks it (see ``_client.py``).

    async with open_smtp("smtp.example.com", 587, tls="starttls",
                         auth=XOAuth2("alice@example.com", tokens)) as smtp:
        await smtp.noop()
"""

from __future__ import annotations

import functools
import ipaddress
import ssl
from typing import ClassVar

import anyio

from trio_mailoauth._client import (
    DEFAULT_CONNECT_TIMEOUT,
    GOODBYE_SECONDS,
    BaseClient,
    ClientState,
    Opener,
    open_client,
)
from trio_mailoauth._sansio import SASLChallenge
from trio_mailoauth.errors import (
    AuthenticationError,
    LocalProtocolError,
    MailOAuthError,
    RemoteProtocolError,
    SMTPResponseError,
    TLSError,
)
from trio_mailoauth.sasl import SASLFlow, SASLMechanism, classify_failure
from trio_mailoauth.smtp._connection import SMTPConnection
from trio_mailoauth.smtp._events import (
    Authenticate,
    Command,
    Ehlo,
    Helo,
    Noop,
    Quit,
    Reply,
    Rset,
    StartTLS,
)
from trio_mailoauth.smtp._writer import check_local_name
from trio_mailoauth.transport import Stream, TLSMode

__all__ = ["SMTPClient", "default_local_hostname", "open_smtp"]

# Replies to EHLO from a server that does not know it (RFC 5321 §4.1.4: "500, 502"); other
# refusals (501 bad argument, 550 policy) would refuse HELO as well.
_EHLO_UNKNOWN = frozenset({500, 502})

# "Authentication disabled for the tenant" (Microsoft 365): no new token will change it.
_AUTH_DISABLED = "5.7.139"


def default_local_hostname(local_address: str | None) -> str:
    """The EHLO name when the caller gives none: the address literal of our end.

    Not ``socket.getfqdn()``: it does blocking DNS lookups inside an async library, and it
    often returns names servers reject (``localhost``, container ids that are no FQDN,
    refused by e.g. Postfix's ``reject_non_fqdn_helo_hostname``). RFC 5321 §4.1.4 says a
    client without a meaningful domain name SHOULD send an address literal, which is always
    valid syntax. When the address is unknown we say ``[127.0.0.1]``, the conventional
    placeholder.
    """
    if local_address is None:
        return "[127.0.0.1]"
    try:
        address = ipaddress.ip_address(local_address.split("%", 1)[0])  # no IPv6 zone
    except ValueError:
        return "[127.0.0.1]"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"[{address.ipv4_mapped}]"
        return f"[IPv6:{address.compressed}]"
    return f"[{address}]"


def _refusal(reply: Reply) -> SMTPResponseError:
    return SMTPResponseError.for_reply(reply.code, reply.text, reply.enhanced_status)


def _auth_failure_is_permanent(reply: Reply) -> bool:
    """A 5xx refusal of AUTH that no fresh token fixes.

    535 (5.7.8 "authentication credentials invalid") is what a rejected token gets, so it is
    left to classify_failure (which looks at the error challenge and the token's age) —
    except 535 5.7.139, client authentication disabled for the tenant. Every other 5xx is
    permanent: 501 (5.5.124 invalid XOAUTH2 data, a cancelled exchange), 504 (unknown
    mechanism), 530, 534 (mechanism too weak), 538 (encryption required).
    """
    if reply.code != 535:
        return reply.is_permanent
    return reply.enhanced_status == _AUTH_DISABLED or _AUTH_DISABLED in reply.text


class SMTPClient(BaseClient[SMTPConnection]):
    """An SMTP connection (submission, RFC 6409). Made by :func:`open_smtp`."""

    protocol = "smtp"
    # RFC 8314: 465 for implicit TLS; 587 is the submission port, with STARTTLS (and, for
    # loopback test servers only, without TLS).
    default_ports: ClassVar[dict[TLSMode, int]] = {"implicit": 465, "starttls": 587, "none": 587}

    def __init__(
        self,
        stream: Stream,
        *,
        host: str,
        port: int,
        allow_insecure: bool = False,
        local_hostname: str | None = None,
    ) -> None:
        super().__init__(
            stream,
            lambda trace: SMTPConnection(tls=stream.is_tls, trace=trace),
            host=host,
            port=port,
            allow_insecure=allow_insecure,
        )
        if local_hostname is None:
            local_hostname = default_local_hostname(stream.local_address)
        problem = check_local_name(local_hostname)
        if problem is not None:
            raise ValueError(problem)
        self.local_hostname = local_hostname

    # --- what the server offers -----------------------------------------------------------

    @property
    def extensions(self) -> dict[str, tuple[str, ...]]:
        """The last EHLO's keywords (upper case) and parameters: ``{"SIZE": ("35882577",)}``."""
        return dict(self._conn.extensions)

    def has_extension(self, keyword: str) -> bool:
        return keyword.upper() in self._conn.extensions

    @property
    def auth_mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms the server offers now (after TLS they may differ)."""
        return self._conn.auth_mechanisms

    @property
    def authenticated(self) -> bool:
        """True once AUTH succeeded on this connection."""
        return self._conn.authenticated

    @property
    def greeting(self) -> Reply | None:
        return self._conn.greeting

    # --- the I/O loop helpers ---------------------------------------------------------------

    async def _read_reply(self) -> Reply:
        event = await self._next_event()
        if not isinstance(event, Reply):
            raise RemoteProtocolError(f"expected an SMTP reply, got {type(event).__name__}")
        return event

    async def _command(self, command: Command) -> Reply:
        """Send one command and read its reply (the caller holds the round trip)."""
        self._conn.send(command)
        return await self._read_reply()

    async def _checked(self, command: Command) -> Reply:
        """One round trip; a refusal raises SMTPTransientError/SMTPPermanentError."""
        async with self._round_trip():
            reply = await self._command(command)
            if not reply.is_positive:
                raise _refusal(reply)
        return reply

    # --- opening and closing ----------------------------------------------------------------

    async def _start(self, starttls: bool, ssl_context: ssl.SSLContext) -> None:
        async with self._round_trip():
            greeting = await self._read_reply()
        if not greeting.is_positive:
            # 554: the server refuses us; it still expects QUIT (RFC 5321 §3.1).
            if greeting.is_permanent:
                await self._quit_quietly()
            raise _refusal(greeting)
        await self.ehlo()
        if not starttls:
            return
        if not self.has_extension("STARTTLS"):
            # No silent plaintext fallback: nothing but EHLO went out in the clear.
            raise TLSError(f"{self.host}:{self.port} does not offer STARTTLS")
        async with self._round_trip():
            reply = await self._command(StartTLS())
            if not reply.is_positive:
                raise TLSError(f"the server refused STARTTLS: {_refusal(reply)}")
            await self._upgrade_to_tls(ssl_context)
            self._conn.tls_established()
        await self.ehlo()  # what the server said in plaintext is forgotten: ask again

    async def _quit_quietly(self) -> None:
        with anyio.move_on_after(GOODBYE_SECONDS):
            try:
                async with self._round_trip():
                    await self._command(Quit())
            except MailOAuthError:
                pass

    async def _goodbye(self) -> None:
        await self._command(Quit())

    async def quit(self) -> Reply:
        """Say QUIT, read the 221, and close the connection."""
        try:
            async with self._round_trip():
                return await self._command(Quit())
        finally:
            if self._state is ClientState.OK:
                self._state = ClientState.CLOSED
            await self._stream.aclose()

    # --- commands -------------------------------------------------------------------------

    async def ehlo(self) -> Reply:
        """EHLO (HELO when the server does not know EHLO); refreshes :attr:`extensions`."""
        async with self._round_trip():
            reply = await self._command(Ehlo(self.local_hostname))
            if reply.code in _EHLO_UNKNOWN:
                reply = await self._command(Helo(self.local_hostname))
            if not reply.is_positive:
                raise _refusal(reply)
        return reply

    async def noop(self) -> Reply:
        return await self._checked(Noop())

    async def rset(self) -> Reply:
        return await self._checked(Rset())

    # --- authentication ---------------------------------------------------------------------

    async def authenticate(self, mechanism: SASLMechanism) -> None:
        """AUTH with ``mechanism``; checks the server offers it before getting a token."""
        self._ensure_usable()
        offered = self.auth_mechanisms
        if mechanism.name.upper() not in offered:
            shown = ", ".join(offered) if offered else "none"
            hint = "" if self.is_tls else " (servers often list mechanisms only after TLS)"
            raise LocalProtocolError(
                f"{self.host}:{self.port} does not offer AUTH {mechanism.name}; "
                f"it offers: {shown}{hint}"
            )
        await super().authenticate(mechanism)

    async def _sasl_exchange(self, flow: SASLFlow) -> None:
        async with self._round_trip():
            self._conn.send(Authenticate(flow.mechanism, flow.initial_response()))
            while True:
                event = await self._next_event()
                if isinstance(event, SASLChallenge):
                    self._conn.send_sasl_response(flow.respond(event.data))
                    continue
                if not isinstance(event, Reply):
                    raise RemoteProtocolError(f"expected an AUTH reply, got {event!r}")
                break
            if event.is_positive:
                return
            refusal = _refusal(event)
            kind = classify_failure(
                flow,
                temporary=event.is_transient,
                permanent=_auth_failure_is_permanent(event),
            )
            raise AuthenticationError(
                str(refusal),
                mechanism=flow.mechanism,
                kind=kind,
                detail=flow.error_detail,
                response=refusal,
            )


def open_smtp(
    host: str,
    port: int | None = None,
    *,
    tls: TLSMode = "implicit",
    ssl_context: ssl.SSLContext | None = None,
    auth: SASLMechanism | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    allow_insecure: bool = False,
    source_address: str | None = None,
    local_hostname: str | None = None,
) -> Opener[SMTPClient]:
    """Connect to an SMTP submission server; use with ``async with`` or ``await``.

    Default ports: 465 for ``tls="implicit"``, 587 for ``"starttls"`` and ``"none"``.
    ``local_hostname`` is the EHLO name (default: the address literal of our end, such as
    ``[192.0.2.7]``). ``connect_timeout`` bounds connect, TLS, greeting, EHLO and STARTTLS.
    """
    if local_hostname is not None:
        problem = check_local_name(local_hostname)
        if problem is not None:
            raise ValueError(problem)
    client_cls = functools.partial(SMTPClient, local_hostname=local_hostname)

    async def open_() -> SMTPClient:
        return await open_client(
            client_cls,
            SMTPClient.default_ports,
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
