"""The real-server harness: Dovecot + Postfix + the OAuth2 server, checked with real sockets.

These tests pin down what the rest of the suite relies on (ports, TLS, the exact SASL replies
of each server, the send -> Postfix -> LMTP -> Maildir loop). They use the stdlib's clients and
raw sockets, not the library's own. The first few tests need no servers (no root).
"""

from __future__ import annotations

import base64
import imaplib
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from trio_mailoauth.testing import servers as servers_module
from trio_mailoauth.testing.oauth_server import OAuthServerControl
from trio_mailoauth.testing.server_configs import dovecot_conf
from trio_mailoauth.testing.servers import USERS, HarnessError, MailServers, Ports

ALICE = "alice@example.test"
BOB = "bob@example.test"
XOAUTH2_CHALLENGE = {"status": "401", "schemes": "bearer", "scope": "mail"}
OAUTHBEARER_CHALLENGE = {"status": "invalid_token"}

Service = Literal["imap", "pop3", "submission", "postfix"]

# Final replies after a rejected token (the client answered the challenge) and after an
# introspection outage. Temporary failures end in "[<hostname>:<time>]", hence prefixes.
EXPECTED: dict[Service, dict[str, str]] = {
    "imap": {
        "ok": "a OK [CAPABILITY ",
        "rejected": "a NO [AUTHENTICATIONFAILED] Authentication failed.",
        "outage": "a NO [UNAVAILABLE] Temporary authentication failure.",
    },
    "pop3": {
        "ok": "+OK Logged in.",
        "rejected": "-ERR [AUTH] Authentication failed.",
        "outage": "-ERR [SYS/TEMP] Temporary authentication failure.",
    },
    "submission": {
        "ok": "235 2.7.0 Logged in.",
        "rejected": "535 5.7.8 Authentication failed.",
        "outage": "454 4.7.0 Temporary authentication failure.",
    },
    "postfix": {
        "ok": "235 2.7.0 Authentication successful",
        "rejected": "535 5.7.8 Error: authentication failed: (reason unavailable)",
        # Postfix does not tell a temporary failure from a rejection.
        "outage": "535 5.7.8 Error: authentication failed: (reason unavailable)",
    },
}


# --- without servers -------------------------------------------------------------------------


def test_port_plan() -> None:
    ports = Ports.from_base(10000)
    assert (ports.imap, ports.imaps, ports.pop3, ports.pop3s) == (10143, 10993, 10110, 10995)
    assert (ports.submission, ports.submissions, ports.lmtp, ports.relay) == (
        10587,
        10465,
        10024,
        10025,
    )
    assert (ports.postfix_submission, ports.postfix_submissions, ports.oauth) == (
        10588,
        10466,
        10080,
    )
    listening = list(ports.listening().values())
    assert len(set(listening)) == len(listening) == 11
    # Bases 1000 apart never share a port.
    assert not set(listening) & set(Ports.from_base(11000).listening().values())


def test_not_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(HarnessError, match="run scripts/install-system-deps as root"):
        MailServers.start()


def test_missing_binaries_are_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(HarnessError, match=r"dovecot is not installed.*install-system-deps"):
        MailServers.start()


