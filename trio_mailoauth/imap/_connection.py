"""The sans-I/O IMAP connection: bytes in, events out; commands in, bytes out.

No I/O and nothing async here (a meta test checks the imports). The I/O layer feeds what it
reads to :meth:`IMAPConnection.receive_data`, pulls events with
:meth:`IMAPConnection.next_event` and writes :meth:`IMAPConnection.data_to_send`, which can
grow after receiving (a ``+`` continuation releases the next part of a command).

    conn = IMAPConnection()
    conn.receive_data(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] ready\\r\\n")
    conn.next_event()                         # Greeting(status="OK", ...)
    tag = conn.send(Authenticate("XOAUTH2", initial_response))
    sock.sendall(conn.data_to_send())          # b"A1 AUTHENTICATE XOAUTH2 dXNl...\\r\\n"

Several commands may be in flight; tagged responses are matched to them by tag.
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
    decode_sasl,
    encode_sasl,
    printable_line,
)
from trio_mailoauth.errors import LocalProtocolError, RemoteProtocolError
from trio_mailoauth.imap._reader import (
    Continuation,
    IMAPBuffer,
    Limits,
    Parsed,
    RawResponse,
    ResponseReader,
    TaggedCompletion,
    UntaggedStatus,
    capabilities_from_code,
    parse_response,
)
from trio_mailoauth.imap._state import (
    COMMAND_STATES,
    GREETING_TRANSITIONS,
    ON_SEND,
    ON_TAGGED_NO,
    ON_TAGGED_OK,
    IMAPState,
    is_exclusive,
)
from trio_mailoauth.imap._writer import CommandWriter
from trio_mailoauth.imap.commands import Authenticate, Command, Idle
from trio_mailoauth.imap.events import (
    Bye,
    CapabilityResponse,
    Enabled,
    Event,
    Greeting,
    IdleStarted,
    StatusResponse,
    TaggedResponse,
)
from trio_mailoauth.imap.message import Fetch

__all__ = ["IMAPConnection"]

# Commands after which the capabilities change (RFC 9051 §6.2.2, §6.2.3, §6.2.1): a server
# may list the new ones in the tagged OK; otherwise they are unknown until asked again.
_CAPABILITIES_CHANGE: Final = frozenset({"LOGIN", "AUTHENTICATE", "STARTTLS"})


@dataclass
class _InFlight:
    name: str  # the state table's key: FETCH for UID FETCH too
    wire_name: str
    exclusive: bool
    capabilities_seen: bool = False  # capabilities arrived while this command ran
    idling: bool = False  # IDLE got its "+"; DONE may be sent
    done_sent: bool = False  # IDLE's DONE is queued: only the tagged OK may follow


@dataclass
class _Part:
    """Bytes of one command waiting to go out; ``blocked`` until a ``+`` releases them."""

    tag: str
    data: bytes
    trace: str | None
    blocked: bool


class IMAPConnection:
    """One IMAP conversation's protocol state, with no I/O.

    ``trace`` is called with each line of the conversation, ``"C: ..."`` or ``"S: ..."``,
    secrets (LOGIN arguments, SASL responses) replaced by ``<redacted>``.
    """

    def __init__(
        self, *, tag_prefix: str = "A", trace: TraceHook | None = None, limits: Limits | None = None
    ) -> None:
        if not (tag_prefix.isascii() and tag_prefix.isalpha() and len(tag_prefix) <= 8):
            raise ValueError("tag_prefix must be 1 to 8 ASCII letters")
        self._tag_prefix = tag_prefix
        self._trace = trace
        self._limits = limits or Limits()
        self._state = IMAPState.GREETING
        self._buffer = IMAPBuffer()
        self._reader = ResponseReader(self._limits)
        self._writer = CommandWriter()
        self._counter = 0
        self._in_flight: dict[str, _InFlight] = {}
        self._outbox: deque[_Part] = deque()
        self._sasl_tag: str | None = None  # the AUTHENTICATE exchange running, if any
        self._sasl_waiting = False  # a challenge awaits our response
        self._capabilities: frozenset[str] | None = None
        self._enabled: frozenset[str] = frozenset()
        self._utf8 = False  # mailbox names in UTF-8 (IMAP4rev2 or UTF8=ACCEPT enabled)
        self.greeting: Greeting | None = None

    def __repr__(self) -> str:
        return f"<IMAPConnection {self._state.name} in flight={list(self._in_flight)}>"

    # --- what the I/O layer and callers look at ------------------------------------------

    @property
    def state(self) -> IMAPState:
        return self._state

    @property
    def capabilities(self) -> frozenset[str] | None:
        """The server's capabilities (upper-case), or None when unknown (ask: CAPABILITY)."""
        return self._capabilities

    @property
    def in_flight(self) -> dict[str, str]:
        """Commands sent and not yet completed: tag -> command (``UID FETCH``...)."""
        return {tag: entry.wire_name for tag, entry in self._in_flight.items()}

    @property
    def enabled(self) -> frozenset[str]:
        """Extensions switched on with ENABLE (``CONDSTORE``, ``UTF8=ACCEPT``...)."""
        return self._enabled

    @property
    def utf8(self) -> bool:
        """True when mailbox names travel as UTF-8 rather than modified UTF-7."""
        return self._utf8

    @property
    def limits(self) -> Limits:
        return self._limits

    def can_send(self, command: Command) -> bool:
        """Whether :meth:`send` would accept ``command`` now (state and pipelining rules)."""
        try:
            self._check_send(command)
        except LocalProtocolError:
            return False
        return True

    # --- receiving -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the server; ``b""`` when it closed the connection."""
        if self._state is IMAPState.STARTING_TLS and data:
            self._state = IMAPState.ERROR
            raise RemoteProtocolError(
                "bytes arrived in plaintext after the STARTTLS go-ahead (possible injection)"
            )
        try:
            self._buffer.feed(data)
        except RemoteProtocolError:
            self._state = IMAPState.ERROR
            raise

    def next_event(self) -> Event | NeedData:
        """The next complete event, or NEED_DATA."""
        if self._state is IMAPState.ERROR:
            raise RemoteProtocolError("the IMAP connection is in the ERROR state")
        try:
            return self._next_event()
        except RemoteProtocolError:
            self._state = IMAPState.ERROR
            raise

    def _next_event(self) -> Event | NeedData:
        while True:
            raw = self._reader.read(self._buffer)
            if raw is None:
                if not self._buffer.closed:
                    return NEED_DATA
                if self._reader.in_progress or self._buffer:
                    raise RemoteProtocolError(
                        "the server closed the connection in the middle of a response"
                    )
                self._state = IMAPState.CLOSED
                return ConnectionClosed()
            if self._trace is not None:
                self._trace_response(raw)
            event = self._process(parse_response(raw, self._limits.max_depth, utf8=self._utf8))
            if event is not None:
                return event

    def _trace_response(self, raw: RawResponse) -> None:
        assert self._trace is not None
        if not raw.literals:
            self._trace(printable_line("S: ", raw.lines))
        else:  # literals follow: show the first line only (never a message body)
            first = printable_line("S: ", raw.first_line())
            self._trace(f"{first} ... ({raw.size} bytes with literals)")

    def _process(self, parsed: Parsed) -> Event | None:
        state = self._state
        if state is IMAPState.GREETING:
            return self._greeting(parsed)
        if type(parsed) is Fetch:  # most responses of a big FETCH; nothing to learn from
            return parsed
        if isinstance(parsed, Continuation):
            return self._continuation(parsed)
        if isinstance(parsed, TaggedCompletion):
            return self._completion(parsed)
        if isinstance(parsed, UntaggedStatus):
            if parsed.code == "CAPABILITY":
                self._learn_capabilities(capabilities_from_code(parsed.code_data))
            if parsed.status == "BYE":
                self._state = IMAPState.LOGOUT
                return Bye(parsed.text, parsed.code, parsed.code_data)
            if parsed.status == "PREAUTH":
                raise RemoteProtocolError(f"PREAUTH in state {state.name} (only a greeting)")
            return StatusResponse(parsed.status, parsed.text, parsed.code, parsed.code_data)
        if isinstance(parsed, CapabilityResponse):
            self._learn_capabilities(parsed.capabilities)
        elif isinstance(parsed, Enabled):
            self._enabled |= parsed.capabilities
            self._update_utf8()
        return parsed

    def _update_utf8(self) -> None:
        self._utf8 = bool({"UTF8=ACCEPT", "UTF8=ONLY", "IMAP4REV2"} & self._enabled)
        self._writer.utf8 = self._utf8

    def _greeting(self, parsed: Parsed) -> Greeting:
        if not isinstance(parsed, UntaggedStatus) or parsed.status not in GREETING_TRANSITIONS:
            raise RemoteProtocolError(
                f"expected a greeting (* OK, * PREAUTH, * BYE) in state GREETING, "
                f"got {type(parsed).__name__}"
            )
        status = parsed.status
        assert status in ("OK", "PREAUTH", "BYE")  # narrowed by the table
        self.greeting = Greeting(status, parsed.text, parsed.code, parsed.code_data)
        self._state = GREETING_TRANSITIONS[status]
        if parsed.code == "CAPABILITY":
            self._learn_capabilities(capabilities_from_code(parsed.code_data))
        return self.greeting

    def _continuation(self, parsed: Continuation) -> Event | None:
        if self._sasl_tag is not None:
            if self._sasl_waiting:
                raise RemoteProtocolError("a second SASL challenge before our response")
            self._sasl_waiting = True
            return SASLChallenge(decode_sasl(parsed.text))
        for entry in self._in_flight.values():
            if entry.name == "IDLE" and not entry.idling and not entry.done_sent:
                entry.idling = True
                return IdleStarted(parsed.text.decode("utf-8", "replace"))
        for part in self._outbox:
            if part.blocked:
                part.blocked = False  # the server is ready for this literal
                return None
        raise RemoteProtocolError(
            f"continuation request in state {self._state.name} while no command waits for one"
        )

    def _completion(self, parsed: TaggedCompletion) -> TaggedResponse:
        entry = self._in_flight.pop(parsed.tag, None)
        if entry is None:
            raise RemoteProtocolError(
                f"tagged response for {parsed.tag[:20]!r}, which is not a command in flight "
                f"(state {self._state.name})"
            )
        # A refused command's unsent literals must not go out (the server said NO/BAD
        # instead of "+").
        self._outbox = deque(part for part in self._outbox if part.tag != parsed.tag)
        if parsed.tag == self._sasl_tag:
            self._sasl_tag = None
            self._sasl_waiting = False
        if parsed.status == "OK":
            self._state = ON_TAGGED_OK.get((entry.name, self._state), self._state)
        else:
            self._state = ON_TAGGED_NO.get((entry.name, self._state), self._state)
        if parsed.code == "CAPABILITY":
            self._learn_capabilities(capabilities_from_code(parsed.code_data))
        elif (
            parsed.status == "OK"
            and entry.name in _CAPABILITIES_CHANGE
            and not entry.capabilities_seen
        ):
            self._set_capabilities(None)
        if entry.name == "STARTTLS" and parsed.status == "OK":
            # Learned in plaintext: forget them (RFC 9051 §6.2.1), and anything already
            # buffered after the go-ahead was injected before the TLS handshake.
            self._set_capabilities(None)
            if self._buffer or self._reader.in_progress:
                raise RemoteProtocolError(
                    "bytes arrived in plaintext after the STARTTLS go-ahead (possible injection)"
                )
        return TaggedResponse(
            parsed.tag, entry.wire_name, parsed.status, parsed.text, parsed.code, parsed.code_data
        )

    def _learn_capabilities(self, capabilities: frozenset[str]) -> None:
        if self._state is IMAPState.STARTING_TLS:
            return
        for entry in self._in_flight.values():
            entry.capabilities_seen = True
        self._set_capabilities(capabilities)

    def _set_capabilities(self, capabilities: frozenset[str] | None) -> None:
        self._capabilities = capabilities
        names = capabilities or frozenset()
        self._writer.literal_plus = "LITERAL+" in names
        self._writer.literal_minus = "LITERAL-" in names

    # --- sending ---------------------------------------------------------------------------

    def send(self, command: Command) -> str:
        """Queue ``command`` and return its tag.

        Raises LocalProtocolError, with nothing queued, when the state table forbids it.
        """
        name, wire_name, exclusive = self._check_send(command)
        tag = f"{self._tag_prefix}{self._counter + 1}"
        parts = self._writer.write(tag, wire_name, command.arguments())
        self._counter += 1
        redacted = command.redacted_arguments()
        for index, data in enumerate(parts):
            if redacted is not None:
                trace = f"C: {tag} {wire_name} {redacted}" if index == 0 else None
            elif self._trace is None:
                trace = None
            elif index == 0:
                line_end = data.find(b"\r\n") + 2
                trace = printable_line("C: ", data[:line_end])
                if line_end < len(data):  # a LITERAL+ literal follows: not its bytes
                    trace += f" <{len(data) - line_end} more bytes>"
            else:  # a literal's bytes (a message being appended): never in the trace
                trace = f"C: <{len(data)} bytes of literal data>"
            self._outbox.append(_Part(tag, data, trace, blocked=index > 0))
        self._in_flight[tag] = _InFlight(name, wire_name, exclusive)
        if isinstance(command, Authenticate):
            self._sasl_tag = tag
        self._state = ON_SEND.get(name, self._state)
        return tag

    def _check_send(self, command: Command) -> tuple[str, str, bool]:
        name = command.name
        wire_name = command.wire_name()
        state = self._state
        allowed = COMMAND_STATES.get(name)
        if allowed is None:
            raise LocalProtocolError(f"unknown IMAP command {name!r}")
        if state not in allowed:
            raise LocalProtocolError(f"cannot send {wire_name} in state {state.name}")
        exclusive = is_exclusive(name, wire_name)
        busy = [entry.wire_name for entry in self._in_flight.values()]
        if busy and (exclusive or any(entry.exclusive for entry in self._in_flight.values())):
            raise LocalProtocolError(
                f"cannot send {wire_name} in state {state.name} while {', '.join(busy)} "
                "is in flight"
            )
        if (
            isinstance(command, Authenticate)
            and command.initial_response is not None
            and self._capabilities is not None
            and "SASL-IR" not in self._capabilities
        ):
            raise LocalProtocolError("the server does not offer SASL-IR (initial responses)")
        if (
            isinstance(command, Idle)
            and self._capabilities is not None
            and "IDLE" not in self._capabilities
        ):
            raise LocalProtocolError("the server does not offer IDLE")
        return name, wire_name, exclusive

    def idle_done(self) -> None:
        """End the running IDLE: queue ``DONE`` (its tagged OK follows)."""
        for tag, entry in self._in_flight.items():
            if entry.name == "IDLE" and entry.idling and not entry.done_sent:
                entry.done_sent = True
                self._outbox.append(_Part(tag, b"DONE\r\n", "C: DONE", blocked=False))
                return
        raise LocalProtocolError(f"no accepted IDLE to end (state {self._state.name})")

    def send_sasl_response(self, data: bytes | None) -> None:
        """Answer the pending SASL challenge; ``None`` cancels the exchange (``*``)."""
        if self._sasl_tag is None or not self._sasl_waiting:
            raise LocalProtocolError(
                f"no SASL challenge awaits a response (state {self._state.name})"
            )
        self._sasl_waiting = False
        if data is None:
            self._outbox.append(_Part(self._sasl_tag, b"*\r\n", "C: *", blocked=False))
        else:
            line = encode_sasl(data) + b"\r\n"
            self._outbox.append(
                _Part(self._sasl_tag, line, "C: <redacted SASL response>", blocked=False)
            )

    def tls_established(self) -> None:
        """The I/O layer finished the TLS handshake after STARTTLS; commands may flow again."""
        if self._state is not IMAPState.STARTING_TLS:
            raise LocalProtocolError(f"no STARTTLS to complete in state {self._state.name}")
        self._state = IMAPState.NOT_AUTHENTICATED

    def has_data_to_send(self) -> bool:
        """True when :meth:`data_to_send` would return bytes."""
        return bool(self._outbox) and not self._outbox[0].blocked

    def data_to_send(self) -> bytes:
        """Bytes to write now (possibly empty)."""
        parts: list[bytes] = []
        while self._outbox and not self._outbox[0].blocked:
            part = self._outbox.popleft()
            if self._trace is not None and part.trace is not None:
                self._trace(part.trace)
            parts.append(part.data)
        # One part (a command, or an APPEND's message literal) goes out as it is: a 25 MB
        # message is never copied here.
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def send_failed(self) -> None:
        """The I/O layer could not write: the connection is unusable."""
        self._state = IMAPState.ERROR
