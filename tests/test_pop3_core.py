"""The sans-I/O POP3 core: transcripts (whole, byte by byte, random splits, trailing data),
state-table refusals, limits, STLS guarding, redacted traces and fuzzing."""

from __future__ import annotations

import ast
import base64
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_mailoauth._sansio import NEED_DATA, ConnectionClosed, SASLChallenge
from trio_mailoauth.errors import LocalProtocolError, RemoteProtocolError
from trio_mailoauth.pop3 import POP3Connection, State
from trio_mailoauth.pop3._events import (
    Authenticate,
    Capa,
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
from trio_mailoauth.pop3._reader import parse_capabilities, parse_status_line
from trio_mailoauth.pop3._state import REPLY_TABLE, SEND_TABLE

# --- transcript machinery ---------------------------------------------------------------------


@dataclass(frozen=True)
class C:
    """The client sends ``command``; the core must queue exactly ``wire``."""

    command: object
    wire: bytes


@dataclass(frozen=True)
class R:
    """The client answers a SASL challenge (None cancels)."""

    data: bytes | None
    wire: bytes


@dataclass(frozen=True)
class S:
    """The server sends ``data``; the core must emit exactly ``events``."""

    data: bytes
    events: tuple[object, ...]


@dataclass(frozen=True)
class TLS:
    """The I/O layer finished the handshake."""


Step = C | R | S | TLS


def _drain(conn: POP3Connection) -> list[object]:
    events: list[object] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)
        if isinstance(event, ConnectionClosed):
            return events


def play(steps: Sequence[Step], split: object = None) -> POP3Connection:
    """Run a transcript; ``split(data) -> list of chunks`` chooses how server bytes arrive."""
    conn = POP3Connection()
    for step in steps:
        if isinstance(step, C):
            conn.send(step.command)  # type: ignore[arg-type]
            assert conn.data_to_send() == step.wire
        elif isinstance(step, R):
            conn.send_sasl_response(step.data)
            assert conn.data_to_send() == step.wire
        elif isinstance(step, TLS):
            conn.tls_established()
        else:
            chunks = split(step.data) if callable(split) else [step.data]
            events: list[object] = []
            for chunk in chunks:
                conn.receive_data(chunk)
                events += _drain(conn)
            assert tuple(events) == step.events, (events, step.events)
    return conn


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))] or [data]


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


XOAUTH2_IR = b"user=alice@example.test\x01auth=Bearer tok\x01\x01"
XOAUTH2_ERROR = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"}).encode()
OAUTHBEARER_ERROR = b'{"status":"invalid_token"}'

GREETING = S(b"+OK Dovecot (Debian) ready.\r\n", (Greeting("Dovecot (Debian) ready."),))
CAPA_BODY = (
    b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"
    b"STLS\r\nUSER\r\nSASL PLAIN LOGIN xoauth2 OAUTHBEARER\r\n.\r\n"
)
CAPA_LINES = (
    b"CAPA",
    b"TOP",
    b"UIDL",
    b"RESP-CODES",
    b"PIPELINING",
    b"AUTH-RESP-CODE",
    b"STLS",
    b"USER",
    b"SASL PLAIN LOGIN xoauth2 OAUTHBEARER",
)
CAPA_STEPS: list[Step] = [
    C(Capa(), b"CAPA\r\n"),
    S(CAPA_BODY, (MultilineResponse("CAPA", "", None, CAPA_LINES),)),
]

