"""IMAP FETCH throughput: this library against imaplib, imapclient, aioimaplib and a plain
socket that reads the same bytes without parsing (the physical limit).

    .venv/bin/python benchmarks/imap_fetch.py            # 10,000 x 10 KB and 200 x 1 MB
    .venv/bin/python benchmarks/imap_fetch.py --quick    # 1,000 x 10 KB and 20 x 1 MB

Starts the local Dovecot (``run_mail_servers``), seeds alice's INBOX with the small messages
and bob's with the big ones (Maildir files), then for each transport (TLS, plaintext over
loopback) and each mode (one streaming FETCH 1:*, batches of 500 UIDs) runs every client in
a fresh process that measures its own CPU (user+sys, getrusage) and wall time around the
FETCH alone. Clients are interleaved, rounds >= 5, medians reported with ratios against
imaplib (the fastest peer), against the plain socket, and against the minimal client (the
same socket plus a literal splitter that slices out each message: the "minimal splitter"
over a real connection). One more client, "bare trio", does the splitter's work under trio
(non-blocking socket, ``trio.lowlevel.wait_readable``, Python's ssl over TLS): no library at
all, the floor for any trio client. Also the parser alone on a captured FETCH response
(MB/s), against imaplib's reader, imapclient's parser and a minimal literal splitter (find
``{n}``, slice).
"""

from __future__ import annotations

import argparse
import imaplib
import io
import json
import re
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCH = 500
CLIENTS = [
    "trio_mailoauth",
    "imaplib",
    "imapclient",
    "aioimaplib",
    "socket",
    "splitter",
    "bare trio",
]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ranges(count: int, mode: str) -> list[str]:
    if mode == "one":
        return ["1:*"]
    return [f"{start}:{min(start + BATCH - 1, count)}" for start in range(1, count + 1, BATCH)]


# --- the clients (each runs in its own process) ------------------------------------------


def run_ours(args: argparse.Namespace) -> tuple[float, float, int]:
    import trio

    from trio_mailoauth.imap import open_imap

    async def main() -> tuple[float, float, int]:
        context = ssl.create_default_context(cafile=args.ca)
        imap = await open_imap(
            "127.0.0.1",
            args.port,
            tls="implicit" if args.tls else "none",
            ssl_context=context,
            allow_insecure=True,
        )
        async with imap:
            await imap.login(args.user, args.password)
            box = await imap.select("INBOX")
            total = 0
            cpu, wall = _cpu(), time.perf_counter()
            for uids in _ranges(box.exists, args.mode):
                async for message in imap.fetch(uids, ["BODY.PEEK[]"], uid=True):
                    total += len(message.body or b"")
            return _cpu() - cpu, time.perf_counter() - wall, total

    return trio.run(main)


def _imaplib(args: argparse.Namespace) -> imaplib.IMAP4:
    if args.tls:
        context = ssl.create_default_context(cafile=args.ca)
        return imaplib.IMAP4_SSL("127.0.0.1", args.port, ssl_context=context)
    return imaplib.IMAP4("127.0.0.1", args.port)


def run_imaplib(args: argparse.Namespace) -> tuple[float, float, int]:
    imap = _imaplib(args)
    imap.login(args.user, args.password)
    _, data = imap.select("INBOX")
    count = int(data[0] or 0)
    total = 0
    cpu, wall = _cpu(), time.perf_counter()
    for uids in _ranges(count, args.mode):
        _, items = imap.uid("FETCH", uids, "(BODY.PEEK[])")
        total += sum(len(item[1]) for item in items if isinstance(item, tuple))
    result = _cpu() - cpu, time.perf_counter() - wall, total
    imap.logout()
    return result


