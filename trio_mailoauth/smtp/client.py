"""The async SMTP client: :func:`open_smtp` and :class:`SMTPClient`.

A thin I/O loop over :class:`SMTPConnection`. Each command is one round trip under the
connection's lock; a 4xx/5xx reply raises :class:`SMTPTransientError` /
:class:`SMTPPermanentError` and leaves the connection usable, anything that interrupts a
round trip (cancellation, network or protocol error) breaks it (see ``_client.py``).

    async with open_smtp("smtp.example.com", 587, tls="starttls",
                         auth=XOAuth2("alice@example.com", tokens)) as smtp:
        result = await smtp.send_message(message)    # SendResult: per-recipient replies

With PIPELINING, sending a message is two writes and two round trips: MAIL, every RCPT (and
DATA) in one write; then, once their replies are in, the BDAT chunks (or, after DATA's 354,
the content). Why not the chunks with MAIL in one write: see ``_pipelined``. We never send
the next message's MAIL before the previous one's final reply: Dovecot 2.3 submission
crashes on it (see _state.py).
"""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
from collections.abc import Mapping, Sequence
from email.message import Message
from typing import ClassVar, Literal

import anyio

from trio_mailoauth._client import (
    DEFAULT_CONNECT_TIMEOUT,
    GOODBYE_SECONDS,
    BaseClient,
    ClientState,
    Opener,
    open_client,
)
from trio_mailoauth._sansio import NEED_DATA, ConnectionClosed, SASLChallenge
from trio_mailoauth.errors import (
    AuthenticationError,
    ConnectionBrokenError,
    LocalProtocolError,
    MailOAuthError,
    RemoteProtocolError,
    SMTPResponseError,
    SMTPTransientError,
    TLSError,
)
from trio_mailoauth.sasl import SASLFlow, SASLMechanism, classify_failure
from trio_mailoauth.smtp._connection import SMTPConnection
from trio_mailoauth.smtp._envelope import original_recipients
from trio_mailoauth.smtp._events import (
    Authenticate,
    Bdat,
    BodyType,
    Command,
    Data,
    Ehlo,
    Helo,
    Mail,
    MessageData,
    Noop,
    Quit,
    Rcpt,
    Reply,
    Rset,
    StartTLS,
    Vrfy,
)
from trio_mailoauth.smtp._reader import size_limit
from trio_mailoauth.smtp._state import State
from trio_mailoauth.smtp._writer import check_local_name, normalize_line_endings
from trio_mailoauth.smtp.message import (
    SendResult,
    envelope_from_headers,
    message_bytes,
    strip_bcc,
    transaction_error,
)
from trio_mailoauth.transport import Stream, TLSMode

__all__ = ["SMTPClient", "default_local_hostname", "open_smtp", "send"]