TRANSCRIPTS: dict[str, list[Step]] = {
    "user-pass": [
        GREETING,
        *CAPA_STEPS,
        C(User("alice@example.test"), b"USER alice@example.test\r\n"),
        S(b"+OK\r\n", (OkResponse("USER", ""),)),
        C(Pass("correct horse"), b"PASS correct horse\r\n"),
        S(b"+OK Logged in.\r\n", (OkResponse("PASS", "Logged in."),)),
        C(Noop(), b"NOOP\r\n"),
        S(b"+OK\r\n", (OkResponse("NOOP", ""),)),
        C(Quit(), b"QUIT\r\n"),
        S(b"+OK Logging out.\r\n", (OkResponse("QUIT", "Logging out."),)),
        S(b"", (ConnectionClosed(),)),
    ],
    "xoauth2-ok": [
        GREETING,
        C(Authenticate("XOAUTH2"), b"AUTH XOAUTH2\r\n"),
        S(b"+ \r\n", (SASLChallenge(b""),)),
        R(XOAUTH2_IR, b64(XOAUTH2_IR) + b"\r\n"),
        S(b"+OK Logged in.\r\n", (OkResponse("AUTH", "Logged in."),)),
    ],
    "xoauth2-dovecot-rejected": [
        GREETING,
        C(Authenticate("XOAUTH2"), b"AUTH XOAUTH2\r\n"),
        S(b"+\r\n", (SASLChallenge(b""),)),  # an empty challenge without the space
        R(XOAUTH2_IR, b64(XOAUTH2_IR) + b"\r\n"),
        S(b"+ " + b64(XOAUTH2_ERROR) + b"\r\n", (SASLChallenge(XOAUTH2_ERROR),)),
        R(b"", b"\r\n"),
        S(
            b"-ERR [AUTH] Authentication failed.\r\n",
            (ErrResponse("AUTH", "Authentication failed.", "AUTH"),),
        ),
        # A new AUTH on the same connection is allowed after the refusal.
        C(Authenticate("OAUTHBEARER"), b"AUTH OAUTHBEARER\r\n"),
        S(b"+ \r\n", (SASLChallenge(b""),)),
        R(b"n,a=x,\x01auth=Bearer t\x01\x01", b64(b"n,a=x,\x01auth=Bearer t\x01\x01") + b"\r\n"),
        S(b"+ " + b64(OAUTHBEARER_ERROR) + b"\r\n", (SASLChallenge(OAUTHBEARER_ERROR),)),
        R(b"\x01", b"AQ==\r\n"),
        S(
            b"-ERR [AUTH] Authentication failed.\r\n",
            (ErrResponse("AUTH", "Authentication failed.", "AUTH"),),
        ),
    ],
    "microsoft-no-challenge": [
        S(
            b"+OK The Microsoft Exchange POP3 service is ready.\r\n",
            (Greeting("The Microsoft Exchange POP3 service is ready."),),
        ),
        C(Authenticate("XOAUTH2"), b"AUTH XOAUTH2\r\n"),
        S(b"+ \r\n", (SASLChallenge(b""),)),
        R(XOAUTH2_IR, b64(XOAUTH2_IR) + b"\r\n"),
        S(
            b"-ERR Authentication failure: unknown user name or bad password.\r\n",
            (ErrResponse("AUTH", "Authentication failure: unknown user name or bad password."),),
        ),
    ],
    "sys-temp-and-cancel": [
        GREETING,
        C(Authenticate("PLAIN"), b"AUTH PLAIN\r\n"),
        S(b"+ \r\n", (SASLChallenge(b""),)),
        R(None, b"*\r\n"),
        S(
            b"-ERR [SYS/TEMP] Temporary authentication failure.\r\n",
            (ErrResponse("AUTH", "Temporary authentication failure.", "SYS/TEMP"),),
        ),
    ],
    "stls": [
        GREETING,
        *CAPA_STEPS,
        C(Stls(), b"STLS\r\n"),
        S(
            b"+OK Begin TLS negotiation now.\r\n",
            (OkResponse("STLS", "Begin TLS negotiation now."),),
        ),
        TLS(),
        *CAPA_STEPS,
    ],
    "refused-greeting": [
        S(
            b"-ERR [IN-USE] too many connections\r\n",
            (ErrResponse("GREETING", "too many connections", "IN-USE"),),
        ),
        S(b"", (ConnectionClosed(),)),
    ],
    "dot-stuffing": [
        S(
            b"+OK <1896.697170952@dbc.mindspring.com>\r\n",
            (
                Greeting(
                    "<1896.697170952@dbc.mindspring.com>",
                    None,
                    "<1896.697170952@dbc.mindspring.com>",
                ),
            ),
        ),
        C(Capa(), b"CAPA\r\n"),
        S(
            b"+OK [X-CODE] list follows\r\n..hidden\r\n.x\r\n..\r\na\n.\nb\r\n.\n\r\n \r\n.\r\n",
            (
                MultilineResponse(
                    "CAPA",
                    "list follows",
                    "X-CODE",
                    (b".hidden", b"x", b".", b"a\n.\nb", b"\n", b" "),
                ),
            ),
        ),
        C(Capa(), b"CAPA\r\n"),
        S(b"-ERR unknown command\r\n", (ErrResponse("CAPA", "unknown command"),)),
    ],
}


