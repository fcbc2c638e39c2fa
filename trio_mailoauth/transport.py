"""Connect, TLS and STARTTLS: the one boundary with anyio, trio, ssl and the OS.

Every foreign exception is translated here into the tree of :mod:`trio_mailoauth.errors`,
with the original as ``__cause__``. Nothing above this module catches ``OSError``,
``ssl.SSLError`` or anyio's stream errors.

Written against anyio, which runs natively on trio (our primary target) and on asyncio.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

from trio_mailoauth.errors import (
    ConnectError,
    ConnectionBrokenError,
    ConnectionClosedError,
    TLSError,
)

__all__ = ["Stream", "TLSMode", "connect", "create_ssl_context", "is_loopback"]

TLSMode = Literal["implicit", "starttls", "none"]

# One read takes what the kernel (or the TLS layer) has, up to this. Big enough that a large
# FETCH or RETR costs few calls; small enough not to matter per connection when thousands
# of connections are open.
RECEIVE_SIZE = 65536


def create_ssl_context(cafile: str | None = None) -> ssl.SSLContext:
    """A client context that verifies certificates and host names (TLS 1.2 or newer)."""
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@contextmanager
def _translate(during: Literal["connect", "handshake", "io"]) -> Iterator[None]:
    """Turn foreign exceptions into ours; ``during`` picks the class for a plain OSError."""
    try:
        yield
    except (ssl.SSLError, ssl.CertificateError) as exc:
        if during == "io":
            raise ConnectionBrokenError(f"TLS error: {exc}") from exc
        raise TLSError(f"TLS handshake failed: {exc}") from exc
    except anyio.ClosedResourceError as exc:
        raise ConnectionClosedError("the connection was closed") from exc
    except (anyio.BrokenResourceError, anyio.EndOfStream) as exc:
        cause = exc.__cause__
        if during == "handshake":
            raise TLSError(f"TLS handshake failed: {cause or 'connection closed'}") from exc
        raise ConnectionBrokenError(f"connection broken: {cause or 'closed'}") from exc
    except OSError as exc:
        if during == "connect":
            raise ConnectError(f"could not connect: {exc}") from exc
        raise ConnectionBrokenError(f"connection broken: {exc}") from exc


class Stream:
    """A byte stream to a server, plain or TLS, that raises only our exceptions."""

    def __init__(self, stream: anyio.abc.ByteStream, *, server_hostname: str) -> None:
        self._stream = stream
        self._server_hostname = server_hostname

    def __repr__(self) -> str:
        kind = "TLS" if self.is_tls else "plain"
        return f"<Stream {kind} to {self._server_hostname}>"

    @property
    def is_tls(self) -> bool:
        return isinstance(self._stream, TLSStream)

    @property
    def local_address(self) -> str | None:
        """The IP address of our end of the connection, when known (SMTP's EHLO literal)."""
        address = self._stream.extra(anyio.abc.SocketAttribute.local_address, None)
        if isinstance(address, tuple) and address and isinstance(address[0], str):
            return address[0]
        return None

    async def send_all(self, data: bytes) -> None:
        with _translate("io"):
            await self._stream.send(data)

    async def receive_some(self) -> bytes:
        """Whatever has arrived (at most RECEIVE_SIZE bytes); ``b""`` when the peer closed."""
        try:
            with _translate("io"):
                return await self._stream.receive(RECEIVE_SIZE)
        except ConnectionBrokenError as exc:
            if isinstance(exc.__cause__, anyio.EndOfStream):
                return b""
            raise

    async def start_tls(self, ssl_context: ssl.SSLContext) -> None:
        """Upgrade to TLS (STARTTLS/STLS), verifying the certificate against the host name."""
        if self.is_tls:
            raise TLSError("the connection already uses TLS")
        with _translate("handshake"):
            self._stream = await TLSStream.wrap(
                self._stream,
                hostname=self._server_hostname,
                ssl_context=ssl_context,
                # Mail servers often close without a TLS close_notify; that is no attack here
                # because every protocol frames its own data.
                standard_compatible=False,
            )

    async def aclose(self) -> None:
        """Close gracefully where possible (TLS close_notify), forcefully otherwise."""
        try:
            with _translate("io"):
                await self._stream.aclose()
        except (ConnectionBrokenError, ConnectionClosedError):
            pass

    async def aclose_forcefully(self) -> None:
        """Close at once, without a TLS goodbye."""
        try:
            with _translate("io"):
                await anyio.aclose_forcefully(self._stream)
        except (ConnectionBrokenError, ConnectionClosedError):
            pass


async def connect(
    host: str,
    port: int,
    *,
    tls: bool,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    source_address: str | None = None,
) -> Stream:
    """Open a TCP connection, with implicit TLS when ``tls`` is true.

    The caller bounds the time (a cancel scope); certificates and host names are verified
    unless the given ``ssl_context`` says otherwise.
    """
    hostname = server_hostname or host
    with _translate("connect"):
        raw: anyio.abc.ByteStream = await anyio.connect_tcp(host, port, local_host=source_address)
    stream = Stream(raw, server_hostname=hostname)
    if tls:
        try:
            await stream.start_tls(ssl_context or create_ssl_context())
        except BaseException:
            await stream.aclose_forcefully()
            raise
    return stream
