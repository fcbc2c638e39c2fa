"""A scripted server for the async clients' fault tests: a real TCP listener on 127.0.0.1
that plays a fixed script (send these bytes, expect that line, upgrade to TLS, stall, close)
and records every line the client sent. At the end of the script it closes the
connection (script a goodbye explicitly to test one).

    script = [Send(b"* OK hi\\r\\n"), Expect(b"A1 CAPABILITY"), Send(b"..."), Close()]
    async with scripted_server(script) as server:
        client = await open_imap(server.host, server.port, tls="none", allow_insecure=True)
    assert server.received == [...]

Runs on whatever backend the test runs (anyio), never touches a real network.
"""

from __future__ import annotations

import functools
import re
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
import trustme
from anyio.streams.tls import TLSStream

__all__ = [
    "Close",
    "Expect",
    "ScriptedServer",
    "Send",
    "Stall",
    "StartTLS",
    "Step",
    "scripted_server",
    "tls_contexts",
]

# Bounds so a broken test can never hang the suite.
STEP_TIMEOUT = 10.0
MAX_LINE = 64 * 1024


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Expect:
    """Read one line (CRLF stripped) and check it equals ``line`` or matches ``pattern``."""

    line: bytes | None = None
    pattern: bytes | None = None


@dataclass(frozen=True)
class StartTLS:
    """Upgrade the connection to TLS (server side), with a certificate for ``hostname``."""

    hostname: str = "localhost"


@dataclass(frozen=True)
class Stall:
    """Wait this long without sending anything."""

    seconds: float


@dataclass(frozen=True)
class Close:
    pass


Step = Send | Expect | StartTLS | Stall | Close


@functools.cache
def _ca() -> trustme.CA:
    return trustme.CA()


def tls_contexts(hostname: str = "localhost") -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context with a cert for ``hostname``, client context trusting the test CA)."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _ca().issue_cert(hostname, "127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    _ca().configure_trust(client)
    return server, client


@dataclass
class ScriptedServer:
    host: str
    port: int
    received: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    finished: bool = False


async def _read_line(stream: anyio.abc.ByteStream, buffer: bytearray) -> bytes | None:
    while b"\r\n" not in buffer:
        if len(buffer) > MAX_LINE:
            raise AssertionError("client line too long")
        try:
            chunk = await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return None
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


async def _play(
    stream: anyio.abc.ByteStream, steps: Sequence[Step], server: ScriptedServer
) -> None:
    buffer = bytearray()
    for step in steps:
        with anyio.fail_after(STEP_TIMEOUT if not isinstance(step, Stall) else step.seconds + 5):
            if isinstance(step, Send):
                await stream.send(step.data)
            elif isinstance(step, Expect):
                line = await _read_line(stream, buffer)
                if line is None:
                    server.errors.append(f"client closed; expected {step.line or step.pattern!r}")
                    return
                server.received.append(line)
                if step.line is not None and line != step.line:
                    server.errors.append(f"expected {step.line!r}, got {line!r}")
                if step.pattern is not None and not re.fullmatch(step.pattern, line):
                    server.errors.append(f"expected /{step.pattern!r}/, got {line!r}")
            elif isinstance(step, StartTLS):
                server_context, _ = tls_contexts(step.hostname)
                stream = await TLSStream.wrap(
                    stream, server_side=True, ssl_context=server_context, standard_compatible=False
                )
            elif isinstance(step, Stall):
                await anyio.sleep(step.seconds)
            elif isinstance(step, Close):
                await stream.aclose()
                server.finished = True
                return
    # End of script: close, so a client's goodbye (LOGOUT/QUIT) fails fast, not after 5 s.
    await stream.aclose()
    server.finished = True


@asynccontextmanager
async def scripted_server(
    steps: Sequence[Step], *, tls_hostname: str | None = None
) -> AsyncIterator[ScriptedServer]:
    """Serve ``steps`` to the first client; with ``tls_hostname``, implicit TLS from the start.

    On exit, fails the test if the client did not send what the script expected.
    """
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    listener = multi.listeners[0]
    assert isinstance(listener, anyio.abc.SocketListener)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server = ScriptedServer("127.0.0.1", port)

    async def serve_one() -> None:
        stream: anyio.abc.ByteStream = await listener.accept()
        try:
            if tls_hostname is not None:
                server_context, _ = tls_contexts(tls_hostname)
                try:
                    stream = await TLSStream.wrap(
                        stream,
                        server_side=True,
                        ssl_context=server_context,
                        standard_compatible=False,
                    )
                except (anyio.BrokenResourceError, ssl.SSLError, anyio.EndOfStream):
                    server.errors.append("TLS handshake failed")
                    return
            await _play(stream, steps, server)
        except (
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            anyio.EndOfStream,  # the client hung up during a StartTLS handshake
            ssl.SSLError,
        ):
            server.finished = True
        finally:
            await anyio.aclose_forcefully(stream)

    async with multi, anyio.create_task_group() as tg:
        tg.start_soon(serve_one)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()
    if server.errors:
        raise AssertionError("scripted server: " + "; ".join(server.errors))