@pytest.fixture(params=sorted(TRANSCRIPTS))
def transcript(request: pytest.FixtureRequest) -> list[Step]:
    return TRANSCRIPTS[request.param]


def test_transcript_whole(transcript: list[Step]) -> None:
    play(transcript)


def test_transcript_bytewise(transcript: list[Step]) -> None:
    play(transcript, bytewise)


def test_transcript_with_trailing_data(transcript: list[Step]) -> None:
    """Extra bytes after the last reply: same events, then a typed error, never a mix-up."""
    *head, last = [s for s in transcript]
    while not isinstance(last, S) or not last.data:
        head, last = head[:-1], head[-1]
    conn = play(head)
    conn.receive_data(last.data + b"+OK stray\r\n")
    events = [conn.next_event() for _ in last.events]
    assert tuple(events) == last.events
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is State.ERROR


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(TRANSCRIPTS)), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_transcript_random_splits(name: str, cuts: list[int]) -> None:
    def split(data: bytes) -> list[bytes]:
        points = sorted({c % (len(data) + 1) for c in cuts})
        edges = [0, *points, len(data)]
        chunks = [data[a:b] for a, b in itertools.pairwise(edges) if b > a]
        return chunks or [data]

    play(TRANSCRIPTS[name], split)


# --- status lines and capabilities ------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "ok", "text", "code"),
    [
        (b"+OK\r\n", True, "", None),
        (b"-ERR\r\n", False, "", None),
        (b"+OK 2 320\r\n", True, "2 320", None),
        (b"-ERR [SYS/PERM] no\r\n", False, "no", "SYS/PERM"),
        (b"-ERR [login-delay] wait\r\n", False, "wait", "LOGIN-DELAY"),
        (b"-ERR [AUTH]\r\n", False, "", "AUTH"),
        (b"-ERR [not a code] x\r\n", False, "[not a code] x", None),
        (b"+ok lower\r\n", True, "lower", None),
        (b"-ERR caf\xc3\xa9 \xff\r\n", False, "café \ufffd", None),
    ],
)
def test_status_lines(line: bytes, ok: bool, text: str, code: str | None) -> None:
    status = parse_status_line(line)
    assert (status.ok, status.text, status.code) == (ok, text, code)


