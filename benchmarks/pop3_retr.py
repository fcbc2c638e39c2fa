"""POP3 retrieval benchmark: RETR every message of a 10,000 x 10 KB maildrop from Dovecot.

    .venv/bin/python benchmarks/pop3_retr.py            # 10,000 messages, 5 rounds
    .venv/bin/python benchmarks/pop3_retr.py --quick    # 200 messages, 1 round (smoke test)

Clients, each in its own process so that process_time() measures that client alone, over
plaintext and TLS, interleaved round by round (the order rotates each round):

- ``poplib``: the standard library, one RETR at a time (it splits every message into lines).
- ``socket``: a plain-socket reader, one RETR at a time, dot-unstuffing whole buffers.
- ``socket-pipelined``: the same reader keeping a window of RETRs in flight (PIPELINING).
- ``trio_mailoauth``: ``POP3Client.retrieve()`` (pipelined when the server offers it).
- ``trio_mailoauth-retr``: ``POP3Client.retr()`` in a loop, one RETR at a time.

Each run logs in with USER/PASS, then the clock runs over the retrieval only. The table shows
medians: client CPU seconds per 100 MB retrieved and wall MB/s, with ratios against the
pipelined plain-socket reader (CPU) and poplib (MB/s) measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import poplib
import random
import socket
import ssl
import statistics
import subprocess
import sys
import time
from typing import Any

CLIENTS = ("poplib", "socket", "socket-pipelined", "trio_mailoauth", "trio_mailoauth-retr")
MODES = ("plain", "tls")
USER = "bob@example.test"
MESSAGE_SIZE = 10 * 1024
WINDOW = 32  # RETRs in flight for the pipelined plain-socket reader
RECV_SIZE = 256 * 1024


# --- the maildrop -------------------------------------------------------------------------------


def make_message(index: int) -> bytes:
    """~10 KB with LF line endings (as Dovecot stores them); some lines start with '.'."""
    rng = random.Random(index)
    header = (
        f"From: alice@example.test\nTo: {USER}\nSubject: message {index}\n"
        f"Message-ID: <{index}@bench.example.test>\n\n"
    ).encode()
    lines = [header]
    size = len(header)
    while size < MESSAGE_SIZE:
        line = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz .") for _ in range(72))
        if rng.random() < 0.05:
            line = "." + line[1:]  # stuffed on the wire
        encoded = line.encode() + b"\n"
        lines.append(encoded)
        size += len(encoded)
    return b"".join(lines)


# --- the clients (each runs in a child process) -------------------------------------------------


def _connect(host: str, port: int, tls: bool, cafile: str) -> socket.socket:
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        context = ssl.create_default_context(cafile=cafile)
        return context.wrap_socket(sock, server_hostname=host)
    return sock


class SocketReader:
    """The baseline: a plain-socket POP3 reader doing the least work possible."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            self.receive()
        line = bytes(self.buf[: end + 2])
        del self.buf[: end + 2]
        return line

    def receive(self) -> None:
        data = self.sock.recv(RECV_SIZE)
        if not data:
            raise ConnectionError("server closed")
        self.buf += data

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line)
        reply = self.line()
        if not reply.startswith(b"+OK"):
            raise RuntimeError(reply.decode())
        return reply

    def message(self) -> bytes:
        status_end = self.buf.find(b"\r\n")
        while status_end < 0:
            self.receive()
            status_end = self.buf.find(b"\r\n")
        if not self.buf.startswith(b"+OK"):
            raise RuntimeError(bytes(self.buf[:status_end]).decode())
        start = status_end  # the status line's CRLF starts the first line
        while (end := self.buf.find(b"\r\n.\r\n", start)) < 0:
            start = max(len(self.buf) - 4, status_end)
            self.receive()
        body = bytes(self.buf[status_end : end + 2]).replace(b"\r\n.", b"\r\n")[2:]
        del self.buf[: end + 5]
        return body


def run_socket(args: argparse.Namespace, pipelined: bool) -> tuple[int, float, float]:
    reader = SocketReader(_connect(args.host, args.port, args.tls, args.cafile))
    reader.line()
    reader.command(f"USER {USER}\r\n".encode())
    reader.command(f"PASS {args.password}\r\n".encode())
    total = 0
    cpu, wall = time.process_time(), time.perf_counter()
    if pipelined:
        sent = 0
        for received in range(args.count):
            if sent - received < WINDOW // 2 and sent < args.count:
                batch = range(sent + 1, min(sent + WINDOW, args.count) + 1)
                reader.sock.sendall(b"".join(b"RETR %d\r\n" % n for n in batch))
                sent = batch[-1]
            total += len(reader.message())
    else:
        for number in range(1, args.count + 1):
            reader.sock.sendall(b"RETR %d\r\n" % number)
            total += len(reader.message())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    reader.command(b"QUIT\r\n")
    return total, cpu, wall


