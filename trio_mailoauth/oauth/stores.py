"""Token stores: where refresh tokens (and the current access token) live between runs.

A store keeps one :class:`StoredTokens` per key (token URL, client id, account, scopes) with a
``version`` that grows on every write. ``save(key, tokens, expected_version)`` is a
compare-and-swap: a writer that read an older version loses, so an older refresh token never
overwrites a newer one. ``lease(key)`` is held across a refresh so that one process at a time
spends a (rotating) refresh token: a second process waits, then finds the new tokens.

- :class:`MemoryTokenStore`: one process, nothing persisted (the default).
- :class:`SQLiteTokenStore`: the embedded default for anything that restarts. stdlib sqlite3
  on a worker thread (never on the event loop), file mode 0600 (a symlink at the path is
  refused), each write one transaction, the lease a row with an expiry so a crashed holder
  cannot block the key forever (but never before the holder's own deadline). Refresh and
  access tokens can be encrypted at rest with Fernet (``cryptography``, the ``crypto`` extra):
  pass ``encryption_key=`` or set ``TRIO_MAILOAUTH_TOKEN_KEY``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread

from trio_mailoauth.oauth.tokens import AccessToken

__all__ = [
    "KEY_ENV_VAR",
    "MemoryTokenStore",
    "SQLiteTokenStore",
    "StoredTokens",
    "TokenStore",
]

KEY_ENV_VAR = "TRIO_MAILOAUTH_TOKEN_KEY"

# A holder that crashed releases its lease by letting it expire; this is the shortest lease
# (a caller that says how long it may hold one, ``lease(key, hold_for=)``, gets longer).
DEFAULT_LEASE_SECONDS = 90.0
# Added to ``hold_for``: after the holder's deadline fires, it may still finish a write in
# its worker thread (a thread cannot be cancelled; sqlite waits up to _BUSY_TIMEOUT_MS for
# the write lock) and then release. The lease must outlast all of that.
LEASE_MARGIN = 30.0
# How often a process waiting for another's lease looks again: a refresh takes ~100-500 ms.
_LEASE_POLL = 0.02
# sqlite's own wait for a write lock held by another connection.
_BUSY_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class StoredTokens:
    """What a store keeps per key. ``version`` 0 means "nothing stored yet"."""

    refresh_token: str | None = field(default=None, repr=False)
    access_token: AccessToken | None = None
    version: int = 0


class TokenStore(Protocol):
    """Persistence for token providers (see the module docstring for the guarantees)."""

    async def load(self, key: str) -> StoredTokens: ...

    async def save(self, key: str, tokens: StoredTokens, expected_version: int) -> bool:
        """Write ``tokens`` if the stored version is still ``expected_version``."""
        ...

    def lease(
        self, key: str, *, hold_for: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Exclusive right to refresh ``key``, across every user of the same storage.

        ``hold_for`` is the longest the caller will hold it (its own deadline, e.g. the
        provider's ``refresh_timeout``). A lease that expires (so a crashed holder cannot
        block the key) must not expire before that: a sibling would then spend the same
        rotating refresh token.
        """
        ...


class MemoryTokenStore:
    """In-process store; a lease is a per-key lock."""

    def __init__(self) -> None:
        self._data: dict[str, StoredTokens] = {}
        self._locks: dict[str, anyio.Lock] = {}

    def __repr__(self) -> str:
        return f"MemoryTokenStore(keys={len(self._data)})"

    async def load(self, key: str) -> StoredTokens:
        return self._data.get(key, StoredTokens())

    async def save(self, key: str, tokens: StoredTokens, expected_version: int) -> bool:
        current = self._data.get(key, StoredTokens())
        if current.version != expected_version:
            return False
        self._data[key] = replace(tokens, version=expected_version + 1)
        return True

    @contextlib.asynccontextmanager
    async def lease(self, key: str, *, hold_for: float | None = None) -> AsyncIterator[None]:
        # A lock in this process: it cannot outlive its holder, so it never expires.
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            yield


