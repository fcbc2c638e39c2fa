"""The POP3 core's maildrop commands: STAT, LIST, UIDL, RETR, TOP, DELE, RSET, APOP and
PIPELINING, as byte transcripts (whole, byte by byte, random splits, trailing data), plus the
streaming body reader's limits, response codes, refusals and fuzzing."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_mailoauth._sansio import NEED_DATA
from trio_mailoauth.errors import LocalProtocolError, RemoteProtocolError
from trio_mailoauth.pop3 import POP3Connection, State
from trio_mailoauth.pop3._events import (
    Apop,
    Capa,
    Dele,
    ErrResponse,
    List,
    MessageData,
    MessageEnd,
    MessageStart,
    Noop,
    OkResponse,
    Pass,
    Quit,
    Retr,
    Rset,
    ScanListing,
    Stat,
    StatResponse,
    Top,
    Uidl,
    UidListing,
    User,
)
from trio_mailoauth.pop3._reader import MessageBody, POP3Buffer
from trio_mailoauth.pop3._writer import apop_digest

Split = Callable[[bytes], list[bytes]]


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))] or [data]


def coalesce(events: Sequence[object]) -> list[object]:
    """Join adjacent MessageData: their boundaries follow the network's chunks."""
    out: list[object] = []
    for event in events:
        if isinstance(event, MessageData) and out and isinstance(out[-1], MessageData):
            out[-1] = MessageData(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def feed(conn: POP3Connection, data: bytes, split: Split = whole) -> list[object]:
    events: list[object] = []
    for chunk in split(data):
        if not chunk:
            continue  # b"" would mean "closed"
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
    return coalesce(events)


def logged_in(capabilities: bytes = b"PIPELINING\r\nUIDL\r\nTOP\r\n") -> POP3Connection:
    conn = POP3Connection()
    feed(conn, b"+OK Dovecot ready. <1896.697170952@dbc.mtview.ca.us>\r\n")
    conn.send(Capa())
    feed(conn, b"+OK\r\n" + capabilities + b".\r\n")
    conn.send(User("bob"))
    feed(conn, b"+OK\r\n")
    conn.send(Pass("secret"))
    feed(conn, b"+OK Logged in.\r\n")
    conn.data_to_send()
    assert conn.state is State.TRANSACTION
    return conn


# A message as Dovecot serves it: CRLF, dot-stuffed lines, a bare-LF "." that ends nothing.
MESSAGE = (
    b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nx\n.\r\nlast\r\n"
    b".\r\n"  # -> a line holding a single "." in the message
)
STUFFED = MESSAGE.replace(b"\r\n.", b"\r\n..")
if STUFFED.startswith(b"."):  # pragma: no cover - MESSAGE starts with a header
    STUFFED = b"." + STUFFED


SESSION: list[tuple[object, bytes, bytes, list[object]]] = [
    # (command, its line, the server's answer, the events)
    (Stat(), b"STAT\r\n", b"+OK 2 320\r\n", [StatResponse(2, 320)]),
    (
        List(),
        b"LIST\r\n",
        b"+OK 2 messages:\r\n1 120\r\n2 200\r\n.\r\n",
        [ScanListing(((1, 120), (2, 200)))],
    ),
    (List(2), b"LIST 2\r\n", b"+OK 2 200\r\n", [ScanListing(((2, 200),))]),
    (
        Uidl(),
        b"UIDL\r\n",
        b"+OK\r\n1 000000016b0a2ef2\r\n2 000000026b0a2ef2\r\n.\r\n",
        [UidListing(((1, "000000016b0a2ef2"), (2, "000000026b0a2ef2")))],
    ),
    (
        Uidl(1),
        b"UIDL 1\r\n",
        b"+OK 1 000000016b0a2ef2\r\n",
        [UidListing(((1, "000000016b0a2ef2"),))],
    ),
    (
        Retr(1),
        b"RETR 1\r\n",
        b"+OK 120 octets\r\n" + STUFFED + b".\r\n",
        [
            MessageStart("RETR", "120 octets"),
            MessageData(MESSAGE),
            MessageEnd("RETR", len(MESSAGE)),
        ],
    ),
    (
        Top(1, 0),
        b"TOP 1 0\r\n",
        b"+OK\r\nSubject: dots\r\n\r\n.\r\n",
        [MessageStart("TOP", ""), MessageData(b"Subject: dots\r\n\r\n"), MessageEnd("TOP", 17)],
    ),
    (
        Retr(9),
        b"RETR 9\r\n",
        b"-ERR There's no message 9.\r\n",
        [ErrResponse("RETR", "There's no message 9.")],
    ),
    (
        Dele(1),
        b"DELE 1\r\n",
        b"+OK Marked to be deleted.\r\n",
        [OkResponse("DELE", "Marked to be deleted.")],
    ),
    (Rset(), b"RSET\r\n", b"+OK\r\n", [OkResponse("RSET", "")]),
    (Noop(), b"NOOP\r\n", b"+OK\r\n", [OkResponse("NOOP", "")]),
    (List(), b"LIST\r\n", b"+OK 0 messages:\r\n.\r\n", [ScanListing(())]),
    (
        Retr(2),
        b"RETR 2\r\n",
        b"+OK\r\n.\r\n",  # an empty message
        [MessageStart("RETR", ""), MessageEnd("RETR", 0)],
    ),
    (Quit(), b"QUIT\r\n", b"+OK Logging out.\r\n", [OkResponse("QUIT", "Logging out.")]),
]


@pytest.mark.parametrize("split", [whole, bytewise], ids=["whole", "bytewise"])
def test_session_one_command_at_a_time(split: Split) -> None:
    conn = logged_in()
    for command, line, answer, events in SESSION:
        conn.send(command)  # type: ignore[arg-type]
        assert conn.data_to_send() == line
        assert feed(conn, answer, split) == events
    assert conn.state is State.DONE


@pytest.mark.parametrize("split", [whole, bytewise], ids=["whole", "bytewise"])
def test_session_pipelined(split: Split) -> None:
    conn = logged_in()
    pipelined = SESSION[:-1]  # QUIT is never pipelined
    for command, _, _, _ in pipelined:
        conn.send(command)  # type: ignore[arg-type]
    assert conn.in_flight == len(pipelined)
    assert conn.data_to_send() == b"".join(line for _, line, _, _ in pipelined)
    answers = b"".join(answer for _, _, answer, _ in pipelined)
    assert feed(conn, answers, split) == [e for _, _, _, events in pipelined for e in events]
    assert conn.in_flight == 0


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_splits_give_the_same_events(data: st.DataObject) -> None:
    pipelined = SESSION[:-1]
    answers = b"".join(answer for _, _, answer, _ in pipelined)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(answers)), max_size=30)))
    pieces = [answers[a:b] for a, b in zip([0, *cuts], [*cuts, len(answers)], strict=True)]
    conn = logged_in()
    for command, _, _, _ in pipelined:
        conn.send(command)  # type: ignore[arg-type]
    assert feed(conn, answers, lambda _: pieces) == [e for *_, events in pipelined for e in events]


