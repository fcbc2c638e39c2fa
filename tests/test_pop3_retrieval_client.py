"""The POP3 client's maildrop commands against scripted servers: results, streaming into
sinks, pipelined retrieval, fetch_new's confirm-then-delete rule, APOP, response codes and
the faults (endless RETR, a sink that fails, a server that closes mid-message)."""

from __future__ import annotations

import io

import anyio
import anyio.lowlevel
import pytest

from tests.scripted import Close, Expect, ScriptedServer, Send, Step, scripted_server
from trio_mailoauth._client import ClientState
from trio_mailoauth.errors import (
    AuthenticationError,
    ConnectionBrokenError,
    LocalProtocolError,
    POP3ResponseError,
    RemoteProtocolError,
)
from trio_mailoauth.pop3 import POP3Client, open_pop3

GREETING: Step = Send(b"+OK Dovecot ready. <1896.697170952@dbc.mtview.ca.us>\r\n")
LOGIN: list[Step] = [
    Expect(b"CAPA"),
    Send(b"+OK\r\nUIDL\r\nTOP\r\nPIPELINING\r\nUSER\r\n.\r\n"),
    Expect(b"USER bob"),
    Send(b"+OK\r\n"),
    Expect(b"PASS pw"),
    Send(b"+OK Logged in.\r\n"),
]
LOGIN_NO_PIPELINING: list[Step] = [
    Expect(b"CAPA"),
    Send(b"+OK\r\nUIDL\r\nUSER\r\n.\r\n"),
    *LOGIN[2:],
]
QUIT: list[Step] = [Expect(b"QUIT"), Send(b"+OK Logging out.\r\n")]
MESSAGE = b"Subject: hi\r\n\r\n.dot line\r\nbody\r\n"
WIRE = b"Subject: hi\r\n\r\n..dot line\r\nbody\r\n.\r\n"


async def login(server: ScriptedServer) -> POP3Client:
    pop = await open_pop3(server.host, server.port, tls="none", allow_insecure=True)
    await pop.user_pass("bob", "pw")
    return pop


def retr_answer(number: int) -> bytes:
    return b"+OK\r\nmessage %d\r\n.\r\n" % number


async def test_every_command() -> None:
    script = [
        GREETING,
        *LOGIN,
        Expect(b"STAT"),
        Send(b"+OK 2 320\r\n"),
        Expect(b"LIST"),
        Send(b"+OK 2 messages:\r\n1 120\r\n2 200\r\n.\r\n"),
        Expect(b"LIST 2"),
        Send(b"+OK 2 200\r\n"),
        Expect(b"UIDL"),
        Send(b"+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n"),
        Expect(b"UIDL 2"),
        Send(b"+OK 2 bbb\r\n"),
        Expect(b"RETR 1"),
        Send(b"+OK 120 octets\r\n" + WIRE),
        Expect(b"TOP 1 0"),
        Send(b"+OK\r\nSubject: hi\r\n\r\n.\r\n"),
        Expect(b"DELE 1"),
        Send(b"+OK Marked to be deleted.\r\n"),
        Expect(b"RSET"),
        Send(b"+OK\r\n"),
        Expect(b"NOOP"),
        Send(b"+OK\r\n"),
        Expect(b"RETR 7"),
        Send(b"-ERR [SYS/TEMP] There's no message 7.\r\n"),
        *QUIT,
    ]
    async with scripted_server(script) as server:
        pop = await login(server)
        assert pop.pipelining
        assert await pop.stat() == (2, 320)
        assert await pop.list() == [(1, 120), (2, 200)]
        assert await pop.list(2) == 200
        assert await pop.uidl() == [(1, "aaa"), (2, "bbb")]
        assert await pop.uidl(2) == "bbb"
        assert await pop.retr(1) == MESSAGE
        assert await pop.top(1) == b"Subject: hi\r\n\r\n"
        await pop.dele(1)
        await pop.rset()
        await pop.noop()
        with pytest.raises(POP3ResponseError) as info:
            await pop.retr(7)
        assert info.value.code == "SYS/TEMP"
        assert pop.state is ClientState.OK  # a refusal is a completed round trip
        await pop.quit()