@pytest.fixture
def busy_base() -> Iterator[int]:
    """A port base whose IMAP port is taken by a listener (outside the harness's own range)."""
    for base in range(20000, 30000, 1000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", base + 143))
            except OSError:
                continue
            sock.listen()
            yield base
            return
    raise AssertionError("no free port in 20143..29143 to make busy")


def test_a_busy_port_base_is_skipped(monkeypatch: pytest.MonkeyPatch, busy_base: int) -> None:
    monkeypatch.delenv(servers_module.PORT_BASE_ENV, raising=False)
    monkeypatch.setattr(servers_module, "_PORT_BASES", [busy_base, 18000])
    ports, lock = servers_module._claim_ports()
    with lock:
        assert ports.base == 18000


def test_a_forced_busy_port_base_is_an_error(
    monkeypatch: pytest.MonkeyPatch, busy_base: int
) -> None:
    monkeypatch.setenv(servers_module.PORT_BASE_ENV, str(busy_base))
    with pytest.raises(HarnessError, match=servers_module.PORT_BASE_ENV):
        servers_module._claim_ports()


@pytest.mark.integration
def test_a_failed_start_says_why_and_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, mail_servers: MailServers
) -> None:
    # Requests mail_servers so it runs where the servers can run (root, packages installed).

    def broken(*args: Any, **kwargs: Any) -> str:
        return dovecot_conf(*args, **kwargs) + "no_such_setting_here = 1\n"

    monkeypatch.setattr("trio_mailoauth.testing.servers.dovecot_conf", broken)
    base_dirs = Path("/tmp")  # noqa: S108 - where the harness puts them
    before = set(base_dirs.glob("tmo-*"))
    with pytest.raises(HarnessError, match="dovecot failed to start") as excinfo:
        MailServers.start()
    assert "no_such_setting_here" in str(excinfo.value)  # the tail of dovecot's output
    assert set(base_dirs.glob("tmo-*")) <= before
    assert all(mail_servers.running().values())  # the session's servers are untouched
    # The Postfix and OAuth2 server started alongside were stopped: every port is free again.
    found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", str(excinfo.value))
    assert found is not None
    assert servers_module._ports_free(Ports.from_base(int(found[1]) - 80))


# --- stale instances (owner killed) ---------------------------------------------------------


def test_owner_record_liveness(tmp_path: Path) -> None:
    base = tmp_path / "tmo-x"
    me = servers_module._owner_record()
    assert not servers_module._owner_gone(me, base)
    assert servers_module._owner_gone({**me, "start": me["start"] - 1}, base)  # a reused pid
    assert servers_module._owner_gone({**me, "boot": "another boot"}, base)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert servers_module._owner_gone({**me, "pid": child.pid}, base)
    assert not servers_module._owner_gone({}, base)  # detached without a state file


def test_a_detached_instance_is_stale_only_when_its_state_file_lets_go(tmp_path: Path) -> None:
    base, state_file = tmp_path / "tmo-x", tmp_path / "state.json"
    record = {"state_file": str(state_file)}
    state_file.write_text(json.dumps({"base_dir": str(base)}))
    assert not servers_module._owner_gone(record, base)
    state_file.write_text(json.dumps({"base_dir": str(tmp_path / "tmo-y")}))  # a later start
    assert servers_module._owner_gone(record, base)
    state_file.unlink()  # `stop`
    assert servers_module._owner_gone(record, base)


_CHILD = """
import json, os, signal, sys
from trio_mailoauth.testing.servers import MailServers
servers = MailServers.start()
print(servers.layout.base, servers.ports.base, flush=True)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
if sys.argv[1] == "detach":  # like the CLI's start
    with open(sys.argv[2], "w") as f:
        json.dump(servers.state(), f)
    servers.detach(state_file=sys.argv[2])
    os._exit(0)
sys.stdin.read()
servers.stop()
"""


