"""The IMAP reader's typed responses: FETCH items, BODYSTRUCTURE, LIST/STATUS/SEARCH/ESEARCH,
VANISHED, NAMESPACE, QUOTA, ID, and what Dovecot does not do (Gmail's X-GM-*, Microsoft's
throttling); random splits of recorded bytes give identical events; garbage raises only
RemoteProtocolError; the writer's new argument forms and the search builder."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_mailoauth._sansio import NEED_DATA
from trio_mailoauth.errors import LocalProtocolError, RemoteProtocolError
from trio_mailoauth.imap import IMAPConnection, IMAPState, Limits
from trio_mailoauth.imap._mutf7 import decode_mailbox, encode_mailbox
from trio_mailoauth.imap._reader import parse_response
from trio_mailoauth.imap._writer import AString
from trio_mailoauth.imap.commands import (
    Append,
    Create,
    Idle,
    List,
    Noop,
    Select,
    Store,
    sequence_set,
)
from trio_mailoauth.imap.commands import (
    Fetch as FetchCommand,
)
from trio_mailoauth.imap.commands import (
    Search as SearchCommand,
)
from trio_mailoauth.imap.events import (
    ConnectionClosed,
    Enabled,
    ESearch,
    Event,
    Exists,
    IdleStarted,
    IdResponse,
    ListEntry,
    MailboxStatus,
    Namespace,
    Quota,
    QuotaRoot,
    Search,
    StatusResponse,
    TaggedResponse,
    Vanished,
)
from trio_mailoauth.imap.mailbox import MailboxInfo
from trio_mailoauth.imap.message import Address, Fetch, MultiPart, SinglePart
from trio_mailoauth.imap.search import Q

BODY = b"From: a@b\r\nSubject: hi\r\n\r\nhello\r\n"


def selected(caps: bytes = b"IMAP4rev1 IDLE LITERAL+ CONDSTORE QRESYNC") -> IMAPConnection:
    conn = IMAPConnection()
    conn.receive_data(b"* PREAUTH [CAPABILITY " + caps + b"] hi\r\n")
    conn.next_event()
    conn.send(Select("INBOX"))
    conn.data_to_send()
    conn.receive_data(b"A1 OK [READ-WRITE] done\r\n")
    assert isinstance(conn.next_event(), TaggedResponse)
    assert conn.state is IMAPState.SELECTED
    return conn


def events_of(conn: IMAPConnection, chunks: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            assert not isinstance(event, type(NEED_DATA))
            events.append(event)
            if isinstance(event, ConnectionClosed):
                return events
    return events


# --- FETCH --------------------------------------------------------------------------------


def test_fetch_every_item() -> None:
    data = (
        b'* 12 FETCH (UID 4827313 FLAGS (\\Seen $Forwarded) INTERNALDATE " 7-Feb-1994 21:52:25'
        b' -0800" RFC822.SIZE 4286 MODSEQ (12121231000) ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800"'
        b' {11}\r\nafternoon\r\n (("Terry Gray" NIL "gray" "cac.washington.edu")) NIL NIL'
        b' (("IMAP" NIL "imap" "cac.washington.edu")) NIL NIL NIL "<B27397-0100000@cac>")'
        b" BODY[]<0> {%d}\r\n" % len(BODY) + BODY + b' BODY[HEADER.FIELDS (SUBJECT)] "Subject: hi"'
        b" BINARY[1] ~{3}\r\n\x00\x01\x02 BINARY.SIZE[1] 3 RFC822.TEXT NIL X-NEW-ITEM (a 1))\r\n"
    )
    fetch = parse_response(data)
    assert isinstance(fetch, Fetch)
    assert (fetch.sequence, fetch.uid, fetch.size, fetch.modseq) == (12, 4827313, 4286, 12121231000)
    assert fetch.flags == ("\\Seen", "$Forwarded")
    assert fetch.internal_date == datetime(
        1994, 2, 7, 21, 52, 25, tzinfo=timezone(timedelta(hours=-8))
    )
    assert fetch.envelope is not None
    assert fetch.envelope.subject == "afternoon\r\n"
    assert fetch.envelope.from_ == (Address("Terry Gray", None, "gray", "cac.washington.edu"),)
    assert fetch.envelope.sender == ()
    assert fetch.envelope.cc == ()
    assert fetch.envelope.message_id == "<B27397-0100000@cac>"
    assert fetch.body == BODY
    assert fetch.section("body.peek[header.fields (subject)]") == b"Subject: hi"
    assert fetch.section("BINARY[1]") == b"\x00\x01\x02"
    assert fetch.binary_sizes == {"[1]": 3}
    assert fetch.sections["RFC822.TEXT"] is None
    assert fetch.extra == {"X-NEW-ITEM": ("a", "1")}


def test_gmail_extensions() -> None:
    # Recorded from Gmail (PROTOCOL-NOTES.md quirks): 64-bit ids, labels as astrings.
    data = (
        b"* 1 FETCH (X-GM-THRID 1278455344230334865 X-GM-MSGID 1278455344230334865 X-GM-LABELS"
        b' (\\Inbox \\Sent Important "Muy Importante" {6}\r\nfoo)\r\n) UID 9)\r\n'
    )
    fetch = parse_response(data)
    assert isinstance(fetch, Fetch)
    assert fetch.gmail_thread_id == fetch.gmail_message_id == 1278455344230334865
    assert fetch.gmail_labels == ("\\Inbox", "\\Sent", "Important", "Muy Importante", "foo)\r\n")
    assert fetch.uid == 9
    assert Q.gmail_raw('has:attachment "x"').args[1].value == 'has:attachment "x"'  # type: ignore[union-attr]


def test_body_structure_tree() -> None:
    data = (
        b'* 2 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "QUOTED-PRINTABLE"'
        b' 1152 23 NIL NIL NIL NIL)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 342 (NIL "inner" NIL NIL'
        b' NIL NIL NIL NIL NIL NIL) ("TEXT" "HTML" NIL NIL NIL "7BIT" 10 1) 12)'
        b'("APPLICATION" "PDF" ("NAME" "a.pdf") "<id@x>" "desc" "BASE64" 4554 NIL'
        b' ("ATTACHMENT" ("FILENAME" "a.pdf")) "EN" "loc") "MIXED" ("BOUNDARY" "xx") NIL NIL))\r\n'
    )
    fetch = parse_response(data)
    assert isinstance(fetch, Fetch)
    tree = fetch.body_structure
    assert isinstance(tree, MultiPart)
    assert tree.content_type == "multipart/mixed"
    assert tree.params == {"boundary": "xx"}
    text, attached, pdf = tree.parts
    assert isinstance(text, SinglePart)
    assert isinstance(attached, SinglePart)
    assert (text.content_type, text.params, text.encoding, text.size, text.lines) == (
        "text/plain",
        {"charset": "UTF-8"},
        "quoted-printable",
        1152,
        23,
    )
    assert attached.envelope is not None
    assert attached.envelope.subject == "inner"
    assert isinstance(attached.body, SinglePart)
    assert attached.body.subtype == "html"
    assert attached.lines == 12
    assert isinstance(pdf, SinglePart)
    assert pdf.disposition == ("attachment", {"filename": "a.pdf"})
    assert (pdf.id, pdf.description, pdf.language, pdf.location) == (
        "<id@x>",
        "desc",
        ("EN",),
        "loc",
    )


@pytest.mark.parametrize(
    "data",
    [
        b"* 1 FETCH (UID x)\r\n",
        b"* 1 FETCH (FLAGS (\\Seen)\r\n",
        b'* 1 FETCH (INTERNALDATE "yesterday")\r\n',
        b"* 1 FETCH (ENVELOPE (NIL))\r\n",
        b'* 1 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" NIL NIL NIL "7BIT" x 1))\r\n',
        b"* 1 FETCH (BODYSTRUCTURE NIL)\r\n",
        b"* 1 FETCH (MODSEQ (99999999999999999999))\r\n",
        b"* 1 FETCH UID 1\r\n",
        b"* VANISHED 1:x\r\n",
        b"* STATUS INBOX (MESSAGES)\r\n",
        b"* SEARCH 1 two\r\n",
        b"* ESEARCH MIN x\r\n",
        b'* ID ("a")\r\n',
    ],
)
def test_malformed_typed_responses(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="malformed"):
        parse_response(data)


# --- other untagged responses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            b'* LIST (\\HasNoChildren \\Sent) "." "Sent Items"\r\n',
            ListEntry("Sent Items", ".", ("\\HasNoChildren", "\\Sent")),
        ),
        (
            b"* LSUB () NIL Entw&APw-rfe\r\n",
            ListEntry("Entwürfe", None, (), "LSUB"),
        ),
        (
            b'* LIST (\\Subscribed) "/" {4}\r\nab c ("CHILDINFO" ("SUBSCRIBED"))\r\n',
            ListEntry("ab c", "/", ("\\Subscribed",), "LIST", ((b"CHILDINFO", (b"SUBSCRIBED",)),)),
        ),
        (
            b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292 HIGHESTMODSEQ 7011231777)\r\n",
            MailboxStatus(
                "blurdybloop", {"MESSAGES": 231, "UIDNEXT": 44292, "HIGHESTMODSEQ": 7011231777}
            ),
        ),
        (b"* SEARCH 2 84 882 (MODSEQ 917162500)\r\n", Search((2, 84, 882), 917162500)),
        (
            b'* ESEARCH (TAG "A282") UID MIN 2 COUNT 3 ALL 2,10:11\r\n',
            ESearch("A282", True, 2, None, 3, "2,10:11"),
        ),
        (b"* VANISHED (EARLIER) 41,43:45\r\n", Vanished(((41, 41), (43, 45)), earlier=True)),
        (b"* VANISHED 5\r\n", Vanished(((5, 5),))),
        (b"* ENABLED CONDSTORE qresync\r\n", Enabled(frozenset({"CONDSTORE", "QRESYNC"}))),
        (b'* ID ("name" "Dovecot" "x" NIL)\r\n', IdResponse({"name": "Dovecot", "x": None})),
        (b"* ID NIL\r\n", IdResponse(None)),
        (
            b'* NAMESPACE (("" "/")) (("~" "/")) (("#shared/" "/")("#public/" "/"))\r\n',
            Namespace((("", "/"),), (("~", "/"),), (("#shared/", "/"), ("#public/", "/"))),
        ),
        (b"* NAMESPACE NIL NIL NIL\r\n", Namespace((), (), ())),
        (
            b'* QUOTA "" (STORAGE 10 512 MESSAGE 1 100)\r\n',
            Quota("", {"STORAGE": (10, 512), "MESSAGE": (1, 100)}),
        ),
        (b'* QUOTAROOT INBOX ""\r\n', QuotaRoot("INBOX", ("",))),
    ],
)
def test_typed_untagged_responses(data: bytes, expected: object) -> None:
    assert parse_response(data) == expected


def test_vanished_expands_and_counts() -> None:
    vanished = Vanished(((41, 41), (43, 45)))
    assert list(vanished) == [41, 43, 44, 45]
    assert len(vanished) == 4


def test_utf8_mailbox_names_after_enable() -> None:
    conn = selected(b"IMAP4rev1 ENABLE UTF8=ACCEPT")
    conn.send(List())
    assert conn.data_to_send() == b'A2 LIST "" "*"\r\n'
    events = events_of(conn, [b'* LIST () "/" "Entw\xc3\xbcrfe"\r\nA2 OK\r\n'])
    assert events[0] == ListEntry("Entwürfe", "/", ())
    from trio_mailoauth.imap.commands import Enable

    conn.send(Enable(("UTF8=ACCEPT",)))
    conn.data_to_send()
    events_of(conn, [b"* ENABLED UTF8=ACCEPT\r\nA3 OK\r\n"])
    assert conn.utf8
    assert conn.enabled == {"UTF8=ACCEPT"}
    conn.send(Select("Entwürfe"))
    assert conn.data_to_send() == b"A4 SELECT {9}\r\n"  # no LITERAL+: wait for "+"
    events_of(conn, [b"+ go\r\n"])
    assert conn.data_to_send() == "Entwürfe\r\n".encode()


def test_modified_utf7() -> None:
    for name in ("Entwürfe", "台北", "a&b", "~peter/mail/台北/日本語", "INBOX", "x\U0001f600y"):
        assert decode_mailbox(encode_mailbox(name, False), False) == name
    assert encode_mailbox("台北&", False) == b"&U,BTFw-&-"
    assert encode_mailbox("inbox", False) == b"INBOX"
    with pytest.raises(RemoteProtocolError):
        decode_mailbox(b"&U,BTFw", False)


# --- commands on the wire -------------------------------------------------------------------


def test_writer_commands() -> None:
    conn = selected()
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    conn.send(Append("Sent", b"x\r\n", ("\\Seen", "$Work"), when))
    assert conn.data_to_send() == (
        b'A2 APPEND "Sent" (\\Seen $Work) "02-Jan-2024 03:04:05 +0000" {3+}\r\nx\r\n\r\n'
    )
    conn.send(Store("1:3", "+", ("\\Deleted",), silent=True, unchangedsince=5, uid=True))
    assert conn.data_to_send() == (
        b"A3 UID STORE 1:3 (UNCHANGEDSINCE 5) +FLAGS.SILENT (\\Deleted)\r\n"
    )
    conn.send(
        FetchCommand("5:*", ("UID", "BODY.PEEK[HEADER.FIELDS (TO)]<0.10>"), 7, True, uid=True)
    )
    assert conn.data_to_send() == (
        b"A4 UID FETCH 5:* (UID BODY.PEEK[HEADER.FIELDS (TO)]<0.10>) (CHANGEDSINCE 7 VANISHED)\r\n"
    )
    criteria = (Q.from_('a"b\r\n') | ~Q.subject("é")) & Q.since(date(2024, 3, 1))
    conn.send(SearchCommand(criteria=criteria.args, charset="UTF-8", uid=True))
    assert conn.data_to_send() == (
        b'A5 UID SEARCH CHARSET UTF-8 OR (FROM {5+}\r\na"b\r\n) (NOT (SUBJECT {2+}\r\n'
        + "é".encode()
        + b")) SINCE 01-Mar-2024\r\n"
    )
    assert criteria.non_ascii


@pytest.mark.parametrize(
    "make",
    [
        lambda: FetchCommand("1:*", ("BODY[] HEADER",)),
        lambda: FetchCommand("1,\r\n", ("UID",)),
        lambda: Store("1", "+", ("\\Seen)",)),
        lambda: Store("1", "+", ("a b",)),
        lambda: Create("Sent", "\\Sent) (X-INJECTED"),
        lambda: Create("bad \udcff name"),
        lambda: SearchCommand(criteria=(AString("\udcff"),)),
    ],
)
def test_injection_is_refused(make: object) -> None:
    conn = selected()
    with pytest.raises(LocalProtocolError):
        conn.send(make())  # type: ignore[operator]
    assert conn.data_to_send() == b""


def test_sequence_sets() -> None:
    assert sequence_set([5, 1, 2, 3, 9, 8]) == "1:3,5,8:9"
    assert sequence_set(7) == "7"
    assert sequence_set("1:*") == "1:*"
    for bad in ("", "1:", "a", "1 2", "-1"):
        with pytest.raises(LocalProtocolError):
            sequence_set(bad)
    with pytest.raises(LocalProtocolError):
        sequence_set([])


def test_pipelining_rules() -> None:
    conn = selected()
    conn.send(FetchCommand("1:*", ("UID",), uid=True))
    conn.send(Noop())  # a UID FETCH may be pipelined
    assert not conn.can_send(FetchCommand("1", ("UID",)))  # sequence numbers may not
    assert not conn.can_send(Idle())
    assert conn.can_send(List())
    with pytest.raises(LocalProtocolError, match="in flight"):
        conn.send(Select("INBOX"))


def test_idle_and_done() -> None:
    conn = selected()
    conn.send(Idle())
    assert conn.data_to_send() == b"A2 IDLE\r\n"
    with pytest.raises(LocalProtocolError):
        conn.idle_done()  # not accepted yet
    events = events_of(conn, [b"+ idling\r\n* 3 EXISTS\r\n"])
    assert events == [IdleStarted("idling"), Exists(3)]
    conn.idle_done()
    assert conn.data_to_send() == b"DONE\r\n"
    with pytest.raises(LocalProtocolError):
        conn.idle_done()
    assert events_of(conn, [b"A2 OK Idle completed\r\n"]) == [
        TaggedResponse("A2", "IDLE", "OK", "Idle completed")
    ]


def test_select_info_and_failed_select() -> None:
    conn = selected()
    conn.send(Select("Other", condstore=True))
    assert conn.data_to_send() == b'A2 SELECT "Other" (CONDSTORE)\r\n'
    events = events_of(
        conn,
        [
            b"* 172 EXISTS\r\n* 1 RECENT\r\n* OK [UNSEEN 12] x\r\n"
            b"* OK [UIDVALIDITY 3857529045] x\r\n"
            b"* OK [UIDNEXT 4392] x\r\n* FLAGS (\\Answered \\Seen)\r\n"
            b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] x\r\n"
            b"* OK [HIGHESTMODSEQ 715194045007] x\r\n"
            b"A2 OK [READ-ONLY] SELECT completed\r\n"
        ],
    )
    response = events[-1]
    assert isinstance(response, TaggedResponse)
    info = MailboxInfo.from_responses("Other", events[:-1], response)
    assert (info.exists, info.recent, info.unseen, info.uidvalidity, info.uidnext) == (
        172, 1, 12, 3857529045, 4392,
    )  # fmt: skip
    assert info.flags == ("\\Answered", "\\Seen")
    assert info.permanent_flags == ("\\Deleted", "\\Seen", "\\*")
    assert info.highestmodseq == 715194045007
    assert info.read_only
    conn.send(Select("Nope"))
    conn.data_to_send()
    events_of(conn, [b"A3 NO [NONEXISTENT] no such mailbox\r\n"])
    assert conn.state is IMAPState.AUTHENTICATED  # RFC 9051 §6.3.2


def test_microsoft_throttling_is_a_refusal() -> None:
    conn = selected()
    conn.send(FetchCommand("1:*", ("UID",), uid=True))
    conn.data_to_send()
    events = events_of(
        conn,
        [b"A2 NO [THROTTLED] Request is throttled. Suggested Backoff Time: 61000 milliseconds\r\n"],
    )
    assert events == [
        TaggedResponse(
            "A2",
            "UID FETCH",
            "NO",
            "Request is throttled. Suggested Backoff Time: 61000 milliseconds",
            "THROTTLED",
        )
    ]
    assert conn.state is IMAPState.SELECTED


def test_response_codes_kept_raw() -> None:
    assert parse_response(b"* OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n") == (
        parse_response(b"* OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n")
    )
    data = b'* OK hi\r\n* OK [BADCHARSET (UTF-8 "a]b")] x\r\n* NO [X-NEW] y\r\n'
    assert events_of(IMAPConnection(), [data])[1:] == [
        StatusResponse("OK", "x", "BADCHARSET", '(UTF-8 "a]b")'),
        StatusResponse("NO", "y", "X-NEW"),
    ]


# --- framing: random splits, limits, fuzzing ------------------------------------------------

RECORDED = (
    b"* 1 FETCH (UID 1 FLAGS (\\Seen) BODY[] {%d}\r\n" % len(BODY) + BODY + b")\r\n"
    b"* 2 FETCH (UID 2 ENVELOPE (NIL {3}\r\nx\r\n NIL NIL NIL NIL NIL NIL NIL NIL)"
    b" BODY[] {0}\r\n)\r\n"
    b"* VANISHED (EARLIER) 3:4\r\n* 5 EXISTS\r\n* SEARCH 1 2\r\nA2 OK done\r\n"
)


def _selected_fetch() -> IMAPConnection:
    conn = selected()
    conn.send(FetchCommand("1:*", ("UID",), uid=True))
    conn.data_to_send()
    return conn


@given(cuts=st.lists(st.integers(min_value=0, max_value=len(RECORDED)), max_size=12))
@settings(max_examples=200, deadline=None)
def test_random_splits_give_identical_events(cuts: list[int]) -> None:
    expected = events_of(_selected_fetch(), [RECORDED])
    bounds = [0, *sorted(cuts), len(RECORDED)]
    chunks = [RECORDED[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    assert events_of(_selected_fetch(), chunks) == expected
    assert len(expected) == 6


def test_literal_limit_and_big_body() -> None:
    conn = IMAPConnection(limits=Limits(max_literal=1000))
    conn.receive_data(b"* PREAUTH hi\r\n")
    conn.next_event()
    conn.receive_data(b"* 1 FETCH (BODY[] {1001}\r\n")
    with pytest.raises(RemoteProtocolError, match="exceeds the limit of 1000"):
        conn.next_event()
    big = b"x" * (3 * 1024 * 1024)
    conn = IMAPConnection()
    events = events_of(
        conn, [b"* PREAUTH hi\r\n", b"* 1 FETCH (BODY[] {%d}\r\n" % len(big), big, b")\r\n"]
    )
    assert isinstance(events[1], Fetch)
    assert events[1].body == big


FUZZ_PIECES = [
    b"* ", b"1 ", b"FETCH ", b"(", b")", b"UID ", b"FLAGS ", b"BODY[] ", b"BODYSTRUCTURE ",
    b"ENVELOPE ", b"NIL ", b'"x" ', b"{3}\r\nabc", b"~{1}\r\n\x00", b"MODSEQ ", b"X-GM-LABELS ",
    b"INTERNALDATE ", b"LIST ", b"STATUS ", b"SEARCH ", b"ESEARCH ", b"VANISHED ", b"(EARLIER) ",
    b"NAMESPACE ", b"QUOTA ", b"ID ", b"1:3 ", b"\r\n", b"\\Seen ", b"[", b"]", b"<0>",
]  # fmt: skip


@given(pieces=st.lists(st.sampled_from(FUZZ_PIECES), max_size=40))
@settings(max_examples=500, deadline=None)
def test_fuzz_typed_responses(pieces: list[bytes]) -> None:
    data = b"".join(pieces) + b"\r\n"
    with contextlib.suppress(RemoteProtocolError):
        parse_response(data)
    conn = _selected_fetch()
    with contextlib.suppress(RemoteProtocolError):
        events_of(conn, [data, b""])


@given(data=st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_fuzz_random_bytes_after_fetch(data: bytes) -> None:
    conn = _selected_fetch()
    with contextlib.suppress(RemoteProtocolError):
        events_of(conn, [b"* 1 FETCH (", data, b""])


# --- the fast paths: a whole response in one read takes another route than one in pieces --


@pytest.mark.parametrize(
    ("limits", "data", "match"),
    [
        (
            Limits(max_literal=10),
            b"* 1 FETCH (BODY[] {11}\r\n" + b"x" * 11 + b")\r\n",
            "limit of 10",
        ),
        (
            Limits(max_line=40),
            b"* 1 FETCH (BODY[] {3}\r\nabc" + b" UID 1" * 10 + b")\r\n",
            "longer than 40",
        ),
        (Limits(max_line=20), b"* 1 FETCH (UID 1 BODY[] {3}\r\nabc)\r\n", "longer than 20"),
        (Limits(max_response=40), b"* 1 FETCH (BODY[] {30}\r\n" + b"x" * 30 + b")\r\n", "than 40"),
        (Limits(max_response=20), b"* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n", "longer than 20"),
        (Limits(), b"* 1 FETCH (BODY[] {12345678901}\r\n", "11 digits"),
    ],
)
def test_limits_hold_for_a_response_read_whole(limits: Limits, data: bytes, match: str) -> None:
    conn = IMAPConnection(limits=limits)
    conn.receive_data(b"* PREAUTH hi\r\n")
    conn.next_event()
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=match):
        conn.next_event()


@pytest.mark.parametrize(
    "data",
    [
        b"* 1 FETCH (UID 7 BODY[] {3}\r\nabc FLAGS (\\Seen))\r\n",  # the last line ends in ")"
        b"* 1 FETCH (BODY[1] {2}\r\nab BODY[2] {3}\r\ncde)\r\n",  # two literals
        b"* 1 FETCH (BODY[] ~{3}\r\n\x00\r\n RFC822.SIZE 3)\r\n",  # literal8, CRLF inside
        b"* 1 FETCH (BODY[] {3+}\r\nabc)\r\n",
        b"* 1 FETCH (BODY[] NIL UID 4294967295)\r\n",
        b'* 1 FETCH (BODY[] "quoted" UID 2)\r\n',
        b"* 1 FETCH (X-ODD {2}\r\nab UID 3)\r\n",  # an unknown item with a literal
        b"* 1 FETCH   (  UID 3   FLAGS () )  \r\n",
        b"* 1 fetch (uid 3 body[] {1}\r\nx)\r\n",  # lower case takes the general path
        b"* OK [ALERT] text ending in a brace {2}x}\r\n",  # "}" that is no literal marker
        b"* 1 FETCH (BODY[] {100000}\r\n" + b"y" * 100_000 + b")\r\n",  # a big literal
    ],
)
def test_whole_and_bytewise_reads_agree(data: bytes) -> None:
    whole = events_of(_selected_fetch(), [data])
    pieces = events_of(_selected_fetch(), [data[i : i + 1] for i in range(len(data))])
    assert whole == pieces
    assert len(whole) == 1


@pytest.mark.parametrize(
    "data",
    [
        b"* 1 FETCH (UID 4294967296)\r\n",  # over 32 bits
        b"* 1 FETCH (UID 12345678901)\r\n",
        b"* 1 FETCH (RFC822.SIZE -1)\r\n",
        b"* 1 FETCH (BODY[] {3}\r\nabc\r\n",  # unclosed
        b"* 1 FETCH (BODY[] {3}\r\nabc) x\r\n",  # trailing data
        b"* 4294967296 FETCH (UID 1)\r\n",
    ],
)
def test_malformed_fetch_read_whole(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        events_of(_selected_fetch(), [data])


def test_parsed_fetch_is_a_frozen_dataclass_like_any_other() -> None:
    """The parser builds Fetch without its __init__ (speed): it must still be the same."""
    (fetch,) = events_of(
        _selected_fetch(), [b"* 3 FETCH (UID 9 FLAGS (\\Seen) BODY[] {2}\r\nhi X-NEW 1)\r\n"]
    )
    expected = Fetch(3, uid=9, flags=("\\Seen",), sections={"BODY[]": b"hi"}, extra={"X-NEW": "1"})
    assert fetch == expected
    assert repr(fetch) == repr(expected)
    assert vars(fetch).keys() == vars(expected).keys()
    with pytest.raises(dataclasses.FrozenInstanceError):
        fetch.uid = 1  # type: ignore[misc]
    assert dataclasses.replace(fetch, uid=10).uid == 10