# BDAT chunk size: a message up to this size goes as one chunk (one reply to read); larger
# ones in chunks of it, all pipelined. 4 MiB keeps each chunk's copy small next to the
# message while a 25 MB attachment still needs only 7 chunk replies.
BDAT_CHUNK = 4 * 1024 * 1024

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
        # Every SMTP round trip waits for the server's reply, which is a checkpoint: taking
        # the free lock need not yield to the scheduler as well (one pass less per message).
        # IMAP's session logic relies on the base lock as it is, so only SMTP does this.
        self._lock = anyio.Lock(fast_acquire=True)
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
        """The next reply; a 421 (the server is closing the channel) breaks the connection
        and raises SMTPTransientError, whatever command it answered."""
        return (await self._read_replies(1))[0]

    async def _read_replies(self, count: int) -> list[Reply]:
        """The next ``count`` replies (see :meth:`_read_reply`).

        The replies to a pipelined group mostly arrive in one or two receives: every reply
        already received is parsed before we wait again, in one loop here rather than one
        trip through the generic ``_next_event`` per reply (this runs for every message).
        """
        conn = self._conn
        replies: list[Reply] = []
        # What the caller queued goes out first; later, what next_event() queued (AUTH's
        # held response) goes out before we wait. Inline rather than self._flush(): no
        # coroutine per write or per wait (this runs for every message).
        data = conn.data_to_send()
        while True:
            if data:
                try:
                    await self._stream.send_all(data)
                except BaseException:
                    conn.send_failed()
                    raise
            event = conn.next_event()
            if isinstance(event, Reply):
                data = b""
                if event.code == 421 and conn.state is State.CLOSING:
                    # 421 (RFC 5321 §3.8): nothing more will work on this connection. A
                    # refusal would leave it OK, and every later command fail as local.
                    error = _refusal(event)
                    await self._break(error)
                    raise error
                replies.append(event)
                if len(replies) == count:
                    return replies
            elif event is NEED_DATA:
                data = conn.data_to_send()
                if not data:  # else: out first, then next_event() again
                    conn.receive_data(await self._stream.receive_some())
            elif isinstance(event, ConnectionClosed):
                raise ConnectionBrokenError("the server closed the connection")
            else:
                raise RemoteProtocolError(f"expected an SMTP reply, got {type(event).__name__}")

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

    async def vrfy(self, address: str) -> Reply:
        """VRFY: 250/251 the server knows it, 252 it will try; a refusal raises."""
        return await self._checked(Vrfy(address))

    @property
    def max_message_size(self) -> int | None:
        """The server's SIZE limit in octets, or None when it states none."""
        return size_limit(self._conn.extensions)

    # --- sending mail -------------------------------------------------------------------

    async def send_message(
        self,
        message: Message | bytes,
        sender: str | None = None,
        recipients: Sequence[str] | None = None,
        *,
        notify: Sequence[str] | None = None,
        orcpt: Mapping[str, str] | bool | None = None,
        ret: Literal["FULL", "HDRS"] | None = None,
        envid: str | None = None,
        requiretls: bool = False,
        chunking: bool | None = None,
    ) -> SendResult:
        """Send an :class:`~email.message.EmailMessage` (or a message's bytes).

        The envelope comes from the headers unless given: ``sender`` from Sender or From,
        ``recipients`` from To, Cc and Bcc — or, when the message was resent (RFC 5322
        §3.6.6), from the most recent Resent- block: Resent-Sender or Resent-From, and
        Resent-To, Resent-Cc and Resent-Bcc. Bcc and Resent-Bcc are removed before sending.
        Line endings become CRLF. SMTPUTF8 is used when an address needs it; 8-bit bodies go
        as BODY=8BITMIME, or are transfer-encoded to 7-bit for a server without 8BITMIME.
        An EmailMessage is serialised once, by the email package's generator. See
        :meth:`sendmail` for the rest; this returns what it returns and raises what it raises.
        """
        sender, recipients = envelope_from_headers(message, sender, recipients)
        if isinstance(message, Message):
            smtputf8 = not sender.isascii() or not all(r.isascii() for r in recipients)
            eight_bit = self.has_extension("8BITMIME")
            content = message_bytes(message, smtputf8=smtputf8, eight_bit=eight_bit)
        else:
            content = strip_bcc(message)
        return await self.sendmail(
            sender,
            recipients,
            content,
            notify=notify,
            orcpt=orcpt,
            ret=ret,
            envid=envid,
            requiretls=requiretls,
            chunking=chunking,
        )

    async def sendmail(
        self,
        sender: str,
        recipients: Sequence[str],
        content: bytes,
        *,
        body: BodyType | None = None,
        smtputf8: bool | None = None,
        notify: Sequence[str] | None = None,
        orcpt: Mapping[str, str] | bool | None = None,
        ret: Literal["FULL", "HDRS"] | None = None,
        envid: str | None = None,
        requiretls: bool = False,
        chunking: bool | None = None,
    ) -> SendResult:
        """Send ``content`` (a whole message, headers included) from ``sender`` to
        ``recipients``, as given: nothing is added or removed but CRLF line endings.

        ``body``: BODY= (default: 8BITMIME when the content has 8-bit bytes; BINARYMIME sends
        the bytes untouched, with BDAT). ``smtputf8``: default when an address or a header is
        not ASCII. DSN (RFC 3461): ``notify`` (NOTIFY= on every RCPT), ``orcpt`` (ORCPT=,
        the original recipient: a mapping recipient → original address for some or all of
        them, or ``True`` for every recipient's own address), ``ret`` and ``envid``.
        ``requiretls``: RFC 8689. ``chunking``: use BDAT (default: when the server offers
        CHUNKING).

        Returns a :class:`SendResult`; recipients refused while others were accepted are in
        its ``refused``. Raises :class:`SMTPTransientError` (4xx) or
        :class:`SMTPPermanentError` (5xx) when the server refused the sender, every
        recipient or the message; the transaction is then reset (RSET) and the connection
        stays usable. LocalProtocolError, before anything is sent, for a bad address, a
        message over the server's SIZE, or an extension the message needs and the server
        does not offer (SMTPUTF8, 8BITMIME, DSN, CHUNKING, REQUIRETLS).
        """
        self._ensure_usable()
        recipients = list(
            dict.fromkeys([recipients] if isinstance(recipients, str) else recipients)
        )
        if not recipients:
            raise ValueError("no recipients")
        # One look at the extensions, and each whole-message scan done once: this runs for
        # every message (see docs/smtp.md, "Speed").
        offered = self._conn.extensions
        if body != "BINARYMIME":
            content = normalize_line_endings(content)
        ascii_content = content.isascii()
        ascii_recipients = all(map(str.isascii, recipients))
        if smtputf8 is None:
            smtputf8 = (
                not sender.isascii()
                or not ascii_recipients
                or (not ascii_content and not _header_block(content).isascii())
            )
        if not smtputf8 and not ascii_recipients:
            # Checked here, not only by the core at RCPT time: MAIL would be on its way by
            # then, and the connection out of step with the server.
            raise LocalProtocolError("a non-ASCII recipient address needs SMTPUTF8")
        if smtputf8 and "SMTPUTF8" not in offered:
            raise LocalProtocolError(
                "the message needs SMTPUTF8 (a non-ASCII address or header) and "
                f"{self.host}:{self.port} does not offer it"
            )
        if body is None and not ascii_content:
            if "8BITMIME" not in offered:
                raise LocalProtocolError(
                    f"the message has 8-bit data and {self.host}:{self.port} does not offer "
                    "8BITMIME (send an EmailMessage to have it transfer-encoded)"
                )
            body = "8BITMIME"
        notify_words = None if notify is None else tuple(word.upper() for word in notify)
        originals = original_recipients(orcpt, recipients) if orcpt else {}
        if (notify_words is not None or originals) and "DSN" not in offered:
            raise LocalProtocolError(
                f"cannot ask for NOTIFY/ORCPT: {self.host}:{self.port} does not offer DSN"
            )
        use_bdat = "CHUNKING" in offered if chunking is None else chunking
        if body == "BINARYMIME":
            use_bdat = True
        if use_bdat and "CHUNKING" not in offered:
            raise LocalProtocolError(f"{self.host}:{self.port} does not offer CHUNKING (BDAT)")
        mail = Mail(
            sender,
            size=len(content) if "SIZE" in offered else None,
            body=body,
            smtputf8=smtputf8,
            ret=ret,
            envid=envid,
            requiretls=requiretls,
        )
        rcpts = [Rcpt(r, notify=notify_words, orcpt=originals.get(r)) for r in recipients]
        # The transaction itself, here rather than in a coroutine of its own: every await
        # of a message resumes each coroutine between the task and the socket.
        async with self._round_trip():
            if "PIPELINING" in self._conn.extensions:  # as it is once the lock is ours
                mail_reply, rcpt_replies, final = await self._pipelined(
                    mail, rcpts, content, use_bdat
                )
            else:
                mail_reply, rcpt_replies, final = await self._step_by_step(
                    mail, rcpts, content, use_bdat
                )
            error = transaction_error(mail_reply, rcpts, rcpt_replies, final)
            if error is not None:
                # Whatever the server kept, it is gone now. A 421 to the RSET breaks the
                # connection (see _read_reply); the refusal that matters is still ``error``.
                with contextlib.suppress(SMTPTransientError):
                    await self._command(Rset())
                raise error
        assert final is not None
        return SendResult(sender, dict(zip(recipients, rcpt_replies, strict=True)), final)

    async def _pipelined(
        self, mail: Mail, rcpts: list[Rcpt], content: bytes, use_bdat: bool
    ) -> tuple[Reply, list[Reply], Reply | None]:
        """MAIL and every RCPT in one write, with DATA after them; then the replies, parsed
        from as few receives as they arrive in (the core splits them).

        With BDAT, the chunks go once the replies to MAIL and RCPT are in, in a second write:
        a message no recipient takes costs no data, and the server gets our ACK with the
        chunk. In one write with MAIL and RCPT, the server answers those first, and a server
        that writes with Nagle's algorithm (Postfix) holds the final reply until our delayed
        ACK (40 ms on Linux, 200 ms on Windows): one connection sent 23 messages a second
        through Postfix instead of 420 (see docs/smtp.md).
        """
        conn = self._conn
        conn.send(mail)
        for rcpt in rcpts:
            conn.send(rcpt)
        if use_bdat:
            replies = await self._read_replies(1 + len(rcpts))
            mail_reply, rcpt_replies = replies[0], replies[1:]
            if not mail_reply.is_positive or not any(r.is_positive for r in rcpt_replies):
                return mail_reply, rcpt_replies, None
            if len(content) <= BDAT_CHUNK:  # one chunk, one reply: most messages
                conn.send(Bdat(content, last=True))
                return mail_reply, rcpt_replies, (await self._read_replies(1))[0]
            chunks = _chunks(content)
            for chunk in chunks:
                conn.send(chunk)
            final: Reply | None = None
            for reply in await self._read_replies(len(chunks)):
                if final is None or final.is_positive:
                    final = reply  # the first refused chunk, or the last reply
            return mail_reply, rcpt_replies, final
        conn.send(Data())
        replies = await self._read_replies(2 + len(rcpts))
        mail_reply, rcpt_replies, final = replies[0], replies[1:-1], replies[-1]
        if final.code == 354:
            wanted = mail_reply.is_positive and any(r.is_positive for r in rcpt_replies)
            # A server that says 354 with no one to deliver to gets an empty message, which
            # it cannot deliver (RFC 2920 §3.1).
            conn.send(MessageData(content if wanted else b""))
            final = await self._read_reply()
        return mail_reply, rcpt_replies, final

    async def _step_by_step(
        self, mail: Mail, rcpts: list[Rcpt], content: bytes, use_bdat: bool
    ) -> tuple[Reply, list[Reply], Reply | None]:
        """Without PIPELINING: each command waits for the reply to the one before."""
        conn = self._conn
        read = self._read_reply
        conn.send(mail)
        mail_reply = await read()
        rcpt_replies: list[Reply] = []
        final: Reply | None = None
        if not mail_reply.is_positive:
            return mail_reply, rcpt_replies, final
        for rcpt in rcpts:
            conn.send(rcpt)
            rcpt_replies.append(await read())
        if not any(r.is_positive for r in rcpt_replies):
            return mail_reply, rcpt_replies, final
        if use_bdat:
            for chunk in _chunks(content):
                conn.send(chunk)
                final = await read()
                if not final.is_positive:
                    break
        else:
            conn.send(Data())
            final = await read()
            if final.code == 354:
                conn.send(MessageData(content))
                final = await read()
        return mail_reply, rcpt_replies, final

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
            error = AuthenticationError(
                str(refusal),
                mechanism=flow.mechanism,
                kind=kind,
                detail=flow.error_detail,
                response=refusal,
            )
            if self._conn.state is State.CLOSING:
                await self._break(error)  # 421: see _read_reply
            raise error