@pytest.mark.parametrize("line", [b"OK\r\n", b"+OKAY\r\n", b"\r\n", b"+\r\n", b"* OK\r\n"])
def test_bad_status_lines(line: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_status_line(line)


def test_capabilities_parsed_and_forgotten_after_stls() -> None:
    conn = play(TRANSCRIPTS["stls"][:3])
    assert conn.capabilities["SASL"] == ("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER")
    assert conn.capabilities["TOP"] == ()
    assert "STLS" in conn.capabilities
    conn.send(Stls())
    assert conn.data_to_send() == b"STLS\r\n"
    conn.receive_data(b"+OK go\r\n")
    assert conn.next_event() == OkResponse("STLS", "go")
    assert conn.capabilities == {}
    assert conn.state is State.STARTING_TLS
    conn.tls_established()
    with pytest.raises(LocalProtocolError, match="already uses TLS"):
        conn.send(Stls())
    assert conn.data_to_send() == b""


def test_parse_capabilities_edge_cases() -> None:
    caps = parse_capabilities([b"", b"implementation Dovecot 2.3", b"LOGIN-DELAY 900", b"top"])
    assert caps == {"IMPLEMENTATION": ("Dovecot", "2.3"), "LOGIN-DELAY": ("900",), "TOP": ()}


# --- state table --------------------------------------------------------------------------------


def test_state_tables_agree() -> None:
    for state, keywords in SEND_TABLE.items():
        for keyword in keywords:
            assert (state, keyword) in REPLY_TABLE


def greeted() -> POP3Connection:
    conn = POP3Connection()
    conn.receive_data(b"+OK hi\r\n")
    assert conn.next_event() == Greeting("hi")
    return conn


def test_nothing_may_be_sent_before_the_greeting() -> None:
    conn = POP3Connection()
    with pytest.raises(LocalProtocolError, match="CAPA in state GREETING"):
        conn.send(Capa())
    assert conn.data_to_send() == b""


def test_noop_before_login_is_refused_and_names_the_state() -> None:
    conn = greeted()
    with pytest.raises(LocalProtocolError, match="NOOP in state AUTHORIZATION"):
        conn.send(Noop())
    with pytest.raises(LocalProtocolError, match="PASS in state AUTHORIZATION"):
        conn.send(Pass("x"))
    assert conn.data_to_send() == b""


def test_one_command_at_a_time() -> None:
    conn = greeted()
    conn.send(Capa())
    with pytest.raises(LocalProtocolError, match="reply to CAPA is still due"):
        conn.send(User("a"))
    assert conn.data_to_send() == b"CAPA\r\n"


def test_sasl_response_only_after_a_challenge() -> None:
    conn = greeted()
    with pytest.raises(LocalProtocolError, match="no challenge"):
        conn.send_sasl_response(b"x")
    conn.send(Authenticate("XOAUTH2"))
    conn.receive_data(b"+ \r\n")
    assert conn.next_event() == SASLChallenge(b"")
    conn.send_sasl_response(b"x")
    with pytest.raises(LocalProtocolError):
        conn.send_sasl_response(b"x")


def test_pass_refused_returns_to_authorization() -> None:
    conn = greeted()
    conn.send(User("a"))
    conn.receive_data(b"+OK\r\n")
    conn.next_event()
    assert conn.state.value == "USER_ACCEPTED"
    conn.send(Pass("bad"))
    conn.receive_data(b"-ERR [AUTH] Authentication failed.\r\n")
    assert conn.next_event() == ErrResponse("PASS", "Authentication failed.", "AUTH")
    assert conn.state.value == "AUTHORIZATION"


# --- the command-line limit and arguments -----------------------------------------------------


def test_command_line_limit_is_255_octets_including_crlf() -> None:
    conn = greeted()
    conn.send(User("u" * (255 - len(b"USER \r\n"))))
    assert len(conn.data_to_send()) == 255
    conn.receive_data(b"-ERR no\r\n")
    conn.next_event()
    with pytest.raises(LocalProtocolError, match=r"256 octets.*255"):
        conn.send(User("u" * (256 - len(b"USER \r\n"))))
    assert conn.data_to_send() == b""
    assert conn.state is State.AUTHORIZATION


def test_initial_response_counts_against_the_limit() -> None:
    conn = greeted()
    with pytest.raises(LocalProtocolError, match="AUTH command line") as info:
        conn.send(Authenticate("XOAUTH2", b"t" * 300))
    assert "ttt" not in str(info.value)
    assert conn.data_to_send() == b""
    conn.send(Authenticate("plain", b""))
    assert conn.data_to_send() == b"AUTH PLAIN =\r\n"


def test_sasl_responses_are_not_limited_to_255_octets() -> None:
    conn = greeted()
    conn.send(Authenticate("XOAUTH2"))
    conn.data_to_send()
    conn.receive_data(b"+ \r\n")
    conn.next_event()
    response = b"user=a\x01auth=Bearer " + b"x" * 2500 + b"\x01\x01"
    conn.send_sasl_response(response)
    assert conn.data_to_send() == base64.b64encode(response) + b"\r\n"


@pytest.mark.parametrize("bad", ["a\r\nDELE 1", "a\nb", "a\rb", "a\x00b", "", "a b"])
def test_bad_user_arguments_are_refused(bad: str) -> None:
    conn = greeted()
    with pytest.raises(LocalProtocolError):
        conn.send(User(bad))
    assert conn.data_to_send() == b""


def test_password_may_hold_spaces_but_not_line_breaks() -> None:
    conn = greeted()
    conn.send(User("a"))
    conn.receive_data(b"+OK\r\n")
    conn.next_event()
    with pytest.raises(LocalProtocolError) as info:
        conn.send(Pass("s3cret\r\nQUIT"))
    assert "s3cret" not in str(info.value)
    conn.send(Pass("with spaces"))
    assert conn.data_to_send() == b"USER a\r\nPASS with spaces\r\n"


@pytest.mark.parametrize("mechanism", ["X OAUTH", "", "A" * 21, "XOAUTH2\r\n"])
def test_bad_mechanism_names(mechanism: str) -> None:
    with pytest.raises(LocalProtocolError):
        greeted().send(Authenticate(mechanism))


# --- remote errors and limits -----------------------------------------------------------------


def test_unsolicited_data_is_an_error_and_the_connection_stays_broken() -> None:
    conn = greeted()
    conn.receive_data(b"+OK surprise\r\n")
    with pytest.raises(RemoteProtocolError, match="no command pending"):
        conn.next_event()
    assert conn.state is State.ERROR
    with pytest.raises(RemoteProtocolError, match="ERROR"):
        conn.next_event()
    with pytest.raises(LocalProtocolError, match="state ERROR"):
        conn.send(Capa())


def test_send_failed_moves_to_error() -> None:
    conn = greeted()
    conn.send(Capa())
    conn.send_failed()
    assert conn.state is State.ERROR


@pytest.mark.parametrize(
    "data",
    [
        b"+OK ready",  # the greeting is cut short
        b"+OK\r\nCAPA\r\nTOP\r\n",  # inside a body
        b"+OK\r\nCAPA\r\nTO",
    ],
)
def test_close_mid_reply_is_a_protocol_error(data: bytes) -> None:
    conn = POP3Connection()
    if data.startswith(b"+OK\r\n"):
        conn = greeted()
        conn.send(Capa())
    conn.receive_data(data)
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="closed the connection"):
        _drain(conn)


