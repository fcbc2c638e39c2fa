"""The IMAP session engine with several tasks on one connection (scripted servers): races
between submitters, cancelled readers and waiters, a connection breaking under waiters,
IDLE shared with other tasks, caps on what one command collects."""

from __future__ import annotations

import pytest
import trio

from tests.scripted import Close, Expect, Send, Stall, Step, scripted_server
from trio_mailoauth._client import ClientState
from trio_mailoauth.errors import (
    ConnectionBrokenError,
    LocalProtocolError,
    RemoteProtocolError,
)
from trio_mailoauth.imap import IMAPClient, open_imap
from trio_mailoauth.imap import session as session_module
from trio_mailoauth.imap.events import Exists, Expunge, Recent, StatusResponse

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


async def test_idle_is_read_by_its_own_task_while_another_waits() -> None:
    # While the IDLE task handles an event, another task's NOOP waits for IDLE to end; it
    # must not take over reading (the IDLE task would wait for the read lock, and its
    # events would pile up, until the IDLE is renewed 28 minutes later).
    script: list[Step] = [
        *IDLE_START,
        Send(b"* 2 EXISTS\r\n"),
        Stall(0.4),
        Send(b"* 3 EXISTS\r\n"),
        Expect(b"DONE"),
        Send(b"A2 OK idle done\r\n"),
        Expect(b"A3 NOOP"),
        Send(b"A3 OK done\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        seen: list[object] = []

        async def idle() -> None:
            async with imap.idle() as events:
                async for event in events:
                    seen.append(event)
                    if event == Exists(3):
                        break
                    await trio.sleep(0.2)  # handling the event: the NOOP arrives now

        async def noop() -> None:
            await trio.sleep(0.1)
            await imap.noop()
            seen.append("noop done")

        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(idle)
                nursery.start_soon(noop)
        assert seen == [Exists(2), Exists(3), "noop done"]
        await imap.aclose()
    assert server.finished, (server.errors, server.received)


async def test_command_inside_own_idle_is_refused() -> None:
    script: list[Step] = [
        *IDLE_START,
        Expect(b"DONE"),
        Send(b"A2 OK idle done\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        with trio.fail_after(3):
            async with imap.idle():
                with pytest.raises(LocalProtocolError, match="idle"):
                    await imap.noop()
        assert imap.state is ClientState.OK
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


async def test_logout_inside_own_idle_is_refused() -> None:
    script: list[Step] = [*IDLE_START, Expect(b"DONE"), Send(b"A2 OK idle done\r\n"), *LOGOUT]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        await imap.select("INBOX")
        with trio.fail_after(3):
            async with imap.idle():
                with pytest.raises(LocalProtocolError, match="idle"):
                    await imap.logout()
        await imap.aclose()
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
