"""Our TLS layer (ssl.SSLObject over memory BIOs) in transport.Stream, on trio and asyncio.

The server side is anyio's TLSStream (a different implementation, so the two check each
other); each server is a task in the test that plays one handler on the first connection.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import anyio
import anyio.abc
import pytest
from anyio.streams.tls import TLSStream

from tests.scripted import Close, Expect, Send, StartTLS, Step, scripted_server, tls_contexts
from trio_mailoauth import transport
from trio_mailoauth.errors import ConnectionBrokenError, ConnectionClosedError, TLSError
from trio_mailoauth.transport import Stream, connect

pytestmark = pytest.mark.anyio

Handler = Callable[[TLSStream], Awaitable[None]]
TLS_VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


def _server_context(
    version: ssl.TLSVersion | None = None, hostname: str = "localhost"
) -> ssl.SSLContext:
    context, _ = tls_contexts(hostname)
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


@dataclass
class Server:
    port: int
    handshake_error: BaseException | None = None


@asynccontextmanager
async def tls_server(
    handler: Handler | None,
    *,
    context: ssl.SSLContext | None = None,
    standard_compatible: bool = False,
    wrap: Callable[[anyio.abc.ByteStream], anyio.abc.ByteStream] | None = None,
) -> AsyncIterator[Server]:
    """Serve ``handler`` over TLS to the first client (``None``: the handshake must fail).

    Waits for the handler on exit; its errors fail the test.
    """
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    listener = multi.listeners[0]
    assert isinstance(listener, anyio.abc.SocketListener)
    server = Server(listener.extra(anyio.abc.SocketAttribute.local_port))
    done = anyio.Event()

    async def serve_one() -> None:
        raw: anyio.abc.ByteStream = await listener.accept()
        try:
            with anyio.fail_after(10):
                try:
                    stream = await TLSStream.wrap(
                        wrap(raw) if wrap else raw,
                        server_side=True,
                        ssl_context=context or _server_context(),
                        standard_compatible=standard_compatible,
                    )
                except (ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
                    if handler is not None:
                        raise
                    server.handshake_error = exc
                    return
                assert handler is not None, "the handshake should have failed"
                await handler(stream)
        finally:
            await anyio.aclose_forcefully(raw)
            done.set()

    async with multi, anyio.create_task_group() as tg:
        tg.start_soon(serve_one)
        yield server
        with anyio.fail_after(10):
            await done.wait()


async def _connect_tls(port: int, hostname: str = "localhost") -> Stream:
    _, client_context = tls_contexts()
    return await connect(
        "127.0.0.1", port, tls=True, ssl_context=client_context, server_hostname=hostname
    )


@asynccontextmanager
async def _client(port: int) -> AsyncIterator[Stream]:
    stream = await _connect_tls(port)
    try:
        yield stream
    finally:
        await stream.aclose_forcefully()


async def _receive_exactly(stream: Stream, size: int) -> tuple[bytes, list[int]]:
    """Read ``size`` bytes; also the size of every receive_some() result."""
    data = bytearray()
    sizes: list[int] = []
    while len(data) < size:
        chunk = await stream.receive_some()
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        sizes.append(len(chunk))
        data += chunk
    return bytes(data), sizes


async def test_runs_on_the_requested_backend(anyio_backend: str) -> None:
    assert anyio_backend in ("trio", "asyncio")


@pytest.mark.parametrize("version", TLS_VERSIONS, ids=["tls12", "tls13"])
async def test_round_trip_and_clean_close(version: ssl.TLSVersion) -> None:
    got_close_notify = anyio.Event()

    async def handler(stream: TLSStream) -> None:
        await stream.send(b"* OK hello\r\n")
        assert await stream.receive() == b"ping\r\n"
        await stream.send(b"pong\r\n")
        # Our aclose() says goodbye with a close_notify: a clean EOF, not a truncation.
        with pytest.raises(anyio.EndOfStream):
            await stream.receive()
        got_close_notify.set()

    # standard_compatible=True: this server treats a missing close_notify as an error.
    async with tls_server(
        handler, context=_server_context(version), standard_compatible=True
    ) as server:
        stream = await _connect_tls(server.port)
        assert stream.is_tls
        assert "TLS" in repr(stream)
        assert stream.local_address == "127.0.0.1"
        assert await stream.receive_some() == b"* OK hello\r\n"
        await stream.send_all(b"ping\r\n")
        assert await stream.receive_some() == b"pong\r\n"
        await stream.aclose()
        await stream.aclose()  # idempotent
    assert got_close_notify.is_set()


class _Corked(anyio.abc.ByteStream):
    """A server-side raw stream that can hold back its writes and send them in one go."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.held: bytearray | None = None

    def cork(self) -> None:
        self.held = bytearray()

    async def uncork(self) -> None:
        held, self.held = self.held, None
        if held:
            await self.stream.send(bytes(held))

    async def send(self, item: bytes) -> None:
        if self.held is None:
            await self.stream.send(item)
        else:
            self.held += item

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.stream.receive(max_bytes)

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


