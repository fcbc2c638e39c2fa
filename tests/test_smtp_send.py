"""Sending mail in the sans-I/O SMTP core: MAIL/RCPT/DATA/BDAT transcripts (whole, byte by
byte, with trailing data, split at random points), PIPELINING in one write, dot-stuffing and
the smuggling attempts it defeats, address and parameter checks, the message helpers."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_mailoauth._sansio import NEED_DATA, ConnectionClosed
from trio_mailoauth.errors import LocalProtocolError, RemoteProtocolError
from trio_mailoauth.smtp import (
    Bdat,
    Command,
    Data,
    Ehlo,
    Mail,
    MessageData,
    Noop,
    Quit,
    Rcpt,
    Reply,
    Rset,
    SendResult,
    SMTPConnection,
    State,
    Vrfy,
)
from trio_mailoauth.smtp._reader import MAX_REPLY_BYTES, MAX_REPLY_LINES, parse_ehlo, size_limit
from trio_mailoauth.smtp._writer import dot_stuff, normalize_line_endings
from trio_mailoauth.smtp.message import envelope_from_headers, message_bytes, strip_bcc

GREETING = b"220 mx.example.test ESMTP\r\n"
EHLO_ALL = (
    b"250-mx.example.test\r\n"
    b"250-PIPELINING\r\n"
    b"250-SIZE 1000\r\n"
    b"250-8BITMIME\r\n"
    b"250-SMTPUTF8\r\n"
    b"250-DSN\r\n"
    b"250-CHUNKING\r\n"
    b"250-BINARYMIME\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n"
    b"250 REQUIRETLS\r\n"
)
EHLO_BARE = b"250-mx.example.test\r\n250 ENHANCEDSTATUSCODES\r\n"

Step = bytes | Command
Splitter = Callable[[bytes], Sequence[bytes]]


def whole(data: bytes) -> Sequence[bytes]:
    return [data]


def bytewise(data: bytes) -> Sequence[bytes]:
    return [data[i : i + 1] for i in range(len(data))] or [data]


def play(
    steps: Sequence[Step], split: Splitter = whole, *, trailing: bytes = b"", tls: bool = False
) -> tuple[list[object], list[bytes], SMTPConnection]:
    """Run a transcript; return (events, what the client wrote after each step, connection).

    Every client write is recorded separately: a pipelined group is one entry.
    """
    conn = SMTPConnection(tls=tls)
    events: list[object] = []
    writes: list[bytes] = []
    last_server = max((i for i, s in enumerate(steps) if isinstance(s, bytes)), default=-1)
    pending = b""
    for index, step in enumerate(steps):
        if isinstance(step, bytes):
            if pending:
                writes.append(pending)
                pending = b""
            data = step + trailing if index == last_server else step
            for chunk in split(data):
                conn.receive_data(chunk)
                while (event := conn.next_event()) is not NEED_DATA:
                    events.append(event)
                    if isinstance(event, ConnectionClosed):
                        break
        else:
            conn.send(step)
            pending += conn.data_to_send()
    if pending:
        writes.append(pending)
    return events, writes, conn


def check_all_ways(steps: Sequence[Step]) -> tuple[list[object], list[bytes], SMTPConnection]:
    events, writes, conn = play(steps)
    assert play(steps, bytewise)[:2] == (events, writes)
    # Trailing bytes (the start of a reply nobody asked for yet) change nothing; before a
    # close they would be a reply cut short, so those transcripts are cut before the close.
    closes = bool(steps) and steps[-1] == b""
    open_steps = steps[:-1] if closes else steps
    open_events = events[:-1] if closes else events
    for split, trailing in ((whole, b"25"), (bytewise, b"250-more")):
        assert play(open_steps, split, trailing=trailing)[:2] == (open_events, writes)
    return events, writes, conn


def r(code: int, status: str | None, *lines: str) -> Reply:
    return Reply(code, status, lines)


OPEN: list[Step] = [GREETING, Ehlo("c.test"), EHLO_ALL]

PIPELINED_DATA: list[Step] = [
    *OPEN,
    Mail("alice@example.test", size=18),
    Rcpt("bob@example.test"),
    Rcpt("nobody@elsewhere.test"),
    Rcpt("carol@example.test"),
    Data(),
    b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no such user\r\n250 2.1.5 Ok\r\n354 go ahead\r\n",
    MessageData(b"Subject: x\n\n.hi\n"),
    b"250 2.0.0 queued as ABC\r\n",
    Quit(),
    b"221 2.0.0 Bye\r\n",
    b"",
]


def test_pipelined_transaction_is_one_write_and_replies_match_in_order() -> None:
    events, writes, conn = check_all_ways(PIPELINED_DATA)
    assert writes[1] == (
        b"MAIL FROM:<alice@example.test> SIZE=18\r\n"
        b"RCPT TO:<bob@example.test>\r\n"
        b"RCPT TO:<nobody@elsewhere.test>\r\n"
        b"RCPT TO:<carol@example.test>\r\n"
        b"DATA\r\n"
    )
    assert writes[2] == b"Subject: x\r\n\r\n..hi\r\n.\r\n"
    assert events[2:] == [
        r(250, "2.1.0", "Ok"),
        r(250, "2.1.5", "Ok"),
        r(550, "5.1.1", "no such user"),
        r(250, "2.1.5", "Ok"),
        r(354, None, "go ahead"),
        r(250, "2.0.0", "queued as ABC"),
        r(221, "2.0.0", "Bye"),
        ConnectionClosed(),
    ]
    assert conn.state is State.CLOSED


def test_states_through_a_pipelined_transaction() -> None:
    conn = SMTPConnection()
    for step in OPEN:
        if isinstance(step, bytes):
            conn.receive_data(step)
            while conn.next_event() is not NEED_DATA:
                pass
        else:
            conn.send(step)
    conn.send(Mail("a@example.test"))
    states = [conn.state]
    conn.send(Rcpt("b@example.test"))
    conn.send(Data())
    states.append(conn.state)
    with pytest.raises(LocalProtocolError, match="still waiting for the reply to MAIL"):
        conn.send(MessageData(b"x"))  # the 354 has not come: content would be read as commands
    conn.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert [conn.next_event() for _ in range(3)][-1] == r(354, None, "go")
    states.append(conn.state)
    with pytest.raises(LocalProtocolError, match="cannot send MAIL in state sending message"):
        conn.send(Mail("a@example.test"))
    conn.send(MessageData(b"x\r\n"))
    states.append(conn.state)
    with pytest.raises(LocalProtocolError):
        conn.send(Mail("a@example.test"))  # never before the final reply (Dovecot crashes)
    conn.receive_data(b"250 queued\r\n")
    assert conn.next_event() == r(250, None, "queued")
    states.append(conn.state)
    assert states == [
        State.MAIL_SENT,
        State.DATA_SENT,
        State.DATA_OPEN,
        State.FINISHING,
        State.READY,
    ]


def test_bdat_transaction_in_one_write() -> None:
    steps: list[Step] = [
        *OPEN,
        Mail("alice@example.test", body="8BITMIME"),
        Rcpt("bob@example.test"),
        Bdat(b"Subject: \xc3\xbc\r\n\r\n.\r\n", last=False),
        Bdat(b"end\r\n", last=True),
        b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 chunk\r\n250 2.0.0 queued\r\n",
    ]
    events, writes, conn = check_all_ways(steps)
    assert writes[1] == (
        b"MAIL FROM:<alice@example.test> BODY=8BITMIME\r\n"
        b"RCPT TO:<bob@example.test>\r\n"
        b"BDAT 18\r\nSubject: \xc3\xbc\r\n\r\n.\r\n"  # sent as is: BDAT needs no dot-stuffing
        b"BDAT 5 LAST\r\nend\r\n"
    )
    assert events[-1] == r(250, "2.0.0", "queued")
    assert conn.state is State.READY


def test_refused_bdat_chunk_forbids_more_chunks_until_rset() -> None:
    events, _, conn = play(
        [
            *OPEN,
            Mail("a@example.test"),
            Rcpt("b@example.test"),
            Bdat(b"abc"),
            b"250 ok\r\n250 ok\r\n452 4.3.1 out of storage\r\n",
        ]
    )
    assert events[-1] == r(452, "4.3.1", "out of storage")
    with pytest.raises(LocalProtocolError, match="earlier chunk was refused"):
        conn.send(Bdat(b"more", last=True))
    conn.send(Rset())
    assert conn.state is State.READY


def test_refused_mail_and_rcpt_in_a_pipeline_then_data_refused() -> None:
    events, _, conn = check_all_ways(
        [
            *OPEN,
            Mail("a@example.test"),
            Rcpt("b@example.test"),
            Data(),
            b"451 4.3.0 try later\r\n503 5.5.1 need MAIL\r\n503 5.5.1 no valid recipients\r\n",
            Rset(),
            b"250 2.0.0 Ok\r\n",
        ]
    )
    assert [e.code for e in events if isinstance(e, Reply)][2:] == [451, 503, 503, 250]
    assert conn.state is State.READY


def test_no_pipelining_without_the_extension() -> None:
    _, _, conn = play([GREETING, Ehlo("c.test"), b"250-mx\r\n250 8BITMIME\r\n"])
    conn.send(Mail("a@example.test"))
    with pytest.raises(LocalProtocolError, match="still waiting for the reply to MAIL"):
        conn.send(Rcpt("b@example.test"))
    assert conn.data_to_send() == b"MAIL FROM:<a@example.test>\r\n"


def test_unsolicited_reply_in_a_transaction_is_an_error() -> None:
    _, _, conn = play([*OPEN, Mail("a@example.test"), Rcpt("b@example.test")])
    conn.receive_data(b"250 ok\r\n250 ok\r\n250 and one more\r\n")
    conn.next_event()
    conn.next_event()
    with pytest.raises(RemoteProtocolError, match="unsolicited reply 250"):
        conn.next_event()
    assert conn.state is State.ERROR


def test_a_250_to_data_is_an_error() -> None:
    _, _, conn = play([*OPEN, Mail("a@example.test"), Rcpt("b@example.test"), Data()])
    conn.receive_data(b"250 ok\r\n250 ok\r\n250 ok?\r\n")
    conn.next_event()
    conn.next_event()
    with pytest.raises(RemoteProtocolError, match="unexpected reply 250 to DATA"):
        conn.next_event()


def test_over_long_multi_line_reply_is_an_error() -> None:
    _, _, conn = play([*OPEN, Mail("a@example.test")])
    conn.receive_data(b"250-x\r\n" * (MAX_REPLY_LINES + 1))
    with pytest.raises(RemoteProtocolError, match="more than"):
        conn.next_event()
    _, _, conn = play([*OPEN, Mail("a@example.test")])
    conn.receive_data((b"250-" + b"x" * 8000 + b"\r\n") * (MAX_REPLY_BYTES // 8000 + 2))
    with pytest.raises(RemoteProtocolError, match="longer than"):
        conn.next_event()


# --- smuggling: nothing in the content can end DATA early -------------------------------------


@pytest.mark.parametrize(
    ("content", "wire"),
    [
        (b"a\r\n.\r\nMAIL FROM:<evil@x>\r\n", b"a\r\n..\r\nMAIL FROM:<evil@x>\r\n.\r\n"),
        (b"a\n.\nRSET\n", b"a\r\n..\r\nRSET\r\n.\r\n"),  # bare LF
        (b"a\r.\rRSET\r", b"a\r\n..\r\nRSET\r\n.\r\n"),  # bare CR
        (b"a\n.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),  # mixed, no final line ending
        (b".\r\n", b"..\r\n.\r\n"),  # the content *is* a lone dot
        (b".", b"..\r\n.\r\n"),
        (b"", b".\r\n"),
        (b"..x\r\n", b"...x\r\n.\r\n"),
    ],
)
def test_message_data_is_normalised_and_dot_stuffed(content: bytes, wire: bytes) -> None:
    _, writes, _ = play(
        [
            *OPEN,
            Mail("a@example.test"),
            Rcpt("b@example.test"),
            Data(),
            b"250 a\r\n250 b\r\n354 go\r\n",
            MessageData(content),
        ]
    )
    assert writes[-1] == wire


def _unstuff(wire: bytes) -> bytes:
    """What a server reads: lines up to the lone dot, one leading dot removed from each."""
    lines = wire.split(b"\r\n")
    end = lines.index(b".")
    body = [line[1:] if line.startswith(b".") else line for line in lines[:end]]
    return b"".join(line + b"\r\n" for line in body)


@settings(max_examples=300)
@given(st.binary(max_size=200) | st.text(alphabet=".\r\nab", max_size=60).map(str.encode))
def test_dot_stuffing_round_trips_and_never_ends_early(content: bytes) -> None:
    stuffed = dot_stuff(content)
    wire = stuffed + (b".\r\n" if not stuffed or stuffed.endswith(b"\r\n") else b"\r\n.\r\n")
    normal = normalize_line_endings(content)
    # Only CRLF pairs in the result, the first lone dot is our terminator, and the server
    # reads back exactly the normalised content.
    assert wire.count(b"\r") == wire.count(b"\n") == wire.count(b"\r\n")
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    expected = normal if not normal or normal.endswith(b"\r\n") else normal + b"\r\n"
    assert _unstuff(wire) == expected


def test_normalisation_keeps_canonical_data_as_is() -> None:
    data = b"a\r\nb\r\n" * 1000
    assert normalize_line_endings(data) is data
    assert dot_stuff(data) is data


@settings(max_examples=300)
@given(st.text(alphabet="\r\na", max_size=40).map(str.encode))
def test_normalisation_changes_exactly_what_is_not_canonical(content: bytes) -> None:
    canonical = content.count(b"\r") == content.count(b"\n") == content.count(b"\r\n")
    normal = normalize_line_endings(content)
    if canonical:
        assert normal is content
    else:
        assert normal != content
        assert normal.count(b"\r") == normal.count(b"\n") == normal.count(b"\r\n")


# --- addresses and parameters -----------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "a@example.test\r\nRCPT TO:<evil@x>",
        "a@example.test\n",
        "a\x00@example.test",
        "a@example.test> NOTIFY=NEVER",
        "a@example.test NOTIFY=NEVER",
        "<a@example.test>",
        "a b@example.test",
        '"a"b"@example.test',
        "no-at-sign",
        "@example.test",
        "a@",
        "a" * 250 + "@example.test",
    ],
)
def test_bad_addresses_are_refused_when_the_command_is_made(address: str) -> None:
    with pytest.raises(LocalProtocolError, match="address"):
        Rcpt(address)
    with pytest.raises(LocalProtocolError, match="address"):
        Mail(address)


def test_good_addresses() -> None:
    Mail("")  # the null reverse-path
    Rcpt('"john doe"@example.test')
    Rcpt('"a\\"b"@example.test')
    Rcpt("a@[127.0.0.1]")
    with pytest.raises(LocalProtocolError):
        Rcpt("")


def test_all_parameters_on_the_wire() -> None:
    _, writes, _ = play(
        [
            *OPEN[:2],
            EHLO_ALL,
            Mail(
                "søren@example.test",
                size=100,
                body="8BITMIME",
                smtputf8=True,
                ret="HDRS",
                envid="id+1=x y",
                requiretls=True,
            ),
            Rcpt("bøb@example.test", notify=("SUCCESS", "FAILURE"), orcpt="bob@example.test"),
        ],
        tls=True,
    )
    assert (
        writes[-1]
        == (
            "MAIL FROM:<søren@example.test> SIZE=100 BODY=8BITMIME SMTPUTF8 RET=HDRS "
            "ENVID=id+2B1+3Dx+20y REQUIRETLS\r\n"
            "RCPT TO:<bøb@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.test\r\n"
        ).encode()
    )


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (Mail("a@example.test", size=10), "does not offer SIZE"),
        (Mail("a@example.test", body="8BITMIME"), "does not offer 8BITMIME"),
        (Mail("ä@example.test", smtputf8=True), "does not offer SMTPUTF8"),
        (Mail("a@example.test", ret="FULL"), "does not offer DSN"),
        (Mail("a@example.test", requiretls=True), "does not offer REQUIRETLS"),
        (Vrfy("a"), None),
    ],
)
def test_parameters_need_their_extension(command: Command, message: str | None) -> None:
    _, _, conn = play([GREETING, Ehlo("c.test"), EHLO_BARE])
    if message is None:
        conn.send(command)
        return
    with pytest.raises(LocalProtocolError, match=message):
        conn.send(command)
    assert conn.data_to_send() == b""


def test_other_guards() -> None:
    with pytest.raises(LocalProtocolError, match="needs SMTPUTF8"):
        Mail("ä@example.test")
    with pytest.raises(LocalProtocolError, match="NOTIFY"):
        Rcpt("a@example.test", notify=("NEVER", "SUCCESS"))
    with pytest.raises(LocalProtocolError, match="ENVID"):
        Mail("a@example.test", envid="x\r\ny")
    _, _, conn = play(OPEN)
    with pytest.raises(LocalProtocolError, match="at most 1000"):
        conn.send(Mail("a@example.test", size=1001))
    with pytest.raises(LocalProtocolError, match="REQUIRETLS needs a TLS"):
        conn.send(Mail("a@example.test", requiretls=True))
    conn.send(Mail("a@example.test"))
    with pytest.raises(LocalProtocolError, match="needs SMTPUTF8"):
        conn.send(Rcpt("ä@example.test"))
    _, _, conn = play(OPEN)
    conn.send(Mail("a@example.test", body="BINARYMIME"))
    conn.send(Rcpt("b@example.test"))
    with pytest.raises(LocalProtocolError, match="needs BDAT"):
        conn.send(Data())
    _, _, conn = play([GREETING, Ehlo("c.test"), EHLO_BARE])
    conn.send(Noop())
    conn.receive_data(b"250 ok\r\n")
    conn.next_event()
    with pytest.raises(LocalProtocolError, match="cannot send RCPT in state ready"):
        conn.send(Rcpt("b@example.test"))
    conn.send(Mail("a@example.test"))
    conn.receive_data(b"250 ok\r\n")
    conn.next_event()
    with pytest.raises(LocalProtocolError, match="does not offer CHUNKING"):
        conn.send(Bdat(b"x", last=True))


def test_reprs_do_not_dump_the_message() -> None:
    assert repr(MessageData(b"x" * 1000)) == "MessageData(<1000 bytes>)"
    assert repr(Bdat(b"x" * 10, last=True)) == "Bdat(<10 bytes>, last=True)"


# --- hypothesis: random splits of a transaction's replies; fuzzing ----------------------------

SERVER_BYTES = b"".join(s for s in PIPELINED_DATA if isinstance(s, bytes))


@settings(max_examples=100)
@given(st.lists(st.integers(min_value=0, max_value=len(SERVER_BYTES)), max_size=12))
def test_random_splits_give_identical_events(cuts: list[int]) -> None:
    def split_at(data: bytes) -> Sequence[bytes]:
        points = sorted({c for c in cuts if 0 < c < len(data)})
        edges = [0, *points, len(data)]
        return [data[a:b] for a, b in itertools.pairwise(edges)] or [data]

    assert play(PIPELINED_DATA, split_at)[:2] == play(PIPELINED_DATA)[:2]


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_fuzzed_replies_in_a_transaction_raise_only_our_errors(data: bytes) -> None:
    _, _, conn = play([*OPEN, Mail("a@example.test"), Rcpt("b@example.test"), Data()])
    try:
        conn.receive_data(data)
        conn.receive_data(b"")
        while not isinstance(conn.next_event(), ConnectionClosed):
            pass
    except (RemoteProtocolError, LocalProtocolError):
        pass


# --- the message helpers -----------------------------------------------------------------------


def _message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Alice <alice@example.test>"
    message["To"] = "bob@example.test, Carol <carol@example.test>"
    message["Cc"] = "bob@example.test"
    message["Bcc"] = "secret@example.test"
    message["Subject"] = "hi"
    message.set_content("héllo\n.dot\n")
    return message


def test_envelope_from_headers() -> None:
    message = _message()
    assert envelope_from_headers(message, None, None) == (
        "alice@example.test",
        ["bob@example.test", "carol@example.test", "secret@example.test"],
    )
    message["Sender"] = "list@example.test"
    assert envelope_from_headers(message, None, ["x@example.test"])[0] == "list@example.test"
    raw = message_bytes(message, smtputf8=False, eight_bit=True)
    assert envelope_from_headers(raw, None, None)[1] == ["bob@example.test", "carol@example.test"]
    with pytest.raises(ValueError, match="no recipients"):
        envelope_from_headers(b"From: a@example.test\r\n\r\n", None, None)
    with pytest.raises(ValueError, match="no sender"):
        envelope_from_headers(b"To: a@example.test\r\n\r\n", None, None)


def test_message_bytes_strips_bcc_and_uses_crlf() -> None:
    message = _message()
    raw = message_bytes(message, smtputf8=False, eight_bit=True)
    assert b"Bcc" not in raw
    assert b"secret" not in raw
    assert message["Bcc"] == "secret@example.test"  # the caller's message is untouched
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert "héllo".encode() in raw
    seven = message_bytes(message, smtputf8=False, eight_bit=False)
    assert seven.isascii()


def test_strip_bcc_on_bytes() -> None:
    data = b"From: a\r\nBcc: x,\r\n y\r\nTo: b\r\nbcc: z\r\n\r\nBcc: in the body\r\n"
    assert strip_bcc(data) == b"From: a\r\nTo: b\r\n\r\nBcc: in the body\r\n"
    plain = b"From: a\r\n\r\nbody"
    assert strip_bcc(plain) is plain


def test_send_result() -> None:
    result = SendResult(
        "a@example.test",
        {"b@example.test": r(250, None, "ok"), "c@x": r(550, "5.1.1", "no")},
        r(250, None, "queued"),
    )
    assert result.accepted == ("b@example.test",)
    assert result.refused == {"c@x": r(550, "5.1.1", "no")}
    assert not result.ok


@pytest.mark.parametrize(
    ("advertised", "limit"),
    [("SIZE 1000", 1000), ("SIZE", None), ("SIZE 0", None), ("SIZE ²", None), ("SIZE x", None)],
)
def test_size_limit_reads_ascii_digits_only(advertised: str, limit: int | None) -> None:
    # "²".isdigit() is True and int("²") a ValueError: it would escape from send(Mail(...)).
    assert size_limit(parse_ehlo(r(250, None, "mx", advertised))) == limit


def test_transaction_commands_are_frozen_values() -> None:
    # Mail, Rcpt and Bdat have their own fast __init__; they must still behave as the frozen
    # dataclasses they are, defaults and checks included.
    mail = Mail("a@example.test", size=10)
    assert mail == Mail("a@example.test", 10, None, False, None, None, False)
    assert (mail.body, mail.smtputf8, mail.ret, mail.envid, mail.requiretls) == (
        None,
        False,
        None,
        None,
        False,
    )
    assert dataclasses.replace(mail, size=11).size == 11
    assert hash(Rcpt("b@example.test")) == hash(Rcpt("b@example.test", None, None))
    assert Rcpt("b@example.test", notify=("NEVER",)).notify == ("NEVER",)
    assert Bdat(b"x") == Bdat(b"x", last=False) != Bdat(b"x", last=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mail.size = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Rcpt("b@example.test").recipient = "c@example.test"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Bdat(b"x").last = True  # type: ignore[misc]
    with pytest.raises(LocalProtocolError):
        dataclasses.replace(mail, sender="a@example.test>")
    with pytest.raises(LocalProtocolError):
        Rcpt("b@example.test", orcpt="c@example.test\r\nRSET")
    with pytest.raises(LocalProtocolError):
        Rcpt("b@example.test", notify=("NEVER", "SUCCESS"))
