"""Connect, TLS and STARTTLS: the one boundary with anyio, trio, ssl and the OS.

Every foreign exception is translated here into the tree of :mod:`trio_mailoauth.errors`,
with the original as ``__cause__``. Nothing above this module catches ``OSError``,
``ssl.SSLError`` or anyio's stream errors.

Written against anyio, which runs natively on trio (our primary target) and on asyncio.

TLS is our own thin layer (:class:`_TLSLayer`: :class:`ssl.SSLObject` over two
:class:`ssl.MemoryBIO`) rather than anyio's ``TLSStream``, whose ``receive()`` returns at most
one TLS record (``SSLObject.read`` stops at a record boundary): servers write 4 KiB records
(Dovecot), so a large FETCH cost one trip through our read loop per 4 KiB. Ours reads a
raw chunk and decrypts every complete record in it at once.

On trio, the socket itself is read and written directly (:class:`_Wire`): a read that finds
data costs one ``recv()``, where trio's socket object and anyio's stream on top of it add a
scheduler pass and half a dozen Python calls to every call, which is most of what a mail
client does per round trip and per 64 KiB of a large FETCH.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Literal

import anyio
import anyio.abc
import sniffio
import trio

from trio_mailoauth.errors import (
    ConnectError,
    ConnectionBrokenError,
    ConnectionClosedError,
    TLSError,
)

__all__ = ["Stream", "TLSMode", "connect", "create_ssl_context", "is_loopback"]

TLSMode = Literal["implicit", "starttls", "none"]

# One receive_some() returns what has arrived, up to this: in plaintext what the kernel
# has; over TLS every record already received and decrypted. Big enough that a large FETCH
# or RETR costs few calls; small enough not to matter per connection when thousands of
# connections are open (nothing is kept between calls), and the bound on one chunk that
# streaming consumers (RETR to a file, FETCH bodies) see.
RECEIVE_SIZE = 65536
# Over TLS, one raw read takes up to this much ciphertext...
TLS_RAW_RECEIVE_SIZE = RECEIVE_SIZE
# ...and one receive_some() returns up to this much plaintext (what does not fit waits,
# encrypted, in the incoming BIO for the next call).
TLS_RECEIVE_CAP = RECEIVE_SIZE
# SSLObject.read() returns at most one record (at most 16 KiB of plaintext).
_TLS_RECORD_READ = 16384
# A graceful close sends a TLS close_notify, but never waits long for a stuck peer.
CLOSE_NOTIFY_SECONDS = 1.0
# On trio, a read that follows a read (not a send) tries the socket before waiting; after
# this many reads in a row that found data, one yields to the scheduler all the same, so
# that a fast stream never starves the other tasks (16 x 64 KiB: 1 MiB between yields).
_READS_BETWEEN_YIELDS = 16


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
    except (anyio.ClosedResourceError, trio.ClosedResourceError) as exc:
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


def _is_unexpected_eof(exc: ssl.SSLError) -> bool:
    """The peer closed the TCP connection without a TLS close_notify."""
    return isinstance(exc, ssl.SSLEOFError) or "UNEXPECTED_EOF_WHILE_READING" in str(exc)


def _sni_hostname(hostname: str) -> str:
    """The host name for SNI and verification: IDNA 2008 (as anyio), not Python's IDNA 2003."""
    try:
        hostname.encode("ascii")
    except UnicodeEncodeError:
        import idna  # anyio's dependency

        return idna.encode(hostname, uts46=True).decode("ascii")
    return hostname


def _trio_socket(stream: anyio.abc.ByteStream) -> socket.socket | None:
    """The socket under ``stream`` when we run on trio (else None: asyncio's transports
    own their socket's reading, and we leave it to them)."""
    try:
        if sniffio.current_async_library() != "trio":
            return None
    except sniffio.AsyncLibraryNotFoundError:
        return None
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    return sock if isinstance(sock, socket.socket) else None


