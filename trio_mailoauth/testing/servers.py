"""Real mail servers for integration tests: a private Dovecot, Postfix and OAuth2 server.

::

    with run_mail_servers() as servers:
        token = servers.oauth.mint_token("alice@example.test")["access_token"]
        ...  # connect to servers.host, servers.ports.imaps with servers.client_ssl_context()

Everything lives under one base dir ``/tmp/tmo-XXXXXXXX`` (mode 0755 so ``vmail`` and
``postfix`` can enter it; pytest's ``tmp_path`` is under a 0700 dir and would not work; short so
unix socket paths stay under 107 bytes). All servers listen on 127.0.0.1 only, on a port base
chosen so parallel runs do not collide (see :class:`~.server_configs.Ports`). Mail to
``example.test`` sent through Dovecot submission (or Postfix) goes Postfix → LMTP → Dovecot;
nothing can leave the host.

Child processes are started with ``start_new_session=True, close_fds=True`` and write to files
under the base dir: a CI step that pipes our output would otherwise wait forever on a pipe
inherited by the daemonized Dovecot.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from trio_mailoauth.testing.oauth_model import DEFAULT_USERS
from trio_mailoauth.testing.oauth_server import OAuthServerControl
from trio_mailoauth.testing.server_configs import (
    Layout,
    Ports,
    dovecot_conf,
    oauth2_conf,
    passwd_file,
    postfix_main_cf,
    postfix_master_cf,
)

__all__ = [
    "DEFAULT_STATE_FILE",
    "USERS",
    "HarnessError",
    "MailServers",
    "OAuthServerProcess",
    "Ports",
    "run_mail_servers",
]

USERS: dict[str, str] = {user: f"{user.split('@')[0]}-password" for user in DEFAULT_USERS}
# A fixed, well-known path on purpose: `stop` must find what `start` wrote.
DEFAULT_STATE_FILE = Path("/tmp/trio-mailoauth-servers.json")  # noqa: S108
PORT_BASE_ENV = "TRIO_MAILOAUTH_PORT_BASE"
_PORT_BASES = range(10000, 20000, 1000)
_START_DEADLINE = 30.0
_INSTALL_HINT = "run scripts/install-system-deps as root"
# Where `python -m trio_mailoauth...` finds the package, for the OAuth2 server child process.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class HarnessError(RuntimeError):
    """The test servers could not be started, reached or stopped; the message says why."""


# --- processes --------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    # /proc rather than kill(pid, 0): a daemon we stopped may stay a zombie when PID 1 (in a
    # container) does not reap orphans, and a zombie is as good as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in {"Z", "X"}


def _terminate_pid(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.02)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _spawn(
    args: list[str], log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=None if env is None else dict(env),
        )


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"--- {path}: (none)"
    return f"--- {path}:\n" + "\n".join(text)


def _check_started(name: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    """Both daemonize: the command we ran exits once the daemon is running (or failed)."""
    if process.wait(max(0.1, deadline - time.monotonic())) != 0:
        raise HarnessError(f"{name} failed to start (exit {process.returncode})")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class OAuthServerProcess:
    """The OAuth2 test server as a child process (``python -m ...oauth_server``)."""

    def __init__(
        self,
        pid: int,
        base_url: str,
        *,
        process: subprocess.Popen[bytes] | None = None,
        workdir: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.pid = pid
        self.base_url = base_url
        self.log_path = log_path  # its stdout/stderr: request lines, never a secret
        self.control = OAuthServerControl(base_url)
        self._process = process
        self._workdir = workdir  # removed by stop(): set only for a standalone server

    @staticmethod
    def launch(
        state_file: Path,
        log: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        users: tuple[str, ...] = DEFAULT_USERS,
    ) -> subprocess.Popen[bytes]:
        """Start the process; :meth:`wait_ready` returns the handle once it listens."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH")) if p
        )
        args = [sys.executable, "-m", "trio_mailoauth.testing.oauth_server"]
        args += ["--host", host, "--port", str(port), "--state-file", str(state_file)]
        for user in users:
            args += ["--user", user]
        return _spawn(args, log, env)

    @classmethod
    def wait_ready(
        cls,
        process: subprocess.Popen[bytes],
        state_file: Path,
        deadline: float,
        *,
        workdir: Path | None = None,
        log_path: Path | None = None,
    ) -> OAuthServerProcess:
        while not state_file.exists():
            if process.poll() is not None:
                raise HarnessError(f"the OAuth2 test server exited with {process.returncode}")
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise HarnessError("the OAuth2 test server did not start in time")
            time.sleep(0.01)
        info = json.loads(state_file.read_text())
        return cls(
            info["pid"], info["base_url"], process=process, workdir=workdir, log_path=log_path
        )

    @classmethod
    def start(
        cls, *, host: str = "127.0.0.1", port: int = 0, users: tuple[str, ...] = DEFAULT_USERS
    ) -> OAuthServerProcess:
        """A standalone server (no Dovecot, no root needed) in its own temp dir."""
        workdir = Path(tempfile.mkdtemp(prefix="tmo-oauth-", dir="/tmp"))
        state_file, log = workdir / "oauth-state.json", workdir / "oauth.log"
        process = cls.launch(state_file, log, host=host, port=port, users=users)
        try:
            deadline = time.monotonic() + 15
            return cls.wait_ready(process, state_file, deadline, workdir=workdir, log_path=log)
        except HarnessError as exc:
            detail = _tail(log)
            shutil.rmtree(workdir, ignore_errors=True)
            raise HarnessError(f"{exc}\n{detail}") from None

    def stop(self) -> None:
        self.control.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        else:
            _terminate_pid(self.pid)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def detach(self) -> None:
        """Let the process outlive this object (the CLI's ``start``)."""
        self._process = None


