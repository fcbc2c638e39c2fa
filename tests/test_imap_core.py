"""The sans-I/O IMAP core: byte transcripts (whole, byte by byte, random splits, trailing
data), the tokenizer, the command writer, the state table and fuzzing."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_mailoauth._sansio import NEED_DATA
from trio_mailoauth.errors import LocalProtocolError, RemoteProtocolError
from trio_mailoauth.imap import IMAPConnection, IMAPState, Limits
from trio_mailoauth.imap._reader import (
    Continuation,
    TaggedCompletion,
    UntaggedStatus,
    parse_response,
)
from trio_mailoauth.imap._writer import AString, Atom, CommandWriter
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
    CapabilityResponse,
    ConnectionClosed,
    Event,
    Exists,
    Expunge,
    Fetch,
    Flags,
    Greeting,
    ListEntry,
    Recent,
    SASLChallenge,
    Search,
    StatusResponse,
    TaggedResponse,
    UntaggedResponse,
)

TOKEN = "ya29.SECRET-TOKEN-abc"
XOAUTH2_IR = f"user=alice@example.test\x01auth=Bearer {TOKEN}\x01\x01".encode()
XOAUTH2_B64 = base64.b64encode(XOAUTH2_IR)
DOVECOT_CAPS = (
    b"IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
    b"AUTH=PLAIN AUTH=LOGIN AUTH=XOAUTH2 AUTH=OAUTHBEARER"
)
DOVECOT_GREETING = b"* OK [CAPABILITY " + DOVECOT_CAPS + b"] Dovecot (Debian) ready.\r\n"
DOVECOT_401 = b'{"status":"401","schemes":"bearer","scope":"mail"}'
GMAIL_400 = json.dumps(
    {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}
).encode()


# --- a transcript driver --------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """Answer the pending SASL challenge."""

    data: bytes | None


@dataclass(frozen=True)
class TLSDone:
    pass


@dataclass(frozen=True)
class Closed:
    """The server closes the connection."""


Step = bytes | Command | Answer | TLSDone | Closed
Splitter = Callable[[bytes], Sequence[bytes]]


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@dataclass
class Run:
    events: list[Event]
    wire: bytes
    trace: list[str]
    conn: IMAPConnection


def drain(conn: IMAPConnection, events: list[Event]) -> None:
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return
        assert not isinstance(event, type(NEED_DATA))
        events.append(event)
        if isinstance(event, ConnectionClosed):
            return


def run(script: Sequence[Step], split: Splitter = whole, trailing: bytes = b"") -> Run:
    trace: list[str] = []
    conn = IMAPConnection(trace=trace.append)
    events: list[Event] = []
    wire = bytearray()
    last_server = max(i for i, step in enumerate(script) if isinstance(step, bytes))
    for index, step in enumerate(script):
        if isinstance(step, bytes):
            data = step + (trailing if index == last_server else b"")
            for chunk in split(data):
                conn.receive_data(chunk)
                drain(conn, events)
        elif isinstance(step, Command):
            conn.send(step)
        elif isinstance(step, Answer):
            conn.send_sasl_response(step.data)
        elif isinstance(step, TLSDone):
            conn.tls_established()
        else:
            conn.receive_data(b"")
            drain(conn, events)
        wire += conn.data_to_send()
    return Run(events, bytes(wire), trace, conn)


# --- transcripts ----------------------------------------------------------------------------

DOVECOT_XOAUTH2_OK: list[Step] = [
    DOVECOT_GREETING,
    Authenticate("XOAUTH2", XOAUTH2_IR),
    b"A1 OK [CAPABILITY IMAP4rev1 SASL-IR IDLE MOVE] Logged in\r\n",
]

DOVECOT_XOAUTH2_REJECTED: list[Step] = [
    DOVECOT_GREETING,
    Authenticate("XOAUTH2", XOAUTH2_IR),
    b"+ " + base64.b64encode(DOVECOT_401) + b"\r\n",
    Answer(b""),
    b"A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
]

GMAIL_XOAUTH2_REJECTED: list[Step] = [
    b"* OK Gimap ready for requests from 192.0.2.1 a1mb123\r\n",
    Capability(),
    b"* CAPABILITY IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 "
    b"XYZZY SASL-IR AUTH=XOAUTH2 AUTH=PLAIN AUTH=PLAIN-CLIENTTOKEN AUTH=OAUTHBEARER\r\n"
    b"A1 OK Thats all she wrote! a1mb123\r\n",
    Authenticate("XOAUTH2", XOAUTH2_IR),
    b"+ " + base64.b64encode(GMAIL_400) + b"\r\n",
    Answer(b""),
    b"A2 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n",
]

MICROSOFT_XOAUTH2_REJECTED: list[Step] = [
    b"* OK The Microsoft Exchange IMAP4 service is ready. [TQBOADIAUABSADEAMwBDAEEAMAAwADAA]\r\n",
    Capability(),
    b"* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS ID UNSELECT "
    b"CHILDREN IDLE NAMESPACE LITERAL+\r\nA1 OK CAPABILITY completed.\r\n",
    Authenticate("XOAUTH2", XOAUTH2_IR),
    b"A2 NO AUTHENTICATE failed.\r\n",
]

TWO_STEP_OK: list[Step] = [
    b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] ready\r\n",
    Authenticate("XOAUTH2"),
    b"+ \r\n",
    Answer(XOAUTH2_IR),
    b"+\r\n",  # an error challenge with no text at all (and no space)
    Answer(b""),
    b"A1 NO [UNAVAILABLE] Temporary authentication failure.\r\n",
    Authenticate("XOAUTH2"),
    b"+\r\n",
    Answer(XOAUTH2_IR),
    b"* CAPABILITY IMAP4rev1 IDLE\r\nA2 OK Logged in\r\n",
]

STARTTLS: list[Step] = [
    b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n",
    StartTLS(),
    b"A1 OK Begin TLS negotiation now.\r\n",
    TLSDone(),
    Capability(),
    b"* CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR\r\nA2 OK done\r\n",
]

LOGIN_SYNC_LITERAL: list[Step] = [
    b"* OK [CAPABILITY IMAP4rev1] ready\r\n",
    Login("alice", "pässword"),
    b"+ Ready for literal data\r\n",
    b"A1 OK Logged in\r\n",
]

SESSION: list[Step] = [
    b"* PREAUTH [CAPABILITY IMAP4rev1 IDLE] Logged in as alice\r\n",
    Noop(),
    Capability(),
    b"* 22 EXISTS\r\n* 1 RECENT\r\n* 3 EXPUNGE\r\n* OK [ALERT] System going down\r\n"
    b"* FLAGS (\\Answered \\Seen $Forwarded)\r\n"
    b"* 3 FETCH (UID 7 FLAGS (\\Seen) BODY[HEADER.FIELDS (SUBJECT)] {11}\r\nSubject: x\n"
    b' INTERNALDATE "01-Jan-2024 00:00:00 +0000")\r\n'
    b'* XUNKNOWN-THING 1 (a b (c NIL)) "q\\"uoted"\r\n'
    b"A2 OK [CAPABILITY IMAP4rev1 IDLE MOVE] done\r\n"
    b"A1 OK NOOP completed\r\n",
    Logout(),
    b"* BYE Logging out\r\nA3 OK Logout completed.\r\n",
    Closed(),
]

UNSOLICITED_BYE: list[Step] = [
    b"* OK ready\r\n",
    Noop(),
    b"* BYE Session invalidated - AccessTokenExpired\r\n",
    Closed(),
]

TRANSCRIPTS = {
    "dovecot_xoauth2_ok": DOVECOT_XOAUTH2_OK,
    "dovecot_xoauth2_rejected": DOVECOT_XOAUTH2_REJECTED,
    "gmail_xoauth2_rejected": GMAIL_XOAUTH2_REJECTED,
    "microsoft_xoauth2_rejected": MICROSOFT_XOAUTH2_REJECTED,
    "two_step": TWO_STEP_OK,
    "starttls": STARTTLS,
    "login_sync_literal": LOGIN_SYNC_LITERAL,
    "session": SESSION,
    "unsolicited_bye": UNSOLICITED_BYE,
}


@pytest.fixture(params=list(TRANSCRIPTS))
def transcript(request: pytest.FixtureRequest) -> list[Step]:
    return TRANSCRIPTS[request.param]


def test_byte_by_byte_gives_the_same_events(transcript: list[Step]) -> None:
    expected = run(transcript)
    assert run(transcript, bytewise).events == expected.events
    assert run(transcript, bytewise).wire == expected.wire


@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_random_splits_give_the_same_events(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(TRANSCRIPTS)))
    script = TRANSCRIPTS[name]
    expected = run(script)

    def split(chunk: bytes) -> list[bytes]:
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(chunk) - 1)), max_size=8)))
        bounds = [0, *cuts, len(chunk)]
        return [chunk[a:b] for a, b in itertools.pairwise(bounds) if b > a]

    got = run(script, split)
    assert got.events == expected.events
    assert got.wire == expected.wire


@pytest.mark.parametrize(
    "name", [name for name, s in TRANSCRIPTS.items() if not isinstance(s[-1], Closed)]
)
@pytest.mark.parametrize("split", [whole, bytewise])
def test_trailing_data_after_the_last_event(name: str, split: Splitter) -> None:
    script = TRANSCRIPTS[name]
    expected = run(script).events
    if name == "starttls":
        return  # trailing plaintext after STARTTLS is an error: tested below
    result = run(script, split, trailing=b"* 9 EXISTS\r\n* 10 EXI")
    assert result.events == [*expected, Exists(9)]
    assert result.conn.next_event() is NEED_DATA


# --- what the transcripts mean ---------------------------------------------------------


def test_dovecot_xoauth2_success() -> None:
    result = run(DOVECOT_XOAUTH2_OK)
    assert result.wire == b"A1 AUTHENTICATE XOAUTH2 " + XOAUTH2_B64 + b"\r\n"
    greeting, done = result.events
    assert isinstance(greeting, Greeting)
    assert greeting.status == "OK"
    assert greeting.code == "CAPABILITY"
    assert done == TaggedResponse(
        "A1", "AUTHENTICATE", "OK", "Logged in", "CAPABILITY", "IMAP4rev1 SASL-IR IDLE MOVE"
    )
    assert result.conn.state is IMAPState.AUTHENTICATED
    assert result.conn.capabilities == frozenset({"IMAP4REV1", "SASL-IR", "IDLE", "MOVE"})


@pytest.mark.parametrize(
    ("script", "challenge"),
    [(DOVECOT_XOAUTH2_REJECTED, DOVECOT_401), (GMAIL_XOAUTH2_REJECTED, GMAIL_400)],
)
def test_error_challenge_then_no(script: list[Step], challenge: bytes) -> None:
    result = run(script)
    assert SASLChallenge(challenge) in result.events
    assert result.wire.endswith(b" AUTHENTICATE XOAUTH2 " + XOAUTH2_B64 + b"\r\n\r\n")
    final = result.events[-1]
    assert isinstance(final, TaggedResponse)
    assert (final.status, final.code) == ("NO", "AUTHENTICATIONFAILED")
    assert result.conn.state is IMAPState.NOT_AUTHENTICATED
    assert result.conn.capabilities is not None  # a refusal keeps what we knew


def test_microsoft_rejects_without_challenge() -> None:
    result = run(MICROSOFT_XOAUTH2_REJECTED)
    assert not any(isinstance(e, SASLChallenge) for e in result.events)
    assert result.events[-1] == TaggedResponse("A2", "AUTHENTICATE", "NO", "AUTHENTICATE failed.")


def test_two_step_form_and_untagged_capabilities_during_authenticate() -> None:
    result = run(TWO_STEP_OK)
    assert result.wire == (
        b"A1 AUTHENTICATE XOAUTH2\r\n" + XOAUTH2_B64 + b"\r\n\r\n"
        b"A2 AUTHENTICATE XOAUTH2\r\n" + XOAUTH2_B64 + b"\r\n"
    )
    assert [e for e in result.events if isinstance(e, SASLChallenge)] == [
        SASLChallenge(b""),
        SASLChallenge(b""),
        SASLChallenge(b""),
    ]
    assert result.events[3] == TaggedResponse(
        "A1", "AUTHENTICATE", "NO", "Temporary authentication failure.", "UNAVAILABLE"
    )
    # CAPABILITY arrived before the OK: those are the new capabilities.
    assert result.conn.capabilities == frozenset({"IMAP4REV1", "IDLE"})
    assert result.conn.state is IMAPState.AUTHENTICATED


def test_capabilities_unknown_after_authentication_without_them() -> None:
    result = run(
        [
            b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n",
            Login("alice", "secret"),
            b"A1 OK Logged in\r\n",
        ]
    )
    assert result.wire == b'A1 LOGIN "alice" "secret"\r\n'
    assert result.conn.capabilities is None
    assert result.conn.state is IMAPState.AUTHENTICATED


def test_starttls_forgets_plaintext_capabilities() -> None:
    conn = IMAPConnection()
    conn.receive_data(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n")
    conn.next_event()
    conn.send(StartTLS())
    assert conn.data_to_send() == b"A1 STARTTLS\r\n"
    conn.receive_data(b"A1 OK Begin TLS negotiation now.\r\n")
    assert conn.next_event() == TaggedResponse("A1", "STARTTLS", "OK", "Begin TLS negotiation now.")
    assert conn.state is IMAPState.STARTING_TLS
    assert conn.capabilities is None
    with pytest.raises(LocalProtocolError, match="STARTING_TLS"):
        conn.send(Capability())
    conn.tls_established()
    assert conn.state.name == "NOT_AUTHENTICATED"
    result = run(STARTTLS)
    assert result.conn.capabilities == frozenset({"IMAP4REV1", "AUTH=XOAUTH2", "SASL-IR"})


@pytest.mark.parametrize("split", [whole, bytewise])
def test_starttls_injection_in_the_same_read_is_an_error(split: Splitter) -> None:
    conn = IMAPConnection()
    conn.receive_data(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
    conn.next_event()
    conn.send(StartTLS())

    def feed() -> None:
        for chunk in split(b"A1 OK go ahead\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"):
            conn.receive_data(chunk)
            while conn.next_event() is not NEED_DATA:
                pass

    with pytest.raises(RemoteProtocolError, match="STARTTLS"):
        feed()
    assert conn.state is IMAPState.ERROR


def test_starttls_injection_in_a_later_read_is_an_error() -> None:
    conn = IMAPConnection()
    conn.receive_data(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
    conn.next_event()
    conn.send(StartTLS())
    conn.receive_data(b"A1 OK go ahead\r\n")
    assert isinstance(conn.next_event(), TaggedResponse)
    with pytest.raises(RemoteProtocolError, match="injection"):
        conn.receive_data(b"* ")


def test_sync_literal_waits_for_continuation() -> None:
    conn = IMAPConnection()
    conn.receive_data(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
    conn.next_event()
    conn.send(Login("alice", "pässword"))
    assert conn.data_to_send() == b'A1 LOGIN "alice" {9}\r\n'
    assert conn.data_to_send() == b""
    conn.receive_data(b"+ go on\r\n")
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send() == "pässword\r\n".encode()
    assert run(LOGIN_SYNC_LITERAL).wire == 'A1 LOGIN "alice" {9}\r\npässword\r\n'.encode()


def test_literal_refused_instead_of_continued_is_dropped() -> None:
    conn = IMAPConnection()
    conn.receive_data(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
    conn.next_event()
    conn.send(Login("alice", "pässword"))
    conn.data_to_send()
    conn.receive_data(b"A1 BAD too long\r\n")
    assert conn.next_event() == TaggedResponse("A1", "LOGIN", "BAD", "too long")
    assert conn.data_to_send() == b""
    conn.send(Noop())
    assert conn.data_to_send() == b"A2 NOOP\r\n"


def test_literal_plus_and_minus() -> None:
    conn = IMAPConnection()
    conn.receive_data(b"* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n")
    conn.next_event()
    conn.send(Login("alice", "pa\r\nss"))
    assert conn.data_to_send() == b'A1 LOGIN "alice" {6+}\r\npa\r\nss\r\n'


def test_session_events() -> None:
    result = run(SESSION)
    assert result.wire == b"A1 NOOP\r\nA2 CAPABILITY\r\nA3 LOGOUT\r\n"
    assert result.events == [
        Greeting("PREAUTH", "Logged in as alice", "CAPABILITY", "IMAP4rev1 IDLE"),
        Exists(22),
        Recent(1),
        Expunge(3),
        StatusResponse("OK", "System going down", "ALERT"),
        Flags(("\\Answered", "\\Seen", "$Forwarded")),
        Fetch(
            3,
            uid=7,
            flags=("\\Seen",),
            sections={"BODY[HEADER.FIELDS (SUBJECT)]": b"Subject: x\n"},
            internal_date=datetime(2024, 1, 1, tzinfo=UTC),
        ),
        UntaggedResponse("XUNKNOWN-THING", ("1", ("a", "b", ("c", None)), b'q"uoted')),
        TaggedResponse("A2", "CAPABILITY", "OK", "done", "CAPABILITY", "IMAP4rev1 IDLE MOVE"),
        TaggedResponse("A1", "NOOP", "OK", "NOOP completed"),
        Bye("Logging out"),
        TaggedResponse("A3", "LOGOUT", "OK", "Logout completed."),
        ConnectionClosed(),
    ]
    assert result.conn.state is IMAPState.CLOSED


def test_unsolicited_bye() -> None:
    result = run(UNSOLICITED_BYE)
    assert result.events[1:] == [
        Bye("Session invalidated - AccessTokenExpired"),
        ConnectionClosed(),
    ]
    assert result.conn.state is IMAPState.CLOSED


def test_bye_greeting_and_capability_response() -> None:
    conn = IMAPConnection()
    conn.receive_data(b"* BYE [UNAVAILABLE] Too many connections\r\n")
    assert conn.next_event() == Greeting("BYE", "Too many connections", "UNAVAILABLE")
    assert conn.state is IMAPState.LOGOUT
    with pytest.raises(LocalProtocolError, match="LOGOUT"):
        conn.send(Noop())
    conn = IMAPConnection()
    conn.receive_data(b"* OK hi\r\n")
    conn.next_event()
    conn.send(Capability())
    conn.receive_data(b"* CAPABILITY imap4rev1 auth=xoauth2 \r\nA1 OK .\r\n")
    assert conn.next_event() == CapabilityResponse(frozenset({"IMAP4REV1", "AUTH=XOAUTH2"}))


# --- the trace never shows secrets ---------------------------------------------------------


def test_trace_redacts_secrets() -> None:
    password = "hunter2-SECRET"
    trace = [
        *run(DOVECOT_XOAUTH2_REJECTED).trace,
        *run(TWO_STEP_OK).trace,
        *run(
            [b"* OK [CAPABILITY IMAP4rev1] x\r\n", Login("alice", password), b"A1 NO bad\r\n"]
        ).trace,
    ]
    text = "\n".join(trace)
    for secret in (TOKEN, XOAUTH2_B64.decode(), password):
        assert secret not in text
    assert "C: A1 AUTHENTICATE XOAUTH2 <redacted>" in trace
    assert "C: <redacted SASL response>" in trace
    assert "C: A1 LOGIN <redacted>" in trace
    assert "S: A1 NO [AUTHENTICATIONFAILED] Authentication failed." in trace
    assert password not in repr(Login("alice", password))
    assert TOKEN not in repr(Authenticate("XOAUTH2", XOAUTH2_IR))


def test_trace_of_sasl_cancel() -> None:
    lines: list[str] = []
    conn = IMAPConnection(trace=lines.append)
    conn.receive_data(b"* OK hi\r\n+")
    conn.next_event()
    conn.send(Authenticate("PLAIN"))
    conn.data_to_send()
    conn.receive_data(b" \r\n")
    assert conn.next_event() == SASLChallenge(b"")
    conn.send_sasl_response(None)
    assert conn.data_to_send() == b"*\r\n"
    assert lines[-1] == "C: *"


# --- refused sends (LocalProtocolError, nothing queued) ------------------------------------


def _ready(greeting: bytes = b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n") -> IMAPConnection:
    conn = IMAPConnection()
    conn.receive_data(greeting)
    assert isinstance(conn.next_event(), Greeting)
    return conn


def test_nothing_may_be_sent_before_the_greeting() -> None:
    conn = IMAPConnection()
    with pytest.raises(LocalProtocolError, match="GREETING"):
        conn.send(Capability())
    assert conn.data_to_send() == b""


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (Authenticate("PLAIN"), Noop()),
        (Noop(), Authenticate("PLAIN")),
        (StartTLS(), Capability()),
        (Login("a", "b"), Login("a", "b")),
    ],
)
def test_exclusive_commands(first: Command, second: Command) -> None:
    conn = _ready()
    conn.send(first)
    sent = conn.data_to_send()
    with pytest.raises(LocalProtocolError, match="in flight"):
        conn.send(second)
    assert conn.data_to_send() == b""
    assert sent.startswith(b"A1 ")


def test_refused_sends_queue_nothing_and_keep_the_counter() -> None:
    conn = _ready(b"* OK [CAPABILITY IMAP4rev1] hi\r\n")
    with pytest.raises(LocalProtocolError, match="NUL"):
        conn.send(Login("alice", "pass\x00word"))
    with pytest.raises(LocalProtocolError, match="SASL-IR"):
        conn.send(Authenticate("PLAIN", b"\x00a\x00b"))
    with pytest.raises(LocalProtocolError, match="atom"):
        conn.send(Authenticate("X OAUTH2"))
    with pytest.raises(LocalProtocolError, match="no SASL challenge"):
        conn.send_sasl_response(b"x")
    with pytest.raises(LocalProtocolError, match="STARTTLS"):
        conn.tls_established()
    assert conn.data_to_send() == b""
    conn.send(Noop())
    assert conn.data_to_send() == b"A1 NOOP\r\n"


def test_state_table_is_enforced_after_authentication() -> None:
    conn = _ready(b"* PREAUTH hi\r\n")
    assert conn.state is IMAPState.AUTHENTICATED
    for command in (Login("a", "b"), Authenticate("PLAIN"), StartTLS()):
        with pytest.raises(LocalProtocolError, match="AUTHENTICATED"):
            conn.send(command)
    conn.send(Logout())
    with pytest.raises(LocalProtocolError, match="LOGOUT"):
        conn.send(Noop())


def test_send_failed_moves_to_error() -> None:
    conn = _ready()
    conn.send_failed()
    assert conn.state is IMAPState.ERROR
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_tag_prefix() -> None:
    conn = IMAPConnection(tag_prefix="X")
    conn.receive_data(b"* OK hi\r\n")
    conn.next_event()
    assert conn.send(Noop()) == "X1"
    assert conn.send(Noop()) == "X2"
    assert conn.in_flight == {"X1": "NOOP", "X2": "NOOP"}
    with pytest.raises(ValueError, match="tag_prefix"):
        IMAPConnection(tag_prefix="A+")


# --- server errors (RemoteProtocolError) --------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"A1 OK hi\r\n", "greeting"),
        (b"+ hi\r\n", "greeting"),
        (b"* NO hi\r\n", "greeting"),
        (b"* 3 EXISTS\r\n", "greeting"),
        (b"hello\r\n", "malformed"),
    ],
)
def test_bad_greetings(data: bytes, match: str) -> None:
    conn = IMAPConnection()
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=match):
        conn.next_event()
    assert conn.state is IMAPState.ERROR
    with pytest.raises(RemoteProtocolError, match="ERROR"):
        conn.next_event()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"A7 OK who?\r\n", "not a command in flight"),
        (b"+ go\r\n", "no command waits"),
        (b"* PREAUTH again\r\n", "PREAUTH"),
        (b"* 99999999999 EXISTS\r\n", "32-bit"),
        (b"* 1 EXISTS extra\r\n", "end of the response"),
        (b"* FLAGS (a (b)\r\n", "unclosed"),
        (b'* X "abc\r\n', "unterminated"),
        (b"* OK [ALERT text\r\n", "response code"),
        (b"A1 MAYBE x\r\n", "status"),
        (b"* X " + b"(" * 40 + b")" * 40 + b"\r\n", "nested"),
        (b"* X {99999999999}\r\n", "literal"),
        (b"* X BODY[a[b]\r\n", "unclosed"),
        (b"* OK hi {3}\r\nabc\r\n", "end of the response"),
    ],
)
def test_malformed_responses(data: bytes, match: str) -> None:
    conn = _ready()
    conn.send(Noop())
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=match):
        conn.next_event()
    assert conn.state is IMAPState.ERROR


def test_sasl_protocol_errors() -> None:
    conn = _ready()
    conn.send(Authenticate("PLAIN"))
    conn.receive_data(b"+ not base64!\r\n")
    with pytest.raises(RemoteProtocolError, match="base64"):
        conn.next_event()
    conn = _ready()
    conn.send(Authenticate("PLAIN"))
    conn.receive_data(b"+ \r\n+ \r\n")
    assert conn.next_event() == SASLChallenge(b"")
    with pytest.raises(RemoteProtocolError, match="second SASL challenge"):
        conn.next_event()


@pytest.mark.parametrize(
    "partial", [b"* 3 EXI", b"* 3 FETCH (BODY[] {10}\r\nabc", b"* 3 FETCH (BODY[] {3}\r\n"]
)
def test_close_mid_response(partial: bytes) -> None:
    conn = _ready()
    conn.send(Noop())
    conn.receive_data(partial)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a response"):
        conn.next_event()


def test_close_between_responses_is_connection_closed() -> None:
    conn = _ready()
    conn.send(Noop())
    conn.receive_data(b"* 3 EXISTS\r\n")
    conn.receive_data(b"")
    assert conn.next_event() == Exists(3)
    assert conn.next_event() == ConnectionClosed()
    assert conn.next_event() == ConnectionClosed()
    with pytest.raises(RemoteProtocolError, match="after the connection was closed"):
        conn.receive_data(b"more")


@pytest.mark.parametrize(
    ("limits", "data", "match"),
    [
        (Limits(max_line=100), b"* X " + b"a" * 200, "longer than 100"),
        (Limits(max_line=100), b"* X " + b"a" * 200 + b"\r\n", "longer than 100"),
        (Limits(max_literal=10), b"* X {11}\r\n", "exceeds the limit of 10"),
        (Limits(max_response=50), b"* X {20}\r\n" + b"x" * 20 + b" {20}\r\n", "longer than 50"),
        (Limits(max_depth=3), b"* X ((((a))))\r\n", "deeper than 3"),
    ],
)
def test_limits(limits: Limits, data: bytes, match: str) -> None:
    conn = IMAPConnection(limits=limits)
    conn.receive_data(b"* OK hi\r\n")
    conn.next_event()

    def feed() -> None:
        for byte in bytewise(data):
            conn.receive_data(byte)
            assert conn.next_event() is NEED_DATA

    with pytest.raises(RemoteProtocolError, match=match):  # hit as soon as it can be known
        feed()


# --- the tokenizer ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"+ dGVzdA==\r\n", Continuation(b"dGVzdA==")),
        (b"+\r\n", Continuation(b"")),
        (b"+ \r\n", Continuation(b"")),
        (b"A1 ok\r\n", TaggedCompletion("A1", "OK", "", None, None)),
        (b"A1 OK [READ-WRITE] done\r\n", TaggedCompletion("A1", "OK", "done", "READ-WRITE", None)),
        (
            b"A1 NO [BADCHARSET (UTF-8 US-ASCII)]  x\r\n",
            TaggedCompletion("A1", "NO", " x", "BADCHARSET", "(UTF-8 US-ASCII)"),
        ),
        (b"* OK\r\n", UntaggedStatus("OK", "", None, None)),
        (b"* ok [alert]\r\n", UntaggedStatus("OK", "", "ALERT", None)),
        (b"* BYE bye \xc3\xa9\r\n", UntaggedStatus("BYE", "bye é", None, None)),
        (b"* 0 RECENT\r\n", Recent(0)),
        (b"* 4294967295 EXISTS\r\n", Exists(2**32 - 1)),
        (b"* SEARCH\r\n", Search(())),
        (b"* search 2 3 \r\n", Search((2, 3))),
        (b'* X "" "a\\\\b" "\\q"\r\n', UntaggedResponse("X", (b"", b"a\\b", b"\\q"))),
        (b'* X {0}\r\n nil NIL "NIL"\r\n', UntaggedResponse("X", (b"", None, None, b"NIL"))),
        (b"* X ~{3}\r\n\x00\x01\x02\r\n", UntaggedResponse("X", (b"\x00\x01\x02",))),
        (b"* X {3+}\r\na\r\n\r\n", UntaggedResponse("X", (b"a\r\n",))),
        (b"* X ()(())\r\n", UntaggedResponse("X", ((), ((),)))),
        (b"* X BODY[]<0> a]b\r\n", UntaggedResponse("X", ("BODY[]<0>", "a]b"))),
        (
            b'* LIST (\\HasNoChildren) "/" "INBOX/a b"\r\n',
            ListEntry("INBOX/a b", "/", ("\\HasNoChildren",)),
        ),
    ],
)
def test_tokenizer(data: bytes, expected: object) -> None:
    assert parse_response(data) == expected


def test_writer_forms() -> None:
    writer = CommandWriter()
    assert writer.write("A1", "LOGIN", [AString(""), AString('a"b\\c')]) == [
        b'A1 LOGIN "" "a\\"b\\\\c"\r\n'
    ]
    assert writer.write("A1", "LOGIN", [AString(b"x" * 1025)]) == [
        b"A1 LOGIN {1025}\r\n",
        b"x" * 1025 + b"\r\n",
    ]
    assert writer.write("A1", "LOGIN", [AString("\n"), AString("é")]) == [
        b"A1 LOGIN {1}\r\n",
        b"\n {2}\r\n",
        "é\r\n".encode(),
    ]
    writer.literal_minus = True
    assert writer.write("A1", "X", [AString("\n"), AString(b"\x80" * 4097)]) == [
        b"A1 X {1+}\r\n\n {4097}\r\n",
        b"\x80" * 4097 + b"\r\n",
    ]
    writer.literal_plus = True
    assert writer.write("A1", "X", [Atom("AUTH=PLAIN"), AString(b"\x80" * 4097)]) == [
        b"A1 X AUTH=PLAIN {4097+}\r\n" + b"\x80" * 4097 + b"\r\n"
    ]
    for bad in ("", "a b", "é", "a]", "a\r\n"):
        with pytest.raises(LocalProtocolError):
            writer.write("A1", "X", [Atom(bad)])


def test_authenticate_with_empty_initial_response() -> None:
    conn = _ready(b"* OK [CAPABILITY IMAP4rev1 SASL-IR] hi\r\n")
    conn.send(Authenticate("external", b""))
    assert conn.data_to_send() == b"A1 AUTHENTICATE EXTERNAL =\r\n"


# --- fuzzing: only our typed errors may escape --------------------------------------------

IMAP_PIECES = [
    b"* ", b"A1 ", b"+ ", b"OK", b"NO", b"BYE", b"PREAUTH", b"CAPABILITY", b"FETCH", b"1",
    b"EXISTS", b" ", b"(", b")", b"[", b"]", b"{", b"}", b"{3}\r\n", b"{0}\r\n", b"~{1}\r\n",
    b'"', b"\\", b"NIL", b"\r\n", b"\r", b"\n", b"<0>", b"\x00", b"\xff", b"dGVzdA==",
]  # fmt: skip


def _feed_all(conn: IMAPConnection, data: bytes) -> None:
    try:
        conn.receive_data(data)
        for _ in range(10_000):
            event = conn.next_event()
            if event is NEED_DATA or isinstance(event, ConnectionClosed):
                break
    except RemoteProtocolError:
        pass


@given(data=st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_fuzz_random_bytes(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        parse_response(data)
    _feed_all(IMAPConnection(), data)
    conn = _ready(b"* OK [CAPABILITY IMAP4rev1 SASL-IR] hi\r\n")
    conn.send(Noop())
    _feed_all(conn, data)


@given(pieces=st.lists(st.sampled_from(IMAP_PIECES), max_size=40), sasl=st.booleans())
@settings(max_examples=400, deadline=None)
def test_fuzz_imap_like_bytes(pieces: list[bytes], sasl: bool) -> None:
    data = b"".join(pieces)
    with contextlib.suppress(RemoteProtocolError):
        parse_response(data + b"\r\n")
    conn = _ready(b"* OK [CAPABILITY IMAP4rev1] hi\r\n")
    conn.send(Authenticate("PLAIN") if sasl else Login("a", "é"))
    conn.data_to_send()
    _feed_all(conn, data + b"\r\n")
    _feed_all(conn, b"")  # and the server closes