async def test_retr_to_sync_and_async_sinks() -> None:
    script = [GREETING, *LOGIN, Expect(b"RETR 1"), Send(b"+OK\r\n" + WIRE)] * 1
    script += [Expect(b"RETR 2"), Send(b"+OK\r\n" + WIRE), *QUIT]
    written: list[bytes] = []

    class AsyncSink:
        async def write(self, data: bytes) -> int:
            await anyio.lowlevel.checkpoint()
            written.append(data)
            return len(data)

    async with scripted_server(script) as server:
        pop = await login(server)
        buffer = io.BytesIO()
        assert await pop.retr_to(1, buffer) == len(MESSAGE)
        assert buffer.getvalue() == MESSAGE
        assert await pop.retr_to(2, AsyncSink()) == len(MESSAGE)
        assert b"".join(written) == MESSAGE
        await pop.quit()


async def test_a_failing_sink_breaks_the_connection() -> None:
    class Full:
        def write(self, data: bytes) -> int:
            raise OSError("disk full")

    script = [GREETING, *LOGIN, Expect(b"RETR 1"), Send(b"+OK\r\n" + WIRE)]
    async with scripted_server(script) as server:
        pop = await login(server)
        with pytest.raises(OSError, match="disk full"):
            await pop.retr_to(1, Full())
        assert pop.state is ClientState.BROKEN
        with pytest.raises(ConnectionBrokenError):
            await pop.noop()


@pytest.mark.parametrize(
    "error", [LocalProtocolError("sink's own"), POP3ResponseError("sink's own", None)]
)
async def test_a_sink_raising_one_of_our_errors_still_breaks_the_connection(
    error: Exception,
) -> None:
    # A sink that forwards into another of our clients raises our errors; the round trip
    # lets those through as "nothing sent / a refusal", but the message is half read here.
    class Forwarding:
        def write(self, data: bytes) -> None:
            raise error

    script = [GREETING, *LOGIN, Expect(b"RETR 1"), Send(b"+OK\r\n" + WIRE)]
    async with scripted_server(script) as server:
        pop = await login(server)
        with pytest.raises(type(error), match="sink's own"):
            await pop.retr_to(1, Forwarding())
        assert pop.state is ClientState.BROKEN
        with pytest.raises(ConnectionBrokenError):
            await pop.noop()


async def test_retrieve_refused_by_the_core_does_not_wait_for_an_answer() -> None:
    # Not logged in: the core refuses RETR. Nothing went out, so nothing must be awaited.
    script = [GREETING, *LOGIN[:2], *QUIT]
    async with scripted_server(script) as server:
        pop = await open_pop3(server.host, server.port, tls="none", allow_insecure=True)

        async def read_all() -> None:
            async with pop.retrieve([1]) as messages:
                async for _ in messages:
                    pass

        with anyio.fail_after(5), pytest.raises(LocalProtocolError, match="RETR"):
            await read_all()
        assert pop.state is ClientState.OK
        await pop.quit()
        assert server.received == [b"CAPA", b"QUIT"]


async def test_endless_retr_fails_typed_with_bounded_memory() -> None:
    chunk = (b"x" * 998 + b"\r\n") * 64  # 64 KB of lines, never a terminator
    script = [GREETING, *LOGIN, Expect(b"RETR 1"), Send(b"+OK\r\n"), *([Send(chunk)] * 40)]
    sizes: list[int] = []

    class Counting:
        def write(self, data: bytes) -> None:
            sizes.append(len(data))

    async with scripted_server(script) as server:
        pop = await login(server)
        pop.max_message_size = 1024 * 1024
        with pytest.raises(RemoteProtocolError, match="exceeds 1048576 octets"):
            await pop.retr_to(1, Counting())
        assert pop.state is ClientState.BROKEN
        # Chunks as they arrived (plus the <= 4 octets held back), never accumulated.
        assert max(sizes) <= 64 * 1024 + 4
        assert sum(sizes) <= 1024 * 1024