def test_trailing_data_after_a_message_is_the_next_answer() -> None:
    conn = logged_in()
    conn.send(Retr(1))
    conn.send(Noop())
    conn.receive_data(b"+OK\r\nabc\r\n.\r\n+OK\r\n+OK extra\r\n")
    events = [conn.next_event() for _ in range(4)]
    assert events == [
        MessageStart("RETR", ""),
        MessageData(b"abc\r\n"),
        MessageEnd("RETR", 5),
        OkResponse("NOOP", ""),
    ]
    # The unsolicited line after NOOP's answer is a protocol error, but only when read.
    with pytest.raises(RemoteProtocolError, match="no command pending"):
        conn.next_event()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b".\r\n", b""),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"a\n.\r\nb\r\n.\r\n", b"a\n.\r\nb\r\n"),  # bare LF then "." ends nothing
        (b"a\r.\r\n.\r\n", b"a\r.\r\n"),  # nor does a bare CR
        (b"...\r\n.\r\n", b"..\r\n"),
        (b"a\r\n\r\n.\r\n", b"a\r\n\r\n"),
        (b"x\r\n.y\r\n.\r\n", b"x\r\ny\r\n"),  # a non-conforming unstuffed dot is dropped
        (b"\r\r\n.\r\n", b"\r\r\n"),
    ],
)
@pytest.mark.parametrize("split", [whole, bytewise], ids=["whole", "bytewise"])
def test_terminator_and_unstuffing(body: bytes, message: bytes, split: Split) -> None:
    conn = logged_in()
    conn.send(Retr(1))
    events = feed(conn, b"+OK\r\n" + body, split)
    expected: list[object] = [MessageStart("RETR", "")]
    if message:
        expected.append(MessageData(message))
    assert events == [*expected, MessageEnd("RETR", len(message))]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=30).filter(lambda b: b"\r\n" not in b), max_size=20),
    st.data(),
)
def test_any_message_round_trips_through_stuffing(lines: list[bytes], data: st.DataObject) -> None:
    message = b"".join(line + b"\r\n" for line in lines)
    wire = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
    wire += b".\r\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    body = MessageBody()
    buffer = POP3Buffer()
    out = b""
    ended = False
    for piece in pieces:
        if piece:
            buffer.feed(piece)
        while buffer and not ended:
            chunk, ended = buffer.extract_message(body)
            out += chunk
            if not chunk and not ended:
                assert len(buffer) <= 4  # only a possible terminator start is held
                break
    assert ended
    assert out == message
    assert body.size == len(message)
    assert not buffer