def run_imapclient(args: argparse.Namespace) -> tuple[float, float, int]:
    from imapclient import IMAPClient  # type: ignore[import-untyped]
    from imapclient.response_parser import parse_fetch_response  # type: ignore[import-untyped]

    context = ssl.create_default_context(cafile=args.ca)
    client = IMAPClient("127.0.0.1", args.port, ssl=args.tls, ssl_context=context)
    client.login(args.user, args.password)
    count = client.select_folder("INBOX")[b"EXISTS"]
    total = 0
    cpu, wall = _cpu(), time.perf_counter()
    for uids in _ranges(count, args.mode):
        # What IMAPClient.fetch does (it only takes message lists, not "1:*" ranges):
        # imaplib reads, imapclient's parser parses.
        _, data = client._imap.uid("FETCH", uids, "(BODY.PEEK[])")
        for item in parse_fetch_response(data, True, True).values():
            total += len(item[b"BODY[]"])
    result = _cpu() - cpu, time.perf_counter() - wall, total
    client.logout()
    return result


def run_aioimaplib(args: argparse.Namespace) -> tuple[float, float, int]:
    import asyncio

    from aioimaplib import IMAP4, IMAP4_SSL  # type: ignore[import-untyped]

    async def main() -> tuple[float, float, int]:
        if args.tls:
            context = ssl.create_default_context(cafile=args.ca)
            client: Any = IMAP4_SSL("127.0.0.1", args.port, ssl_context=context, timeout=600)
        else:
            client = IMAP4("127.0.0.1", args.port, timeout=600)
        await client.wait_hello_from_server()
        await client.login(args.user, args.password)
        response = await client.select("INBOX")
        count = next(int(line.split()[0]) for line in response.lines if line.endswith(b"EXISTS"))
        total = 0
        cpu, wall = _cpu(), time.perf_counter()
        for uids in _ranges(count, args.mode):
            response = await client.uid("fetch", uids, "(BODY.PEEK[])")
            total += sum(len(line) for line in response.lines if isinstance(line, bytearray))
        result = _cpu() - cpu, time.perf_counter() - wall, total
        await client.logout()
        return result

    return asyncio.run(main())


def _socket(args: argparse.Namespace) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", args.port))
    if args.tls:
        context = ssl.create_default_context(cafile=args.ca)
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    return sock


def _read_until_tag(sock: socket.socket, tag: bytes, sink: list[bytes] | None) -> int:
    """Read until a line starts with ``tag``; count bytes. No parsing: only the end of each
    read is looked at (good enough for this trusted benchmark server)."""
    total = 0
    tail = b"\r\n"  # the tagged line may be the first line of the reply
    marker = b"\r\n" + tag + b" "
    recv = sock.recv
    while True:
        chunk = recv(262144)
        if not chunk:
            raise ConnectionError("closed")
        total += len(chunk)
        if sink is not None:
            sink.append(chunk)
        if chunk.endswith(b"\r\n"):
            window = tail + chunk[-512:]
            line_start = window.rfind(b"\r\n", 0, len(window) - 2)
            if window.startswith(marker, line_start):
                return total
        tail = (tail + chunk[-512:])[-512:]


def _login_select(args: argparse.Namespace) -> tuple[socket.socket, int]:
    """A connected socket, logged in, INBOX selected; and the number of messages."""
    sock = _socket(args)
    sock.recv(65536)
    sock.sendall(f"a LOGIN {args.user} {args.password}\r\n".encode())
    _read_until_tag(sock, b"a", None)
    sock.sendall(b"b SELECT INBOX\r\n")
    sink: list[bytes] = []
    _read_until_tag(sock, b"b", sink)
    count = int(re.search(rb"\* (\d+) EXISTS", b"".join(sink)).group(1))  # type: ignore[union-attr]
    return sock, count


def run_socket(args: argparse.Namespace) -> tuple[float, float, int]:
    sock, count = _login_select(args)
    total = 0
    capture: list[bytes] | None = [] if args.capture else None
    cpu, wall = _cpu(), time.perf_counter()
    for index, uids in enumerate(_ranges(count, args.mode)):
        tag = f"A{index + 2}".encode()  # A2: the tag parse_ours's core gives its FETCH
        sock.sendall(tag + b" UID FETCH " + uids.encode() + b" (BODY.PEEK[])\r\n")
        total += _read_until_tag(sock, tag, capture)
    result = _cpu() - cpu, time.perf_counter() - wall, total
    if capture is not None:
        Path(args.capture).write_bytes(b"".join(capture))
    sock.close()
    return result