@pytest.mark.parametrize("version", TLS_VERSIONS, ids=["tls12", "tls13"])
async def test_many_small_records_come_back_in_one_receive(version: ssl.TLSVersion) -> None:
    sent = anyio.Event()
    records = [b"* %d FETCH (BODY[] {10}\r\n0123456789)\r\n" % i for i in range(300)]

    async def handler(stream: TLSStream) -> None:
        assert await stream.receive() == b"go\r\n"
        corked = stream.transport_stream
        assert isinstance(corked, _Corked)
        corked.cork()
        for record in records:  # one TLS record per send...
            await stream.send(record)
        await corked.uncork()  # ...and all of them in one TCP write
        sent.set()
        assert await stream.receive() == b"done\r\n"

    context = _server_context(version)
    async with (
        tls_server(handler, context=context, wrap=_Corked) as server,
        _client(server.port) as stream,
    ):
        await stream.send_all(b"go\r\n")
        await sent.wait()
        await anyio.sleep(0.1)  # loopback: all of it is in our socket buffer by now
        expected = b"".join(records)
        data, sizes = await _receive_exactly(stream, len(expected))
        assert data == expected
        assert sizes == [len(expected)], "300 records should come in one receive_some()"
        await stream.send_all(b"done\r\n")


async def test_one_receive_is_capped_and_nothing_is_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport, "TLS_RECEIVE_CAP", 50_000)
    payload = bytes(range(256)) * 4096  # 1 MiB in 16 KiB records

    async def handler(stream: TLSStream) -> None:
        await stream.send(payload)
        assert await stream.receive() == b"done\r\n"

    async with tls_server(handler) as server:
        stream = await _connect_tls(server.port)
        data, sizes = await _receive_exactly(stream, len(payload))
        assert data == payload
        assert max(sizes) <= 50_000
        await stream.send_all(b"done\r\n")
        await stream.aclose()


async def test_large_send() -> None:
    payload = b"0123456789abcdef" * 100_000  # 1.6 MB
    received = bytearray()

    async def handler(stream: TLSStream) -> None:
        while len(received) < len(payload):
            received.extend(await stream.receive())
        await stream.send(b"ok\r\n")

    async with tls_server(handler) as server:
        stream = await _connect_tls(server.port)
        await stream.send_all(payload)
        await stream.send_all(b"")  # nothing to send: no empty record, no error
        assert await stream.receive_some() == b"ok\r\n"
        await stream.aclose()
    assert received == payload


async def test_peer_closes_without_close_notify_is_eof() -> None:
    async def handler(stream: TLSStream) -> None:
        await stream.send(b"* BYE\r\n")
        # standard_compatible=False: closes the TCP connection, no close_notify.
        await stream.aclose()

    async with tls_server(handler) as server:
        stream = await _connect_tls(server.port)
        assert await stream.receive_some() == b"* BYE\r\n"
        assert await stream.receive_some() == b""
        assert await stream.receive_some() == b""  # and stays at EOF
        await stream.aclose()


async def test_peer_closes_with_close_notify_is_eof() -> None:
    async def handler(stream: TLSStream) -> None:
        await stream.send(b"* BYE\r\n")
        await stream.unwrap()  # sends close_notify, waits for ours

    async with tls_server(handler, standard_compatible=True) as server:
        stream = await _connect_tls(server.port)
        assert await stream.receive_some() == b"* BYE\r\n"
        assert await stream.receive_some() == b""
        await stream.aclose()  # answers the close_notify, so unwrap() returns


