"""The sans-I/O SMTP core: byte transcripts (whole, byte by byte, with trailing data, split at
random points), the state table's refusals, limits, EHLO parsing, redaction, fuzzing."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_mailoauth._sansio import NEED_DATA, ConnectionClosed, ReceiveBuffer, SASLChallenge
from trio_mailoauth.errors import LocalProtocolError, RemoteProtocolError
from trio_mailoauth.smtp import (
    Authenticate,
    Ehlo,
    Helo,
    Noop,
    Quit,
    Reply,
    Rset,
    SMTPConnection,
    StartTLS,
    State,
)
from trio_mailoauth.smtp._reader import (
    MAX_REPLY_BYTES,
    MAX_REPLY_LINE,
    MAX_REPLY_LINES,
    ReplyReader,
    parse_ehlo,
)
from trio_mailoauth.smtp._writer import MAX_COMMAND_LINE

TOKEN = "ya29.secret-token-value"
XOAUTH2_IR = f"user=alice@example.test\x01auth=Bearer {TOKEN}\x01\x01".encode()
XOAUTH2_B64 = base64.b64encode(XOAUTH2_IR)
ERROR_JSON = b'{"status":"401","schemes":"bearer","scope":"mail"}'

GREETING = b"220 mx.example.test ESMTP ready\r\n"
EHLO_PLAIN = (
    b"250-mx.example.test\r\n"
    b"250-PIPELINING\r\n"
    b"250-SIZE 10240000\r\n"
    b"250-STARTTLS\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n"
    b"250 8BITMIME\r\n"
)
EHLO_TLS = (
    b"250-mx.example.test\r\n"
    b"250-PIPELINING\r\n"
    b"250-AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER\r\n"
    b"250 SMTPUTF8\r\n"
)


# --- the transcript runner -------------------------------------------------------------------


@dataclass(frozen=True)
class Respond:
    """The client answers the open SASL challenge."""

    data: bytes | None


@dataclass(frozen=True)
class TLSDone:
    """The I/O layer finished the TLS handshake."""


Step = bytes | Respond | TLSDone | Ehlo | Helo | StartTLS | Authenticate | Noop | Rset | Quit
Splitter = Callable[[bytes], Sequence[bytes]]


def whole(data: bytes) -> Sequence[bytes]:
    return [data]


def bytewise(data: bytes) -> Sequence[bytes]:
    return [data[i : i + 1] for i in range(len(data))] or [data]  # b"" is the close


def play(
    steps: Sequence[Step], split: Splitter = whole, *, trailing: bytes = b"", tls: bool = False
) -> tuple[list[object], bytes, list[str], SMTPConnection]:
    """Run a transcript; return (events, bytes the client sent, trace, connection)."""
    trace: list[str] = []
    conn = SMTPConnection(trace=trace.append, tls=tls)
    events: list[object] = []
    sent = bytearray()
    server_steps = [i for i, s in enumerate(steps) if isinstance(s, bytes)]
    last_server = server_steps[-1] if server_steps else -1
    for index, step in enumerate(steps):
        if isinstance(step, bytes):
            data = step + trailing if index == last_server else step
            for chunk in split(data):
                conn.receive_data(chunk)
                while (event := conn.next_event()) is not NEED_DATA:
                    events.append(event)
                    if isinstance(event, ConnectionClosed):
                        break
        elif isinstance(step, Respond):
            conn.send_sasl_response(step.data)
        elif isinstance(step, TLSDone):
            conn.tls_established()
        else:
            conn.send(step)
        sent += conn.data_to_send()
    return events, bytes(sent), trace, conn


def check_all_ways(
    steps: Sequence[Step], *, tls: bool = False
) -> tuple[list[object], bytes, list[str]]:
    """Whole, byte by byte and with trailing data must agree; return the whole run."""
    events, sent, trace, _ = play(steps, whole, tls=tls)
    other_events, other_sent, other_trace, _ = play(steps, bytewise, tls=tls)
    assert (other_events, other_sent, other_trace) == (events, sent, trace)
    # Trailing bytes (the start of a reply nobody asked for yet) change nothing; before a
    # close they would be a reply cut short, so those transcripts are cut before the close.
    closes = bool(steps) and steps[-1] == b""
    open_steps = steps[:-1] if closes else steps
    open_events = events[:-1] if closes else events
    for split, trailing in ((whole, b"25"), (bytewise, b"250-partial")):
        other_events, other_sent, _, _ = play(open_steps, split, trailing=trailing, tls=tls)
        assert other_events == open_events
        assert other_sent == sent
    return events, sent, trace


# --- transcripts -----------------------------------------------------------------------------

FULL_SESSION: list[Step] = [
    GREETING,
    Ehlo("[127.0.0.1]"),
    EHLO_PLAIN,
    StartTLS(),
    b"220 2.0.0 Ready to start TLS\r\n",
    TLSDone(),
    Ehlo("[127.0.0.1]"),
    EHLO_TLS,
    Authenticate("XOAUTH2", XOAUTH2_IR),
    b"235 2.7.0 Authentication successful\r\n",
    Noop(),
    b"250 2.0.0 OK\r\n",
    Rset(),
    b"250 2.0.0 Ok\r\n",
    Quit(),
    b"221 2.0.0 Bye\r\n",
    b"",
]


def test_full_session() -> None:
    events, sent, trace = check_all_ways(FULL_SESSION)
    assert events == [
        Reply(220, None, ("mx.example.test ESMTP ready",)),
        Reply(
            250,
            None,
            (
                "mx.example.test",
                "PIPELINING",
                "SIZE 10240000",
                "STARTTLS",
                "ENHANCEDSTATUSCODES",
                "8BITMIME",
            ),
        ),
        Reply(220, "2.0.0", ("Ready to start TLS",)),
        Reply(
            250,
            None,
            ("mx.example.test", "PIPELINING", "AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER", "SMTPUTF8"),
        ),
        Reply(235, "2.7.0", ("Authentication successful",)),
        Reply(250, "2.0.0", ("OK",)),
        Reply(250, "2.0.0", ("Ok",)),
        Reply(221, "2.0.0", ("Bye",)),
        ConnectionClosed(),
    ]
    assert sent == (
        b"EHLO [127.0.0.1]\r\nSTARTTLS\r\nEHLO [127.0.0.1]\r\n"
        b"AUTH XOAUTH2 " + XOAUTH2_B64 + b"\r\nNOOP\r\nRSET\r\nQUIT\r\n"
    )
    assert "C: AUTH XOAUTH2 <redacted>" in trace
    assert "S: 235 2.7.0 Authentication successful" in trace
    assert not any(TOKEN in line or XOAUTH2_B64.decode() in line for line in trace)


def test_state_and_extensions_through_a_session() -> None:
    _, _, _, conn = play(FULL_SESSION[:5])
    assert conn.state is State.TLS_HANDSHAKE
    assert conn.extensions == {}  # plaintext capabilities are forgotten at the go-ahead
    _, _, _, conn = play(FULL_SESSION[:6])
    assert conn.state is State.GREETED
    assert conn.tls_active
    _, _, _, conn = play(FULL_SESSION[:8])
    assert conn.state is State.READY
    assert conn.auth_mechanisms == ("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER")
    _, _, _, conn = play(FULL_SESSION[:10])
    assert conn.authenticated
    _, _, _, conn = play(FULL_SESSION)
    assert conn.state is State.CLOSED
    assert conn.next_event() == ConnectionClosed()  # and again


def test_multi_line_greeting() -> None:
    events, _, _ = check_all_ways([b"220-mx.example.test ESMTP\r\n220-welcome\r\n220 go on\r\n"])
    assert events == [Reply(220, None, ("mx.example.test ESMTP", "welcome", "go on"))]


def test_refusing_greeting_allows_only_quit() -> None:
    steps: list[Step] = [b"554 5.7.1 No SMTP service here\r\n"]
    events, _, _, conn = play(steps)
    assert events == [Reply(554, "5.7.1", ("No SMTP service here",))]
    assert conn.state is State.REFUSED
    with pytest.raises(LocalProtocolError, match="EHLO in state refused"):
        conn.send(Ehlo("[127.0.0.1]"))
    conn.send(Quit())
    assert conn.data_to_send() == b"QUIT\r\n"


def test_ehlo_refused_then_helo() -> None:
    steps: list[Step] = [
        GREETING,
        Ehlo("client.example"),
        b"502 5.5.1 Unrecognized command\r\n",
        Helo("client.example"),
        b"250 mx.example.test\r\n",
    ]
    events, sent, _ = check_all_ways(steps)
    assert [e.code for e in events if isinstance(e, Reply)] == [220, 502, 250]
    assert sent == b"EHLO client.example\r\nHELO client.example\r\n"
    _, _, _, conn = play(steps)
    assert conn.state is State.READY
    assert conn.extensions == {}


def _ready(extensions: bytes = EHLO_TLS) -> list[Step]:
    return [GREETING, Ehlo("[127.0.0.1]"), extensions]


def test_auth_long_initial_response_uses_two_step_form() -> None:
    long_token = "t" * 2500
    ir = f"user=alice@example.test\x01auth=Bearer {long_token}\x01\x01".encode()
    steps = [*_ready(), Authenticate("XOAUTH2", ir), b"334 \r\n", b"235 2.7.0 Accepted\r\n"]
    events, sent, trace = check_all_ways(steps)
    assert events[-1] == Reply(235, "2.7.0", ("Accepted",))
    assert not any(isinstance(e, SASLChallenge) for e in events)
    assert sent.endswith(b"AUTH XOAUTH2\r\n" + base64.b64encode(ir) + b"\r\n")
    assert trace[-4:] == [
        "C: AUTH XOAUTH2",
        "S: 334 ",
        "C: <redacted SASL response>",
        "S: 235 2.7.0 Accepted",
    ]
    assert not any(long_token in line for line in trace)


def test_auth_initial_response_line_limit_boundary() -> None:
    prefix = len(b"AUTH PLAIN ") + len(b"\r\n")
    # base64 of 3n bytes is 4n characters: pick n so the line is exactly the limit.
    fits = b"x" * ((MAX_COMMAND_LINE - prefix) // 4 * 3)
    assert prefix + len(base64.b64encode(fits)) <= MAX_COMMAND_LINE
    too_long = fits + b"xxx"
    for response, two_step in ((fits, False), (too_long, True)):
        _, _, _, conn = play(_ready())
        conn.send(Authenticate("PLAIN", response))
        line = conn.data_to_send()
        assert (line == b"AUTH PLAIN\r\n") is two_step
        assert len(line) <= MAX_COMMAND_LINE


def test_empty_initial_response_is_an_equals_sign() -> None:
    _, _, _, conn = play(_ready())
    conn.send(Authenticate("PLAIN", b""))
    assert conn.data_to_send() == b"AUTH PLAIN =\r\n"


def test_xoauth2_rejected_token() -> None:
    challenge = base64.b64encode(ERROR_JSON)
    steps = [
        *_ready(),
        Authenticate("XOAUTH2", XOAUTH2_IR),
        b"334 " + challenge + b"\r\n",
        Respond(b""),
        b"535 5.7.8 Authentication failed.\r\n",
    ]
    events, sent, trace = check_all_ways(steps)
    assert events[-2:] == [
        SASLChallenge(ERROR_JSON),
        Reply(535, "5.7.8", ("Authentication failed.",)),
    ]
    assert sent.endswith(b"\r\n\r\n")  # the empty answer
    assert trace[-3:] == [
        "S: 334 " + challenge.decode(),
        "C: ",
        "S: 535 5.7.8 Authentication failed.",
    ]
    _, _, _, conn = play(steps)
    assert conn.state is State.READY
    assert not conn.authenticated


def test_gmail_multi_line_535() -> None:
    steps = [
        *_ready(),
        Authenticate("XOAUTH2", XOAUTH2_IR),
        b"334 " + base64.b64encode(b'{"status":"400","schemes":"Bearer"}') + b"\r\n",
        Respond(b""),
        b"535-5.7.8 Username and Password not accepted. Learn more at\r\n"
        b"535 5.7.8  https://support.google.com/mail/?p=BadCredentials x1-20020a\r\n",
    ]
    events, _, _ = check_all_ways(steps)
    final = events[-1]
    assert isinstance(final, Reply)
    assert final.code == 535
    assert final.enhanced_status == "5.7.8"
    assert final.lines == (
        "Username and Password not accepted. Learn more at",
        " https://support.google.com/mail/?p=BadCredentials x1-20020a",
    )


def test_login_mechanism_and_cancel() -> None:
    steps = [
        *_ready(),
        Authenticate("LOGIN", b"alice"),
        b"334 UGFzc3dvcmQ6\r\n",
        Respond(b"hunter2"),
        b"235 2.7.0 Authenticated\r\n",
    ]
    events, sent, trace = check_all_ways(steps)
    assert SASLChallenge(b"Password:") in events
    assert sent.endswith(b"AUTH LOGIN YWxpY2U=\r\naHVudGVyMg==\r\n")
    assert not any("aHVudGVyMg" in line or "hunter2" in line for line in trace)

    cancel = [*steps[:5], Respond(None), b"501 5.7.0 Authentication aborted\r\n"]
    events, sent, trace = check_all_ways(cancel)
    assert sent.endswith(b"*\r\n")
    assert "C: *" in trace
    assert events[-1] == Reply(501, "5.7.0", ("Authentication aborted",))


def test_challenge_without_trailing_space() -> None:
    steps = [*_ready(), Authenticate("PLAIN", None), b"334\r\n"]
    events, _, _ = check_all_ways(steps)
    assert events[-1] == SASLChallenge(b"")


def test_server_421_closes() -> None:
    steps: list[Step] = [*_ready(), Noop(), b"421 4.4.2 Timeout\r\n", b""]
    events, _, _, conn = play(steps)
    assert events[-2:] == [Reply(421, "4.4.2", ("Timeout",)), ConnectionClosed()]
    _, _, _, conn = play(steps[:-1])
    assert conn.state is State.CLOSING
    with pytest.raises(LocalProtocolError, match="closing"):
        conn.send(Noop())
    # Unsolicited 421 while idle is allowed too (RFC 5321 §3.8).
    events, _, _, conn = play([*_ready(), b"421 shutting down\r\n"])
    assert events[-1] == Reply(421, None, ("shutting down",))
    assert conn.state is State.CLOSING


def test_pipelined_noop_and_rset_are_matched_in_order() -> None:
    steps: list[Step] = [
        *_ready(),
        Noop(),
        Rset(),
        Noop(),
        b"250 2.0.0 one\r\n250 2.0.0 two\r\n250 2.0.0 three\r\n",
    ]
    events, sent, _ = check_all_ways(steps)
    assert [e.lines for e in events[-3:] if isinstance(e, Reply)] == [
        ("one",),
        ("two",),
        ("three",),
    ]
    assert sent.endswith(b"NOOP\r\nRSET\r\nNOOP\r\n")


def test_no_pipelining_without_the_extension() -> None:
    _, _, _, conn = play([GREETING, Ehlo("x"), b"250 mx\r\n", Noop()])
    with pytest.raises(LocalProtocolError, match="still waiting for the reply to NOOP"):
        conn.send(Noop())
    assert conn.data_to_send() == b""


# --- enhanced status codes and EHLO parsing --------------------------------------------------


@pytest.mark.parametrize(
    ("line", "status", "lines"),
    [
        (b"250 2.0.0 Ok", "2.0.0", ("Ok",)),
        (b"250 2.1.0", "2.1.0", ("",)),
        (b"250 5.0.0 mismatched class", None, ("5.0.0 mismatched class",)),
        (b"250 2.0.0.1 not one", None, ("2.0.0.1 not one",)),
        (b"220 mx ESMTP", None, ("mx ESMTP",)),
        (
            b"550 5.1.1 <bob@x>: Recipient address rejected",
            "5.1.1",
            ("<bob@x>: Recipient address rejected",),
        ),
        (b"250", None, ("",)),
        (b"250 ", None, ("",)),
        (b"535 5.7.139 Authentication unsuccessful", "5.7.139", ("Authentication unsuccessful",)),
    ],
)
def test_enhanced_status(line: bytes, status: str | None, lines: tuple[str, ...]) -> None:
    conn = SMTPConnection()
    conn.receive_data(line + b"\r\n")
    assert conn.next_event() == Reply(int(line[:3]), status, lines)


def test_enhanced_status_on_some_lines_only() -> None:
    conn = SMTPConnection()
    conn.receive_data(b"554-5.7.1 first\r\n554-second\r\n554 5.7.1 third\r\n")
    assert conn.next_event() == Reply(554, "5.7.1", ("first", "second", "third"))


def test_parse_ehlo() -> None:
    reply = Reply(
        250,
        None,
        (
            "mx.example Hello [127.0.0.1]",
            "size 35882577",
            "AUTH login Plain",
            "AUTH=LOGIN CRAM-MD5",
            "-bad keyword",
            "",
            "8BITMIME",
            "SIZE 1",
            "X_UNDERSCORE nope",
        ),
    )
    assert parse_ehlo(reply) == {
        "SIZE": ("35882577",),
        "AUTH": ("LOGIN", "PLAIN"),
        "8BITMIME": (),
    }
    old_only = Reply(250, None, ("mx", "AUTH=LOGIN PLAIN", "HELP"))
    assert parse_ehlo(old_only) == {"AUTH": ("LOGIN", "PLAIN"), "HELP": ()}


# --- what the core refuses to send (nothing queued) ------------------------------------------


def _conn_after(steps: Sequence[Step], *, tls: bool = False) -> SMTPConnection:
    return play(steps, tls=tls)[3]


@pytest.mark.parametrize(
    ("steps", "command", "message"),
    [
        ([], Ehlo("x"), "EHLO in state await greeting"),
        ([GREETING], Authenticate("PLAIN", b"x"), "AUTH in state greeted"),
        ([GREETING], StartTLS(), "STARTTLS in state greeted"),
        (_ready(), StartTLS(), "does not offer it"),
        (_ready(EHLO_PLAIN), Authenticate("PLAIN", b"x"), "the server offers none"),
        (_ready(), Authenticate("CRAM-MD5", b"x"), "offers PLAIN LOGIN XOAUTH2 OAUTHBEARER"),
        (_ready(), Authenticate("bad mech", b"x"), "offers"),
        ([GREETING], Ehlo("a b"), "printable ASCII"),
        ([GREETING], Ehlo("evil\r\nRSET"), "printable ASCII"),
        ([GREETING], Helo(""), "empty"),
        ([GREETING], Ehlo("x" * 256), "longer than 255"),
        ([GREETING], Ehlo("h\u00e9"), "printable ASCII"),
        ([*FULL_SESSION[:10]], Authenticate("PLAIN", b"x"), "already authenticated"),
        ([*FULL_SESSION[:8]], StartTLS(), "TLS is already active"),
        (FULL_SESSION, Noop(), "NOOP in state closed"),
    ],
)
def test_refused_commands(steps: list[Step], command: Ehlo, message: str) -> None:
    conn = _conn_after(steps)
    state = conn.state
    with pytest.raises(LocalProtocolError, match=message):
        conn.send(command)
    assert conn.data_to_send() == b""
    assert conn.state is state


def test_bad_mechanism_name_is_refused_by_the_writer() -> None:
    conn = _conn_after(_ready(b"250-mx\r\n250 AUTH X\r\n"))
    conn.send(Authenticate("X", b""))  # fine
    conn = _conn_after(_ready(b"250-mx\r\n250 AUTH A\x7fB\r\n"))
    with pytest.raises(LocalProtocolError):
        conn.send(Authenticate("A\x7fB", b""))


def test_starttls_refused_on_implicit_tls() -> None:
    conn = _conn_after(_ready(EHLO_PLAIN), tls=True)
    with pytest.raises(LocalProtocolError, match="already active"):
        conn.send(StartTLS())


def test_sasl_response_needs_an_open_challenge() -> None:
    conn = _conn_after(_ready())
    with pytest.raises(LocalProtocolError, match="no open challenge"):
        conn.send_sasl_response(b"x")
    conn.send(Authenticate("PLAIN", b"x"))
    with pytest.raises(LocalProtocolError, match="no open challenge"):
        conn.send_sasl_response(b"x")


def test_tls_established_needs_the_go_ahead() -> None:
    with pytest.raises(LocalProtocolError, match="no STARTTLS go-ahead"):
        _conn_after(_ready()).tls_established()


def test_send_failed_moves_to_error() -> None:
    conn = _conn_after(_ready())
    conn.send(Noop())
    conn.send_failed()
    assert conn.state is State.ERROR
    with pytest.raises(LocalProtocolError, match="state error"):
        conn.send(Noop())
    with pytest.raises(RemoteProtocolError, match="ERROR"):
        conn.next_event()


def test_repr_of_authenticate_hides_the_response() -> None:
    assert TOKEN not in repr(Authenticate("XOAUTH2", XOAUTH2_IR))
    assert "<redacted>" in repr(Authenticate("XOAUTH2", XOAUTH2_IR))


# --- what the core refuses to read -----------------------------------------------------------


def _fails(steps: Sequence[Step], message: str, *, split: Splitter = whole) -> SMTPConnection:
    conn = SMTPConnection()
    with pytest.raises(RemoteProtocolError, match=message):  # noqa: PT012 - a whole transcript
        for step in steps:
            if isinstance(step, bytes):
                for chunk in split(step):
                    conn.receive_data(chunk)
                    while conn.next_event() is not NEED_DATA:
                        pass
            elif isinstance(step, Respond):
                conn.send_sasl_response(step.data)
            elif not isinstance(step, TLSDone):
                conn.send(step)
    assert conn.state is State.ERROR
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    return conn


@pytest.mark.parametrize("split", [whole, bytewise])
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"220-mx\r\n250 mixed\r\n", "code changed from 220 to 250"),
        (b"abc\r\n", "malformed"),
        (b"2200 x\r\n", "malformed"),
        (b"25\r\n", "malformed"),
        (b"600 x\r\n", "malformed"),
        (b"120 x\r\n", "malformed"),
        (b"220_x\r\n", "malformed"),
        (GREETING + b"250 unasked\r\n", "unsolicited reply 250"),
        (b"334 x\r\n", "unexpected reply 334 to greeting"),
        (b"220-" + b"x" * MAX_REPLY_LINE + b"\r\n", "line longer"),
        (b"220-x\r\n" * (MAX_REPLY_LINES + 1), f"more than {MAX_REPLY_LINES} lines"),
        ((b"220-" + b"x" * 1000 + b"\r\n") * 70, f"longer than {MAX_REPLY_BYTES} bytes"),
        (b"220-mx\r\n220 ok", "within a reply"),
    ],
)
def test_malformed_replies(data: bytes, message: str, split: Splitter) -> None:
    steps: list[Step] = [data]
    if message == "within a reply":
        steps.append(b"")
    _fails(steps, message, split=split)


def test_closed_mid_line() -> None:
    _fails([b"220 mx", b""], "within a reply")


def test_data_after_close() -> None:
    conn = SMTPConnection()
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="after the connection was closed"):
        conn.receive_data(b"220 x\r\n")
    assert conn.state is State.ERROR


def test_unasked_bytes_before_a_command_are_an_error() -> None:
    conn = _conn_after(_ready())
    conn.receive_data(b"25")  # arrives while we wait for nothing, then we send NOOP
    assert conn.next_event() is NEED_DATA
    with pytest.raises(RemoteProtocolError, match="nobody asked for"):
        conn.send(Noop())
    assert conn.data_to_send() == b""


@pytest.mark.parametrize("split", [whole, bytewise])
def test_starttls_go_ahead_with_injected_bytes(split: Splitter) -> None:
    steps: list[Step] = [
        *_ready(EHLO_PLAIN),
        StartTLS(),
        b"220 2.0.0 Ready\r\n250-AUTH PLAIN\r\n",
    ]
    if split is whole:
        _fails(steps, "after the STARTTLS go-ahead")
        return
    # Byte by byte the go-ahead is read before the injected bytes arrive: they are caught
    # by the next read, and by tls_established().
    conn = _conn_after(steps[:-1])
    conn.receive_data(b"220 2.0.0 Ready\r\n")
    assert conn.next_event() == Reply(220, "2.0.0", ("Ready",))
    conn.receive_data(b"2")
    with pytest.raises(RemoteProtocolError, match="after the STARTTLS go-ahead"):
        conn.tls_established()
    conn = _conn_after(steps[:-1])
    conn.receive_data(b"220 2.0.0 Ready\r\n")
    conn.next_event()
    conn.receive_data(b"2")
    with pytest.raises(RemoteProtocolError, match="after the STARTTLS go-ahead"):
        conn.next_event()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"334-abc\r\n334 def\r\n", "one 334 line"),
        (b"335 x\r\n", "one 334 line"),
        (b"334 not*base64\r\n", "not base64"),
        (b"334 \xff\xfe\r\n", "not base64"),
        (b"334 YQ==\r\n334 YQ==\r\n", "second SASL challenge"),
    ],
)
def test_bad_challenges(data: bytes, message: str) -> None:
    _fails([*_ready(), Authenticate("PLAIN", None), data], message)


def test_reply_to_wrong_command_class() -> None:
    _fails([GREETING, Ehlo("x"), b"354 go ahead\r\n"], "unexpected reply 354 to EHLO")


# --- property tests ----------------------------------------------------------------------------


def _random_split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return [p for p in pieces if p] or [data]


TRANSCRIPTS: list[list[Step]] = [
    FULL_SESSION,
    [
        *_ready(),
        Authenticate("XOAUTH2", XOAUTH2_IR),
        b"334 " + base64.b64encode(ERROR_JSON) + b"\r\n",
        Respond(b""),
        b"535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 Learn more\r\n",
        Quit(),
        b"221 Bye\r\n",
        b"",
    ],
]


@settings(max_examples=150, deadline=None)
@given(
    which=st.integers(0, len(TRANSCRIPTS) - 1),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_random_splits_give_identical_events(which: int, cuts: list[int]) -> None:
    steps = TRANSCRIPTS[which]
    expected = play(steps)
    got = play(steps, lambda data: _random_split(data, cuts))
    assert got[:3] == expected[:3]


def _fuzz_connection(stage: int) -> SMTPConnection:
    if stage == 0:
        return SMTPConnection()
    conn = _conn_after([GREETING, Ehlo("x")] if stage == 1 else _ready())
    if stage == 2:
        conn.send(Authenticate("XOAUTH2", XOAUTH2_IR))
    return conn


@settings(max_examples=400, deadline=None)
@given(
    stage=st.integers(0, 2),
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.sampled_from(
                [b"220 ", b"250-", b"250 ", b"334 ", b"535 5.7.8 ", b"\r\n", b"421 ", b"YQ=="]
            ),
        ),
        max_size=30,
    ),
    close=st.booleans(),
)
def test_fuzzed_server_bytes_raise_only_our_errors(
    stage: int, chunks: list[bytes], close: bool
) -> None:
    conn = _fuzz_connection(stage)
    try:
        for chunk in [*chunks, *([b""] if close else [])]:
            conn.receive_data(chunk)
            while (event := conn.next_event()) is not NEED_DATA:
                if isinstance(event, SASLChallenge):
                    conn.send_sasl_response(b"")
                if isinstance(event, ConnectionClosed):
                    return
    except RemoteProtocolError:
        assert conn.state is State.ERROR


def test_error_challenge_json_round_trips() -> None:
    events, _, _ = check_all_ways(TRANSCRIPTS[1])
    challenge = next(e for e in events if isinstance(e, SASLChallenge))
    assert json.loads(challenge.data) == {"status": "401", "schemes": "bearer", "scope": "mail"}


def test_reply_is_a_frozen_value() -> None:
    # Reply has its own fast __init__; it must still behave as the frozen dataclass it is.
    reply = Reply(250, "2.1.0", ("Sender OK",))
    assert reply == Reply(code=250, enhanced_status="2.1.0", lines=("Sender OK",))
    assert hash(reply) == hash(Reply(250, "2.1.0", ("Sender OK",)))
    assert reply != Reply(250, None, ("2.1.0 Sender OK",))
    assert repr(reply) == "Reply(code=250, enhanced_status='2.1.0', lines=('Sender OK',))"
    with pytest.raises(dataclasses.FrozenInstanceError):
        reply.code = 550  # type: ignore[misc]
    assert dataclasses.replace(reply, code=251) == Reply(251, "2.1.0", ("Sender OK",))


@pytest.mark.parametrize(
    ("line", "status", "text"),
    [
        (b"250 2.1.0 Sender OK\r\n", "2.1.0", "Sender OK"),
        (b"250 2.1.0\r\n", "2.1.0", ""),
        (b"250 5.1.0 odd\r\n", None, "5.1.0 odd"),  # a status of another class is text
        (b"250 2.1000.0 x\r\n", None, "2.1000.0 x"),
        (b"250 2.1.0x\r\n", None, "2.1.0x"),
        (b"354 2.0.0 go ahead\r\n", None, "2.0.0 go ahead"),  # no 3.x.x class
        (b"550 5.7.1 no\r\n", "5.7.1", "no"),
        (b"250\r\n", None, ""),
    ],
)
def test_one_line_reply_enhanced_status(line: bytes, status: str | None, text: str) -> None:
    buffer = ReceiveBuffer()
    buffer.feed(line)
    assert ReplyReader().read(buffer) == Reply(int(line[:3]), status, (text,))


def test_extensions_is_a_read_only_view_of_the_latest_ehlo() -> None:
    conn = SMTPConnection()
    conn.receive_data(b"220 hi\r\n")
    conn.next_event()
    conn.send(Ehlo("[127.0.0.1]"))
    conn.receive_data(b"250-hi\r\n250 SIZE 100\r\n")
    conn.next_event()
    view = conn.extensions
    assert view == {"SIZE": ("100",)}
    with pytest.raises(TypeError):
        view["PIPELINING"] = ()  # type: ignore[index]
    conn.send(Ehlo("[127.0.0.1]"))  # asking again forgets what the last answer said
    assert conn.extensions == {}
    conn.receive_data(b"250-hi\r\n250 8BITMIME\r\n")
    conn.next_event()
    assert conn.extensions == {"8BITMIME": ()}
