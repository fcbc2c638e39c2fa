"""The transport boundary: connect, TLS verification, STARTTLS, exception translation."""

from __future__ import annotations

import socket
import ssl

import pytest
import trio

from tests.scripted import Close, Expect, Send, StartTLS, Step, scripted_server, tls_contexts
from trio_mailoauth.errors import ConnectError, ConnectionBrokenError, TLSError
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