async def test_corrupt_record_breaks_the_connection_after_the_data_before_it() -> None:
    async def handler(stream: TLSStream) -> None:
        corked = stream.transport_stream
        assert isinstance(corked, _Corked)
        corked.cork()
        await stream.send(b"* OK\r\n")
        # An application-data record that does not decrypt, in the same TCP write.
        await corked.send(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
        await corked.uncork()
        with suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            await stream.receive()

    async with tls_server(handler, wrap=_Corked) as server, _client(server.port) as stream:
        assert await stream.receive_some() == b"* OK\r\n"
        with pytest.raises(ConnectionBrokenError, match="TLS error") as info:
            await stream.receive_some()
        assert isinstance(info.value.__cause__, ssl.SSLError)
        with pytest.raises(ConnectionBrokenError):
            await stream.receive_some()
        with pytest.raises(ConnectionBrokenError):
            await stream.send_all(b"x\r\n")


async def test_use_after_close_is_closed_error() -> None:
    async def handler(stream: TLSStream) -> None:
        with suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            await stream.receive()

    async with tls_server(handler) as server:
        stream = await _connect_tls(server.port)
        await stream.aclose_forcefully()
        with pytest.raises(ConnectionClosedError):
            await stream.send_all(b"x\r\n")
        with pytest.raises(ConnectionClosedError):
            await stream.receive_some()
        await stream.aclose_forcefully()
        await stream.aclose()


async def test_untrusted_certificate_is_tls_error() -> None:
    async with tls_server(None) as server:
        with pytest.raises(TLSError, match="TLS handshake failed") as info:
            # The default context trusts the system CAs, not the test CA.
            await connect("127.0.0.1", server.port, tls=True, server_hostname="localhost")
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    # We told the server why (a TLS alert), rather than just hanging up.
    assert "ALERT" in str(server.handshake_error).upper(), server.handshake_error


async def test_wrong_host_name_is_tls_error() -> None:
    async with tls_server(None, context=_server_context(hostname="wrong.example")) as server:
        with pytest.raises(TLSError, match="TLS handshake failed") as info:
            await _connect_tls(server.port, hostname="localhost")
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


async def test_plaintext_server_is_tls_error() -> None:
    # A server that answers the ClientHello in plaintext (wrong port), then hangs up.
    async with scripted_server([Send(b"* OK IMAP4rev1 ready\r\n"), Close()]) as server:
        with pytest.raises(TLSError, match="TLS handshake failed"):
            await _connect_tls(server.port)


async def test_server_hangs_up_during_handshake_is_tls_error() -> None:
    async with scripted_server([Close()]) as server:
        with pytest.raises(TLSError, match="TLS handshake failed"):
            await _connect_tls(server.port)


async def test_starttls_upgrade_uses_our_layer() -> None:
    _, client_context = tls_contexts()
    records = [b"* CAPABILITY IMAP4rev1 %d\r\n" % i for i in range(50)]
    script: list[Step] = [
        Send(b"* OK ready\r\n"),
        Expect(b"A1 STARTTLS"),
        Send(b"A1 OK begin TLS\r\n"),
        StartTLS(),
        Expect(b"A2 CAPABILITY"),
        *[Send(record) for record in records],
        Expect(b"A3 LOGOUT"),
        Send(b"* BYE\r\n"),
        Close(),
    ]
    async with scripted_server(script) as server:
        stream = await connect(server.host, server.port, tls=False, server_hostname="localhost")
        assert not stream.is_tls
        assert await stream.receive_some() == b"* OK ready\r\n"
        await stream.send_all(b"A1 STARTTLS\r\n")
        assert await stream.receive_some() == b"A1 OK begin TLS\r\n"
        await stream.start_tls(client_context)
        assert stream.is_tls
        await stream.send_all(b"A2 CAPABILITY\r\n")
        expected = b"".join(records)
        data, _ = await _receive_exactly(stream, len(expected))
        assert data == expected
        await stream.send_all(b"A3 LOGOUT\r\n")
        assert await stream.receive_some() == b"* BYE\r\n"
        assert await stream.receive_some() == b""
        with pytest.raises(TLSError, match="already"):
            await stream.start_tls(client_context)
        await stream.aclose()
    assert server.received == [b"A1 STARTTLS", b"A2 CAPABILITY", b"A3 LOGOUT"]


async def test_starttls_with_wrong_host_is_tls_error() -> None:
    _, client_context = tls_contexts()
    script: list[Step] = [Send(b"+OK\r\n"), StartTLS("wrong.example")]
    async with scripted_server(script) as server:
        stream = await connect(server.host, server.port, tls=False, server_hostname="localhost")
        assert await stream.receive_some() == b"+OK\r\n"
        with pytest.raises(TLSError, match="TLS handshake failed"):
            await stream.start_tls(client_context)
        assert not stream.is_tls
        await stream.aclose_forcefully()