# --- preconditions and ports ------------------------------------------------------------------


def _vmail_ids() -> tuple[int, int]:
    """Check what the harness needs; vmail's (uid, gid)."""
    if os.geteuid() != 0:
        raise HarnessError(
            "the real-server harness must run as root (Dovecot and Postfix switch users): "
            f"{_INSTALL_HINT}, then run the tests as root"
        )
    for binary in ("dovecot", "doveadm", "postfix"):
        if shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            raise HarnessError(f"{binary} is not installed: {_INSTALL_HINT}")
    try:
        vmail = pwd.getpwnam("vmail")
        grp.getgrnam("postfix")
    except KeyError as exc:
        raise HarnessError(f"system user/group missing ({exc}): {_INSTALL_HINT}") from None
    return vmail.pw_uid, vmail.pw_gid


def _raise_inotify_limit() -> None:
    # IDLE uses inotify; with the stock 128 instances, sessions beyond ~128 fall back to 30 s
    # polling. Not permitted in some containers: then benchmarks just see the slower push.
    path = Path("/proc/sys/fs/inotify/max_user_instances")
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text()) < 8192:
            path.write_text("8192\n")


def _ports_free(ports: Ports) -> bool:
    for port in ports.listening().values():
        with socket.socket() as sock:
            # SO_REUSEADDR like the servers themselves: TIME_WAIT leftovers are no conflict,
            # a listener is.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _claim_ports() -> tuple[Ports, IO[bytes]]:
    """The first free port base, with a lock file held so a parallel run skips it."""
    forced = os.environ.get(PORT_BASE_ENV)
    bases = [int(forced)] if forced else list(_PORT_BASES)
    for base in bases:
        # Shared by every run on this host, hence /tmp; the lock lives as long as the harness.
        lock_path = Path(f"/tmp/trio-mailoauth-ports-{base}.lock")  # noqa: S108
        lock = lock_path.open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        ports = Ports.from_base(base)
        if _ports_free(ports):
            return ports, lock
        lock.close()
    raise HarnessError(f"no free port base among {bases} (set {PORT_BASE_ENV} to choose one)")


# --- stale instances --------------------------------------------------------------------------
#
# Dovecot and Postfix daemonize: when the process that started a harness is killed (SIGKILL, a
# CI timeout), they keep running and keep a port base busy. So `start` records the owner in
# BASE/owner.json, and every `start` first reaps the instances whose owner is gone:
#
# - {"pid", "start", "boot"}: an owning process, identified by pid, its start time (field 22 of
#   /proc/<pid>/stat) and the boot id, so a reused pid is not taken for the owner. Stale once
#   no live process matches all three.
# - {"state_file": path}: detached by the CLI's `start` (`detach(state_file=...)`), which exits
#   at once; the state file is what owns the instance. Stale once that file is gone or names
#   another base dir (`stop` removes it, a later `start` overwrites it), never while it still
#   names this one.
# - {}: detached without a state file: never reaped (stop it with `from_state(...).stop()`).
#
# Only dirs holding an owner record are considered: older harnesses and the standalone OAuth2
# server's /tmp/tmo-oauth-* have none. A pid read from a stale instance's pid files is signalled
# only if that process names the base dir (see `_ours`).


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot); None if gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] in {"Z", "X"} else int(fields[19])