class _Wire:
    """The connection's socket as bytes in and out: ``b""`` at EOF, anyio's or trio's
    exceptions otherwise (``_translate`` turns them into ours).

    On trio it reads and writes the (non-blocking) socket itself, waiting with
    ``trio.lowlevel.wait_readable``/``wait_writable``: every call is still a cancellation
    point, and closing the anyio stream wakes a waiting task with ``ClosedResourceError``.
    One task reads and one writes at a time (the clients' locks see to it; trio raises
    ``BusyResourceError`` otherwise). Elsewhere it is the anyio stream.
    """

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self._socket = _trio_socket(stream)
        self._sent = False  # since the last read
        self._unyielded = 0  # reads in a row that found data without waiting

    async def receive(self, max_bytes: int) -> bytes:
        sock = self._socket
        if sock is None:
            try:
                return await self.stream.receive(max_bytes)
            except anyio.EndOfStream:
                return b""
        if sock.fileno() < 0:
            raise anyio.ClosedResourceError
        if self._sent:
            # We asked something: the answer is not here yet, and a recv() that fails
            # costs an exception. Wait first.
            self._sent = False
            self._unyielded = 0
            await trio.lowlevel.wait_readable(sock)
        else:
            # A stream of data (a FETCH, a RETR): what follows is mostly queued already.
            await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                data = sock.recv(max_bytes)
            except BlockingIOError:
                self._unyielded = 0
                await trio.lowlevel.wait_readable(sock)
                continue
            self._unyielded += 1
            if self._unyielded > _READS_BETWEEN_YIELDS:
                self._unyielded = 0
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data

    async def send(self, data: bytes) -> None:
        sock = self._socket
        if sock is None:
            await self.stream.send(data)
            return
        if sock.fileno() < 0:
            raise anyio.ClosedResourceError
        # What the kernel takes at once goes without a scheduler pass (the answer we wait
        # for next is the yield); a cancelled caller still stops here, before a byte.
        await trio.lowlevel.checkpoint_if_cancelled()
        self._sent = True
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                continue
            view = view[sent:]

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def aclose_forcefully(self) -> None:
        await anyio.aclose_forcefully(self.stream)


