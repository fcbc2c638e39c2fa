"""The IMAP FETCH benchmark's clients work: against the real Dovecot, this library, imaplib,
the minimal splitter and the bare trio client take the same message bytes from one mailbox,
over TLS and plaintext, in batches and in one FETCH (about 10 s). The full run (10,000 and
200 messages, seven clients, five rounds) is for people, not CI."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import imap_fetch  # noqa: E402

ALICE = "alice@example.test"
CLIENTS = ("trio_mailoauth", "imaplib", "splitter", "bare trio")


@pytest.mark.parametrize(("tls", "mode"), [(True, "batch"), (False, "one")])
def test_every_client_takes_the_same_messages(mail_servers: Any, tls: bool, mode: str) -> None:
    for index in range(3):
        mail_servers.deliver(ALICE, imap_fetch._message(index, 30_000))
    spec = {
        "port": mail_servers.ports.imaps if tls else mail_servers.ports.imap,
        "tls": tls,
        "mode": mode,
        "user": ALICE,
        "password": mail_servers.users[ALICE],
        "ca": str(mail_servers.ca_path),
        "capture": None,
    }
    taken = {name: imap_fetch._client_run(name, spec) for name in CLIENTS}
    sizes = {name: result["bytes"] for name, result in taken.items()}
    assert len(set(sizes.values())) == 1, sizes
    assert sizes["trio_mailoauth"] >= 3 * 30_000
    assert all(result["cpu"] > 0 and result["wall"] > 0 for result in taken.values())
