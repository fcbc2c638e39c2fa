"""The SQLite store's safety rules: a lease lasts as long as the refresh it guards, a failed
write reports its own error, and the file is private and never reached through a symlink."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import trio

from trio_mailoauth.oauth import (
    AccessToken,
    RefreshTokenProvider,
    SQLiteTokenStore,
    StoredTokens,
    providers,
)
from trio_mailoauth.oauth.stores import LEASE_MARGIN

ENDPOINT = providers.generic(
    token_url="https://id.test/token", client_id="cid", client_secret="sec", scopes=["mail"]
)
ACCOUNT = "alice@example.test"


class RotatingEndpoint:
    """A slow token endpoint that rotates the refresh token and refuses a spent one, as
    strict providers do; it also notes how long the store's lease has left mid-refresh."""

    def __init__(self, db: Path, delay: float) -> None:
        self.db = db
        self.delay = delay
        self.valid = {"RT-0"}
        self.spent: list[str] = []
        self.issued = 0
        self.lease_left: list[float] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        with sqlite3.connect(self.db) as db:
            (expires_at,) = db.execute("SELECT max(expires_at) FROM leases").fetchone()
        self.lease_left.append(expires_at - time.time())
        await trio.sleep(self.delay)
        refresh = form["refresh_token"]
        if refresh not in self.valid:
            self.spent.append(refresh)
            return httpx.Response(400, json={"error": "invalid_grant"})
        self.valid.remove(refresh)
        self.issued += 1
        self.valid.add(f"RT-{self.issued}")
        body = {"access_token": f"AT-{self.issued}", "expires_in": 3600}
        return httpx.Response(200, json=body | {"refresh_token": f"RT-{self.issued}"})


def _provider(db: Path, endpoint: RotatingEndpoint, **store_options: Any) -> RefreshTokenProvider:
    # Its own store object and HTTP client: another process, in effect.
    http = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
    store = SQLiteTokenStore(db, **store_options)
    return RefreshTokenProvider(ENDPOINT, account=ACCOUNT, store=store, http=http)


async def test_a_lease_lasts_as_long_as_the_refresh_it_guards(tmp_path: Path) -> None:
    db = tmp_path / "tokens.db"
    endpoint = RotatingEndpoint(db, delay=0.6)
    # Leases of 0.2 s: a refresh of 0.6 s would outlive one that ignored the deadline.
    first = _provider(db, endpoint, lease_seconds=0.2)
    second = _provider(db, endpoint, lease_seconds=0.2)
    await first.store.save(first.key, StoredTokens("RT-0"), 0)
    got: dict[str, AccessToken] = {}

    async def ask(name: str, provider: RefreshTokenProvider) -> None:
        got[name] = await provider.get_token()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "first", first)
            await trio.sleep(0.35)  # past the 0.2 s, while the first refresh runs
            nursery.start_soon(ask, "second", second)
    # One refresh between them; nobody spent the rotated-out refresh token.
    assert endpoint.issued == 1
    assert endpoint.spent == []
    assert got["first"].token == got["second"].token == "AT-1"
    assert second.stats.requests == 0
    assert second.stats.store_hits == 1
    # The lease was taken for the provider's deadline plus the margin, not for 0.2 s.
    assert endpoint.lease_left[0] > first._refresh_timeout + LEASE_MARGIN - 5
    assert (await second.store.load(second.key)).refresh_token == "RT-1"


async def test_a_store_lease_without_a_deadline_lasts_lease_seconds(tmp_path: Path) -> None:
    store = SQLiteTokenStore(tmp_path / "t.db", lease_seconds=42)
    async with store.lease("k"):
        with sqlite3.connect(tmp_path / "t.db") as db:
            (expires_at,) = db.execute("SELECT expires_at FROM leases").fetchone()
    assert expires_at - time.time() == pytest.approx(42, abs=5)
    async with store.lease("k", hold_for=100):
        with sqlite3.connect(tmp_path / "t.db") as db:
            (expires_at,) = db.execute("SELECT expires_at FROM leases").fetchone()
    assert expires_at - time.time() == pytest.approx(100 + LEASE_MARGIN, abs=5)


class _FailingCommit:
    """A connection whose COMMIT fails the way a full disk does: sqlite has already rolled
    the transaction back when the error reaches us."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            self._db.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)


async def test_a_failed_write_reports_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteTokenStore(tmp_path / "t.db")
    assert await store.save("k", StoredTokens("RT-1"), 0)
    real_connect = store._connect
    monkeypatch.setattr(store, "_connect", lambda: _FailingCommit(real_connect()))
    # Not "cannot rollback - no transaction is active", which says nothing of the cause.
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        await store.save("k", StoredTokens("RT-2"), 1)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        async with store.lease("k"):
            pass
    monkeypatch.undo()
    assert (await store.load("k")).refresh_token == "RT-1"  # nothing half-written


async def test_a_symlink_at_the_path_is_refused_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    target.chmod(0o644)
    link = tmp_path / "tokens.db"
    link.symlink_to(target)
    with pytest.raises(ValueError, match="symbolic link"):
        await SQLiteTokenStore(link).save("k", StoredTokens("RT-1"), 0)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # no chmod through the link
    assert target.read_bytes() == b""  # and no tokens written there
    dangling = tmp_path / "dangling.db"
    dangling.symlink_to(tmp_path / "does-not-exist")
    with pytest.raises(ValueError, match="symbolic link"):
        await SQLiteTokenStore(dangling).load("k")
    assert not (tmp_path / "does-not-exist").exists()  # not created through the link


async def test_an_existing_file_is_made_private_and_must_be_a_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    path.write_bytes(b"")
    path.chmod(0o644)
    await SQLiteTokenStore(path).save("k", StoredTokens("RT-1"), 0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        await SQLiteTokenStore(fifo).load("k")
