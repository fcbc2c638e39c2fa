"""Sending ~10 KB messages through the local Dovecot submission and Postfix: this library
against smtplib, aiosmtplib and a plain-socket client that pipelines MAIL and RCPT in one write
and BDAT with the message in a second (the floor on client cost), on one connection and over 20
concurrent connections.

    .venv/bin/python benchmarks/smtp_send.py                  # 2,000 messages, 5 rounds, both
    .venv/bin/python benchmarks/smtp_send.py --quick          # a smoke run
    .venv/bin/python benchmarks/smtp_send.py --server postfix --rounds 3 --messages 400

One more peer, "bare trio", is the plain-socket client's work done under trio (non-blocking
socket, ``trio.lowlevel.wait_readable``): no library at all, so it is the floor for any trio
client, and the gap between it and the plain-socket client is trio's own cost per wake-up.

Each client run is a separate process that measures its own CPU time (``time.process_time``)
from after connecting to the last reply: the numbers are the client's alone. Peers are
interleaved in every round (the order rotates); the table shows medians and ratios against
the peers of the same run. After each run the benchmark waits until every message is
delivered and empties the mailbox, so one run's delivery work does not slow the next.

Dovecot 2.3 submission is talked to in plaintext (it trusts 127.0.0.1, so PLAIN works without
TLS); Postfix requires TLS, so every peer uses implicit TLS there. No client pipelines the
next message's MAIL before the previous final reply (Dovecot 2.3 crashes on that).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

SENDER = "alice@example.test"
RECIPIENT = "bob@example.test"
PEERS = ("trio_mailoauth", "smtplib", "aiosmtplib", "plain socket", "bare trio")
CONNECTIONS = (1, 20)
PASSWORD_VAR = "SMTP_BENCH_PASSWORD"  # how a worker process gets the sender's password


def make_message(index: int, size: int = 10_000) -> bytes:
    head = (
        f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: benchmark {index}\r\n"
        f"Message-ID: <bench-{index}-{time.time_ns()}@example.test>\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again. 0123456789\r\n"
    return head + line * ((size - len(head)) // len(line))


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# --- the clients (each runs in its own process) --------------------------------------------------


def run_trio_mailoauth(args: argparse.Namespace, messages: list[bytes]) -> tuple[float, float]:
    import trio

    from trio_mailoauth.sasl import Plain
    from trio_mailoauth.smtp import SMTPClient, open_smtp

    async def main() -> tuple[float, float]:
        clients: list[SMTPClient] = []
        for _ in range(args.connections):
            clients.append(
                await open_smtp(
                    "127.0.0.1",
                    args.port,
                    tls=args.tls,
                    ssl_context=_context(args),
                    allow_insecure=True,
                    auth=Plain(SENDER, args.password),
                )
            )

        async def worker(client: SMTPClient, share: list[bytes]) -> None:
            for data in share:
                await client.sendmail(SENDER, [RECIPIENT], data)

        shares = _shares(messages, args.connections)
        start, cpu = time.perf_counter(), time.process_time()
        async with trio.open_nursery() as nursery:
            for client, share in zip(clients, shares, strict=True):
                nursery.start_soon(worker, client, share)
        elapsed, used = time.perf_counter() - start, time.process_time() - cpu
        for client in clients:
            await client.aclose()
        return elapsed, used

    return trio.run(main)


def run_smtplib(args: argparse.Namespace, messages: list[bytes]) -> tuple[float, float]:
    clients: list[smtplib.SMTP] = []
    for _ in range(args.connections):
        if args.tls == "implicit":
            client: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", args.port, context=_context(args))
        else:
            client = smtplib.SMTP("127.0.0.1", args.port)
        client.login(SENDER, args.password)
        clients.append(client)

    def worker(client: smtplib.SMTP, share: list[bytes]) -> None:
        for data in share:
            client.sendmail(SENDER, [RECIPIENT], data)

    shares = _shares(messages, args.connections)
    start, cpu = time.perf_counter(), time.process_time()
    if args.connections == 1:
        worker(clients[0], shares[0])
    else:  # a blocking client: one thread per connection
        threads = [
            threading.Thread(target=worker, args=(c, s))
            for c, s in zip(clients, shares, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    for client in clients:
        client.quit()
    return elapsed, used


def run_aiosmtplib(args: argparse.Namespace, messages: list[bytes]) -> tuple[float, float]:
    import aiosmtplib

    async def main() -> tuple[float, float]:
        clients = []
        for _ in range(args.connections):
            client = aiosmtplib.SMTP(
                hostname="127.0.0.1",
                port=args.port,
                use_tls=args.tls == "implicit",
                start_tls=False,
                tls_context=_context(args),
            )
            await client.connect()
            await client.login(SENDER, args.password)
            clients.append(client)

        async def worker(client: Any, share: list[bytes]) -> None:
            for data in share:
                await client.sendmail(SENDER, [RECIPIENT], data)

        shares = _shares(messages, args.connections)
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(c, s) for c, s in zip(clients, shares, strict=True)))
        elapsed, used = time.perf_counter() - start, time.process_time() - cpu
        for client in clients:
            await client.quit()
        return elapsed, used

    return asyncio.run(main())


# MAIL and RCPT in one write; once both are answered, BDAT and the message in a second (what
# trio_mailoauth does: with everything in one write, Postfix holds its final reply for our
# delayed ACK, 40 ms a message; see docs/smtp.md).
ENVELOPE = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\n".encode()


def _chunk_bytes(data: bytes) -> bytes:
    return b"BDAT %d LAST\r\n" % len(data) + data


class _PlainConnection:
    """One connection of the plain-socket client: the least work a client can do."""

    def __init__(self, args: argparse.Namespace, share: list[bytes]) -> None:
        raw = socket.create_connection(("127.0.0.1", args.port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = raw
        if args.tls == "implicit":
            self.sock = _context(args).wrap_socket(raw, server_hostname="localhost")
        self.buffer = b""
        self._expect(1)  # greeting
        self.sock.sendall(b"EHLO [127.0.0.1]\r\n")
        self._expect(1)
        import base64

        plain = base64.b64encode(f"\0{SENDER}\0{args.password}".encode())
        self.sock.sendall(b"AUTH PLAIN " + plain + b"\r\n")
        self._expect(1)
        self.share = share
        self.waiting = 0  # replies owed for the message in flight
        self.chunk: bytes | None = None  # BDAT and the message, once MAIL/RCPT are answered

    def _expect(self, replies: int) -> None:
        while self._count_replies() < replies:
            self.buffer += self.sock.recv(65536)
        self.buffer = b""

    def _count_replies(self) -> int:
        return sum(1 for line in self.buffer.split(b"\r\n") if line[3:4] == b" ")

    def send_next(self) -> bool:
        """Start the next message: MAIL and RCPT."""
        if not self.share:
            return False
        self.chunk = _chunk_bytes(self.share.pop())
        self.sock.sendall(ENVELOPE)
        self.waiting = 2
        return True

    def read_replies(self) -> bool:
        """Read; True when the replies owed are all in (all must be 250)."""
        self.buffer += self.sock.recv(65536)
        if not self.buffer.endswith(b"\r\n") or self._count_replies() < self.waiting:
            return False
        if self.buffer.count(b"250 ") != self.waiting:
            raise RuntimeError(f"refused: {self.buffer!r}")
        self.buffer = b""
        return True

    def on_readable(self) -> bool:
        """Read; send the chunk once MAIL and RCPT are answered; True when the message is
        done."""
        if not self.read_replies():
            return False
        if self.chunk is None:
            return True
        chunk, self.chunk = self.chunk, None
        self.sock.sendall(chunk)
        self.waiting = 1
        return False


def run_plain_socket(args: argparse.Namespace, messages: list[bytes]) -> tuple[float, float]:
    shares = _shares(messages, args.connections)
    connections = [_PlainConnection(args, share) for share in shares]
    selector = selectors.DefaultSelector()
    start, cpu = time.perf_counter(), time.process_time()
    for connection in connections:
        connection.sock.setblocking(False)
        selector.register(connection.sock, selectors.EVENT_READ, connection)
        connection.sock.setblocking(True)
        connection.send_next()
    active = len(connections)
    while active:
        for key, _ in selector.select():
            connection = key.data
            try:
                done = connection.on_readable()
            except ssl.SSLWantReadError:
                continue
            if done and not connection.send_next():
                selector.unregister(connection.sock)
                active -= 1
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    for connection in connections:
        connection.sock.sendall(b"QUIT\r\n")
        connection.sock.close()
    return elapsed, used


def run_bare_trio(args: argparse.Namespace, messages: list[bytes]) -> tuple[float, float]:
    """The plain-socket client's work under trio: the least a trio client can do."""
    import trio

    shares = _shares(messages, args.connections)
    connections = [_PlainConnection(args, share) for share in shares]

    async def readable(sock: socket.socket) -> None:
        # An SSL socket may hold decrypted bytes the kernel no longer shows as readable.
        if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            await trio.lowlevel.wait_readable(sock)

    async def send(sock: socket.socket, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[sock.send(view) :]
            except (BlockingIOError, ssl.SSLWantWriteError):
                await trio.lowlevel.wait_writable(sock)

    async def replies(connection: _PlainConnection, count: int) -> None:
        connection.waiting = count
        while True:
            await readable(connection.sock)
            try:
                if connection.read_replies():
                    return
            except (BlockingIOError, ssl.SSLWantReadError):
                continue

    async def worker(connection: _PlainConnection) -> None:
        connection.sock.setblocking(False)
        while connection.share:
            data = connection.share.pop()
            await send(connection.sock, ENVELOPE)
            await replies(connection, 2)
            await send(connection.sock, _chunk_bytes(data))
            await replies(connection, 1)

    async def main() -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        async with trio.open_nursery() as nursery:
            for connection in connections:
                nursery.start_soon(worker, connection)
        return time.perf_counter() - start, time.process_time() - cpu

    elapsed, used = trio.run(main)
    for connection in connections:
        connection.sock.setblocking(True)
        connection.sock.sendall(b"QUIT\r\n")
        connection.sock.close()
    return elapsed, used


RUNNERS = {
    "trio_mailoauth": run_trio_mailoauth,
    "smtplib": run_smtplib,
    "aiosmtplib": run_aiosmtplib,
    "plain socket": run_plain_socket,
    "bare trio": run_bare_trio,
}


def _context(args: argparse.Namespace) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=args.ca)
    return context