def test_endless_retr_is_bounded_and_fails_typed() -> None:
    conn = logged_in()
    conn.max_message_size = 1024 * 1024
    conn.send(Retr(1))
    assert feed(conn, b"+OK\r\n") == [MessageStart("RETR", "")]
    line = b"x" * 1000 + b"\r\n"

    def endless() -> None:
        for _ in range(2000):
            conn.receive_data(line * 8)
            while (event := conn.next_event()) is not NEED_DATA:
                assert isinstance(event, MessageData)
            assert len(conn._buffer) <= 4  # nothing accumulates in the core

    with pytest.raises(RemoteProtocolError, match="exceeds 1048576 octets"):
        endless()
    assert conn.state is State.ERROR


def test_closed_in_the_middle_of_a_message() -> None:
    conn = logged_in()
    conn.send(Retr(1))
    feed(conn, b"+OK\r\npart\r\n")
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of the answer to RETR"):
        conn.next_event()


@pytest.mark.parametrize(
    "line",
    [b"OK 1 2\r\n", b"+OKAY\r\n", b"\x00\xff\r\n", b"-ERRR\r\n", b"220 ready\r\n"],
)
def test_garbage_status_line(line: bytes) -> None:
    conn = logged_in()
    conn.send(Stat())
    with pytest.raises(RemoteProtocolError, match="status line"):
        feed(conn, line)
    assert conn.state is State.ERROR


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        (Stat(), b"+OK many\r\n"),
        (List(1), b"+OK 1 big\r\n"),
        (List(), b"+OK\r\nx 1\r\n.\r\n"),
        (Uidl(), b"+OK\r\n1\r\n.\r\n"),
        (Uidl(1), b"+OK\r\n"),
        # Digits only in ASCII: "²".isdigit() is True, and int("²") a ValueError.
        (Stat(), "+OK ² 10\r\n".encode()),
        (List(1), "+OK 1 ²\r\n".encode()),
        (List(), "+OK\r\n\u0661 1\r\n.\r\n".encode()),
        (Uidl(1), "+OK ³ abc\r\n".encode()),
    ],
)
def test_malformed_listings(command: object, answer: bytes) -> None:
    conn = logged_in()
    conn.send(command)  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError, match="malformed"):
        feed(conn, answer)


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"-ERR [IN-USE] Mailbox is locked by another POP3 session\r\n", "IN-USE"),
        (b"-ERR [SYS/TEMP] Temporary failure\r\n", "SYS/TEMP"),
        (b"-ERR [SYS/PERM] Mailbox is broken\r\n", "SYS/PERM"),
        (b"-ERR [login-delay] wait\r\n", "LOGIN-DELAY"),
        (b"-ERR [AUTH] Authentication failed.\r\n", "AUTH"),
    ],
)
def test_response_codes_on_refusals(line: bytes, code: str) -> None:
    conn = POP3Connection()
    feed(conn, b"+OK ready\r\n")
    conn.send(User("bob"))
    feed(conn, b"+OK\r\n")
    conn.send(Pass("pw"))
    (event,) = feed(conn, line)
    assert isinstance(event, ErrResponse)
    assert event.code == code
    assert conn.state is State.AUTHORIZATION


def test_pipelining_only_when_advertised() -> None:
    conn = logged_in(capabilities=b"UIDL\r\n")
    assert not conn.pipelining
    conn.send(Retr(1))
    assert not conn.can_send("RETR")
    with pytest.raises(LocalProtocolError, match="reply to RETR is still due"):
        conn.send(Retr(2))
    assert conn.data_to_send() == b"RETR 1\r\n"


def test_quit_and_capa_are_not_pipelined() -> None:
    conn = logged_in()
    conn.send(Retr(1))
    for command in (Quit(), Capa()):
        with pytest.raises(LocalProtocolError, match="cannot be pipelined"):
            conn.send(command)
    assert conn.data_to_send() == b"RETR 1\r\n"