def _owner_record() -> dict[str, Any]:
    return {"pid": os.getpid(), "start": _start_time(os.getpid()), "boot": _boot_id()}


def _write_owner(layout: Layout, record: Mapping[str, Any]) -> None:
    tmp = layout.owner.with_name("owner.json.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, layout.owner)  # atomic: a reaper never reads half a record


def _owner_gone(record: Mapping[str, Any], base: Path) -> bool:
    if "state_file" in record:
        try:
            state = json.loads(Path(record["state_file"]).read_text())
        except FileNotFoundError:
            return True
        except (OSError, ValueError):
            return False  # unreadable: it may still refer to us
        return not isinstance(state, dict) or state.get("base_dir") != str(base)
    if "pid" not in record:
        return False
    if record.get("boot") != _boot_id():
        return True
    return _start_time(int(record["pid"])) != record.get("start")


def _ours(pid: int | None, base: Path) -> int | None:
    """``pid`` if that process names ``base`` in its command line or environment (Dovecot's
    ``-c``, Postfix's ``MAIL_CONFIG``, the OAuth2 server's ``--state-file``), else None."""
    if pid is None:
        return None
    needle = str(base).encode() + b"/"
    for name in ("cmdline", "environ"):
        with contextlib.suppress(OSError):
            if needle in Path(f"/proc/{pid}/{name}").read_bytes():
                return pid
    return None


def _reap_stale(root: Path = Path("/tmp")) -> list[Path]:  # noqa: S108 - where start() puts them
    """Stop and remove every instance under ``root`` whose owner is gone; their base dirs."""
    reaped = []
    for base in sorted(root.glob("tmo-*")):
        layout = Layout(base)
        try:
            if base.is_symlink() or base.stat().st_uid != os.geteuid():
                continue
            lock = layout.owner.open("rb")
        except OSError:
            continue
        with lock:
            try:
                # Two starts reaping at once: one does it, the other skips this dir.
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                record = json.load(lock)
                if not isinstance(record, dict) or not _owner_gone(record, base):
                    continue
                oauth_state = json.loads((layout.run / "oauth-state.json").read_text())
            except FileNotFoundError:  # the owner died before the OAuth2 server was up
                oauth_state = {}
            except (OSError, ValueError):
                continue
            try:
                oauth_pid = _ours(oauth_state.get("pid"), base)
                if oauth_pid is not None:
                    _terminate_pid(oauth_pid)
                _stop_daemons(layout)
            except (OSError, subprocess.SubprocessError):
                continue  # leave the dir: the next start tries again
            shutil.rmtree(base, ignore_errors=True)
            reaped.append(base)
    return reaped


# --- the servers --------------------------------------------------------------------------------


class MailServers:
    """A running Dovecot + Postfix + OAuth2 server; see the module docstring.

    Start with :meth:`start` (or :func:`run_mail_servers`), stop with :meth:`stop`; a stopped
    harness removes its base dir unless ``keep`` is set.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        layout: Layout,
        ports: Ports,
        users: Mapping[str, str],
        oauth_server: OAuthServerProcess,
        *,
        keep: bool = False,
        port_lock: IO[bytes] | None = None,
    ) -> None:
        self.layout = layout
        self.ports = ports
        self.users = dict(users)
        self.oauth_server = oauth_server
        self.oauth = oauth_server.control
        self.keep = keep
        self._port_lock = port_lock
        self._stopped = False
        self._counter = itertools.count()
        self.startup_seconds: float | None = None  # set by start(): CI watches this

    # --- lifecycle ----------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        *,
        users: Mapping[str, str] | None = None,
        keep: bool = False,
        introspection_timeout_ms: int = 5000,
    ) -> MailServers:
        """Start everything and wait until every port answers (a few seconds)."""
        started = time.monotonic()
        uid, gid = _vmail_ids()
        _raise_inotify_limit()
        users = dict(USERS if users is None else users)
        _reap_stale()  # before claiming ports: a stale instance may hold any base
        ports, lock = _claim_ports()
        base = Path(tempfile.mkdtemp(prefix="tmo-", dir="/tmp"))
        base.chmod(0o755)
        layout = Layout(base)
        deadline = time.monotonic() + _START_DEADLINE
        launched: list[subprocess.Popen[bytes]] = []
        servers: MailServers | None = None
        try:
            _write_owner(layout, _owner_record())
            _prepare(layout, ports, users, uid, gid, introspection_timeout_ms)
            oauth_state = layout.run / "oauth-state.json"
            oauth_log = layout.log / "oauth.log"
            launched.append(
                OAuthServerProcess.launch(oauth_state, oauth_log, port=ports.oauth, users=(*users,))
            )
            # Both commands daemonize and exit; they start in parallel with the OAuth2 server.
            dovecot_cmd = ["dovecot", "-c", str(layout.dovecot_conf)]
            launched.append(_spawn(dovecot_cmd, layout.log / "dovecot.out"))
            postfix_cmd = ["postfix", "-c", str(layout.postfix), "start"]
            launched.append(_spawn(postfix_cmd, layout.log / "postfix.out"))
            oauth = OAuthServerProcess.wait_ready(
                launched[0], oauth_state, deadline, log_path=oauth_log
            )
            servers = cls(layout, ports, users, oauth, keep=keep, port_lock=lock)
            _check_started("dovecot", launched[1], deadline)
            _check_started("postfix", launched[2], deadline)
            servers._wait_listening(deadline)
        except BaseException as exc:  # even Ctrl-C: never leave daemons or the lock behind
            logs = ("dovecot.out", "dovecot.log", "postfix.out", "postfix.log", "oauth.log")
            detail = "\n".join(_tail(layout.log / name) for name in logs)
            # Let the dovecot/postfix commands finish first: a daemon still starting has no pid
            # file yet, and would be left running. Reaping also keeps Popen from warning.
            for process in launched[1:]:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if servers is not None:
                servers.stop(keep=keep)
            else:
                if launched:
                    launched[0].kill()
                    launched[0].wait()
                _stop_daemons(layout)
                if not keep:
                    shutil.rmtree(base, ignore_errors=True)
                else:
                    layout.owner.unlink(missing_ok=True)  # see stop()
                lock.close()
            if isinstance(exc, HarnessError | OSError | subprocess.SubprocessError):
                raise HarnessError(
                    f"could not start the test mail servers: {exc}\n{detail}"
                ) from exc
            raise
        servers.startup_seconds = time.monotonic() - started
        return servers

    def _wait_listening(self, deadline: float) -> None:
        pending = dict(self.ports.listening())
        while pending:
            pending = {k: p for k, p in pending.items() if not _port_open(self.host, p)}
            if not pending:
                break
            if time.monotonic() > deadline:
                raise HarnessError(f"ports not answering after {_START_DEADLINE} s: {pending}")
            time.sleep(0.05)
        if not self.oauth.health():
            raise HarnessError("the OAuth2 test server does not answer its health check")

    def stop(self, *, keep: bool | None = None) -> None:
        """Stop every server (by pid) and remove the base dir unless ``keep``."""
        if self._stopped:
            return
        self._stopped = True
        self.oauth_server.stop()
        _stop_daemons(self.layout)
        if not (self.keep if keep is None else keep):
            shutil.rmtree(self.layout.base, ignore_errors=True)
        else:  # stopped, nothing left to reap: a later start must not remove the kept dir
            self.layout.owner.unlink(missing_ok=True)
        if self._port_lock is not None:
            self._port_lock.close()

    def __enter__(self) -> MailServers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<MailServers {self.layout.base} ports base {self.ports.base}>"

    # --- state file (the CLI) -----------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything a client needs, as JSON-able data (what the CLI prints)."""
        return {
            "base_dir": str(self.layout.base),
            "host": self.host,
            "ports": self.ports.as_dict(),
            "ca_path": str(self.ca_path),
            "users": self.users,
            "oauth_url": self.oauth.base_url,
            "token_url": self.oauth.token_url,
            "introspection_url": self.oauth.introspection_url,
            "dovecot_conf": str(self.layout.dovecot_conf),
            "oauth_pid": self.oauth_server.pid,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> MailServers:
        """Reattach to servers another process started (to stop them, say)."""
        oauth = OAuthServerProcess(int(state["oauth_pid"]), str(state["oauth_url"]))
        ports = Ports(**state["ports"])
        return cls(Layout(Path(state["base_dir"])), ports, state["users"], oauth)

    def detach(self, state_file: Path | None = None) -> None:
        """Leave the servers running after this process exits (the CLI's ``start``).

        A later :meth:`start` then no longer reaps them when this process is gone: with
        ``state_file`` (where the caller saved :meth:`state`), only once that file is gone or
        names another base dir; without, never (see ``_reap_stale``).
        """
        record = {} if state_file is None else {"state_file": str(Path(state_file).resolve())}
        _write_owner(self.layout, record)
        self.oauth_server.detach()
        self.oauth.close()
        self._stopped = True

    def running(self) -> dict[str, bool]:
        """Which ports accept a TCP connection right now."""
        return {name: _port_open(self.host, port) for name, port in self.ports.listening().items()}

    # --- clients ------------------------------------------------------------------------------

    @property
    def base_dir(self) -> Path:
        return self.layout.base

    @property
    def ca_path(self) -> Path:
        """PEM of the test CA that signed the servers' certificate (for localhost/127.0.0.1)."""
        return self.layout.ca_pem

    def client_ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts the test CA (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    # --- Dovecot helpers ----------------------------------------------------------------------

    def doveadm(self, *args: str) -> str:
        """Run ``doveadm -c <our config> ARGS``; its stdout (HarnessError on failure)."""
        result = subprocess.run(
            ["doveadm", "-c", str(self.layout.dovecot_conf), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise HarnessError(f"doveadm {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def save(self, user: str, message: bytes) -> None:
        """Deliver ``message`` to the INBOX through Dovecot itself (``doveadm save``): its
        index changes at once, so a session in IDLE hears of it however close to the start
        of its IDLE it comes. (A file written by :meth:`deliver` in the same clock tick as
        a session's last look at the Maildir may wait for Dovecot's next periodic check.)"""
        result = subprocess.run(
            ["doveadm", "-c", str(self.layout.dovecot_conf), "save", "-u", user],
            input=message,
            capture_output=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace").strip()
            raise HarnessError(f"doveadm save -u {user}: {stderr}")

    def kick(self, user: str) -> None:
        """Disconnect every session of ``user`` (IMAP gets ``* BYE``): reconnect tests."""
        self.doveadm("kick", user)

    def who(self) -> list[tuple[str, str]]:
        """Current sessions as (user, protocol), one entry per connection."""
        sessions = []
        for line in self.doveadm("who", "-1").splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 2:
                sessions.append((fields[0], fields[1]))
        return sessions

    # --- mailboxes ----------------------------------------------------------------------------

    def maildir(self, user: str) -> Path:
        """``BASEDIR/mail/<user>/Maildir`` (INBOX: cur/, new/, tmp/)."""
        return self.layout.maildir(user)

    def deliver(self, user: str, message: bytes, *, flags: str = "") -> Path:
        """Put a message straight into the INBOX (``cur/``, owned by vmail); its path.

        Dovecot sees it at the next SELECT/NOOP. Much faster than SMTP for seeding; note the
        on-disk line endings are what you pass (RFC822.SIZE counts CRLF).
        """
        maildir = self.maildir(user)
        uid, gid = maildir.stat().st_uid, maildir.stat().st_gid
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(self._counter)}.tmo"
        tmp = maildir / "tmp" / name
        tmp.write_bytes(message)
        os.chown(tmp, uid, gid)
        tmp.chmod(0o600)
        final = maildir / "cur" / f"{name}:2,{''.join(sorted(flags))}"
        tmp.rename(final)
        return final

    def message_paths(self, user: str) -> list[Path]:
        """Files in the INBOX's new/ and cur/, oldest first."""
        maildir = self.maildir(user)
        paths = [p for sub in ("new", "cur") for p in (maildir / sub).iterdir()]
        return sorted(paths, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def wait_for_message(
        self,
        user: str,
        predicate: Callable[[bytes], bool] | None = None,
        *,
        count: int = 1,
        timeout: float = 10.0,
    ) -> list[bytes]:
        """Wait until ``count`` messages (matching ``predicate``) are in the INBOX; them."""
        deadline = time.monotonic() + timeout
        while True:
            found = []
            for path in self.message_paths(user):
                with contextlib.suppress(FileNotFoundError):  # moved new/ -> cur/ meanwhile
                    data = path.read_bytes()
                    if predicate is None or predicate(data):
                        found.append(data)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} messages for {user} after {timeout} s")
            time.sleep(0.05)


def _prepare(
    layout: Layout, ports: Ports, users: Mapping[str, str], uid: int, gid: int, timeout_ms: int
) -> None:
    """Directories, certificates and config files."""
    import trustme  # a test dependency; only the harness needs it

    for path in (layout.etc, layout.run, layout.state, layout.log, layout.tls, layout.postfix):
        path.mkdir(mode=0o755)
    layout.postfix_queue.mkdir(mode=0o755)  # `postfix start` creates and owns what is inside
    layout.postfix_data.mkdir(mode=0o700)
    postfix_user = pwd.getpwnam("postfix")
    os.chown(
        layout.postfix_data, postfix_user.pw_uid, postfix_user.pw_gid
    )  # master.lock lives here
    layout.mail.mkdir(mode=0o755)
    for user in users:
        for sub in ("cur", "new", "tmp"):
            (layout.maildir(user) / sub).mkdir(mode=0o700, parents=True)
        for path in (layout.home(user), layout.maildir(user), *layout.maildir(user).iterdir()):
            os.chown(path, uid, gid)
            path.chmod(0o700)

    ca = trustme.CA(organization_name="trio_mailoauth test CA")
    ca.cert_pem.write_to_path(str(layout.ca_pem))
    layout.ca_pem.chmod(0o644)
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    leaf.private_key_pem.write_to_path(str(layout.key_pem))
    # The key of a throwaway CA, but still: readable by root and postfix's smtpd only.
    os.chown(layout.key_pem, 0, grp.getgrnam("postfix").gr_gid)
    layout.key_pem.chmod(0o640)
    with layout.cert_pem.open("wb") as f:
        for blob in leaf.cert_chain_pems:
            f.write(blob.bytes())

    oauth2_args = layout.etc / "dovecot-oauth2.conf.ext"
    files = {
        layout.etc / "passwd": passwd_file(users, uid, gid, layout),
        oauth2_args: oauth2_conf(ports, timeout_ms=timeout_ms),
        layout.dovecot_conf: dovecot_conf(
            layout, ports, vmail_uid=uid, vmail_gid=gid, oauth2_args=oauth2_args
        ),
        layout.postfix / "main.cf": postfix_main_cf(layout, ports, vmail_uid=uid, vmail_gid=gid),
        layout.postfix / "master.cf": postfix_master_cf(ports),
    }
    dovecot_gid = grp.getgrnam("dovecot").gr_gid
    for path, text in files.items():
        path.write_text(text)
        if path.parent == layout.etc:
            # Passwords and the introspection secret: Dovecot's auth process (user dovecot)
            # reads them; nobody else may.
            os.chown(path, 0, dovecot_gid)
            path.chmod(0o640)


def _stop_daemons(layout: Layout) -> None:
    """Stop Dovecot (master pid file) and Postfix (``postfix stop``), waiting for both."""
    # Only processes naming our base dir: a stale pid file may hold a reused pid by now.
    dovecot_pid = _ours(_read_pid(layout.run / "master.pid"), layout.base)
    if dovecot_pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(dovecot_pid, signal.SIGTERM)
    postfix_pid = _read_pid(layout.postfix_queue / "pid" / "master.pid")
    postfix_master = _ours(postfix_pid, layout.base)  # before it exits: to wait for it below
    if postfix_pid is not None and (layout.postfix / "main.cf").exists():
        with (layout.log / "postfix.out").open("ab") as out:
            subprocess.run(
                ["postfix", "-c", str(layout.postfix), "stop"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                close_fds=True,
                timeout=30,
                check=False,
            )
    for pid in (dovecot_pid, postfix_master):
        if pid is not None:
            _terminate_pid(pid)


@contextlib.contextmanager
def run_mail_servers(
    *, users: Mapping[str, str] | None = None, keep: bool = False
) -> Iterator[MailServers]:
    """``with run_mail_servers() as servers: ...`` — start, yield, always stop."""
    servers = MailServers.start(users=users, keep=keep)
    try:
        yield servers
    finally:
        servers.stop()