def test_close_before_the_reply_is_connection_closed() -> None:
    conn = greeted()
    conn.send(Capa())
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()


def test_data_after_close_is_an_error() -> None:
    conn = greeted()
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"x")


def test_status_line_limit() -> None:
    conn = POP3Connection()
    conn.receive_data(b"+OK " + b"x" * 5000)
    with pytest.raises(RemoteProtocolError, match="line longer"):
        conn.next_event()


def test_challenge_line_may_be_longer_than_a_status_line() -> None:
    conn = greeted()
    conn.send(Authenticate("XOAUTH2"))
    payload = b"{" + b"x" * 6000 + b"}"
    conn.receive_data(b"+ " + b64(payload) + b"\r\n")
    assert conn.next_event() == SASLChallenge(payload)


def test_bad_base64_challenge() -> None:
    conn = greeted()
    conn.send(Authenticate("XOAUTH2"))
    conn.receive_data(b"+ not*base64\r\n")
    with pytest.raises(RemoteProtocolError, match="base64"):
        conn.next_event()


def test_second_challenge_before_the_answer() -> None:
    conn = greeted()
    conn.send(Authenticate("XOAUTH2"))
    conn.receive_data(b"+ \r\n+ \r\n")
    conn.next_event()
    with pytest.raises(RemoteProtocolError, match="second SASL challenge"):
        conn.next_event()


def test_endless_challenges_are_capped() -> None:
    conn = greeted()
    conn.send(Authenticate("LOGIN"))
    for _ in range(16):
        conn.receive_data(b"+ \r\n")
        conn.next_event()
        conn.send_sasl_response(b"")
    conn.receive_data(b"+ \r\n")
    with pytest.raises(RemoteProtocolError, match="SASL challenges"):
        conn.next_event()


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"x" * 1001 + b"\r\n", "line longer"),
        (b"CAP\r\n" * 300, "lines"),
        ((b"x" * 900 + b"\r\n") * 80, "octets"),
    ],
)
def test_multiline_limits(body: bytes, match: str) -> None:
    conn = greeted()
    conn.send(Capa())
    conn.receive_data(b"+OK\r\n" + body + b".\r\n")
    with pytest.raises(RemoteProtocolError, match=match):
        conn.next_event()


def test_a_bare_lf_dot_never_ends_a_body() -> None:
    conn = greeted()
    conn.send(Capa())
    conn.receive_data(b"+OK\r\nTOP\n.\n")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"\r\n.\r")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"\n")
    assert conn.next_event() == MultilineResponse("CAPA", "", None, (b"TOP\n.\n",))


# --- STLS ---------------------------------------------------------------------------------------


def test_bytes_buffered_after_stls_ok_are_an_injection() -> None:
    conn = greeted()
    conn.send(Stls())
    conn.receive_data(b"+OK Begin TLS\r\n-ERR injected\r\n")
    with pytest.raises(RemoteProtocolError, match="after STLS"):
        conn.next_event()
    assert conn.state is State.ERROR


def test_bytes_arriving_later_before_the_handshake_are_an_injection() -> None:
    conn = greeted()
    conn.send(Stls())
    conn.receive_data(b"+OK Begin TLS\r\n")
    assert conn.next_event() == OkResponse("STLS", "Begin TLS")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"x")
    with pytest.raises(RemoteProtocolError, match="after STLS"):
        conn.next_event()


