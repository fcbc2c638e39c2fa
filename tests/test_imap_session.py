"""The IMAP session engine with several tasks on one connection (scripted servers): races
between submitters, cancelled readers and waiters, a connection breaking under waiters,
IDLE interrupted by other tasks' commands, caps on what one command collects and on the
unsolicited queue, FETCH responses that answer nothing, kept fetch streams, aclose() racing
other tasks."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.scripted import Close, Expect, Send, Stall, Step, scripted_server
from trio_mailoauth._client import ClientState
from trio_mailoauth.errors import (
    ConnectionBrokenError,
    ConnectionClosedError,
    FetchInterruptedError,
    IMAPResponseError,
    LocalProtocolError,
    RemoteProtocolError,
)
from trio_mailoauth.imap import IMAPClient, open_imap
from trio_mailoauth.imap import session as session_module
from trio_mailoauth.imap.events import Exists, Expunge, Fetch, Overflow, Recent, StatusResponse

CAPS = b"IMAP4rev1 IDLE MOVE UIDPLUS ID"
PREAUTH: Step = Send(b"* PREAUTH [CAPABILITY " + CAPS + b"] ready\r\n")
LOGOUT: list[Step] = [Expect(pattern=rb"A\d+ LOGOUT"), Send(b"* BYE bye\r\n")]


async def connect(port: int) -> IMAPClient:
    return await open_imap("127.0.0.1", port, tls="none", allow_insecure=True)


async def test_concurrent_submitters_wait_for_an_exclusive_command() -> None:
    # Both tasks see an idle connection; each takes the send lock (a checkpoint) before
    # sending. The second must look again and wait, not fail with LocalProtocolError.
    script: list[Step] = [
        PREAUTH,
        Expect(pattern=rb"A1 (SELECT \"INBOX\"|NOOP)"),
        Send(b"A1 OK done\r\n"),
        Expect(pattern=rb"A2 (SELECT \"INBOX\"|NOOP)"),
        Send(b"A2 OK done\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(imap.select, "INBOX")
                nursery.start_soon(imap.noop)
        await imap.aclose()
    assert sorted(line.split(b" ")[1] for line in server.received[:2]) == [b"NOOP", b"SELECT"]


async def test_cancelled_reader_hands_reading_to_a_waiter() -> None:
    # The SELECT's task reads and is cancelled; the NOOP's task waited for the SELECT to
    # complete (SELECT is exclusive). Somebody must now read the SELECT's reply.
    script: list[Step] = [
        PREAUTH,
        Expect(b'A1 SELECT "INBOX"'),
        Stall(0.5),
        Send(b"* 3 EXISTS\r\nA1 OK [READ-WRITE] done\r\n"),
        Expect(b"A2 NOOP"),
        Send(b"A2 OK done\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        noop_events: list[object] = []

        async def select() -> None:
            with trio.move_on_after(0.2):
                await imap.select("INBOX")

        async def noop() -> None:
            await trio.sleep(0.05)
            noop_events.extend(await imap.noop())

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(select)
                nursery.start_soon(noop)
        assert imap.state is ClientState.OK
        assert noop_events == []  # the abandoned SELECT's data was dropped
        await imap.aclose()
    assert server.finished, (server.errors, server.received)


async def test_broken_connection_wakes_waiters() -> None:
    script: list[Step] = [PREAUTH, Expect(b'A1 SELECT "INBOX"'), Stall(0.3), Close()]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        errors: list[type[BaseException]] = []

        async def run(command: str) -> None:
            if command == "noop":
                await trio.sleep(0.05)
            try:
                await (imap.select("INBOX") if command == "select" else imap.noop())
            except ConnectionBrokenError as exc:
                errors.append(type(exc))

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, "select")
                nursery.start_soon(run, "noop")
        assert errors == [ConnectionBrokenError, ConnectionBrokenError]
        assert imap.state is ClientState.BROKEN


async def test_cancelled_literal_send_breaks_the_connection() -> None:
    # The server says "+" and stops reading: the reader task flushes the literal, which
    # blocks; cancelled midway, part of the APPEND went out: the connection is BROKEN.
    script: list[Step] = [
        PREAUTH,
        Expect(pattern=rb"A1 APPEND \"INBOX\" \{\d+\}"),
        Send(b"+ go ahead\r\n"),
        Stall(4),
    ]
    message = b"x" * (48 * 1024 * 1024)  # more than the loopback socket buffers hold
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        with trio.move_on_after(1.5) as scope:
            await imap.append("INBOX", message)
        assert scope.cancelled_caught
        assert imap.state is ClientState.BROKEN
        with pytest.raises(ConnectionBrokenError):
            await imap.noop()


async def test_select_responses_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "MAX_UNTAGGED", 10)
    script: list[Step] = [
        PREAUTH,
        Expect(b'A1 SELECT "INBOX"'),
        Send(b"* 1 EXISTS\r\n" * 11 + b"A1 OK done\r\n"),
        Stall(1),
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        with pytest.raises(RemoteProtocolError, match="more than 10 responses to one SELECT"):
            await imap.select("INBOX")
        assert imap.state is ClientState.BROKEN


async def test_move_copyuid_is_never_a_stale_one() -> None:
    # The first MOVE's untagged COPYUID must not be reported for the second MOVE, which
    # got none.
    script: list[Step] = [
        PREAUTH,
        Expect(b'A1 SELECT "INBOX"'),
        Send(b"* 2 EXISTS\r\nA1 OK [READ-WRITE] done\r\n"),
        Expect(b'A2 UID MOVE 7 "Archive"'),
        Send(b"* OK [COPYUID 9 7 70] moved\r\n* 1 EXPUNGE\r\nA2 OK done\r\n"),
        Expect(b'A3 UID MOVE 8 "Archive"'),
        Send(b"* OK [ALERT] disk nearly full\r\n* 1 EXPUNGE\r\nA3 OK done\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        first = await imap.move(7, "Archive", uid=True)
        assert first is not None
        assert await imap.move(8, "Archive", uid=True) is None
        alerts = [e for e in imap.drain_events() if isinstance(e, StatusResponse)]
        assert [alert.code for alert in alerts] == ["ALERT"]
        await imap.aclose()
    assert server.finished, (server.errors, server.received)


IDLE_START: list[Step] = [
    PREAUTH,
    Expect(b'A1 SELECT "INBOX"'),
    Send(b"* 1 EXISTS\r\nA1 OK [READ-WRITE] done\r\n"),
    Expect(b"A2 IDLE"),
    Send(b"+ idling\r\n"),
]


async def test_another_tasks_command_interrupts_idle_which_resumes() -> None:
    # A NOOP from another task does not wait for the whole IDLE: DONE goes out, the NOOP
    # runs, and IDLE is issued again; the EXISTS that came with the NOOP is the idler's.
    script: list[Step] = [
        *IDLE_START,
        Send(b"* 2 EXISTS\r\n"),
        Expect(b"DONE"),
        Send(b"A2 OK idle done\r\n"),
        Expect(b"A3 NOOP"),
        Send(b"* 3 EXISTS\r\nA3 OK done\r\n"),
        Expect(b"A4 IDLE"),
        Send(b"+ idling again\r\n* 4 EXISTS\r\n"),
        Expect(b"DONE"),
        Send(b"A4 OK idle done\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        seen: list[object] = []
        first = trio.Event()
        noop_result: list[object] = []
        restarts: list[int] = []

        async def idle() -> None:
            async with imap.idle() as events:
                async for event in events:
                    seen.append(event)
                    first.set()
                    if event == Exists(4):
                        break
                restarts.append(events.restarts)

        async def noop() -> None:
            await first.wait()
            noop_result.extend(await imap.noop())

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(idle)
                nursery.start_soon(noop)
        assert seen == [Exists(2), Exists(3), Exists(4)]
        assert noop_result == []  # while an idle() block is open, its events are its own
        assert restarts == [1]
        assert imap.state is ClientState.OK
        await imap.aclose()
    assert server.finished, (server.errors, server.received)


async def test_command_inside_own_idle_interrupts_it() -> None:
    # The idler itself may run a command inside its block: DONE, the command, and no new
    # IDLE when the block ends before the next iteration.
    script: list[Step] = [
        *IDLE_START,
        Expect(b"DONE"),
        Send(b"A2 OK idle done\r\n"),
        Expect(b'A3 STATUS "Archive" (MESSAGES)'),
        Send(b'* STATUS "Archive" (MESSAGES 7)\r\nA3 OK done\r\n'),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        with trio.fail_after(3):
            async with imap.idle():
                status = await imap.status("Archive", ["MESSAGES"])
        assert status.messages == 7
        assert imap.state is ClientState.OK
        await imap.aclose()
    assert server.finished, (server.errors, server.received)


async def test_idle_refused_after_done_keeps_the_connection() -> None:
    # A tagged NO after DONE completes the IDLE: a refusal (IMAPResponseError), not a
    # broken connection.
    script: list[Step] = [
        *IDLE_START,
        Expect(b"DONE"),
        Send(b"A2 NO [SERVERBUG] idle went wrong\r\n"),
        Expect(b"A3 NOOP"),
        Send(b"A3 OK done\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        with trio.fail_after(3):
            with pytest.raises(IMAPResponseError) as refused:
                async with imap.idle():
                    pass
        assert (refused.value.status, refused.value.code) == ("NO", "SERVERBUG")
        assert imap.state is ClientState.OK
        assert await imap.noop() == []
        await imap.aclose()
    assert server.finished, (server.errors, server.received)


async def test_bye_mid_idle_ends_the_iteration() -> None:
    script: list[Step] = [
        *IDLE_START,
        Send(b"* 2 EXISTS\r\n* BYE idle timeout\r\n"),
        Close(),
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        seen: list[object] = []
        with trio.fail_after(3):
            async with imap.idle() as events:
                async for event in events:
                    seen.append(type(event).__name__)
        assert seen == ["Exists", "Bye"]
        assert imap.state is ClientState.BROKEN


async def test_abandoned_fetch_lets_other_tasks_go_on() -> None:
    # `break` out of the loop without aclose(): the stream is dropped (its finaliser
    # releases it) and another task's command goes out after the FETCH completes.
    script: list[Step] = [
        PREAUTH,
        Expect(b'A1 SELECT "INBOX"'),
        Send(b"* 2 EXISTS\r\nA1 OK [READ-WRITE] done\r\n"),
        Expect(b"A2 UID FETCH 1:* (UID)"),
        Send(b"* 1 FETCH (UID 1)\r\n"),
        Stall(0.3),
        Send(b"* 2 FETCH (UID 2)\r\nA2 OK done\r\n"),
        Expect(b"A3 NOOP"),
        Send(b"A3 OK done\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        uids: list[int | None] = []

        async def fetch() -> None:
            async for message in imap.fetch("1:*", ["UID"], uid=True):
                uids.append(message.uid)
                await trio.sleep(0.1)  # the NOOP arrives and waits for the stream
                break

        async def noop() -> None:
            await trio.sleep(0.05)
            await imap.noop()

        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetch)
                nursery.start_soon(noop)
        assert uids == [1]
        assert imap.state is ClientState.OK
        await imap.aclose()
    assert server.finished, (server.errors, server.received)


async def test_logout_inside_own_idle_ends_it() -> None:
    script: list[Step] = [
        *IDLE_START,
        Expect(b"DONE"),
        Send(b"A2 OK idle done\r\n"),
        *LOGOUT,
        Send(b"A3 OK bye\r\n"),
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        with trio.fail_after(3):
            async with imap.idle():
                await imap.logout()
        assert imap.state is ClientState.CLOSED
    assert server.finished, (server.errors, server.received)


async def test_a_poller_that_never_drains_keeps_one_exists_and_recent() -> None:
    # Every poll brings a new EXISTS and RECENT; a newer one supersedes the older, so the
    # queue stays small. An EXPUNGE in between keeps the EXISTS before it (order matters).
    polls = 50
    script: list[Step] = [
        PREAUTH,
        Expect(b'A1 SELECT "INBOX"'),
        Send(b"* 0 EXISTS\r\nA1 OK [READ-WRITE] done\r\n"),
    ]
    for n in range(1, polls + 1):
        script += [
            Expect(f"A{n + 1} SEARCH ALL".encode()),
            Send(f"* {n} EXISTS\r\n* {n} RECENT\r\n* SEARCH\r\nA{n + 1} OK done\r\n".encode()),
        ]
    script += [
        Expect(f"A{polls + 2} SEARCH ALL".encode()),
        Send(f"* 2 EXPUNGE\r\n* 60 EXISTS\r\n* SEARCH\r\nA{polls + 2} OK done\r\n".encode()),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        with trio.fail_after(10):
            await imap.select("INBOX")
            for _ in range(polls + 1):
                assert await imap.search("ALL") == []
        events = imap.drain_events()
        await imap.aclose()
    assert events == [Exists(polls), Recent(polls), Expunge(2), Exists(60)]


# --- FETCH responses that do not answer the FETCH in flight ---------------------------------


async def test_unsolicited_fetch_during_fetch_or_store_goes_to_the_queue() -> None:
    script: list[Step] = [
        PREAUTH,
        Expect(b'A1 SELECT "INBOX"'),
        Send(b"* 9 EXISTS\r\nA1 OK [READ-WRITE] done\r\n"),
        Expect(b"A2 FETCH 1:2 (FLAGS BODY.PEEK[])"),
        Send(
            b"* 1 FETCH (FLAGS (\\Seen) BODY[] {5}\r\nhello)\r\n"
            b"* 1 FETCH (FLAGS (\\Seen \\Flagged))\r\n"  # only FLAGS, but BODY[] was asked
            b"* 7 FETCH (FLAGS (\\Deleted))\r\n"  # a message that was not asked for
            b"* 2 FETCH (FLAGS () BODY[] {5}\r\nworld)\r\n"
            b"A2 OK done\r\n"
        ),
        Expect(b"A3 UID FETCH 10:11 (BODY.PEEK[HEADER])"),
        Send(
            b"* 1 FETCH (UID 10 BODY[HEADER] {4}\r\nA: b)\r\n"
            b"* 2 FETCH (FLAGS (\\Answered))\r\n"  # no UID: no answer to a UID command
            b"* 3 FETCH (UID 12 BODY[HEADER] {4}\r\nX: y)\r\n"  # a UID not asked for
            b"* 2 FETCH (UID 11 BODY[HEADER] {4}\r\nC: d)\r\n"
            b"A3 OK done\r\n"
        ),
        Expect(b"A4 STORE 1 +FLAGS (\\Seen)"),
        Send(b"* 1 FETCH (FLAGS (\\Seen))\r\n* 5 FETCH (FLAGS (\\Draft))\r\nA4 OK done\r\n"),
        Expect(b"A5 FETCH 1:2 (FLAGS)"),
        Send(
            b"* 1 FETCH (FLAGS (\\Seen))\r\n* 1 FETCH (FLAGS (\\Seen \\Flagged))\r\n"
            b"* 2 FETCH (FLAGS ())\r\n* 4 FETCH (FLAGS (\\Seen))\r\nA5 OK done\r\n"
        ),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        with trio.fail_after(5):
            await imap.select("INBOX")
            bodies = [
                (m.sequence, m.body) async for m in imap.fetch("1:2", ["FLAGS", "BODY.PEEK[]"])
            ]
            headers = [
                (m.uid, m.header) async for m in imap.fetch("10:11", "BODY.PEEK[HEADER]", uid=True)
            ]
            stored = await imap.store(1, ["\\Seen"])
            flags = [(m.sequence, m.flags) async for m in imap.fetch("1:2", "FLAGS")]
        queued = imap.drain_events()
        await imap.aclose()
    assert bodies == [(1, b"hello"), (2, b"world")]
    assert headers == [(10, b"A: b"), (11, b"C: d")]
    assert [m.sequence for m in stored.fetches] == [1]
    # Only FLAGS asked for: a flag change of a requested message is an answer too (the newer
    # state of what was asked); one of another message is not.
    assert flags == [(1, ("\\Seen",)), (1, ("\\Seen", "\\Flagged")), (2, ())]
    assert [(e.sequence, e.uid, e.flags) for e in queued if isinstance(e, Fetch)] == [
        (1, None, ("\\Seen", "\\Flagged")),
        (7, None, ("\\Deleted",)),
        (2, None, ("\\Answered",)),
        (3, 12, None),
        (5, None, ("\\Draft",)),
        (4, None, ("\\Seen",)),
    ]
    assert server.finished, (server.errors, server.received)


# --- the unsolicited queue stays bounded ----------------------------------------------------


async def test_flag_changes_coalesce_and_an_overflow_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session_module, "MAX_QUEUED", 4)
    polls = 50
    script: list[Step] = [
        PREAUTH,
        Expect(b'A1 SELECT "INBOX"'),
        Send(b"* 9 EXISTS\r\nA1 OK [READ-WRITE] done\r\n"),
    ]
    for n in range(1, polls + 1):
        script += [
            Expect(f"A{n + 1} UID SEARCH ALL".encode()),
            Send(
                f"* 1 FETCH (FLAGS (\\Seen) MODSEQ ({n}))\r\n* 2 FETCH (UID 8 FLAGS ())\r\n"
                f"* 2 FETCH (FLAGS (\\Flagged))\r\n* SEARCH\r\nA{n + 1} OK done\r\n".encode()
            ),
        ]
    tag = polls + 2
    script += [
        Expect(f"A{tag} UID SEARCH ALL".encode()),
        Send(b"* 3 EXPUNGE\r\n" * 6 + f"* SEARCH\r\nA{tag} OK done\r\n".encode()),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        with trio.fail_after(10):
            await imap.select("INBOX")
            for _ in range(polls):
                assert await imap.search("ALL", uid=True) == []
            coalesced = imap.drain_events()
            await imap.search("ALL", uid=True)
        overflowed = imap.drain_events()
        await imap.aclose()
    # One event per message, the newest flags, the UID and MODSEQ kept from any of them.
    assert [(e.sequence, e.uid, e.flags, e.modseq) for e in coalesced if isinstance(e, Fetch)] == [
        (1, None, ("\\Seen",), polls),
        (2, 8, ("\\Flagged",), None),
    ]
    assert len(coalesced) == 2
    # Six EXPUNGEs (never merged) with room for four: the two oldest are dropped, and the
    # caller is told so first.
    assert overflowed == [Overflow(2)] + [Expunge(3)] * 4
    assert server.finished, (server.errors, server.received)


# --- aclose() from another task -------------------------------------------------------------


async def test_aclose_from_another_task_is_connection_closed_for_a_waiter() -> None:
    script: list[Step] = [PREAUTH, Expect(b"A1 NOOP"), Stall(3)]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        errors: list[BaseException] = []

        async def noop() -> None:
            try:
                await imap.noop()
            except Exception as exc:
                errors.append(exc)

        with trio.fail_after(2):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(noop)
                await trio.testing.wait_all_tasks_blocked()
                await imap.aclose()
        assert [type(error) for error in errors] == [ConnectionClosedError]
        assert imap.state is ClientState.CLOSED


async def test_command_racing_aclose_is_connection_closed() -> None:
    # aclose() is saying LOGOUT when another task's command arrives: "you closed it", not
    # LocalProtocolError("cannot send NOOP in state LOGOUT").
    script: list[Step] = [
        PREAUTH,
        Expect(b"A1 LOGOUT"),
        Stall(0.3),
        Send(b"* BYE bye\r\nA1 OK done\r\n"),
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(imap.aclose)
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(ConnectionClosedError):
                    await imap.noop()
        assert imap.state is ClientState.CLOSED
    assert server.finished, (server.errors, server.received)


# --- a fetch() stream kept and not iterated -------------------------------------------------


def _fetch_script(count: int) -> list[Step]:
    answers = b"".join(b"* %d FETCH (UID %d)\r\n" % (n, n) for n in range(2, count + 1))
    return [
        PREAUTH,
        Expect(b'A1 SELECT "INBOX"'),
        Send(b"* %d EXISTS\r\nA1 OK [READ-WRITE] done\r\n" % count),
        Expect(b"A2 UID FETCH 1:* (UID)"),
        Send(b"* 1 FETCH (UID 1)\r\n"),
        Stall(0.1),
        Send(answers + b"A2 OK done\r\n"),
        Expect(b"A3 NOOP"),
        Send(b"A3 OK done\r\n"),
        *LOGOUT,
    ]


async def test_a_kept_fetch_stream_does_not_block_other_tasks() -> None:
    # The stream is kept in a variable and not iterated: another task's NOOP reads the rest
    # of the FETCH into the stream's buffer and goes on; the stream loses nothing.
    async with scripted_server(_fetch_script(5)) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        stream = imap.fetch("1:*", "UID", uid=True)
        first = await stream.__anext__()
        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(imap.noop)
        assert [first.uid] + [m.uid async for m in stream] == [1, 2, 3, 4, 5]
        await imap.aclose()
    assert server.finished, (server.errors, server.received)


async def test_a_forgotten_fetch_stream_is_dropped_after_a_grace_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The rest does not fit the buffer and the stream's task takes nothing: after the grace
    # period the rest is dropped, the NOOP goes, and the stream says what happened.
    monkeypatch.setattr(session_module, "FETCH_BUFFER_BYTES", 1000)  # ~2 messages
    monkeypatch.setattr(session_module, "STREAM_GRACE_SECONDS", 0.3)
    async with scripted_server(_fetch_script(10)) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        stream = imap.fetch("1:*", "UID", uid=True)
        first = await stream.__anext__()
        start = trio.current_time()
        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(imap.noop)
        assert trio.current_time() - start >= 0.3
        assert first.uid == 1
        with pytest.raises(FetchInterruptedError):
            await stream.__anext__()
        assert imap.state is ClientState.OK
        await imap.aclose()
    assert server.finished, (server.errors, server.received)


async def test_a_slow_fetch_loop_is_not_interrupted_by_another_task() -> None:
    # The stream's task works a while on each message; another task's NOOP reads ahead
    # for it (within the buffer) and goes on; the loop still gets every message.
    async with scripted_server(_fetch_script(6)) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        uids: list[int | None] = []
        noop_done: list[int] = []

        async def fetch() -> None:
            async for message in imap.fetch("1:*", "UID", uid=True):
                uids.append(message.uid)
                await trio.sleep(0.1)

        async def noop() -> None:
            await trio.sleep(0.02)
            await imap.noop()
            noop_done.append(len(uids))

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetch)
                nursery.start_soon(noop)
        assert uids == [1, 2, 3, 4, 5, 6]
        assert noop_done
        assert noop_done[0] < 6  # the NOOP did not wait for the whole loop
        await imap.aclose()
    assert server.finished, (server.errors, server.received)


async def _bodies(imap: IMAPClient, into: list[bytes | None]) -> None:
    async for message in imap.fetch("1:*", ["BODY.PEEK[]"], uid=True):
        into.append(message.body)


async def test_messages_before_garbage_in_one_read_are_delivered_first() -> None:
    # The stream's task takes every response already received in one go (no read-lock round
    # trip per message); an error in those bytes comes after the messages before it.
    script: list[Step] = [
        PREAUTH,
        Expect(b'A1 SELECT "INBOX"'),
        Send(b"A1 OK [READ-WRITE] done\r\n"),
        Expect(pattern=rb"A2 UID FETCH 1:\* \(BODY.PEEK\[\]\)"),
        Send(
            b"* 1 FETCH (UID 1 BODY[] {1}\r\na)\r\n"
            b"* 2 FETCH (UID 2 BODY[] {1}\r\nb)\r\n"
            b"* 3 FETCH (UID 3 BODY[] {1}\r\nc)\r\n"
            b"* 4 FETCH (UID ((\r\n"
        ),
        Stall(1.0),
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        bodies: list[bytes | None] = []
        with trio.fail_after(5), pytest.raises(RemoteProtocolError, match="malformed"):
            await _bodies(imap, bodies)
        assert bodies == [b"a", b"b", b"c"]
        assert imap.state is ClientState.BROKEN
        await imap.aclose()


async def test_a_close_after_messages_in_one_read_comes_after_them() -> None:
    script: list[Step] = [
        PREAUTH,
        Expect(b'A1 SELECT "INBOX"'),
        Send(b"A1 OK [READ-WRITE] done\r\n"),
        Expect(pattern=rb"A2 UID FETCH 1:\* \(BODY.PEEK\[\]\)"),
        Send(b"* 1 FETCH (UID 1 BODY[] {1}\r\na)\r\n* 2 FETCH (UID 2 BODY[] {1}\r\nb)\r\n"),
        Close(),
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        bodies: list[bytes | None] = []
        with trio.fail_after(5), pytest.raises(ConnectionBrokenError):
            await _bodies(imap, bodies)
        assert bodies == [b"a", b"b"]
        await imap.aclose()


async def test_a_command_inside_a_fetch_loop_is_refused_even_if_the_fetch_is_complete() -> None:
    # The whole FETCH, tagged reply included, arrives in one read: the stream's task holds
    # all of it. A command from inside its loop is still refused, whatever the timing.
    script: list[Step] = [
        PREAUTH,
        Expect(b'A1 SELECT "INBOX"'),
        Send(b"A1 OK [READ-WRITE] done\r\n"),
        Expect(pattern=rb"A2 UID FETCH 1:\* \(BODY.PEEK\[\]\)"),
        Send(
            b"* 1 FETCH (UID 1 BODY[] {1}\r\na)\r\n"
            b"* 2 FETCH (UID 2 BODY[] {1}\r\nb)\r\n"
            b"A2 OK done\r\n"
        ),
        Expect(b"A3 NOOP"),
        Send(b"A3 OK done\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        with trio.fail_after(5):
            async with imap.fetch("1:*", ["BODY.PEEK[]"], uid=True) as stream:
                first = await stream.__anext__()
                assert first.body == b"a"
                with pytest.raises(LocalProtocolError, match="iterating a fetch"):
                    await imap.noop()
            assert await imap.noop() == []  # after the loop, commands go again
        await imap.aclose()