class _Splitter:
    """The minimal client's work: cut out each ``{n}`` literal (the message) and slice it,
    until the tagged line. ``feed`` says when that line came; ``taken`` counts the bytes of
    message bodies."""

    def __init__(self, tag: bytes) -> None:
        self.tag = tag
        self.buffer = bytearray()
        self.pos = 0
        self.taken = 0
        self.waiting_for = 0  # the end of a literal not yet whole: no search before it

    def feed(self, chunk: bytes) -> bool:
        if not chunk:
            raise ConnectionError("closed")
        buffer = self.buffer
        buffer += chunk
        pos = self.pos
        while len(buffer) >= self.waiting_for:
            match = _LITERAL.search(buffer, pos)
            if match is None:
                break
            end = match.end() + int(match.group(1))
            if end > len(buffer):
                self.waiting_for = end
                break
            self.taken += len(bytes(buffer[match.end() : end]))
            pos = end
        self.pos = pos
        line_start = buffer.rfind(b"\r\n", pos, len(buffer) - 2) + 2
        if buffer.endswith(b"\r\n") and buffer.startswith(self.tag + b" ", max(line_start, pos)):
            return True
        if pos > 1 << 20:
            del buffer[:pos]
            self.waiting_for = max(0, self.waiting_for - pos)
            self.pos = 0
        return False


def _split_until_tag(sock: socket.socket, tag: bytes) -> int:
    """The minimal client over a blocking socket. Bytes of message bodies taken."""
    splitter = _Splitter(tag)
    recv = sock.recv
    while not splitter.feed(recv(262144)):
        pass
    return splitter.taken


def run_splitter(args: argparse.Namespace) -> tuple[float, float, int]:
    sock, count = _login_select(args)
    total = 0
    cpu, wall = _cpu(), time.perf_counter()
    for index, uids in enumerate(_ranges(count, args.mode)):
        tag = f"A{index + 2}".encode()
        sock.sendall(tag + b" UID FETCH " + uids.encode() + b" (BODY.PEEK[])\r\n")
        total += _split_until_tag(sock, tag)
    result = _cpu() - cpu, time.perf_counter() - wall, total
    sock.close()
    return result


def run_bare_trio(args: argparse.Namespace) -> tuple[float, float, int]:
    """The minimal client's work under trio: a non-blocking socket (an ``SSLSocket`` over
    TLS, Python's ssl reading the socket itself) and ``trio.lowlevel.wait_readable`` when
    nothing is there. No library: the floor for any trio client."""
    import trio

    sock, count = _login_select(args)
    sock.setblocking(False)
    tls = isinstance(sock, ssl.SSLSocket)

    async def recv() -> bytes:
        while True:
            try:
                return sock.recv(262144)
            except (BlockingIOError, ssl.SSLWantReadError):
                if not (tls and sock.pending()):  # type: ignore[attr-defined]
                    await trio.lowlevel.wait_readable(sock)

    async def main() -> tuple[float, float, int]:
        total = 0
        cpu, wall = _cpu(), time.perf_counter()
        for index, uids in enumerate(_ranges(count, args.mode)):
            tag = f"A{index + 2}".encode()
            sock.send(tag + b" UID FETCH " + uids.encode() + b" (BODY.PEEK[])\r\n")
            splitter = _Splitter(tag)
            while not splitter.feed(await recv()):
                pass
            total += splitter.taken
        return _cpu() - cpu, time.perf_counter() - wall, total

    result = trio.run(main)
    sock.close()
    return result


RUNNERS: dict[str, Callable[[argparse.Namespace], tuple[float, float, int]]] = {
    "trio_mailoauth": run_ours,
    "imaplib": run_imaplib,
    "imapclient": run_imapclient,
    "aioimaplib": run_aioimaplib,
    "socket": run_socket,
    "splitter": run_splitter,
    "bare trio": run_bare_trio,
}


# --- the parser alone ---------------------------------------------------------------------