def test_stls_refused_stays_in_authorization() -> None:
    conn = greeted()
    conn.send(Stls())
    conn.receive_data(b"-ERR nope\r\n")
    assert conn.next_event() == ErrResponse("STLS", "nope")
    assert conn.state is State.AUTHORIZATION
    with pytest.raises(LocalProtocolError):
        conn.tls_established()


# --- trace redaction ------------------------------------------------------------------------------


def test_trace_redacts_secrets() -> None:
    lines: list[str] = []
    conn = POP3Connection(trace=lines.append)
    conn.receive_data(b"+OK hi\r\n")
    conn.next_event()
    conn.send(User("alice"))
    conn.receive_data(b"+OK\r\n")
    conn.next_event()
    conn.send(Pass("hunter2"))
    conn.receive_data(b"-ERR [AUTH] no\r\n")
    conn.next_event()
    conn.send(Authenticate("XOAUTH2"))
    conn.receive_data(b"+ \r\n")
    conn.next_event()
    conn.send_sasl_response(b"user=alice\x01auth=Bearer SECRETTOKEN\x01\x01")
    conn.receive_data(b"+ " + b64(XOAUTH2_ERROR) + b"\r\n")
    conn.next_event()
    conn.send_sasl_response(b"")
    conn.receive_data(b"-ERR [AUTH] Authentication failed.\r\n")
    conn.next_event()
    conn.send(Authenticate("PLAIN", b"\x00alice\x00hunter2"))
    assert lines[:5] == [
        "S: +OK hi",
        "C: USER alice",
        "S: +OK",
        "C: PASS <redacted>",
        "S: -ERR [AUTH] no",
    ]
    assert "C: AUTH XOAUTH2" in lines
    assert lines.count("C: <redacted SASL response>") == 2
    assert lines[-1] == "C: AUTH PLAIN <redacted>"
    text = "\n".join(lines)
    assert "hunter2" not in text
    assert "SECRETTOKEN" not in text
    assert base64.b64encode(b"\x00alice\x00hunter2").decode() not in text


def test_reprs_hide_secrets() -> None:
    assert "hunter2" not in repr(Pass("hunter2"))
    assert "TOKEN" not in repr(Authenticate("XOAUTH2", b"TOKEN"))


# --- fuzzing ------------------------------------------------------------------------------------


def _fuzz_setup(where: str) -> POP3Connection:
    conn = POP3Connection()
    if where == "greeting":
        return conn
    conn.receive_data(b"+OK hi\r\n")
    conn.next_event()
    if where == "capa":
        conn.send(Capa())
    elif where == "auth":
        conn.send(Authenticate("XOAUTH2"))
    elif where == "stls":
        conn.send(Stls())
    return conn


@settings(max_examples=300, deadline=None)
@given(
    where=st.sampled_from(["greeting", "capa", "auth", "stls", "idle"]),
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.sampled_from(
                [b"+OK\r\n", b"+ \r\n", b".\r\n", b"..\r\n", b"-ERR [", b"\r\n", b"+ AQ==\r\n"]
            ),
        ),
        max_size=12,
    ),
    close=st.booleans(),
)
def test_fuzzing_only_raises_remote_protocol_errors(
    where: str, chunks: list[bytes], close: bool
) -> None:
    conn = _fuzz_setup(where)
    try:
        for chunk in [*chunks, b""] if close else chunks:
            conn.receive_data(chunk)
            while True:
                event = conn.next_event()
                if event is NEED_DATA or isinstance(event, ConnectionClosed):
                    break
                if isinstance(event, SASLChallenge):
                    conn.send_sasl_response(b"")
                if conn.state is State.STARTING_TLS:
                    conn.tls_established()
    except RemoteProtocolError:
        assert conn.state is State.ERROR


# --- the core does no I/O -----------------------------------------------------------------------

_FORBIDDEN_IMPORTS = {"trio", "anyio", "httpx", "socket", "ssl", "asyncio", "selectors"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_core_imports_nothing_async_or_networked() -> None:
    root = Path(__file__).parent.parent / "trio_mailoauth"
    todo = [
        f"trio_mailoauth.pop3.{m}"
        for m in ("_connection", "_events", "_reader", "_state", "_writer")
    ]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = root.parent / (module.replace(".", "/") + ".py")
        for name in _imports(path):
            assert name.split(".")[0] not in _FORBIDDEN_IMPORTS, (module, name)
            if name.startswith("trio_mailoauth."):
                todo.append(name)
    assert "trio_mailoauth._sansio" in seen