class _Cipher:
    """Fernet around token strings; imported lazily because ``cryptography`` is optional."""

    def __init__(self, key: bytes | str) -> None:
        try:
            from cryptography.fernet import Fernet, InvalidToken
        except ImportError as exc:  # pragma: no cover - the test environment has it
            raise RuntimeError(
                "encrypting tokens needs the 'cryptography' package: "
                "pip install 'trio_mailoauth[crypto]'"
            ) from exc
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            # Never echo the key: say what is wrong with it only.
            raise ValueError(
                "the encryption key must be 32 url-safe base64-encoded bytes"
            ) from None
        self._invalid = InvalidToken

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode("ascii")

    def decrypt(self, value: str) -> str:
        try:
            return self._fernet.decrypt(value.encode("ascii")).decode()
        except self._invalid:
            raise ValueError("a stored token cannot be decrypted with this key") from None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    key TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    encrypted INTEGER NOT NULL,
    refresh_token TEXT,
    access_token TEXT,
    expires_at REAL,
    obtained_at REAL,
    refresh_on REAL,
    scopes TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS leases (
    key TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""


def _rollback(db: sqlite3.Connection) -> None:
    """Undo a failed write, if sqlite has not done so itself: some errors (a full disk,
    an I/O error, a failed COMMIT) end the transaction already, and a ROLLBACK then would
    raise "no transaction is active" in place of the error that tells what went wrong."""
    if db.in_transaction:
        db.execute("ROLLBACK")


class SQLiteTokenStore:
    """Tokens in a SQLite file shared by every process that opens the same path.

    ``encryption_key`` (Fernet key bytes/str) encrypts the token columns; without it the
    ``TRIO_MAILOAUTH_TOKEN_KEY`` environment variable is used if set. A file written with a
    key cannot be read without it (``ValueError``), and the file is created with mode 0600.

    A lease lasts ``lease_seconds``, or the holder's ``hold_for`` plus ``LEASE_MARGIN`` if
    that is longer (a provider passes its ``refresh_timeout``), so it cannot lapse while the
    refresh it guards is still running.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        encryption_key: bytes | str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.path = Path(path)
        key = encryption_key if encryption_key is not None else os.environ.get(KEY_ENV_VAR)
        self._cipher = _Cipher(key) if key else None
        self._lease_seconds = lease_seconds
        self._local_locks: dict[str, anyio.Lock] = {}
        self._ready = False

    def __repr__(self) -> str:
        return f"SQLiteTokenStore({str(self.path)!r}, encrypted={self._cipher is not None})"

    # --- blocking helpers (worker thread only) --------------------------------------------

    def _create_private(self) -> None:
        """Create (or open) the file ourselves so it is 0600 from its first byte; sqlite
        gives its journal and WAL files the database's mode.

        A symlink at the path is refused, not followed: chmod through it would change the
        mode of whatever it points to, and the tokens would be written there. (Whoever can
        swap the file for a symlink between this check and sqlite's open can write to the
        directory already.)
        """
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        if not hasattr(os, "O_NOFOLLOW") and self.path.is_symlink():  # pragma: no cover
            raise ValueError(f"{self.path} is a symbolic link: refusing to keep tokens there")
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ValueError(
                    f"{self.path} is a symbolic link: refusing to keep tokens there"
                ) from None
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError(f"{self.path} is not a regular file")
            os.fchmod(fd, 0o600)  # an existing file too; on the descriptor, not the path
        finally:
            os.close(fd)

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self._create_private()
        db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        if not self._ready:
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(_SCHEMA)
            self._ready = True
        return db

    def _run(self, fn: Any, *args: Any) -> Any:
        db = self._connect()
        try:
            return fn(db, *args)
        finally:
            db.close()

    def _seal(self, value: str | None) -> str | None:
        if value is None or self._cipher is None:
            return value
        return self._cipher.encrypt(value)

    def _open(self, value: str | None, encrypted: bool) -> str | None:
        if value is None or not encrypted:
            return value
        if self._cipher is None:
            raise ValueError(
                f"the tokens in {self.path} are encrypted: pass encryption_key= "
                f"or set {KEY_ENV_VAR}"
            )
        return self._cipher.decrypt(value)

    def _load_sync(self, db: sqlite3.Connection, key: str) -> StoredTokens:
        row = db.execute(
            "SELECT version, encrypted, refresh_token, access_token, expires_at, obtained_at,"
            " refresh_on, scopes FROM tokens WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return StoredTokens()
        version, encrypted, refresh, access, expires_at, obtained_at, refresh_on, scopes = row
        access_value = self._open(access, bool(encrypted))
        token = None
        if access_value:
            token = AccessToken(
                access_value,
                expires_at=expires_at,
                scopes=tuple(scopes.split()),
                obtained_at=obtained_at,
                refresh_on=refresh_on,
            )
        return StoredTokens(self._open(refresh, bool(encrypted)), token, int(version))

    def _save_sync(
        self, db: sqlite3.Connection, key: str, tokens: StoredTokens, expected: int
    ) -> bool:
        access = tokens.access_token
        values = (
            expected + 1,
            int(self._cipher is not None),
            self._seal(tokens.refresh_token),
            self._seal(access.token if access else None),
            access.expires_at if access else None,
            access.obtained_at if access else None,
            access.refresh_on if access else None,
            " ".join(access.scopes) if access else "",
        )
        db.execute("BEGIN IMMEDIATE")  # one writer at a time: the CAS cannot interleave
        try:
            row = db.execute("SELECT version FROM tokens WHERE key = ?", (key,)).fetchone()
            if (row[0] if row else 0) != expected:
                db.execute("ROLLBACK")
                return False
            db.execute(
                "INSERT INTO tokens (version, encrypted, refresh_token, access_token, expires_at,"
                " obtained_at, refresh_on, scopes, key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET version = excluded.version,"
                " encrypted = excluded.encrypted, refresh_token = excluded.refresh_token,"
                " access_token = excluded.access_token, expires_at = excluded.expires_at,"
                " obtained_at = excluded.obtained_at, refresh_on = excluded.refresh_on,"
                " scopes = excluded.scopes",
                (*values, key),
            )
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        return True

    def _try_lease_sync(
        self, db: sqlite3.Connection, key: str, holder: str, seconds: float
    ) -> bool:
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT holder, expires_at FROM leases WHERE key = ?", (key,))
            found = row.fetchone()
            if found is not None and found[0] != holder and found[1] > now:
                db.execute("ROLLBACK")
                return False
            db.execute(
                "INSERT INTO leases (key, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT(key)"
                " DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
                (key, holder, now + seconds),
            )
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        return True

    def _release_sync(self, db: sqlite3.Connection, key: str, holder: str) -> None:
        db.execute("DELETE FROM leases WHERE key = ? AND holder = ?", (key, holder))

    # --- the async API --------------------------------------------------------------------

    async def load(self, key: str) -> StoredTokens:
        result: StoredTokens = await anyio.to_thread.run_sync(self._run, self._load_sync, key)
        return result

    async def save(self, key: str, tokens: StoredTokens, expected_version: int) -> bool:
        saved: bool = await anyio.to_thread.run_sync(
            self._run, self._save_sync, key, tokens, expected_version
        )
        return saved

    @contextlib.asynccontextmanager
    async def lease(self, key: str, *, hold_for: float | None = None) -> AsyncIterator[None]:
        # The row expires (a crashed holder must not block the key), but never before the
        # holder's own deadline has passed and its last write could have finished.
        seconds = self._lease_seconds
        if hold_for is not None:
            seconds = max(seconds, hold_for + LEASE_MARGIN)
        # In-process waiters queue on a lock; only its holder competes for the row lease.
        lock = self._local_locks.setdefault(key, anyio.Lock())
        async with lock:
            holder = uuid.uuid4().hex
            # Another process may hold it; its release is not an event we can wait on: poll.
            while True:
                if await anyio.to_thread.run_sync(
                    self._run, self._try_lease_sync, key, holder, seconds
                ):
                    break
                await anyio.sleep(_LEASE_POLL)
            try:
                yield
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._run, self._release_sync, key, holder)