def parse_ours(data: bytes) -> int:
    from trio_mailoauth._sansio import NEED_DATA
    from trio_mailoauth.imap import IMAPConnection
    from trio_mailoauth.imap.commands import Fetch as FetchCommand
    from trio_mailoauth.imap.commands import Select
    from trio_mailoauth.imap.message import Fetch

    conn = IMAPConnection()
    conn.receive_data(b"* PREAUTH hi\r\n")
    conn.next_event()
    conn.send(Select("INBOX"))
    conn.receive_data(b"A1 OK done\r\n")
    conn.next_event()
    conn.send(FetchCommand("1:*", ("BODY.PEEK[]",), uid=True))
    conn.data_to_send()
    count = 0
    view = memoryview(data)
    for start in range(0, len(data), 65536):
        conn.receive_data(bytes(view[start : start + 65536]))
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, Fetch):
                count += 1
    return count


_LITERAL = re.compile(rb"\{(\d+)\}\r\n")


def parse_splitter(data: bytes) -> int:
    """The minimal literal splitter: find ``{n}``, slice n bytes, go on."""
    count = 0
    pos = 0
    while True:
        match = _LITERAL.search(data, pos)
        if match is None:
            return count
        size = int(match.group(1))
        _body = data[match.end() : match.end() + size]
        pos = match.end() + size
        count += 1


def _imaplib_reader(data: bytes) -> Any:
    """An imaplib.IMAP4 that reads ``data`` instead of a socket (its private reader)."""
    imap: Any = imaplib.IMAP4.__new__(imaplib.IMAP4)
    imap.debug = 0
    imap.state = "SELECTED"
    imap.literal = None
    imap.tagged_commands = {}
    imap.untagged_responses = {}
    imap.continuation_response = ""
    imap.is_readonly = False
    imap.tagnum = 0
    imap._cmd_log_len, imap._cmd_log_idx, imap._cmd_log = 10, 0, {}
    imap.tagre = re.compile(rb"(?P<tag>A\d+) (?P<type>[A-Z]+) (?P<data>.*)", re.ASCII)
    imap._mode_ascii()
    imap.file = io.BufferedReader(io.BytesIO(data))
    return imap


def parse_imaplib(data: bytes) -> int:
    imap = _imaplib_reader(data)
    tag = data[data.rfind(b"\r\n", 0, len(data) - 2) + 2 :].split(b" ")[0]
    imap.tagged_commands[tag] = None
    while imap.tagged_commands[tag] is None:
        imap._get_response()
    return sum(isinstance(item, tuple) for item in imap.untagged_responses.get("FETCH", []))


def parse_imapclient(data: bytes) -> int:
    from imapclient.response_parser import parse_fetch_response

    imap = _imaplib_reader(data)
    tag = data[data.rfind(b"\r\n", 0, len(data) - 2) + 2 :].split(b" ")[0]
    imap.tagged_commands[tag] = None
    while imap.tagged_commands[tag] is None:
        imap._get_response()
    return len(parse_fetch_response(imap.untagged_responses["FETCH"], uid_is_key=False))


PARSERS: dict[str, Callable[[bytes], int]] = {
    "trio_mailoauth": parse_ours,
    "imaplib": parse_imaplib,
    "imapclient": parse_imapclient,
    "splitter": parse_splitter,
}


# --- the driver ---------------------------------------------------------------------------


