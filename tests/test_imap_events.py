"""Sans-I/O pieces of the IMAP client's newer commands and of its event handling: SORT and
THREAD (writing them, parsing the replies into a bounded tree; fuzzed), ESEARCH results,
which FETCH responses answer a FETCH/STORE, the bounded unsolicited queue, and the writer
copying a literal once."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_imap_fetch import selected as selected_with
from trio_mailoauth._sansio import NEED_DATA
from trio_mailoauth.errors import LocalProtocolError, RemoteProtocolError
from trio_mailoauth.imap import IMAPConnection
from trio_mailoauth.imap import _reader as reader_module
from trio_mailoauth.imap._reader import parse_response
from trio_mailoauth.imap._writer import Atom, CommandWriter, Literal
from trio_mailoauth.imap.commands import Append, MessageSet, Sort, Store, Thread
from trio_mailoauth.imap.commands import Fetch as FetchCommand
from trio_mailoauth.imap.events import (
    ESearch,
    Event,
    EventQueue,
    Exists,
    Expunge,
    Flags,
    Overflow,
    Recent,
    StatusResponse,
    TaggedResponse,
    ThreadNode,
    Vanished,
)
from trio_mailoauth.imap.events import Sort as SortResponse
from trio_mailoauth.imap.events import Thread as ThreadResponse
from trio_mailoauth.imap.message import Fetch
from trio_mailoauth.imap.search import Q


def selected(caps: bytes = b"IMAP4rev1 SORT THREAD=REFERENCES ESEARCH") -> IMAPConnection:
    return selected_with(caps)


def node(*messages: int, children: tuple[ThreadNode, ...] = ()) -> ThreadNode:
    return ThreadNode(messages, children)


# --- SORT and THREAD --------------------------------------------------------------------------


def test_sort_and_thread_commands_are_written_and_answered() -> None:
    conn = selected()
    conn.send(Sort(("reverse", "DATE", "SUBJECT"), Q.subject("Grüße").args, uid=True))
    assert conn.data_to_send() == b"A2 UID SORT (REVERSE DATE SUBJECT) UTF-8 SUBJECT {7}\r\n"
    conn.receive_data(b"+ go\r\n")
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send() == "Grüße".encode() + b"\r\n"
    conn.receive_data(b"* SORT 5 3 4 (MODSEQ 917)\r\nA2 OK sorted\r\n")
    assert conn.next_event() == SortResponse((5, 3, 4), 917)
    assert isinstance(conn.next_event(), TaggedResponse)
    conn.send(Thread("ORDEREDSUBJECT", (Atom("ALL"),)))
    assert conn.data_to_send() == b"A3 THREAD ORDEREDSUBJECT UTF-8 ALL\r\n"
    conn.receive_data(b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\nA3 OK threaded\r\n")
    assert conn.next_event() == ThreadResponse(
        (node(2), node(3, 6, children=(node(4, 23), node(44, 7, 96))))
    )


def test_non_uid_sort_and_thread_are_not_pipelined() -> None:
    # RFC 9051 §5.5: sequence numbers could shift under them, like SEARCH.
    conn = selected()
    conn.send(Sort(("DATE",), uid=True))
    conn.send(Thread(uid=True))  # UID forms may go together
    with pytest.raises(LocalProtocolError, match="in flight"):
        conn.send(Sort(("DATE",)))


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ((), "at least one key"),
        (("REVERSE",), "REVERSE"),
        (("REVERSE", "REVERSE", "DATE"), "REVERSE"),
        (("DATE)",), "not a SORT key"),
        (("DATE ALL",), "not a SORT key"),
    ],
)
def test_bad_sort_keys_are_refused(keys: tuple[str, ...], error: str) -> None:
    with pytest.raises(LocalProtocolError, match=error):
        Sort(keys).arguments()


@pytest.mark.parametrize(
    ("line", "threads"),
    [
        (b"* THREAD\r\n", ()),
        (b"* THREAD \r\n", ()),
        (b"* THREAD (1)\r\n", (node(1),)),
        # A missing parent (RFC 5256 §4): its children are siblings.
        (b"* THREAD ((3)(5))\r\n", (node(children=(node(3), node(5))),)),
        (b"* THREAD (1 (2)(3 4))(5)\r\n", (node(1, children=(node(2), node(3, 4))), node(5))),
        (b"* thread (1 2 3)\r\n", (node(1, 2, 3),)),
    ],
)
def test_thread_responses(line: bytes, threads: tuple[ThreadNode, ...]) -> None:
    assert parse_response(line) == ThreadResponse(threads)


def test_thread_iterates_parents_before_replies() -> None:
    tree = node(3, 6, children=(node(4, 23), node(44, 7, children=(node(96), node(97)))))
    assert list(tree) == [3, 6, 4, 23, 44, 7, 96, 97]


def test_a_long_reply_chain_is_one_node_not_deep_nesting() -> None:
    chain = " ".join(str(n) for n in range(1, 20_001)).encode()
    (thread,) = parse_response(b"* THREAD (" + chain + b")\r\n").threads  # type: ignore[union-attr]
    assert thread.messages == tuple(range(1, 20_001))
    assert list(thread) == list(range(1, 20_001))


@pytest.mark.parametrize(
    "line",
    [
        b"* THREAD (1\r\n",  # unclosed
        b"* THREAD 1)\r\n",  # a number outside a list
        b"* THREAD (1))\r\n",  # unbalanced
        b"* THREAD ()\r\n",  # empty
        b"* THREAD (1 (2)(3) 4)\r\n",  # a number after a branch
        b"* THREAD (0)\r\n",  # not nz-number
        b"* THREAD (4294967296)\r\n",  # beyond 32 bits
        b'* THREAD ("1")\r\n',
        b"* THREAD (1 {1}\r\n2)\r\n",  # a literal
        b"* THREAD (1 NIL)\r\n",
    ],
)
def test_malformed_thread_responses_are_protocol_errors(line: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match=r"THREAD|end of the response|literal"):
        parse_response(line)


def test_thread_depth_and_size_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    deep = b"(1 " * reader_module.MAX_THREAD_DEPTH + b")" * reader_module.MAX_THREAD_DEPTH
    assert parse_response(b"* THREAD " + deep + b"\r\n")
    with pytest.raises(RemoteProtocolError, match="nested deeper"):
        parse_response(b"* THREAD (" + deep + b")\r\n")
    monkeypatch.setattr(reader_module, "MAX_THREAD_ITEMS", 100)
    parse_response(b"* THREAD (" + b"1 " * 98 + b")\r\n")  # 98 numbers and two parentheses
    with pytest.raises(RemoteProtocolError, match="more than 100 items"):
        parse_response(b"* THREAD (" + b"1 " * 99 + b")\r\n")


def _render(tree: ThreadNode) -> str:
    inner = [str(n) for n in tree.messages] + ["".join(_render(c) for c in tree.children)]
    return "(" + " ".join(part for part in inner if part) + ")"


def _trees() -> st.SearchStrategy[ThreadNode]:
    numbers = st.lists(st.integers(1, 2**32 - 1), max_size=4).map(tuple)
    return st.recursive(
        st.builds(ThreadNode, numbers.filter(bool)),
        lambda children: st.builds(
            ThreadNode, numbers, st.lists(children, min_size=2, max_size=3).map(tuple)
        ),
        max_leaves=12,
    )


@settings(max_examples=200, deadline=None)
@given(threads=st.lists(_trees(), max_size=4))
def test_thread_trees_survive_a_round_trip(threads: list[ThreadNode]) -> None:
    line = ("* THREAD " + "".join(_render(tree) for tree in threads) + "\r\n").encode()
    assert parse_response(line) == ThreadResponse(tuple(threads))


@settings(max_examples=300, deadline=None)
@given(body=st.text(alphabet="()0123456789 ", max_size=60))
def test_thread_garbage_raises_only_protocol_errors(body: str) -> None:
    try:
        result = parse_response(f"* THREAD {body}\r\n".encode())
    except RemoteProtocolError:
        return
    assert isinstance(result, ThreadResponse)


# --- ESEARCH results ----------------------------------------------------------------------------


def test_esearch_numbers() -> None:
    result = ESearch("A5", True, min=1, max=9, count=5, all="1:3,9,7:6")
    assert result.ranges == ((1, 3), (9, 9), (6, 7))
    assert result.numbers() == [1, 2, 3, 9, 6, 7]
    assert ESearch(None, False).numbers() == []


# --- which FETCH responses answer a FETCH or STORE ----------------------------------------------


def test_message_sets() -> None:
    numbers = MessageSet("7,1:3,5:4,20")
    assert [n for n in range(0, 22) if n in numbers] == [1, 2, 3, 4, 5, 7, 20]
    assert 10**9 in MessageSet("5:*")  # the last message may be below 5: any number counts
    assert 1 in MessageSet("$")


def _fetch(sequence: int, **items: object) -> Fetch:
    return Fetch(sequence, **items)  # type: ignore[arg-type]


def test_fetch_answers_carry_a_requested_item_and_name_a_requested_message() -> None:
    command = FetchCommand("2:4", ("FLAGS", "BODY.PEEK[]", "UID"))
    assert command.answered_by(_fetch(2, flags=(), sections={"BODY[]": b"x"}))
    assert not command.answered_by(_fetch(2, flags=("\\Seen",)))  # a flag change
    assert not command.answered_by(_fetch(5, sections={"BODY[]": b"x"}))  # not asked for
    uid_command = FetchCommand("100:101", ("ENVELOPE",), uid=True)
    # No UID, as RFC 9051 requires in answers to UID FETCH, but an ENVELOPE: no server
    # sends one unasked, so it is an answer; without UID and with only FLAGS it is not.
    assert uid_command.answered_by(_fetch(1, envelope=object()))
    assert not FetchCommand("1:*", ("FLAGS",), uid=True).answered_by(_fetch(1, flags=()))
    assert uid_command.answered_by(_fetch(1, uid=101, envelope=object()))
    assert not uid_command.answered_by(_fetch(1, uid=102, envelope=object()))
    assert not uid_command.answered_by(_fetch(1, uid=100, flags=(), modseq=5))
    # Only items a flag change carries were asked for: a flag change is an answer.
    assert FetchCommand("1:*", ("FLAGS",)).answered_by(_fetch(9, flags=()))
    # Macros and the other items.
    fast = FetchCommand("1", ("FAST",))
    assert fast.answered_by(_fetch(1, flags=(), size=10))
    assert not fast.answered_by(_fetch(1, flags=()))
    assert FetchCommand("1", ("BINARY.SIZE[1]",)).answered_by(_fetch(1, binary_sizes={"[1]": 3}))
    assert FetchCommand("1", ("X-GM-LABELS",)).answered_by(_fetch(1, gmail_labels=()))
    assert FetchCommand("1", ("PREVIEW",)).answered_by(_fetch(1, extra={"PREVIEW": b"hi"}))


def test_store_answers_name_a_stored_message() -> None:
    store = Store("3,5", "+", ("\\Seen",))
    assert store.answered_by(_fetch(5, flags=("\\Seen",)))
    assert not store.answered_by(_fetch(4, flags=("\\Seen",)))
    uid_store = Store("30", "+", ("\\Seen",), uid=True)
    assert uid_store.answered_by(_fetch(1, uid=30, flags=()))
    assert not uid_store.answered_by(_fetch(1, flags=()))


# --- the unsolicited queue ----------------------------------------------------------------------


def test_queue_replaces_absolute_values_and_flag_changes_in_place() -> None:
    queue = EventQueue(100)
    for event in (
        Exists(3),
        _fetch(2, flags=("\\Seen",), uid=20),
        Recent(1),
        StatusResponse("OK", "alert", "ALERT"),
        _fetch(2, flags=("\\Seen", "\\Flagged"), modseq=9),
        Exists(4),
        Flags(("\\Seen",)),
        Flags(("\\Seen", "$Label")),
    ):
        queue.append(event)
    assert queue.drain() == [
        Exists(4),
        _fetch(2, flags=("\\Seen", "\\Flagged"), uid=20, modseq=9),
        Recent(1),
        StatusResponse("OK", "alert", "ALERT"),
        Flags(("\\Seen", "$Label")),
    ]
    assert len(queue) == 0


def test_queue_never_merges_across_renumbering_or_other_fetches() -> None:
    queue = EventQueue(100)
    events: list[Event] = [
        Exists(5),
        _fetch(3, flags=()),
        Expunge(1),  # number 3 is another message now, and the count means something else
        Exists(5),
        _fetch(3, flags=("\\Seen",)),
        _fetch(3, flags=("\\Seen",), sections={"BODY[]": b"x"}),  # not a flag change
        _fetch(3, flags=("\\Draft",)),
        Vanished(((7, 7),)),
        Exists(4),
    ]
    for event in events:
        queue.append(event)
    assert queue.drain() == events
    queue.append(Exists(1))
    queue.barrier()  # a mailbox change
    queue.append(Exists(2))
    assert queue.drain() == [Exists(1), Exists(2)]


def test_queue_taken_events_are_not_merged_into() -> None:
    queue = EventQueue(100)
    queue.append(Exists(1))
    queue.append(_fetch(1, flags=()))
    assert queue.popleft() == Exists(1)
    assert queue.popleft() == _fetch(1, flags=())
    queue.append(Exists(2))
    queue.append(_fetch(1, flags=("\\Seen",)))
    assert queue.drain() == [Exists(2), _fetch(1, flags=("\\Seen",))]


def test_queue_overflow_drops_the_oldest_and_says_so_first() -> None:
    queue = EventQueue(3)
    queue.append(Exists(9))
    for number in range(1, 6):
        queue.append(Expunge(number))
    queue.append(Exists(4))
    assert len(queue) == 4
    assert queue.popleft() == Overflow(4)
    assert [queue.popleft() for _ in range(3)] == [Expunge(4), Expunge(5), Exists(4)]
    assert len(queue) == 0
    # A dropped EXISTS is not merged into: the newer one is queued, not lost with it.
    for event in (Exists(1), StatusResponse("OK", "a"), StatusResponse("OK", "b")):
        queue.append(event)
    queue.append(StatusResponse("OK", "c"))  # drops Exists(1)
    queue.append(Exists(2))
    assert queue.drain() == [
        Overflow(2),
        StatusResponse("OK", "b"),
        StatusResponse("OK", "c"),
        Exists(2),
    ]


# --- the writer copies a literal once -----------------------------------------------------------


@pytest.mark.parametrize("literal_plus", [True, False])
def test_writer_copies_a_big_literal_once(literal_plus: bool) -> None:
    message = b"x" * (32 * 1024 * 1024)
    writer = CommandWriter()
    writer.literal_plus = literal_plus
    command = Append("INBOX", message, ("\\Seen",))
    tracemalloc.start()
    try:
        parts = writer.write("A1", "APPEND", command.arguments())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert b"".join(parts).endswith(message + b"\r\n")
    assert parts[0].startswith(b'A1 APPEND "INBOX" (\\Seen) {33554432')
    assert len(parts) == (1 if literal_plus else 2)
    # One copy of the message (into its part), and little else.
    assert peak < len(message) * 1.1


def test_writer_literal8_and_sync_literal_parts() -> None:
    writer = CommandWriter()
    parts = writer.write("A1", "X", (Literal(b"ab\x00", binary=True), Atom("Y")))
    assert parts == [b"A1 X ~{3}\r\n", b"ab\x00 Y\r\n"]