def test_maildrop_commands_need_transaction_state() -> None:
    conn = POP3Connection()
    feed(conn, b"+OK ready\r\n")
    for command in (Stat(), List(), Uidl(), Retr(1), Top(1, 0), Dele(1), Rset()):
        with pytest.raises(LocalProtocolError, match="in state AUTHORIZATION"):
            conn.send(command)
    assert conn.data_to_send() == b""


@pytest.mark.parametrize(
    "make",
    [lambda: Retr(0), lambda: Dele(-1), lambda: List(0), lambda: Top(1, -1), lambda: Uidl(True)],
)
def test_bad_numbers_are_refused(make: Callable[[], object]) -> None:
    with pytest.raises(LocalProtocolError):
        make()


def test_command_line_limit_and_forbidden_characters() -> None:
    conn = POP3Connection()
    feed(conn, b"+OK ready <1.2@host>\r\n")
    with pytest.raises(LocalProtocolError, match="255"):
        conn.send(User("u" * 260))
    with pytest.raises(LocalProtocolError, match="CR, LF or NUL"):
        conn.send(User("bob\r\nDELE 1"))
    with pytest.raises(LocalProtocolError, match="255"):
        conn.send(Apop("u" * 250, "secret"))
    assert conn.data_to_send() == b""


def test_apop_rfc1939_example_and_redacted_trace() -> None:
    # RFC 1939 §7's example: the digest of "<1896.697170952@dbc.mtview.ca.us>tanstaaf".
    assert apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf") == (
        "c4c9334bac560ecc979e58001b3e22fb"
    )
    trace: list[str] = []
    conn = POP3Connection(trace=trace.append)
    feed(conn, b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n")
    assert conn.greeting is not None
    assert conn.greeting.timestamp == "<1896.697170952@dbc.mtview.ca.us>"
    conn.send(Apop("mrose", "tanstaaf"))
    assert conn.data_to_send() == b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"
    assert feed(conn, b"+OK mrose's maildrop has 2 messages (320 octets)\r\n") == [
        OkResponse("APOP", "mrose's maildrop has 2 messages (320 octets)")
    ]
    assert conn.state is State.TRANSACTION
    assert "C: APOP mrose <redacted>" in trace
    assert not any("c4c9334b" in line or "tanstaaf" in line for line in trace)
    assert "tanstaaf" not in repr(Apop("mrose", "tanstaaf"))


@pytest.mark.parametrize(
    "greeting",
    [b"+OK ready\r\n", b"+OK ready <no-at-sign>\r\n", b"+OK ready <a@b\r\n"],
)
def test_apop_needs_a_timestamp(greeting: bytes) -> None:
    conn = POP3Connection()
    feed(conn, greeting)
    with pytest.raises(LocalProtocolError, match=r"no <\.\.\.@\.\.\.> timestamp"):
        conn.send(Apop("mrose", "tanstaaf"))
    assert conn.data_to_send() == b""


def test_apop_refused() -> None:
    conn = POP3Connection()
    feed(conn, b"+OK <1.2@host>\r\n")
    conn.send(Apop("mrose", "wrong"))
    assert feed(conn, b"-ERR [AUTH] permission denied\r\n") == [
        ErrResponse("APOP", "permission denied", "AUTH")
    ]
    assert conn.state is State.AUTHORIZATION


def test_message_body_is_not_traced() -> None:
    trace: list[str] = []
    conn = POP3Connection(trace=trace.append)
    feed(conn, b"+OK ready\r\n")
    conn.send(User("bob"))
    feed(conn, b"+OK\r\n")
    conn.send(Pass("pw"))
    feed(conn, b"+OK\r\n")
    conn.send(Retr(1))
    feed(conn, b"+OK\r\nSecret body line\r\n.\r\n")
    assert "S: <18 octets of message>" in trace
    assert not any("Secret body" in line for line in trace)
    assert "C: PASS <redacted>" in trace


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["RETR", "LIST", "UIDL", "STAT", "TOP"]))
def test_fuzzing_raises_only_remote_protocol_errors(data: bytes, keyword: str) -> None:
    conn = logged_in()
    conn.max_message_size = 100
    commands = {"RETR": Retr(1), "LIST": List(), "UIDL": Uidl(), "STAT": Stat(), "TOP": Top(1, 2)}
    conn.send(commands[keyword])
    conn.send(Noop())
    try:
        for chunk in (data, b""):
            conn.receive_data(chunk)
            while (event := conn.next_event()) is not NEED_DATA:
                if isinstance(event, MessageData):
                    assert len(event.data) <= len(data)
                if type(event).__name__ == "ConnectionClosed":
                    break
    except RemoteProtocolError:
        assert conn.state is State.ERROR