def run_poplib(args: argparse.Namespace) -> tuple[int, float, float]:
    if args.tls:
        context = ssl.create_default_context(cafile=args.cafile)
        pop: poplib.POP3 = poplib.POP3_SSL(args.host, args.port, context=context)
    else:
        pop = poplib.POP3(args.host, args.port)
    pop.user(USER)
    pop.pass_(args.password)
    total = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for number in range(1, args.count + 1):
        _, lines, _ = pop.retr(number)
        total += sum(len(line) + 2 for line in lines)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pop.quit()
    return total, cpu, wall


def run_library(args: argparse.Namespace, pipelined: bool) -> tuple[int, float, float]:
    import trio

    from trio_mailoauth.pop3 import open_pop3
    from trio_mailoauth.transport import create_ssl_context

    async def main() -> tuple[int, float, float]:
        async with open_pop3(
            args.host,
            args.port,
            tls="implicit" if args.tls else "none",
            ssl_context=create_ssl_context(args.cafile),
            allow_insecure=True,
        ) as pop:
            await pop.user_pass(USER, args.password)
            total = 0
            cpu, wall = time.process_time(), time.perf_counter()
            if pipelined:
                async with pop.retrieve(range(1, args.count + 1)) as messages:
                    async for _, data in messages:
                        total += len(data)
            else:
                for number in range(1, args.count + 1):
                    total += len(await pop.retr(number))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            await pop.quit()
            return total, cpu, wall

    return trio.run(main)


def child(args: argparse.Namespace) -> None:
    if args.client == "poplib":
        result = run_poplib(args)
    elif args.client.startswith("socket"):
        result = run_socket(args, pipelined=args.client == "socket-pipelined")
    else:
        result = run_library(args, pipelined=args.client == "trio_mailoauth")
    total, cpu, wall = result
    print(json.dumps({"bytes": total, "cpu": cpu, "wall": wall}))


# --- the parent: servers, rounds, table ---------------------------------------------------------


def measure(client: str, mode: str, servers: Any, count: int) -> dict[str, float]:
    port = servers.ports.pop3s if mode == "tls" else servers.ports.pop3
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        client,
        "--host",
        servers.host,
        "--port",
        str(port),
        "--cafile",
        str(servers.ca_path),
        "--password",
        servers.users[USER],
        "--count",
        str(count),
        *(["--tls"] if mode == "tls" else []),
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def table(results: dict[tuple[str, str], list[dict[str, float]]], rounds: int) -> str:
    rows = [
        f"| client ({rounds} rounds, medians) | mode | CPU s / 100 MB | MB/s "
        "| CPU vs socket-pipelined | MB/s vs poplib |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        med: dict[str, tuple[float, float]] = {}
        for client in CLIENTS:
            runs = results[(client, mode)]
            cpu = statistics.median(r["cpu"] / r["bytes"] * 100e6 for r in runs)
            speed = statistics.median(r["bytes"] / r["wall"] / 1e6 for r in runs)
            med[client] = (cpu, speed)
        base_cpu, poplib_speed = med["socket-pipelined"][0], med["poplib"][1]
        for client in CLIENTS:
            cpu, speed = med[client]
            rows.append(
                f"| {client} | {mode} | {cpu:.2f} | {speed:.0f} "
                f"| {cpu / base_cpu:.2f}x | {speed / poplib_speed:.2f}x |"
            )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 messages, 1 round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--child", choices=CLIENTS, dest="client")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--cafile")
    parser.add_argument("--password")
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args()
    if args.client:
        child(args)
        return

    from trio_mailoauth.testing import run_mail_servers

    count = args.count or (200 if args.quick else 10_000)
    rounds = args.rounds or (1 if args.quick else 5)
    with run_mail_servers() as servers:
        for index in range(count):
            servers.deliver(USER, make_message(index))
        print(f"{count} messages of ~{MESSAGE_SIZE // 1024} KB for {USER}", file=sys.stderr)
        results: dict[tuple[str, str], list[dict[str, float]]] = {
            (client, mode): [] for client in CLIENTS for mode in MODES
        }
        runs = [(client, mode) for mode in MODES for client in CLIENTS]
        for round_ in range(rounds):
            shift = round_ % len(runs)
            for client, mode in runs[shift:] + runs[:shift]:
                result = measure(client, mode, servers, count)
                results[(client, mode)].append(result)
                print(
                    f"round {round_ + 1}: {client:20} {mode:5} "
                    f"{result['bytes'] / result['wall'] / 1e6:7.1f} MB/s "
                    f"cpu {result['cpu']:.3f} s",
                    file=sys.stderr,
                )
        print(table(results, rounds))


if __name__ == "__main__":
    main()