class _TLSLayer:
    """TLS (client side) over the wire, with its exceptions.

    ``receive()`` returns everything already decrypted, many records at once, and awaits
    the socket only when nothing is. Mail servers often close without a TLS close_notify;
    that is no attack here because every protocol frames its own data, so an unexpected
    EOF is a plain EOF (``b""``), like anyio's ``standard_compatible=False``. Only
    ``send()``, the handshake and ``aclose()`` write to the socket: what a read makes
    OpenSSL want to send (a TLS 1.3 KeyUpdate answer) waits in the outgoing BIO for the
    next write, which RFC 8446 allows, so a reading task never races a writing one.
    """

    def __init__(
        self,
        wire: _Wire,
        ssl_object: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> None:
        self._wire = wire
        self._ssl_object = ssl_object
        self._incoming = incoming
        self._outgoing = outgoing
        self._eof = False  # the peer closed (close_notify or TCP EOF): reads return b""
        self._broken = False  # a record lost on the way out, or a bad one on the way in
        self._closed = False
        self._error: ssl.SSLError | None = None  # raised by the next receive()

    @classmethod
    async def wrap(
        cls, wire: _Wire, ssl_context: ssl.SSLContext, server_hostname: str
    ) -> _TLSLayer:
        """Run the handshake; ``ssl.SSLError`` (or anyio's errors) when it fails."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        ssl_object = ssl_context.wrap_bio(
            incoming, outgoing, server_side=False, server_hostname=_sni_hostname(server_hostname)
        )
        layer = cls(wire, ssl_object, incoming, outgoing)
        while True:
            try:
                ssl_object.do_handshake()
            except ssl.SSLWantReadError:
                await layer._flush()
                await layer._feed()
            except ssl.SSLError:
                # Tell the server why (the alert OpenSSL queued), best effort.
                with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await layer._flush()
                raise
            else:
                await layer._flush()  # our Finished
                return layer

    async def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            try:
                await self._wire.send(data)
            except BaseException:
                # SSLObject.write() has used this record's sequence number: once it is
                # lost, the peer cannot decrypt anything sent after it.
                self._broken = True
                raise

    async def _feed(self) -> None:
        """Await one raw chunk and hand it to OpenSSL (or the EOF)."""
        data = await self._wire.receive(TLS_RAW_RECEIVE_SIZE)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    def _check_usable(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._broken:
            raise anyio.BrokenResourceError

    async def send(self, data: bytes) -> None:
        self._check_usable()
        if not data:
            return
        self._ssl_object.write(data)  # never wants to read: no renegotiation in TLS 1.3/1.2
        await self._flush()

    async def receive(self) -> bytes:
        """Everything decrypted so far (at most TLS_RECEIVE_CAP bytes); ``b""`` at EOF."""
        self._check_usable()
        if self._error is not None:
            self._broken = True
            raise self._error
        ssl_object, incoming = self._ssl_object, self._incoming
        read = ssl_object.read
        while True:
            chunks: list[bytes] = []
            size = 0
            try:
                # Only while OpenSSL has something to read: a reply we wait for arrives in
                # one record, and a read() that finds nothing costs an exception.
                while size < TLS_RECEIVE_CAP and (
                    incoming.pending or incoming.eof or ssl_object.pending()
                ):
                    chunk = read(min(_TLS_RECORD_READ, TLS_RECEIVE_CAP - size))
                    if not chunk:  # close_notify
                        self._eof = True
                        break
                    chunks.append(chunk)
                    size += len(chunk)
            except ssl.SSLWantReadError:
                # No complete record left (or only TLS 1.3 session tickets were).
                pass
            except ssl.SSLError as exc:
                if _is_unexpected_eof(exc):
                    self._eof = True
                elif chunks:
                    self._error = exc  # the data decrypted before it first
                else:
                    self._broken = True
                    raise
            if chunks:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if self._eof:
                return b""
            await self._feed()

    async def aclose(self) -> None:
        """Send a close_notify (best effort, briefly) and close the socket."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self._broken:
                # SSLWantReadError: ours is queued, we do not wait for theirs.
                with suppress(ssl.SSLError):
                    self._ssl_object.unwrap()
                with anyio.move_on_after(CLOSE_NOTIFY_SECONDS):
                    await self._flush()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            await self._wire.aclose()

    async def aclose_forcefully(self) -> None:
        self._closed = True
        await self._wire.aclose_forcefully()


class Stream:
    """A byte stream to a server, plain or TLS, that raises only our exceptions."""

    def __init__(self, stream: anyio.abc.ByteStream, *, server_hostname: str) -> None:
        self._stream = stream  # the socket, always
        self._wire = _Wire(stream)
        self._tls: _TLSLayer | None = None
        self._server_hostname = server_hostname

    def __repr__(self) -> str:
        kind = "TLS" if self.is_tls else "plain"
        return f"<Stream {kind} to {self._server_hostname}>"

    @property
    def is_tls(self) -> bool:
        return self._tls is not None

    @property
    def local_address(self) -> str | None:
        """The IP address of our end of the connection, when known (SMTP's EHLO literal)."""
        address = self._stream.extra(anyio.abc.SocketAttribute.local_address, None)
        if isinstance(address, tuple) and address and isinstance(address[0], str):
            return address[0]
        return None

    async def send_all(self, data: bytes) -> None:
        with _translate("io"):
            if self._tls is not None:
                await self._tls.send(data)
            else:
                await self._wire.send(data)

    async def receive_some(self) -> bytes:
        """Whatever has arrived (at most RECEIVE_SIZE bytes); ``b""`` when the peer closed.

        Over TLS, every record already received, not one record per call.
        """
        with _translate("io"):
            if self._tls is not None:
                return await self._tls.receive()
            return await self._wire.receive(RECEIVE_SIZE)

    async def start_tls(self, ssl_context: ssl.SSLContext) -> None:
        """Upgrade to TLS (STARTTLS/STLS), verifying the certificate against the host name."""
        if self.is_tls:
            raise TLSError("the connection already uses TLS")
        with _translate("handshake"):
            self._tls = await _TLSLayer.wrap(self._wire, ssl_context, self._server_hostname)

    async def aclose(self) -> None:
        """Close gracefully where possible (TLS close_notify), forcefully otherwise."""
        try:
            with _translate("io"):
                if self._tls is not None:
                    await self._tls.aclose()
                else:
                    await self._wire.aclose()
        except (ConnectionBrokenError, ConnectionClosedError):
            pass

    async def aclose_forcefully(self) -> None:
        """Close at once, without a TLS goodbye."""
        try:
            with _translate("io"):
                if self._tls is not None:
                    await self._tls.aclose_forcefully()
                else:
                    await self._wire.aclose_forcefully()
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
