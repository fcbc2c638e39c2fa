"""The POP3 protocol core: bytes in, events out; commands in, bytes out. No I/O.

    conn = POP3Connection()
    conn.receive_data(b"+OK ready\\r\\n")
    conn.next_event()            # Greeting(text="ready")
    conn.send(Capa())
    sock.send(conn.data_to_send())   # b"CAPA\\r\\n"
    ...

The core knows which commands are answered with a multi-line body (CAPA, LIST and UIDL
without argument, RETR, TOP), dot-unstuffs the body and ends it only at CRLF ``.`` CRLF.
CAPA/LIST/UIDL bodies are read line by line into one event; RETR/TOP bodies are streamed as
``MessageStart``, ``MessageData``..., ``MessageEnd`` with a few octets held at most, so a
message of any size costs bounded memory. With PIPELINING advertised (RFC 2449), several
TRANSACTION commands may be in flight; their answers come back in order. It runs SASL
exchanges (``SASLChallenge`` events, ``send_sasl_response``), computes APOP digests, guards
the STLS upgrade, and writes a redacted trace of the conversation. States and transitions are
in ``_state.py``.

Since RETR/TOP data follows the network's chunks, feeding the same bytes in other pieces gives
the same events once adjacent ``MessageData`` are joined.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

from trio_mailoauth._sansio import (
    NEED_DATA,
    ConnectionClosed,
    NeedData,
    SASLChallenge,
    TraceHook,
    printable_line,
)
from trio_mailoauth.errors import LocalProtocolError, RemoteProtocolError
from trio_mailoauth.pop3._events import (
    Apop,
    Authenticate,
    Capa,
    Command,
    ErrResponse,
    Event,
    Greeting,
    MessageData,
    MessageEnd,
    MessageStart,
    MultilineResponse,
    OkResponse,
    ScanListing,
    StatResponse,
    Stls,
    UidListing,
)
from trio_mailoauth.pop3._reader import (
    CAPA_LIMITS,
    CHALLENGE_LINE_LIMIT,
    DEFAULT_BODY_LIMITS,
    DEFAULT_MESSAGE_LIMIT,
    LISTING_LIMITS,
    STATUS_LINE_LIMIT,
    BodyLimits,
    MessageBody,
    POP3Buffer,
    StatusLine,
    apop_timestamp,
    is_challenge,
    parse_capabilities,
    parse_challenge,
    parse_listing_line,
    parse_stat,
    parse_status_line,
    unstuff,
)
from trio_mailoauth.pop3._state import GREETING, PIPELINABLE, REPLY_TABLE, SEND_TABLE, State
from trio_mailoauth.pop3._writer import (
    format_apop,
    format_command,
    format_sasl_response,
    trace_command,
)

__all__ = ["POP3Connection"]

# Our mechanisms need at most two challenges (LOGIN: user, password; bearer: one error
# report). A server that keeps challenging is broken or hostile; the client answers each
# one, so without a cap a loop would never end.
MAX_SASL_CHALLENGES: Final = 16

# The caps of each multi-line response, by command keyword (see _reader.BodyLimits).
BODY_LIMITS: Final[dict[str, BodyLimits]] = {
    "CAPA": CAPA_LIMITS,
    "LIST": LISTING_LIMITS,
    "UIDL": LISTING_LIMITS,
}

# Answers streamed as MessageStart / MessageData / MessageEnd rather than collected in lines.
_STREAMED: Final = frozenset({"RETR", "TOP"})

# With PIPELINING, at most this many commands in flight. The client keeps a small window
# anyway; the cap bounds the pending queue if a caller keeps sending without reading.
MAX_PIPELINED: Final = 1024

_TERMINATOR: Final = b".\r\n"


@dataclass(slots=True)
class _Pending:
    """A command whose reply is due (one per command: slots, not frozen, are cheaper)."""

    keyword: str
    sent_in: State
    multiline: bool = False
    limits: BodyLimits = DEFAULT_BODY_LIMITS
    trace_body: bool = True


@dataclass
class _Body:
    """A multi-line response being read."""

    status: StatusLine
    lines: list[bytes]
    size: int = 0


class POP3Connection:
    """A POP3 session from the client's side, without I/O.

    ``trace``, when given, is called with one line per line of the conversation
    (``"C: ..."``/``"S: ..."``) with passwords and SASL responses replaced by ``<redacted>``.
    """

    def __init__(
        self, trace: TraceHook | None = None, *, max_message_size: int = DEFAULT_MESSAGE_LIMIT
    ) -> None:
        self._trace = trace
        # RETR/TOP answers longer than this (unstuffed octets) are a RemoteProtocolError.
        self.max_message_size = max_message_size
        self._state = State.GREETING
        self._buffer = POP3Buffer()
        self._outgoing = bytearray()
        self._pending: deque[_Pending] = deque([_Pending(GREETING, State.GREETING)])
        self._body: _Body | None = None
        self._message: MessageBody | None = None
        self._message_ended = False  # the terminator was seen; MessageEnd is due
        self._sasl_owed = False  # a challenge was handed out and not answered yet
        self._challenges = 0
        self._capabilities: dict[str, tuple[str, ...]] = {}
        self._greeting: Greeting | None = None
        self._tls_active = False
        self._error: str | None = None

    def __repr__(self) -> str:
        return f"<POP3Connection {self._state.value}>"

    # --- what the caller can know ---------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def capabilities(self) -> dict[str, tuple[str, ...]]:
        """The last CAPA answer (forgotten after STLS): ``{"SASL": ("XOAUTH2",), ...}``."""
        return dict(self._capabilities)

    @property
    def greeting(self) -> Greeting | None:
        return self._greeting

    @property
    def awaiting_reply(self) -> bool:
        """True while a command (or the greeting) has not been fully answered."""
        return bool(self._pending)

    @property
    def pipelining(self) -> bool:
        """May several commands be in flight? (PIPELINING advertised, TRANSACTION state.)"""
        return "PIPELINING" in self._capabilities and self._state is State.TRANSACTION

    @property
    def in_flight(self) -> int:
        """Commands sent whose answers have not been fully read."""
        return len(self._pending)

    def can_send(self, keyword: str) -> bool:
        """Would ``send`` accept a command with this keyword now?"""
        return keyword in SEND_TABLE[self._state] and self._pipeline_refusal(keyword) is None

    def _pipeline_refusal(self, keyword: str) -> str | None:
        if not self._pending:
            return None
        if not self.pipelining:
            return f"the reply to {self._pending[0].keyword} is still due"
        if keyword not in PIPELINABLE or self._pending[0].keyword not in PIPELINABLE:
            # Only commands that leave TRANSACTION state as it is: the state the next one
            # is checked against does not depend on answers not read yet. (A command that
            # is not pipelinable is only ever sent alone, so checking the first suffices.)
            return f"{keyword} cannot be pipelined after {self._pending[-1].keyword}"
        if len(self._pending) >= MAX_PIPELINED:
            return f"{MAX_PIPELINED} commands are already in flight"
        return None

    # --- sending --------------------------------------------------------------------------

    def send(self, command: Command) -> None:
        """Validate ``command`` against the state table and queue its line.

        Raises LocalProtocolError (and queues nothing) when the command is not allowed now,
        an argument holds CR, LF or NUL, or the line exceeds 255 octets.
        """
        keyword = command.keyword
        state = self._state
        refusal = self._pipeline_refusal(keyword)
        if refusal is not None:
            raise LocalProtocolError(f"cannot send {keyword} in state {state.value}: {refusal}")
        if keyword not in SEND_TABLE[state]:
            raise LocalProtocolError(f"cannot send {keyword} in state {state.value}")
        if isinstance(command, Stls) and self._tls_active:
            raise LocalProtocolError("cannot send STLS: the connection already uses TLS")
        if isinstance(command, Apop):
            timestamp = self._greeting.timestamp if self._greeting is not None else None
            if timestamp is None:
                # RFC 1939 §7: no timestamp in the greeting means no APOP; a digest over
                # anything else would be replayable.
                raise LocalProtocolError(
                    "cannot send APOP: the server's greeting has no <...@...> timestamp"
                )
            line = format_apop(command, timestamp)
        else:
            line = format_command(command)
        self._outgoing += line
        if isinstance(command, Authenticate):
            self._challenges = 0
        if self._trace is not None:
            self._trace("C: " + trace_command(command))
        self._pending.append(
            _Pending(
                keyword,
                state,
                multiline=command.multiline,
                limits=BODY_LIMITS.get(keyword, DEFAULT_BODY_LIMITS),
                trace_body=isinstance(command, Capa),
            )
        )

    def send_sasl_response(self, data: bytes | None) -> None:
        """Answer the last ``SASLChallenge``; ``None`` cancels the exchange (``*``)."""
        if not self._sasl_owed:
            raise LocalProtocolError(
                f"cannot send a SASL response in state {self._state.value}: no challenge is open"
            )
        self._outgoing += format_sasl_response(data)
        self._sasl_owed = False
        if self._trace is not None:
            self._trace("C: *" if data is None else "C: <redacted SASL response>")

    def data_to_send(self) -> bytes:
        """The bytes to write now (and forget)."""
        if not self._outgoing:  # the I/O loop asks before every read: keep that cheap
            return b""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def send_failed(self) -> None:
        """The I/O layer could not write: nothing more can happen on this connection."""
        self._fail("a write failed")

    def tls_established(self) -> None:
        """The I/O layer finished the TLS handshake after STLS's +OK.

        Capabilities learned in plaintext were already forgotten; ask CAPA again.
        """
        if self._state is not State.STARTING_TLS:
            raise LocalProtocolError(f"cannot finish STLS in state {self._state.value}")
        self._tls_active = True
        self._state = State.AUTHORIZATION

    # --- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the server; ``b""`` means it closed the connection."""
        try:
            self._buffer.feed(data)
        except RemoteProtocolError as exc:
            self._fail(str(exc))
            raise

    def next_event(self) -> Event | NeedData:
        """The next complete event, or NEED_DATA. RemoteProtocolError breaks the connection."""
        if self._state is State.ERROR:
            raise RemoteProtocolError(f"cannot read events in state ERROR ({self._error})")
        try:
            return self._next_event()
        except RemoteProtocolError as exc:
            self._fail(str(exc))
            raise

    def _fail(self, why: str) -> None:
        if self._state is not State.ERROR:
            self._state = State.ERROR
            self._error = why
        self._pending.clear()
        self._body = None
        self._message = None
        self._sasl_owed = False

    def _next_event(self) -> Event | NeedData:
        if self._state is State.STARTING_TLS:
            if self._buffer:
                # Nothing may come between STLS's +OK and the handshake: such bytes were
                # injected by a man in the middle, to be read as if they came over TLS.
                raise RemoteProtocolError(
                    "the server sent data after STLS +OK, before the TLS handshake"
                )
            return ConnectionClosed() if self._buffer.closed else NEED_DATA
        if self._message is not None:
            return self._read_message(self._message)
        if self._body is not None:
            return self._read_body(self._body)
        if not self._pending:
            if self._buffer:
                raise RemoteProtocolError(
                    f"the server sent data in state {self._state.value} with no command pending"
                )
            return ConnectionClosed() if self._buffer.closed else NEED_DATA
        pending = self._pending[0]
        limit = CHALLENGE_LINE_LIMIT if pending.keyword == "AUTH" else STATUS_LINE_LIMIT
        line = self._buffer.maybe_extract_line(limit)
        if line is None:
            return self._incomplete(pending)
        if self._trace is not None:
            self._trace(printable_line("S: ", line))
        if pending.keyword == "AUTH" and is_challenge(line):
            return self._challenge(line)
        status = parse_status_line(line)
        if status.ok and pending.keyword in _STREAMED:
            self._message = MessageBody()
            self._message_ended = False
            return MessageStart(pending.keyword, status.text, status.code)
        if status.ok and pending.multiline:
            self._body = _Body(status, [])
            return self._read_body(self._body)
        return self._finish(status, ())

    def _incomplete(self, pending: _Pending) -> NeedData | ConnectionClosed:
        if not self._buffer.closed:
            return NEED_DATA
        if self._buffer:
            raise RemoteProtocolError(
                f"the server closed the connection in the middle of the reply to "
                f"{pending.keyword} (state {self._state.value})"
            )
        # Closed before a byte of the reply: the client reports a broken connection.
        return ConnectionClosed()

    def _challenge(self, line: bytes) -> SASLChallenge:
        if self._sasl_owed:
            raise RemoteProtocolError(
                "the server sent a second SASL challenge before the first was answered"
            )
        self._challenges += 1
        if self._challenges > MAX_SASL_CHALLENGES:
            raise RemoteProtocolError(f"more than {MAX_SASL_CHALLENGES} SASL challenges")
        data = parse_challenge(line)
        self._sasl_owed = True
        return SASLChallenge(data)

    def _read_body(self, body: _Body) -> Event | NeedData:
        pending = self._pending[0]
        limits = pending.limits
        while True:
            line = self._buffer.maybe_extract_line(limits.line)
            if line is None:
                if self._buffer.closed:
                    raise RemoteProtocolError(
                        f"the server closed the connection in the middle of the "
                        f"multi-line reply to {pending.keyword}"
                    )
                return NEED_DATA
            if line == _TERMINATOR:
                # Only CRLF "." CRLF ends a body: a "." after a bare LF is part of a line,
                # because ReceiveBuffer splits on CRLF only.
                if self._trace is not None:
                    self._trace("S: .")
                self._body = None
                return self._finish(body.status, tuple(body.lines))
            body.size += len(line)
            if body.size > limits.total:
                raise RemoteProtocolError(
                    f"the multi-line reply to {pending.keyword} exceeds {limits.total} octets"
                )
            if len(body.lines) >= limits.count:
                raise RemoteProtocolError(
                    f"the multi-line reply to {pending.keyword} exceeds {limits.count} lines"
                )
            if self._trace is not None and pending.trace_body:
                self._trace(printable_line("S: ", line))
            body.lines.append(unstuff(line[:-2]))

    def _read_message(self, message: MessageBody) -> Event | NeedData:
        pending = self._pending[0]
        if self._message_ended:
            self._message = None
            self._pending.popleft()
            return MessageEnd(pending.keyword, message.size)
        while self._buffer:
            data, ended = self._buffer.extract_message(message)
            if message.size > self.max_message_size:
                raise RemoteProtocolError(
                    f"the answer to {pending.keyword} exceeds {self.max_message_size} octets"
                )
            if ended:
                self._message_ended = True
                if self._trace is not None:
                    self._trace(f"S: <{message.size} octets of message>")
                    self._trace("S: .")
                return MessageData(data) if data else self._read_message(message)
            if data:
                return MessageData(data)
            if len(self._buffer) < 5:
                break  # only the start of a possible terminator: wait for more
        if self._buffer.closed:
            raise RemoteProtocolError(
                f"the server closed the connection in the middle of the answer to {pending.keyword}"
            )
        return NEED_DATA

    @staticmethod
    def _listing(
        pending: _Pending, status: StatusLine, lines: tuple[bytes, ...]
    ) -> tuple[bytes, ...] | tuple[str]:
        # "LIST" answers in the body; "LIST 3" on the status line ("+OK 3 120").
        return lines if pending.multiline else (status.text,)

    def _finish(self, status: StatusLine, lines: tuple[bytes, ...]) -> Event:
        pending = self._pending.popleft()
        keyword = pending.keyword
        transition = REPLY_TABLE.get((pending.sent_in, keyword))
        if transition is None:  # pragma: no cover - the send table only admits known pairs
            raise RemoteProtocolError(f"unexpected reply to {keyword} in state {self._state}")
        self._state = transition[0] if status.ok else transition[1]
        if keyword == "AUTH":
            self._sasl_owed = False
        if not status.ok:
            return ErrResponse(keyword, status.text, status.code)
        if keyword == GREETING:
            self._greeting = Greeting(status.text, status.code, apop_timestamp(status.text))
            return self._greeting
        if keyword == "CAPA":
            self._capabilities = parse_capabilities(lines)
        elif keyword == "STLS":
            self._capabilities = {}  # learned in plaintext: not to be trusted after TLS
            if self._buffer:
                raise RemoteProtocolError(
                    "the server sent data after STLS +OK, before the TLS handshake"
                )
        elif keyword == "STAT":
            count, size = parse_stat(status.text)
            return StatResponse(count, size, status.code)
        elif keyword == "LIST":
            entries = [
                parse_listing_line(keyword, x) for x in self._listing(pending, status, lines)
            ]
            return ScanListing(tuple((n, int(v)) for n, v in entries), status.code)
        elif keyword == "UIDL":
            entries = [
                parse_listing_line(keyword, x) for x in self._listing(pending, status, lines)
            ]
            return UidListing(tuple(entries), status.code)
        if pending.multiline:
            return MultilineResponse(keyword, status.text, status.code, lines)
        return OkResponse(keyword, status.text, status.code)