def _header_block(content: bytes) -> bytes:
    end = content.find(b"\r\n\r\n")
    return content if end < 0 else content[:end]


def _chunks(content: bytes) -> list[Bdat]:
    if len(content) <= BDAT_CHUNK:
        return [Bdat(content, last=True)]
    starts = range(0, len(content), BDAT_CHUNK)
    return [Bdat(content[i : i + BDAT_CHUNK], last=i + BDAT_CHUNK >= len(content)) for i in starts]


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

    async def open_() -> SMTPClient:
        return await open_client(
            SMTPClient,
            host,
            port,
            tls=tls,
            ssl_context=ssl_context,
            auth=auth,
            connect_timeout=connect_timeout,
            allow_insecure=allow_insecure,
            source_address=source_address,
            local_hostname=local_hostname,
        )

    return Opener(open_)


async def send(
    message: Message | bytes,
    hostname: str,
    port: int | None = None,
    *,
    sender: str | None = None,
    recipients: Sequence[str] | None = None,
    tls: TLSMode = "implicit",
    ssl_context: ssl.SSLContext | None = None,
    auth: SASLMechanism | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    allow_insecure: bool = False,
    source_address: str | None = None,
    local_hostname: str | None = None,
) -> SendResult:
    """Send one message on a connection of its own: connect, TLS, AUTH, send, QUIT.

        await send(message, "smtp.gmail.com", 587, tls="starttls",
                   auth=XOAuth2("alice@gmail.com", tokens))

    The arguments are those of :func:`open_smtp` and :meth:`SMTPClient.send_message`; for
    many messages, open one connection and call ``send_message`` on it instead.
    """
    async with open_smtp(
        hostname,
        port,
        tls=tls,
        ssl_context=ssl_context,
        auth=auth,
        connect_timeout=connect_timeout,
        allow_insecure=allow_insecure,
        source_address=source_address,
        local_hostname=local_hostname,
    ) as smtp:
        return await smtp.send_message(message, sender, recipients)