def _message(index: int, size: int) -> bytes:
    header = (
        f"From: bench@example.test\r\nTo: alice@example.test\r\nSubject: message {index}\r\n"
        f"Message-ID: <{index}.{size}@bench>\r\n\r\n"
    ).encode()
    line = b"x" * 76 + b"\r\n"
    return header + line * ((size - len(header)) // len(line) + 1)


def _client_run(name: str, spec: dict[str, Any]) -> dict[str, float]:
    command = [sys.executable, __file__, "--client", name, "--spec", json.dumps(spec)]
    output = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if output.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{output.stderr[-3000:]}")
    result: dict[str, float] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def _table(title: str, rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [title, ""]
    for index, row in enumerate(rows):
        lines.append(
            "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"
        )
        if index == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--client")
    parser.add_argument("--spec")
    options = parser.parse_args()
    if options.client:  # a child process: one client run, JSON on stdout
        client_args = argparse.Namespace(**json.loads(options.spec))
        cpu, wall, total = RUNNERS[options.client](client_args)
        print(json.dumps({"cpu": cpu, "wall": wall, "bytes": total}))
        return
    from trio_mailoauth.testing import run_mail_servers

    small, big = (1000, 20) if options.quick else (10_000, 200)
    rounds = max(options.rounds, 5)
    with run_mail_servers() as servers:
        sets = {
            f"{small:,} x 10 KB": ("alice@example.test", small, 10 * 1024),
            f"{big:,} x 1 MB": ("bob@example.test", big, 1024 * 1024),
        }
        for user, count, size in sets.values():
            for index in range(count):
                servers.deliver(user, _message(index, size))
        ca = str(servers.ca_path)
        capture = str(Path(servers.base_dir) / "fetch-capture.bin")
        results: dict[tuple[str, str, str, str], list[dict[str, float]]] = {}
        for label, (user, _count, _size) in sets.items():
            for tls in (True, False):
                port = servers.ports.imaps if tls else servers.ports.imap
                for mode in ("one", "batch"):
                    for _round in range(rounds):
                        for name in CLIENTS:
                            if name == "aioimaplib" and mode == "one" and not options.quick:
                                continue  # quadratic: ~1 min per 100 MB
                            spec = {
                                "port": port,
                                "tls": tls,
                                "mode": mode,
                                "user": user,
                                "password": servers.users[user],
                                "ca": ca,
                                "capture": capture
                                if (
                                    name == "socket"
                                    and mode == "one"
                                    and not tls
                                    and label.endswith("10 KB")
                                )
                                else None,
                            }
                            key = (label, "TLS" if tls else "plain", mode, name)
                            results.setdefault(key, []).append(_client_run(name, spec))
        print_results(results)
        print_parsers(Path(capture).read_bytes(), rounds)


def print_results(results: dict[tuple[str, str, str, str], list[dict[str, float]]]) -> None:
    groups = sorted({key[:3] for key in results})
    rows = [
        [
            "messages",
            "transport",
            "FETCH",
            "client",
            "CPU s/100 MB",
            "wall s/100 MB",
            "CPU vs imaplib",
            "CPU vs socket",
            "CPU vs splitter",
        ]
    ]
    for group in groups:
        medians: dict[str, tuple[float, float]] = {}
        for name in CLIENTS:
            runs = results.get((*group, name))
            if not runs:
                continue
            per = 100e6 / statistics.median(run["bytes"] for run in runs)
            medians[name] = (
                statistics.median(run["cpu"] for run in runs) * per,
                statistics.median(run["wall"] for run in runs) * per,
            )
        for name, (cpu, wall) in medians.items():
            mode = "one 1:*" if group[2] == "one" else f"batches of {BATCH}"
            rows.append(
                [
                    group[0],
                    group[1],
                    mode,
                    name,
                    f"{cpu:.2f}",
                    f"{wall:.2f}",
                    f"{cpu / medians['imaplib'][0]:.2f}x",
                    f"{cpu / medians['socket'][0]:.2f}x",
                    f"{cpu / medians['splitter'][0]:.2f}x",
                ]
            )
    print(_table("## Client CPU and wall time (medians, per 100 MB of messages)", rows))
    print()


def print_parsers(data: bytes, rounds: int) -> None:
    times: dict[str, list[float]] = {name: [] for name in PARSERS}
    counts: dict[str, int] = {}
    for _round in range(rounds):
        for name, parse in PARSERS.items():
            start = time.process_time()
            counts[name] = parse(data)
            times[name].append(time.process_time() - start)
    rows = [["parser", "MB/s", "vs splitter", "messages"]]
    splitter = len(data) / 1e6 / statistics.median(times["splitter"])
    for name, samples in times.items():
        speed = len(data) / 1e6 / statistics.median(samples)
        rows.append([name, f"{speed:.0f}", f"{speed / splitter:.2f}x", str(counts[name])])
    print(_table(f"## Parser alone on a captured FETCH response ({len(data) / 1e6:.0f} MB)", rows))


if __name__ == "__main__":
    main()