async def test_server_closes_in_the_middle_of_a_message() -> None:
    script = [GREETING, *LOGIN, Expect(b"RETR 1"), Send(b"+OK\r\nhalf a mess"), Close()]
    async with scripted_server(script) as server:
        pop = await login(server)
        with pytest.raises((RemoteProtocolError, ConnectionBrokenError)):
            await pop.retr(1)
        assert pop.state is ClientState.BROKEN


async def test_garbage_status_line_breaks_the_connection() -> None:
    script = [GREETING, *LOGIN, Expect(b"STAT"), Send(b"HTTP/1.1 400 Bad Request\r\n")]
    async with scripted_server(script) as server:
        pop = await login(server)
        with pytest.raises(RemoteProtocolError, match="status line"):
            await pop.stat()
        assert pop.state is ClientState.BROKEN


async def test_retrieve_pipelines_when_offered() -> None:
    count = 40
    # The window (32) goes out in one write; the rest once half of it is answered.
    script: list[Step] = [GREETING, *LOGIN]
    script += [Expect(b"RETR %d" % n) for n in range(1, 33)]
    script += [Send(b"".join(retr_answer(n) for n in range(1, 17)))]
    script += [Expect(b"RETR %d" % n) for n in range(33, count + 1)]
    script += [Send(b"".join(retr_answer(n) for n in range(17, count + 1))), *QUIT]
    async with scripted_server(script) as server:
        pop = await login(server)
        got = []
        async with pop.retrieve(range(1, count + 1)) as messages:
            async for number, data in messages:
                got.append((number, data))
        assert got == [(n, b"message %d\r\n" % n) for n in range(1, count + 1)]
        await pop.quit()


async def test_retrieve_without_pipelining_is_sequential_and_deletes_confirmed() -> None:
    script: list[Step] = [GREETING, *LOGIN_NO_PIPELINING]
    script += [Expect(b"RETR 1"), Send(retr_answer(1)), Expect(b"DELE 1"), Send(b"+OK\r\n")]
    script += [Expect(b"RETR 2"), Send(retr_answer(2)), Expect(b"DELE 2"), Send(b"+OK\r\n")]
    script += QUIT
    async with scripted_server(script) as server:
        pop = await login(server)
        assert not pop.pipelining
        async with pop.retrieve([1, 2], delete=True) as messages:
            numbers = [number async for number, _ in messages]
        assert numbers == [1, 2]
        await pop.quit()


async def test_fetch_new_deletes_only_what_the_caller_confirmed() -> None:
    script: list[Step] = [GREETING, *LOGIN]
    script += [Expect(b"UIDL"), Send(b"+OK\r\n1 old\r\n2 new-a\r\n3 new-b\r\n4 new-c\r\n.\r\n")]
    script += [Expect(b"RETR 2"), Expect(b"RETR 3"), Expect(b"RETR 4")]
    script += [Send(retr_answer(2) + retr_answer(3))]
    # Message 2 was stored (the loop came back), so DELE 2 rides along; 3 failed to store.
    script += [Expect(b"DELE 2"), Send(retr_answer(4) + b"+OK\r\n")]  # answers in order
    # The loop left on message 3's exception: the answers in flight are read and dropped.
    script += [Expect(b"NOOP"), Send(b"+OK\r\n"), *QUIT]
    stored: dict[str, bytes] = {}
    async with scripted_server(script) as server:
        pop = await login(server)

        async def store_all() -> None:
            async with pop.fetch_new({"old"}, delete=True) as messages:
                async for uid, data in messages:
                    if uid == "new-b":
                        raise ValueError("cannot store")
                    stored[uid] = data

        with pytest.raises(ValueError, match="cannot store"):
            await store_all()
        assert stored == {"new-a": b"message 2\r\n"}
        assert pop.state is ClientState.OK
        await pop.noop()
        await pop.quit()