def _start_in_child(mode: str, *args: str) -> tuple[subprocess.Popen[str], Path, int]:
    """Servers started by another Python process; (process, base dir, port base)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop(servers_module.PORT_BASE_ENV, None)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        child.communicate()
        raise AssertionError(f"the child could not start servers (exit {child.returncode})")
    base, port_base = line.split()
    return child, Path(base), int(port_base)


def _pids(base: Path) -> dict[str, int | None]:
    oauth = json.loads((base / "run" / "oauth-state.json").read_text())["pid"]
    return {
        "dovecot": servers_module._read_pid(base / "run" / "master.pid"),
        "postfix": servers_module._read_pid(base / "spool" / "pid" / "master.pid"),
        "oauth": oauth,
    }


@pytest.mark.integration
def test_a_new_start_reaps_instances_whose_owner_was_killed(
    monkeypatch: pytest.MonkeyPatch, mail_servers: MailServers
) -> None:
    # Requests mail_servers so it runs where the servers can run (root, packages installed).
    monkeypatch.delenv(servers_module.PORT_BASE_ENV, raising=False)
    # The live one first: its start would reap the killed one's instance otherwise.
    live, live_base, live_ports = _start_in_child("wait")
    try:
        live_pids = _pids(live_base)
        killed, killed_base, killed_ports = _start_in_child("kill")
        killed.communicate(timeout=10)
        assert killed.returncode == -signal.SIGKILL
        killed_pids = _pids(killed_base)
        assert all(p is not None and servers_module._pid_alive(p) for p in killed_pids.values())

        with MailServers.start() as again:
            # The killed owner's servers are gone, and so is its dir; its ports are free (the
            # first free base: this start took it, unless a parallel run did meanwhile).
            assert not killed_base.exists()
            assert not any(p and servers_module._pid_alive(p) for p in killed_pids.values())
            assert again.ports.base == killed_ports or servers_module._ports_free(
                Ports.from_base(killed_ports)
            )
        # A live owner's instance (and the session's) is untouched.
        assert all(p is not None and servers_module._pid_alive(p) for p in live_pids.values())
        live_listening = Ports.from_base(live_ports).listening().values()
        assert all(servers_module._port_open("127.0.0.1", port) for port in live_listening)
        assert all(mail_servers.running().values())
    finally:
        live.communicate(timeout=60)  # closes its stdin: it stops its servers
    assert not live_base.exists()


@pytest.mark.integration
def test_a_detached_instance_lives_as_long_as_its_state_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mail_servers: MailServers
) -> None:
    monkeypatch.delenv(servers_module.PORT_BASE_ENV, raising=False)
    state_file = tmp_path / "state.json"
    child, base, port_base = _start_in_child("detach", str(state_file))
    child.communicate(timeout=30)
    assert child.returncode == 0
    pids, state = _pids(base), json.loads(state_file.read_text())
    try:
        assert base not in servers_module._reap_stale()  # its owner is gone, its file is not
        assert all(p is not None and servers_module._pid_alive(p) for p in pids.values())
        state_file.unlink()  # as if `stop` had forgotten it: nothing else refers to it now
        assert base in servers_module._reap_stale()
        assert not any(p and servers_module._pid_alive(p) for p in pids.values())
        assert not base.exists()
        assert servers_module._ports_free(Ports.from_base(port_base))
    finally:
        if base.exists():
            MailServers.from_state(state).stop()


@pytest.mark.integration
def test_a_kept_dir_is_not_reaped(mail_servers: MailServers) -> None:
    servers = MailServers.start()
    try:
        assert servers.layout.owner.exists()
        servers.stop(keep=True)
        assert not servers.layout.owner.exists()
        assert servers.layout.base not in servers_module._reap_stale()
        assert (servers.layout.log / "dovecot.log").exists()
    finally:
        shutil.rmtree(servers.layout.base, ignore_errors=True)


# --- a line-oriented client for raw protocol checks ------------------------------------------


class LineClient:
    """Implicit-TLS socket, verified against the harness CA, read line by line."""

    def __init__(self, servers: MailServers, port: int) -> None:
        raw = socket.create_connection((servers.host, port), timeout=10)
        self.sock = servers.client_ssl_context().wrap_socket(raw, server_hostname="localhost")
        self.reader = self.sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def line(self) -> str:
        return self.reader.readline().decode().rstrip("\r\n")

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")


PORT_OF: dict[Service, str] = {
    "imap": "imaps",
    "pop3": "pop3s",
    "submission": "submissions",
    "postfix": "postfix_submissions",
}


@pytest.fixture
def connect(mail_servers: MailServers) -> Iterator[type[LineClient]]:
    opened: list[LineClient] = []

    class Tracked(LineClient):
        def __init__(self, servers: MailServers, port: int) -> None:
            super().__init__(servers, port)
            opened.append(self)

    yield Tracked
    for client in opened:
        client.close()


def _open(connect: type[LineClient], servers: MailServers, service: Service) -> LineClient:
    client = connect(servers, getattr(servers.ports, PORT_OF[service]))
    greeting = client.line()
    if service in {"submission", "postfix"}:
        assert greeting.startswith("220 ")
        client.send("EHLO client.example.test")
        while (reply := client.line()).startswith("250-"):
            pass
        assert reply.startswith("250 ")
    else:
        assert greeting.startswith(("* OK", "+OK"))
    return client


def _authenticate(
    client: LineClient, service: Service, mechanism: str, initial: str, answer: str
) -> tuple[dict[str, str] | None, str]:
    """Run one SASL exchange; (decoded JSON challenge or None, final reply line)."""
    verb = "a AUTHENTICATE" if service == "imap" else "AUTH"
    client.send(f"{verb} {mechanism} {initial}")
    challenge = None
    while True:
        line = client.line()
        if service == "imap" and line.startswith("* "):
            continue
        prefix = "334 " if service in {"submission", "postfix"} else "+ "
        if line.startswith(prefix) and not line.startswith("+OK"):
            challenge = json.loads(base64.b64decode(line[len(prefix) :]))
            client.send(answer)
            continue
        return challenge, line


def _xoauth2(user: str, token: str) -> str:
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()


def _oauthbearer(user: str, token: str, port: int) -> str:
    raw = f"n,a={user},\x01host=127.0.0.1\x01port={port}\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(raw.encode()).decode()


def _plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


# --- with servers ----------------------------------------------------------------------------


@pytest.mark.integration
def test_harness_starts_quickly(mail_servers: MailServers) -> None:
    assert mail_servers.startup_seconds is not None
    assert mail_servers.startup_seconds < 10
    assert all(mail_servers.running().values())
    assert mail_servers.ca_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert mail_servers.users == USERS


@pytest.mark.integration
def test_imap_greeting_on_both_ports_with_verified_tls(mail_servers: MailServers) -> None:
    context = mail_servers.client_ssl_context()
    with imaplib.IMAP4_SSL(
        mail_servers.host, mail_servers.ports.imaps, ssl_context=context
    ) as imaps:
        assert imaps.welcome.startswith(b"* OK")
    with imaplib.IMAP4(mail_servers.host, mail_servers.ports.imap) as imap:
        assert imap.welcome.startswith(b"* OK")
        assert "STARTTLS" in imap.capabilities
        typ, _ = imap.starttls(ssl_context=context)
        assert typ == "OK"
        typ, _ = imap.login(ALICE, USERS[ALICE])
        assert typ == "OK"
    # The harness CA is the only thing that makes the certificate valid.
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        imaplib.IMAP4_SSL(
            mail_servers.host, mail_servers.ports.imaps, ssl_context=ssl.create_default_context()
        ),
    ):
        pass


@pytest.mark.integration
def test_plain_login_over_a_raw_socket(
    mail_servers: MailServers, connect: type[LineClient]
) -> None:
    client = _open(connect, mail_servers, "imap")
    challenge, final = _authenticate(client, "imap", "PLAIN", _plain(ALICE, USERS[ALICE]), "")
    assert challenge is None
    assert final.startswith("a OK [CAPABILITY ")
    bad = _open(connect, mail_servers, "imap")
    _, final = _authenticate(bad, "imap", "PLAIN", _plain(ALICE, "wrong"), "")
    assert final == "a NO [AUTHENTICATIONFAILED] Authentication failed."


@pytest.mark.integration
@pytest.mark.parametrize("service", list(PORT_OF))
def test_xoauth2_good_rejected_and_outage(
    mail_servers: MailServers,
    oauth: OAuthServerControl,
    connect: type[LineClient],
    service: Service,
) -> None:
    expected = EXPECTED[service]

    client = _open(connect, mail_servers, service)
    token = oauth.mint_token(ALICE)["access_token"]
    challenge, final = _authenticate(client, service, "XOAUTH2", _xoauth2(ALICE, token), "")
    assert challenge is None
    assert final.startswith(expected["ok"])

    client = _open(connect, mail_servers, service)
    challenge, final = _authenticate(client, service, "XOAUTH2", _xoauth2(ALICE, "bogus"), "")
    assert challenge == XOAUTH2_CHALLENGE
    assert final == expected["rejected"]

    oauth.fail_next("introspect", 1, 503)
    client = _open(connect, mail_servers, service)
    challenge, final = _authenticate(client, service, "XOAUTH2", _xoauth2(ALICE, token), "")
    assert challenge is None  # no challenge: not the token's fault
    assert final.startswith(expected["outage"])
    assert oauth.stats()["calls"]["introspect"] == 3


@pytest.mark.integration
@pytest.mark.parametrize("service", list(PORT_OF))
def test_oauthbearer_good_and_rejected(
    mail_servers: MailServers,
    oauth: OAuthServerControl,
    connect: type[LineClient],
    service: Service,
) -> None:
    port = getattr(mail_servers.ports, PORT_OF[service])
    token = oauth.mint_token(BOB)["access_token"]
    client = _open(connect, mail_servers, service)
    challenge, final = _authenticate(
        client, service, "OAUTHBEARER", _oauthbearer(BOB, token, port), "AQ=="
    )
    assert challenge is None
    assert final.startswith(EXPECTED[service]["ok"])

    client = _open(connect, mail_servers, service)
    challenge, final = _authenticate(
        client, service, "OAUTHBEARER", _oauthbearer(BOB, "bogus", port), "AQ=="
    )
    assert challenge == OAUTHBEARER_CHALLENGE
    assert final == EXPECTED[service]["rejected"]


@pytest.mark.integration
@pytest.mark.parametrize("case", ["expired", "revoked", "other user", "wrong scope"])
def test_every_bad_token_gets_the_same_challenge(
    mail_servers: MailServers, oauth: OAuthServerControl, connect: type[LineClient], case: str
) -> None:
    token = oauth.mint_token(ALICE, scope="other" if case == "wrong scope" else "mail")
    if case == "expired":
        oauth.expire(token["access_token"])
    elif case == "revoked":
        oauth.revoke_user(ALICE)
    user = BOB if case == "other user" else ALICE
    client = _open(connect, mail_servers, "imap")
    initial = _xoauth2(user, token["access_token"])
    challenge, final = _authenticate(client, "imap", "XOAUTH2", initial, "")
    assert challenge == XOAUTH2_CHALLENGE
    assert final == EXPECTED["imap"]["rejected"]
    # The same connection accepts a fresh token afterwards.
    fresh = oauth.mint_token(user)["access_token"]
    challenge, final = _authenticate(client, "imap", "XOAUTH2", _xoauth2(user, fresh), "")
    assert challenge is None
    assert final.startswith(EXPECTED["imap"]["ok"])


@pytest.mark.integration
def test_submission_relays_to_the_maildir(mail_servers: MailServers) -> None:
    subject = f"harness {uuid.uuid4()}"
    message = f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: {subject}\r\n\r\nhello bob\r\n"
    context = mail_servers.client_ssl_context()
    with smtplib.SMTP_SSL(
        mail_servers.host, mail_servers.ports.submissions, context=context
    ) as smtp:
        smtp.login(ALICE, USERS[ALICE])
        assert smtp.sendmail(ALICE, [BOB], message) == {}
    (delivered,) = mail_servers.wait_for_message(BOB, lambda m: subject.encode() in m)
    assert b"Delivered-To: bob@example.test" in delivered
    assert b"with LMTP" in delivered
    assert b"hello bob" in delivered


@pytest.mark.integration
def test_postfix_submission_needs_starttls_and_relays(mail_servers: MailServers) -> None:
    subject = f"via postfix {uuid.uuid4()}"
    with smtplib.SMTP(mail_servers.host, mail_servers.ports.postfix_submission) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth")  # smtpd_tls_auth_only: AUTH only after STARTTLS
        smtp.starttls(context=mail_servers.client_ssl_context())
        smtp.ehlo()
        assert "XOAUTH2" in smtp.esmtp_features["auth"]
        smtp.login(BOB, USERS[BOB])
        smtp.sendmail(BOB, [ALICE], f"Subject: {subject}\r\n\r\nhi\r\n")
    mail_servers.wait_for_message(ALICE, lambda m: subject.encode() in m)


@pytest.mark.integration
def test_nothing_leaves_the_host(mail_servers: MailServers) -> None:
    with smtplib.SMTP(mail_servers.host, mail_servers.ports.relay) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as excinfo:
            smtp.sendmail(ALICE, ["someone@example.org"], "Subject: x\r\n\r\nx\r\n")
        code, _ = excinfo.value.recipients["someone@example.org"]
        assert code == 554


@pytest.mark.integration
def test_deliver_seeds_the_inbox(mail_servers: MailServers) -> None:
    context = mail_servers.client_ssl_context()
    with imaplib.IMAP4_SSL(
        mail_servers.host, mail_servers.ports.imaps, ssl_context=context
    ) as imap:
        imap.login(BOB, USERS[BOB])
        _, (before,) = imap.select("INBOX")
        paths = [
            mail_servers.deliver(BOB, f"Subject: seed {n}\r\n\r\nbody\r\n".encode(), flags="S")
            for n in range(3)
        ]
        assert all(p.parent == mail_servers.maildir(BOB) / "cur" for p in paths)
        assert all(p.stat().st_uid == (mail_servers.maildir(BOB)).stat().st_uid for p in paths)
        imap.close()
        _, (after,) = imap.select("INBOX")
        assert before is not None
        assert after is not None
        assert int(after) == int(before) + 3


@pytest.mark.integration
def test_who_and_kick(mail_servers: MailServers) -> None:
    context = mail_servers.client_ssl_context()
    imap = imaplib.IMAP4_SSL(mail_servers.host, mail_servers.ports.imaps, ssl_context=context)
    try:
        imap.login(ALICE, USERS[ALICE])
        assert (ALICE, "imap") in mail_servers.who()
        mail_servers.kick(ALICE)
        assert imap.readline() == b"* BYE Server shutting down.\r\n"
    finally:
        imap.shutdown()  # not logout(): the server has closed the connection
    deadline = time.monotonic() + 5
    while (ALICE, "imap") in mail_servers.who():
        assert time.monotonic() < deadline, "the kicked session is still listed"
        time.sleep(0.05)


@pytest.mark.integration
def test_state_round_trip(mail_servers: MailServers) -> None:
    state = json.loads(json.dumps(mail_servers.state()))
    again = MailServers.from_state(state)
    try:
        assert again.ports == mail_servers.ports
        assert again.ca_path == mail_servers.ca_path
        assert again.oauth.token_url == mail_servers.oauth.token_url
        assert state["ports"]["imaps"] == mail_servers.ports.imaps
    finally:
        again.oauth.close()


@pytest.mark.integration
def test_cli_start_status_stop(tmp_path: Path, mail_servers: MailServers) -> None:
    # A second, independent instance: it must pick another port base.
    state_file = tmp_path / "state.json"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trio_mailoauth.testing", *args, "--state", str(state_file)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            start_new_session=True,
        )

    started = cli("start")
    assert started.returncode == 0, started.stderr
    state = json.loads(started.stdout)
    try:
        assert json.loads(state_file.read_text()) == state
        assert state["ports"]["base"] != mail_servers.ports.base
        assert Path(state["ca_path"]).exists()
        status = cli("status")
        assert status.returncode == 0
        assert all(json.loads(status.stdout)["running"].values())
    finally:
        stopped = cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not Path(state["base_dir"]).exists()
    assert not state_file.exists()
    assert cli("status").returncode == 1
