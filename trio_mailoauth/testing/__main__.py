"""``python -m trio_mailoauth.testing start|stop|status``: the test servers for a shell session.

``start`` prints the ports, CA path and users as JSON and records them in a state file
(default ``/tmp/trio-mailoauth-servers.json``); the servers keep running after it exits.
``stop`` reads that file, stops them and removes their base dir (``--keep`` keeps it);
``status`` says which ports answer (exit 1 unless all do).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from trio_mailoauth.testing.servers import DEFAULT_STATE_FILE, HarnessError, MailServers


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise HarnessError(f"no state file {path}: nothing was started with it") from None
    return state


def _start(path: Path, keep: bool) -> int:
    if path.exists():
        running = MailServers.from_state(_read_state(path)).running()
        if any(running.values()):
            raise HarnessError(f"servers from {path} are still running: stop them first")
    servers = MailServers.start(keep=keep)
    state = servers.state()
    # Holds the test users' passwords: readable by whoever started the servers only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2)
    servers.detach(state_file=path)  # reaped by a later start once this file lets go of it
    print(json.dumps(state, indent=2))
    return 0


def _stop(path: Path, keep: bool) -> int:
    MailServers.from_state(_read_state(path)).stop(keep=keep)
    path.unlink(missing_ok=True)
    return 0


def _status(path: Path) -> int:
    state = _read_state(path)
    running = MailServers.from_state(state).running()
    print(json.dumps({"base_dir": state["base_dir"], "running": running}, indent=2))
    return 0 if all(running.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trio_mailoauth.testing")
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE_FILE, help="state file")
    parser.add_argument(
        "--keep", action="store_true", help="keep the base dir (configs, logs, mail)"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            return _start(args.state, args.keep)
        if args.command == "stop":
            return _stop(args.state, args.keep)
        return _status(args.state)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