async def test_fetch_new_break_keeps_the_connection_in_step() -> None:
    script: list[Step] = [GREETING, *LOGIN_NO_PIPELINING]
    script += [Expect(b"UIDL"), Send(b"+OK\r\n1 a\r\n2 b\r\n.\r\n")]
    script += [Expect(b"RETR 1"), Send(retr_answer(1)), Expect(b"NOOP"), Send(b"+OK\r\n"), *QUIT]
    async with scripted_server(script) as server:
        pop = await login(server)
        async with pop.fetch_new(set(), delete=True) as messages:
            async for uid, _ in messages:
                assert uid == "a"
                break  # not confirmed: no DELE 1
        await pop.noop()
        await pop.quit()


async def test_retrieve_stops_on_err_and_stays_usable() -> None:
    script: list[Step] = [GREETING, *LOGIN]
    script += [Expect(b"RETR 1"), Expect(b"RETR 2")]
    script += [Send(b"-ERR [IN-USE] gone\r\n" + retr_answer(2)), Expect(b"NOOP"), Send(b"+OK\r\n")]
    async with scripted_server(script) as server:
        pop = await login(server)

        async def read_all() -> None:
            async with pop.retrieve([1, 2]) as messages:
                async for _ in messages:
                    pass

        with pytest.raises(POP3ResponseError) as info:
            await read_all()
        assert info.value.code == "IN-USE"
        await pop.noop()
        await pop.aclose()


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b"-ERR [IN-USE] Mailbox is locked by another POP3 session\r\n", "temporary"),
        (b"-ERR [SYS/TEMP] Temporary failure\r\n", "temporary"),
        (b"-ERR [LOGIN-DELAY] Wait\r\n", "temporary"),
        (b"-ERR [SYS/PERM] Broken\r\n", "permanent"),
        (b"-ERR [AUTH] Authentication failed.\r\n", "permanent"),
    ],
)
async def test_login_refusal_codes(line: bytes, kind: str) -> None:
    script = [GREETING, *LOGIN[:4], Expect(b"PASS pw"), Send(line)]
    async with scripted_server(script) as server:
        pop = await open_pop3(server.host, server.port, tls="none", allow_insecure=True)
        with pytest.raises(AuthenticationError) as info:
            await pop.user_pass("bob", "pw")
        assert info.value.kind == kind
        assert pop.state is ClientState.OK
        await pop.aclose()


async def test_apop() -> None:
    script = [
        GREETING,
        *LOGIN[:2],
        Expect(b"APOP mrose c4c9334bac560ecc979e58001b3e22fb"),
        Send(b"-ERR [IN-USE] locked\r\n"),
        Expect(b"APOP mrose c4c9334bac560ecc979e58001b3e22fb"),
        Send(b"+OK maildrop has 0 messages\r\n"),
        *QUIT,
    ]
    async with scripted_server(script) as server:
        pop = await open_pop3(server.host, server.port, tls="none", allow_insecure=True)
        with pytest.raises(AuthenticationError) as info:
            await pop.apop("mrose", "tanstaaf")
        assert (info.value.kind, info.value.mechanism) == ("temporary", "APOP")
        assert "tanstaaf" not in str(info.value)
        await pop.apop("mrose", "tanstaaf")
        assert pop.authenticated
        await pop.quit()


async def test_apop_without_timestamp_sends_nothing() -> None:
    script = [Send(b"+OK ready\r\n"), *LOGIN[:2], Expect(b"QUIT"), Send(b"+OK\r\n")]
    async with scripted_server(script) as server:
        pop = await open_pop3(server.host, server.port, tls="none", allow_insecure=True)
        with pytest.raises(LocalProtocolError, match="timestamp"):
            await pop.apop("mrose", "tanstaaf")
        await pop.quit()
        assert server.received == [b"CAPA", b"QUIT"]