def _shares(messages: list[bytes], parts: int) -> list[list[bytes]]:
    sizes = _split(len(messages), parts)
    out, start = [], 0
    for size in sizes:
        out.append(messages[start : start + size])
        start += size
    return out


def worker_main(args: argparse.Namespace) -> None:
    messages = [make_message(i) for i in range(args.messages)]
    elapsed, cpu = RUNNERS[args.worker](args, messages)
    print(json.dumps({"elapsed": elapsed, "cpu": cpu}))


# --- the driver ---------------------------------------------------------------------------


def _mailbox_count(maildir: Path) -> int:
    return sum(len(list((maildir / sub).iterdir())) for sub in ("new", "cur"))


def _empty_mailbox(maildir: Path) -> None:
    for sub in ("new", "cur"):
        for path in (maildir / sub).iterdir():
            path.unlink()


def run_one(
    servers: Any, server: str, peer: str, connections: int, args: argparse.Namespace
) -> dict[str, float]:
    maildir = servers.maildir(RECIPIENT)
    port = servers.ports.submission if server == "dovecot" else servers.ports.postfix_submissions
    tls = "none" if server == "dovecot" else "implicit"
    command = [
        sys.executable,
        __file__,
        "--worker",
        peer,
        "--connections",
        str(connections),
        "--messages",
        str(args.messages),
        "--port",
        str(port),
        "--tls",
        tls,
        "--ca",
        str(servers.ca_path),
    ]
    # The password goes in the environment: every user of the machine can read command lines.
    env = {**os.environ, PASSWORD_VAR: servers.users[SENDER]}
    out = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{peer} failed:\n{out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    deadline = time.monotonic() + 300
    while _mailbox_count(maildir) < args.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    _empty_mailbox(maildir)
    return result


Results = dict[tuple[str, int], list[dict[str, float]]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few messages")
    parser.add_argument("--messages", type=int, default=None, help="per run (default 2,000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--server", choices=["dovecot", "postfix", "both"], default="both")
    parser.add_argument(
        "--peers", default=",".join(PEERS), help=f"comma-separated subset of {', '.join(PEERS)}"
    )
    # Worker-process arguments (internal).
    parser.add_argument("--worker", choices=list(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tls", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.password = os.environ[PASSWORD_VAR]
        worker_main(args)
        return
    if args.messages is None:
        args.messages = 60 if args.quick else 2000
    rounds = 1 if args.quick else max(args.rounds, 1)
    peers = [p for p in PEERS if p in args.peers.split(",")]
    servers_wanted = ["dovecot", "postfix"] if args.server == "both" else [args.server]

    from trio_mailoauth.testing import run_mail_servers

    with run_mail_servers() as servers:
        for server in servers_wanted:
            results: Results = {}
            order = [(p, c) for c in CONNECTIONS for p in peers]
            for round_number in range(rounds):
                shift = round_number % len(order)  # each round starts with another peer
                for peer, connections in order[shift:] + order[:shift]:
                    result = run_one(servers, server, peer, connections, args)
                    results.setdefault((peer, connections), []).append(result)
                print(f"{server}: round {round_number + 1}/{rounds} done", file=sys.stderr)
            print_table(results, server, peers, args.messages, rounds)


def print_table(
    results: Results, server: str, peers: list[str], messages: int, rounds: int
) -> None:
    print(
        f"\n{messages} messages of ~10 KB per run to {server} "
        f"({'plaintext' if server == 'dovecot' else 'implicit TLS'}), "
        f"{rounds} interleaved round{'s' if rounds > 1 else ''}, medians\n"
    )
    rate: dict[tuple[str, int], float] = {}
    cpu: dict[tuple[str, int], float] = {}
    for key, runs in results.items():
        rate[key] = statistics.median(messages / r["elapsed"] for r in runs)
        cpu[key] = statistics.median(r["cpu"] / messages * 1e6 for r in runs)
    print("| client | connections | messages/s | client CPU µs/message |")
    print("|---|---:|---:|---:|")
    for connections in CONNECTIONS:
        for peer in peers:
            key = (peer, connections)
            print(f"| {peer} | {connections} | {rate[key]:.0f} | {cpu[key]:.0f} |")
    if "trio_mailoauth" not in peers:
        return
    print("\nRatios (trio_mailoauth against each peer, same connections):\n")
    print("| peer | connections | msg/s ours ÷ theirs | CPU/msg ours ÷ theirs |")
    print("|---|---:|---:|---:|")
    for connections in CONNECTIONS:
        ours = ("trio_mailoauth", connections)
        for peer in peers:
            if peer == "trio_mailoauth":
                continue
            key = (peer, connections)
            print(
                f"| {peer} | {connections} | {rate[ours] / rate[key]:.2f} | "
                f"{cpu[ours] / cpu[key]:.2f} |"
            )


if __name__ == "__main__":
    main()
