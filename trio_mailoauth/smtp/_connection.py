"""SMTPConnection: the SMTP client protocol with no I/O (h11 style).

    conn = SMTPConnection()
    conn.receive_data(b"220 mx.example ESMTP\\r\\n")
    conn.next_event()          # Reply(220, None, ("mx.example ESMTP",))
    conn.send(Ehlo("[127.0.0.1]"))
    sock.sendall(conn.data_to_send())

Every command we send puts the verb it waits for at the end of a queue; every complete reply
is matched with the head of that queue. A reply nobody waits for is a RemoteProtocolError,
never silently taken as the answer to the next command (which would shift every later
reply by one). The queue makes PIPELINING safe once several commands may be in flight.

The core knows which lines carry secrets (AUTH initial responses, SASL responses) and
redacts them in the trace it hands to ``trace``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import NoReturn

from trio_mailoauth._sansio import (
    NEED_DATA,
    ConnectionClosed,
    NeedData,
    ReceiveBuffer,
    SASLChallenge,
    TraceHook,
    decode_sasl,
    printable_line,
)
from trio_mailoauth.errors import LocalProtocolError, RemoteProtocolError
from trio_mailoauth.smtp._events import (
    Authenticate,
    Bdat,
    Command,
    Event,
    Mail,
    Rcpt,
    Reply,
    command_key,
)
from trio_mailoauth.smtp._reader import ReplyReader, auth_mechanisms, parse_ehlo, size_limit
from trio_mailoauth.smtp._state import (
    GREETING,
    PIPELINE_MAY_CONTINUE,
    PIPELINE_MAY_END,
    REPLY_CLASSES,
    REPLY_TRANSITIONS,
    SEND_TRANSITIONS,
    State,
    reply_class,
)
from trio_mailoauth.smtp._writer import Written, write_command, write_response

__all__ = ["SMTPConnection"]


class SMTPConnection:
    """One SMTP client connection's protocol state. Does no I/O.

    ``tls``: the connection already runs over TLS (implicit TLS); STARTTLS is then refused.
    ``trace``: called with each redacted line of the conversation ("C: ..." / "S: ...").
    """

    def __init__(self, *, tls: bool = False, trace: TraceHook | None = None) -> None:
        self.trace = trace
        self._state = State.AWAIT_GREETING
        self._buffer = ReceiveBuffer()
        self._reader = ReplyReader()
        self._pending: deque[str] = deque([GREETING])
        self._out: list[bytes] = []  # pieces, joined once in data_to_send()
        self._transaction: Mail | None = None  # the MAIL of the open transaction
        self._chunk_refused = False  # a BDAT chunk was refused: no more chunks (RFC 3030)
        self._extensions: dict[str, tuple[str, ...]] = {}
        self._size_limit: int | None = None  # size_limit(self._extensions), kept with it
        # The read-only view ``extensions`` hands out, made once per EHLO rather than per
        # look (the client looks for every message sent).
        self._extensions_view: Mapping[str, tuple[str, ...]] = MappingProxyType(self._extensions)
        self._tls_active = tls
        self._authenticated = False
        self._held_response: bytes | None = None  # AUTH two-step: sent at the first 334
        self._challenge_open = False  # a SASLChallenge awaits send_sasl_response()
        self.greeting: Reply | None = None

    def __repr__(self) -> str:
        return f"<SMTPConnection {self._state.value}>"

    # --- what the connection knows ------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def extensions(self) -> Mapping[str, tuple[str, ...]]:
        """The EHLO keywords (upper case) and their parameters; empty before EHLO/after TLS."""
        return self._extensions_view

    @property
    def auth_mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms the last EHLO offered (upper case)."""
        return auth_mechanisms(self._extensions)

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    @property
    def authenticated(self) -> bool:
        return self._authenticated

    @property
    def awaiting_replies(self) -> int:
        """How many replies are still owed to us (the greeting counts)."""
        return len(self._pending)

    # --- sending ------------------------------------------------------------------------

    def send(self, command: Command) -> None:
        """Validate ``command`` against the state table and queue its bytes.

        LocalProtocolError (with nothing queued) when the command is not allowed now.
        """
        verb = command_key(command)
        if self._pending and not self._may_pipeline(verb):
            raise LocalProtocolError(
                f"cannot send {verb} in state {self._state.value}: "
                f"still waiting for the reply to {self._pending[0]}"
            )
        next_state = SEND_TRANSITIONS.get((self._state, verb))
        if next_state is None:
            raise LocalProtocolError(f"cannot send {verb} in state {self._state.value}")
        self._check_guards(command)
        if not self._pending and (self._buffer or self._reader.in_progress):
            # Bytes arrived that no command asked for; reading them as the answer to this
            # command would shift every later reply by one.
            message = (
                f"the server sent data nobody asked for (in state {self._state.value}, "
                f"before {verb})"
            )
            self._state = State.ERROR
            raise RemoteProtocolError(message)
        transaction = self._transaction
        written = write_command(command, smtputf8=transaction is not None and transaction.smtputf8)
        if verb in ("EHLO", "HELO"):
            self._set_extensions({})
        if isinstance(command, Mail):
            self._transaction = command
            self._chunk_refused = False
        elif verb == "RSET":
            self._transaction = None
        self._queue(written)
        self._held_response = written.held_response
        self._pending.append(verb)
        self._state = next_state

    def _may_pipeline(self, verb: str) -> bool:
        return (
            "PIPELINING" in self._extensions
            and verb in PIPELINE_MAY_END
            and PIPELINE_MAY_CONTINUE.issuperset(self._pending)
        )

    def _check_guards(self, command: Command) -> None:
        """The rules that are flags, not states (see _state.py)."""
        # The commands sent for every message first.
        if isinstance(command, Mail):
            self._check_mail(command)
        elif isinstance(command, Rcpt):
            assert self._transaction is not None  # the state table allows RCPT after MAIL only
            if not command.recipient.isascii() and not self._transaction.smtputf8:
                raise LocalProtocolError(
                    "a non-ASCII recipient address needs SMTPUTF8 on the MAIL command"
                )
            if (command.notify is not None or command.orcpt is not None) and not self._has("DSN"):
                raise LocalProtocolError("cannot send NOTIFY/ORCPT: the server does not offer DSN")
        elif isinstance(command, Bdat):
            if not self._has("CHUNKING"):
                raise LocalProtocolError("cannot send BDAT: the server does not offer CHUNKING")
            if self._chunk_refused:
                raise LocalProtocolError("cannot send BDAT: an earlier chunk was refused (RSET)")
        elif command.verb == "STARTTLS":
            if self._tls_active:
                raise LocalProtocolError("cannot send STARTTLS: TLS is already active")
            if "STARTTLS" not in self._extensions:
                raise LocalProtocolError("cannot send STARTTLS: the server does not offer it")
        elif isinstance(command, Authenticate):
            if self._authenticated:
                raise LocalProtocolError("cannot send AUTH: already authenticated")
            offered = self.auth_mechanisms
            if command.mechanism.upper() not in offered:
                shown = " ".join(offered) if offered else "none"
                raise LocalProtocolError(
                    f"cannot send AUTH {command.mechanism[:20]}: the server offers "
                    f"{shown} (state {self._state.value})"
                )
        elif (
            command.verb == "DATA"
            and self._transaction is not None
            and self._transaction.body == "BINARYMIME"
        ):
            raise LocalProtocolError("BODY=BINARYMIME needs BDAT, not DATA (RFC 3030 §3)")

    def _set_extensions(self, extensions: dict[str, tuple[str, ...]]) -> None:
        self._extensions = extensions
        self._extensions_view = MappingProxyType(extensions)
        # MAIL checks the limit for every message: parse it once, here.
        self._size_limit = size_limit(extensions)

    def _has(self, keyword: str) -> bool:
        return keyword in self._extensions

    def _check_mail(self, command: Mail) -> None:
        """MAIL parameters need the extension that defines them."""
        offered = self._extensions
        if command.size is not None and "SIZE" not in offered:
            _refuse_parameter("SIZE", "SIZE")
        if command.body is not None:
            if "8BITMIME" not in offered:
                _refuse_parameter("BODY", "8BITMIME")
            if command.body == "BINARYMIME" and "BINARYMIME" not in offered:
                _refuse_parameter("BODY=BINARYMIME", "BINARYMIME")
        if command.smtputf8 and "SMTPUTF8" not in offered:
            _refuse_parameter("SMTPUTF8", "SMTPUTF8")
        if (command.ret is not None or command.envid is not None) and "DSN" not in offered:
            _refuse_parameter("RET/ENVID", "DSN")
        if command.requiretls:
            if "REQUIRETLS" not in offered:
                _refuse_parameter("REQUIRETLS", "REQUIRETLS")
            if not self._tls_active:
                raise LocalProtocolError("REQUIRETLS needs a TLS connection (RFC 8689)")
        if command.size is not None:
            limit = self._size_limit
            if limit is not None and command.size > limit:
                raise LocalProtocolError(
                    f"the message is {command.size} bytes; the server accepts at most "
                    f"{limit} (SIZE)"
                )

    def send_sasl_response(self, response: bytes | None) -> None:
        """Answer the SASLChallenge just returned; ``None`` cancels the exchange (``*``)."""
        if self._state is not State.AUTHENTICATING or not self._challenge_open:
            raise LocalProtocolError(
                f"cannot send a SASL response in state {self._state.value}: no open challenge"
            )
        self._challenge_open = False
        self._queue(write_response(response))

    def _queue(self, written: Written) -> None:
        out = self._out
        if written.data:
            out.append(written.data)
        if written.payload:
            out.append(written.payload)
        if written.payload_end:
            out.append(written.payload_end)
        if self.trace is not None:
            trace = written.trace
            self.trace(printable_line("C: ", written.data) if trace is None else trace)

    def data_to_send(self) -> bytes:
        """The bytes to write now (and forget): everything queued, in one piece."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def send_failed(self) -> None:
        """The I/O layer could not write: the conversation is lost."""
        self._state = State.ERROR

    # --- TLS ----------------------------------------------------------------------------

    def tls_established(self) -> None:
        """The I/O layer finished the TLS handshake after STARTTLS's go-ahead.

        Everything learned in plaintext is forgotten (RFC 3207 §4.2): EHLO must come again.
        """
        if self._state is not State.TLS_HANDSHAKE:
            raise LocalProtocolError(
                f"tls_established() in state {self._state.value}: no STARTTLS go-ahead"
            )
        if self._buffer:
            self._state = State.ERROR
            raise RemoteProtocolError("bytes arrived after the STARTTLS go-ahead")
        self._tls_active = True
        self._set_extensions({})
        self._state = State.GREETED

    # --- receiving ----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the server; ``b""`` means it closed the connection."""
        try:
            self._buffer.feed(data)
        except RemoteProtocolError:
            self._state = State.ERROR
            raise

    def next_event(self) -> Event | NeedData:
        """The next complete event, or NEED_DATA. Raises RemoteProtocolError on bad input."""
        state = self._state
        if state is State.ERROR:
            raise RemoteProtocolError("the SMTP connection is in the ERROR state")
        if state is State.TLS_HANDSHAKE and self._buffer:
            self._state = State.ERROR
            raise RemoteProtocolError("bytes arrived after the STARTTLS go-ahead")
        # One method, not a wrapper around a second one: this runs for every reply.
        buffer, reader = self._buffer, self._reader
        while True:
            try:
                reply = reader.read(buffer, self.trace)
                event = None if reply is None else self._handle_reply(reply)
            except RemoteProtocolError:
                self._state = State.ERROR
                raise
            if event is not None:
                return event
            if reply is None:
                if not buffer.closed:
                    return NEED_DATA
                if reader.in_progress or buffer:
                    self._state = State.ERROR
                    raise RemoteProtocolError("the server closed the connection within a reply")
                self._state = State.CLOSED
                self._pending.clear()
                return ConnectionClosed()
            # A 334 that asked for our held initial response: answered, read on.

    def _handle_reply(self, reply: Reply) -> Event | None:
        state = self._state
        if not self._pending:
            if reply.code == 421:
                # RFC 5321 §3.8: a server shutting down may say 421 unasked, then close.
                self._state = State.CLOSING
                return reply
            raise RemoteProtocolError(
                f"unsolicited reply {reply.code} in state {state.value} (no command sent)"
            )
        verb = self._pending[0]
        cls = REPLY_CLASSES.get(reply.code) or reply_class(reply.code)
        next_state = REPLY_TRANSITIONS.get((state, verb, cls))
        if next_state is None:
            raise RemoteProtocolError(
                f"unexpected reply {reply.code} to {verb} in state {state.value}"
            )
        if state is State.AUTHENTICATING and cls == "3":
            return self._challenge(reply)
        self._pending.popleft()
        self._state = next_state
        if next_state is State.CLOSING:
            self._pending.clear()  # the server answers nothing more
        elif verb == "MAIL" or verb == "RCPT":
            pass  # the replies of every message sent: nothing to remember
        elif verb == GREETING:
            self.greeting = reply
        elif verb == "EHLO" and reply.is_positive:
            self._set_extensions(parse_ehlo(reply))
        elif verb == "STARTTLS" and reply.is_positive:
            if self._buffer or self._reader.in_progress:
                # Injected by a man in the middle: it would be read as if it came over TLS.
                raise RemoteProtocolError("bytes arrived after the STARTTLS go-ahead")
            self._set_extensions({})
        elif verb == "AUTH":
            self._challenge_open = False
            self._held_response = None
            self._authenticated = reply.is_positive
        elif verb == "BDAT" and not reply.is_positive:
            self._chunk_refused = True
        elif next_state is State.READY and verb in ("DATA", "MESSAGE DATA", "BDAT LAST"):
            self._transaction = None  # the transaction ended (delivered or refused)
        return reply

    def _challenge(self, reply: Reply) -> SASLChallenge | None:
        if reply.code != 334 or len(reply.lines) != 1:
            raise RemoteProtocolError(f"a SASL challenge must be one 334 line, not {reply.code}")
        if self._challenge_open:
            raise RemoteProtocolError("a second SASL challenge before our response")
        if self._held_response is not None:
            # Two-step AUTH: this (normally empty) challenge asks for the initial response.
            held, self._held_response = self._held_response, None
            self._queue(write_response(held))
            return None
        self._challenge_open = True
        return SASLChallenge(decode_sasl(reply.lines[0].encode("utf-8")))


def _refuse_parameter(parameter: str, keyword: str) -> NoReturn:
    raise LocalProtocolError(
        f"cannot send MAIL with {parameter}: the server does not offer {keyword}"
    )
