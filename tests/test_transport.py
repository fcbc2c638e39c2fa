"""The transport boundary: connect, TLS verification, STARTTLS, exception translation."""

from __future__ import annotations

import socket
import ssl

import pytest
import trio
import trio.testing

from tests.scripted import Close, Expect, Send, StartTLS, Step, scripted_server, tls_contexts
from trio_mailoauth import transport
from trio_mailoauth.errors import (
    ConnectError,
    ConnectionBrokenError,
    ConnectionClosedError,
    TLSError,
)
from trio_mailoauth.transport import connect, create_ssl_context, is_loopback


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("imap.gmail.com", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_default_context_verifies() -> None:
    context = create_ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


async def test_connection_refused_is_connect_error() -> None:
    with pytest.raises(ConnectError) as info:
        await connect("127.0.0.1", _closed_port(), tls=False)
    assert isinstance(info.value.__cause__, OSError)


async def test_implicit_tls_round_trip_and_eof() -> None:
    _, client_context = tls_contexts()
    async with scripted_server(
        [Send(b"hello\r\n"), Expect(b"ping"), Close()], tls_hostname="localhost"
    ) as server:
        stream = await connect(
            server.host,
            server.port,
            tls=True,
            ssl_context=client_context,
            server_hostname="localhost",
        )
        assert stream.is_tls
        assert await stream.receive_some() == b"hello\r\n"
        await stream.send_all(b"ping\r\n")
        assert await stream.receive_some() == b""
        await stream.aclose()


async def test_untrusted_certificate_is_tls_error() -> None:
    async with scripted_server([], tls_hostname="localhost") as server:
        with pytest.raises(TLSError) as info:
            # The default context trusts the system CAs, not the test CA.
            await connect(server.host, server.port, tls=True, server_hostname="localhost")
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
        server.errors.clear()


async def test_wrong_host_name_is_tls_error() -> None:
    _, client_context = tls_contexts()
    async with scripted_server([], tls_hostname="wrong.example") as server:
        with pytest.raises(TLSError, match="TLS handshake failed"):
            await connect(
                server.host,
                server.port,
                tls=True,
                ssl_context=client_context,
                server_hostname="localhost",
            )
        server.errors.clear()


async def test_starttls_upgrade() -> None:
    _, client_context = tls_contexts()
    script: list[Step] = [
        Send(b"ready\r\n"),
        StartTLS(),
        Expect(b"secret"),
        Send(b"ok\r\n"),
        Close(),
    ]
    async with scripted_server(script) as server:
        stream = await connect(server.host, server.port, tls=False, server_hostname="localhost")
        assert await stream.receive_some() == b"ready\r\n"
        await stream.start_tls(client_context)
        assert stream.is_tls
        await stream.send_all(b"secret\r\n")
        assert await stream.receive_some() == b"ok\r\n"
        with pytest.raises(TLSError, match="already"):
            await stream.start_tls(client_context)
        await stream.aclose()
    assert server.received == [b"secret"]


async def test_send_after_peer_reset_is_broken() -> None:
    async with scripted_server([Close()]) as server:
        stream = await connect(server.host, server.port, tls=False)
        assert await stream.receive_some() == b""
        failure: ConnectionBrokenError | None = None
        for _ in range(50):  # the first writes may still land in the socket buffer
            try:
                await stream.send_all(b"x" * 65536)
            except ConnectionBrokenError as exc:
                failure = exc
                break
            await trio.sleep(0.01)
        assert failure is not None
        assert failure.__cause__ is not None
        await stream.aclose_forcefully()


class _SocketPairStream:
    """Just enough of an anyio socket stream for transport._Wire: one end of a socketpair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def extra(self, attribute: object, default: object = None) -> object:
        return self.sock

    async def aclose(self) -> None:
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()


def _wire_pair() -> tuple[transport._Wire, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    return transport._Wire(_SocketPairStream(ours)), theirs  # type: ignore[arg-type]


async def test_reading_a_stream_of_queued_data_still_yields_to_other_tasks() -> None:
    # On trio the wire reads the socket directly and does not wait while data is queued;
    # it must still let the other tasks run now and then.
    wire, theirs = _wire_pair()
    chunk = 1024  # 68 KiB in all: fits the socket buffer, so sendall() returns
    reads = 4 * (transport._READS_BETWEEN_YIELDS + 1)
    theirs.sendall(b"x" * chunk * reads)  # all queued before the first read
    ticks = 0
    reading = True

    async def other_task() -> None:
        nonlocal ticks
        while reading:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        await trio.lowlevel.checkpoint()  # let it start
        before = ticks
        total = 0
        while total < chunk * reads:
            total += len(await wire.receive(chunk))
        reading = False
    assert total == chunk * reads
    assert ticks - before >= 3  # one yield per _READS_BETWEEN_YIELDS + 1 reads
    theirs.close()
    await wire.aclose()


async def test_a_cancelled_read_takes_nothing_even_when_data_is_queued() -> None:
    wire, theirs = _wire_pair()
    theirs.sendall(b"queued\r\n")  # a read after a read tries the socket before waiting
    with trio.CancelScope() as scope:
        scope.cancel()
        await wire.receive(1024)
    assert scope.cancelled_caught
    assert await wire.receive(1024) == b"queued\r\n"
    theirs.close()
    assert await wire.receive(1024) == b""
    await wire.aclose()


async def test_closing_while_another_task_waits_to_read_is_closed_error() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    stream = await connect("127.0.0.1", port, tls=False)
    server_side = await listeners[0].accept()  # it says nothing: the read waits
    failure: list[BaseException] = []

    async def reader() -> None:
        try:
            await stream.receive_some()
        except ConnectionClosedError as exc:
            failure.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        await stream.aclose_forcefully()
    assert len(failure) == 1
    await server_side.aclose()
    await listeners[0].aclose()
