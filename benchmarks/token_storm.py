"""Token storm: N tasks need a token at once while the cached one has expired.

The token endpoint (the local OAuth2 test server, loopback) answers every refresh after 200 ms.
Each client runs in its own process so timings and CPU are the client's alone (the refresh
token reaches it in an environment variable, not on its command line):

- ``trio_mailoauth``: one :class:`RefreshTokenProvider`, N tasks call ``get_token()`` (trio);
- ``trio_mailoauth/asyncio``: the same code under ``asyncio.run`` (anyio);
- ``trio floor``: not a client but a reference: the first task POSTs, the others wait on one
  Event (no store, no checks, no error handling), under the same harness as ours: what waking
  N tasks twice costs trio itself, which no single flight on trio can go below;
- ``authlib``: one ``AsyncOAuth2Client``, N tasks call ``ensure_active_token()`` (asyncio);
- ``naive``: every task that finds the token expired refreshes it itself (trio, httpx);
  measured up to 1,000 waiters (see ``NAIVE_MAX``).

Counted: token requests the server received (its own counters), time from the moment all N
tasks (already started and waiting on an event) ask at once until every one has its token,
the CPU the child spent from that moment until every task had ended (the storm itself), and
all the CPU the child spent after the interpreter started (imports and setup included;
``time.process_time``). Every peer on one event loop runs under the same harness (plain trio,
or plain asyncio), and each child does the same once-per-process work before the clock starts
(importing the IDNA codec, a full garbage collection once its N tasks wait): the storm is
measured, not the first minutes of a process. Peers are interleaved in each round, medians
over the rounds, ratios against one measured token round trip and against us.
The target: exactly 1 request and every waiter served within 1.5x one token round trip.

Run: ``.venv/bin/python benchmarks/token_storm.py`` (about a minute) or ``--quick`` (a few
seconds). Needs no root: only the OAuth2 server is started
(:class:`~trio_mailoauth.testing.servers.OAuthServerProcess`; the mail servers play no part).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

DELAY = 0.2
# trio_mailoauth runs on trio (its primary target) and, through anyio, on asyncio: at 10,000
# waiters the difference between the two is the event loops' cost of waking 10,000 tasks.
PEERS = ("trio_mailoauth", "trio_mailoauth/asyncio", "trio floor", "authlib", "naive")
# How the parent hands the refresh token to a child (see child()).
REFRESH_TOKEN_VAR = "TOKEN_STORM_REFRESH_TOKEN"
# The naive client sends one request per waiter, and httpx's pool (100 connections, the rest
# queued) spends CPU quadratic in the queue: 1,000 waiters take ~35 s (26 s of CPU), 10,000
# took many minutes. It is measured at 1,000 waiters in the first round only, where the point
# (N requests instead of 1) is made.
NAIVE_MAX = 1_000
USER = "alice@example.test"
CLIENT_ID, CLIENT_SECRET = "test-client", "test-secret"


# --- the children ---------------------------------------------------------------------------


# (time to serve all, CPU from the signal until every task has ended, the tokens served:
# strings, or objects with a .token string). A peer's get_token is called as it is, with no
# wrapper around it: every wrapper coroutine would cost each of the N tasks a little.
Result = tuple[float, float, list[Any]]
GetToken = Callable[[], Awaitable[Any]]
Storm = Callable[[int, GetToken], Awaitable[Result]]


def _form(refresh_token: str) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }


# Two harnesses, each as plain as its event loop allows, so that every peer on one loop pays
# the same harness: N tasks wait for a signal, then all ask at once; the clock runs from the
# signal until the last task has its token.


async def _storm_trio(n: int, get_token: GetToken) -> Result:
    import trio
    import trio.testing

    tokens: list[Any] = []
    done: list[float] = []
    go = trio.Event()

    async def ask() -> None:
        await go.wait()
        tokens.append(await get_token())
        done.append(time.perf_counter())

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()  # every peer starts from the same collector state (see the docstring)
        cpu = time.process_time()
        start = time.perf_counter()
        go.set()
    return max(done) - start, time.process_time() - cpu, tokens


async def _storm_asyncio(n: int, get_token: GetToken) -> Result:
    import asyncio

    tokens: list[Any] = []
    done: list[float] = []
    go = asyncio.Event()
    ready = asyncio.Event()
    waiting = [0]

    async def ask() -> None:
        waiting[0] += 1
        if waiting[0] == n:
            ready.set()  # this one is the last to reach go.wait(), in this same step
        await go.wait()
        tokens.append(await get_token())
        done.append(time.perf_counter())

    tasks = [asyncio.create_task(ask()) for _ in range(n)]
    await ready.wait()
    gc.collect()  # every peer starts from the same collector state (see the docstring)
    cpu = time.process_time()
    start = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return max(done) - start, time.process_time() - cpu, tokens


async def _ours(n: int, token_url: str, refresh_token: str, storm: Storm) -> Result:
    import anyio.lowlevel

    from trio_mailoauth.oauth import (
        AccessToken,
        MemoryTokenStore,
        RefreshTokenProvider,
        StoredTokens,
        providers,
    )

    endpoint = providers.generic(
        token_url=token_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scopes=["mail"]
    )
    store = MemoryTokenStore()
    # Created before the clock starts, as the peers' clients are (an SSL context takes ~30 ms).
    http = httpx.AsyncClient(trust_env=False)
    provider = RefreshTokenProvider(endpoint, account=USER, store=store, http=http)
    expired = AccessToken("expired-token", expires_at=time.time() - 60)
    await store.save(provider.key, StoredTokens(refresh_token, expired), 0)
    # A process whose cached token expired has long loaded anyio's backend for its event
    # loop (the first anyio call imports it: ~30 ms, once per process). Load it before the
    # clock starts, as authlib's constructor does (it creates an anyio.Lock).
    await anyio.lowlevel.checkpoint()

    try:
        return await storm(n, provider.get_token)
    finally:
        await http.aclose()


async def _floor(n: int, token_url: str, refresh_token: str) -> Result:
    """The least a single flight can cost on trio: the first caller POSTs, everyone else
    waits on one Event. No store, no expiry check, no cancellation safety, no errors: a
    reference for what the event loop itself costs, not a usable client."""
    import trio

    http = httpx.AsyncClient(trust_env=False)
    flight: list[trio.Event] = []
    token: list[str] = []

    async def get_token() -> str:
        if flight:
            await flight[0].wait()
            return token[0]
        flight.append(trio.Event())
        response = await http.post(token_url, data=_form(refresh_token))
        token.append(str(response.json()["access_token"]))
        flight[0].set()
        return token[0]

    try:
        return await _storm_trio(n, get_token)
    finally:
        await http.aclose()


async def _authlib(n: int, token_url: str, refresh_token: str) -> Result:
    from authlib.integrations.httpx_client import (  # type: ignore[import-untyped]
        AsyncOAuth2Client,
    )

    token = {
        "access_token": "expired-token",
        "refresh_token": refresh_token,
        "token_type": "Bearer",
        "expires_at": int(time.time()) - 60,
    }
    client = AsyncOAuth2Client(
        CLIENT_ID,
        CLIENT_SECRET,
        token=token,
        token_endpoint=token_url,
        scope="mail",
        trust_env=False,
    )

    async def get_token() -> str:
        await client.ensure_active_token(client.token)
        return str(client.token["access_token"])

    try:
        return await _storm_asyncio(n, get_token)
    finally:
        await client.aclose()


async def _naive(n: int, token_url: str, refresh_token: str) -> Result:
    cached = {"token": "expired-token", "expires_at": time.time() - 60.0}
    async with httpx.AsyncClient(trust_env=False, timeout=120) as http:

        async def get_token() -> str:
            if cached["expires_at"] <= time.time():  # type: ignore[operator]
                response = await http.post(token_url, data=_form(refresh_token))
                body = response.json()
                cached["token"] = body["access_token"]
                cached["expires_at"] = time.time() + float(body["expires_in"])
            return str(cached["token"])

        return await _storm_trio(n, get_token)


def child(peer: str, n: int, token_url: str) -> None:
    # The refresh token comes in the environment, never on the command line (`ps` shows
    # every user the command lines of every process); the variable goes at once.
    refresh_token = os.environ.pop(REFRESH_TOKEN_VAR)
    cpu = time.process_time()
    # The first host name a process resolves imports the IDNA codec (~15 ms, once): a process
    # whose token expired did that long ago. Every peer gets it done before the clock starts.
    "localhost".encode("idna")
    if peer in ("authlib", "trio_mailoauth/asyncio"):
        import asyncio

        if peer == "authlib":
            result = asyncio.run(_authlib(n, token_url, refresh_token))
        else:
            result = asyncio.run(_ours(n, token_url, refresh_token, _storm_asyncio))
    else:
        import trio

        if peer == "trio_mailoauth":
            result = trio.run(_ours, n, token_url, refresh_token, _storm_trio)
        else:
            run = {"trio floor": _floor, "naive": _naive}[peer]
            result = trio.run(run, n, token_url, refresh_token)
    elapsed, storm_cpu, served = result
    tokens = [getattr(t, "token", t) for t in served]
    assert len(tokens) == n
    assert "expired-token" not in tokens
    report = {"elapsed": elapsed, "cpu": time.process_time() - cpu, "storm_cpu": storm_cpu}
    print(json.dumps(report), flush=True)


# --- the parent -----------------------------------------------------------------------------


def _round_trip(http: httpx.Client, token_url: str, refresh_token: str) -> float:
    start = time.perf_counter()
    http.post(token_url, data=_form(refresh_token)).raise_for_status()
    return time.perf_counter() - start


def child_command(
    peer: str, n: int, token_url: str, refresh_token: str
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of one measurement: the secret is in the latter."""
    args = [sys.executable, __file__, "--child", peer, str(n), token_url]
    return args, {**os.environ, REFRESH_TOKEN_VAR: refresh_token}


def run(sizes: list[int], rounds: int, naive_max: int = NAIVE_MAX) -> list[dict[str, Any]]:
    from trio_mailoauth.testing.servers import OAuthServerProcess

    server = OAuthServerProcess.start()
    control = server.control
    try:
        control.reset()
        control.set_rotation(False)  # a naive client would lock itself out otherwise
        refresh_token = str(control.mint_token(USER, with_refresh_token=True)["refresh_token"])
        control.delay("token", DELAY)
        samples: dict[tuple[int, str], list[dict[str, float]]] = {}
        trips: list[float] = []
        with httpx.Client(trust_env=False) as http:
            for round_no in range(rounds):
                trips.append(_round_trip(http, control.token_url, refresh_token))
                for n in sizes:
                    order = PEERS if round_no % 2 == 0 else tuple(reversed(PEERS))
                    for peer in order:
                        if peer == "naive" and (n > naive_max or round_no > 0):
                            continue  # see NAIVE_MAX
                        before = control.stats()["calls"].get("token", 0)
                        args, env = child_command(peer, n, control.token_url, refresh_token)
                        out = subprocess.run(
                            args, env=env, capture_output=True, text=True, check=True
                        )
                        result = json.loads(out.stdout)
                        result["requests"] = control.stats()["calls"].get("token", 0) - before
                        samples.setdefault((n, peer), []).append(result)
        trip = statistics.median(trips)
        rows = []
        for n in sizes:
            ours = statistics.median(s["elapsed"] for s in samples[(n, "trio_mailoauth")])
            for peer in PEERS:
                got = samples.get((n, peer), [])
                if not got:
                    continue
                elapsed = statistics.median(s["elapsed"] for s in got)
                rows.append(
                    {
                        "waiters": n,
                        "client": peer,
                        "rounds": len(got),
                        "requests": statistics.median(s["requests"] for s in got),
                        "time_ms": elapsed * 1000,
                        "x_round_trip": elapsed / trip,
                        "x_ours": elapsed / ours,
                        "cpu_ms": statistics.median(s["cpu"] for s in got) * 1000,
                        "storm_cpu_ms": statistics.median(s["storm_cpu"] for s in got) * 1000,
                    }
                )
        print(f"one token round trip (median of {len(trips)}): {trip * 1000:.0f} ms")
        return rows
    finally:
        server.stop()


def print_table(rows: list[dict[str, Any]]) -> None:
    head = "| waiters | client | rounds | token requests | time to serve all | × round trip "
    head += "| × trio_mailoauth | CPU in the storm | client CPU |"
    print(head)
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['waiters']:,} | {r['client']} | {r['rounds']} | {r['requests']:,.0f} "
            f"| {r['time_ms']:,.0f} ms | {r['x_round_trip']:.2f} | {r['x_ours']:.2f} "
            f"| {r['storm_cpu_ms']:,.0f} ms | {r['cpu_ms']:,.0f} ms |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 waiters, one round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", nargs=3, metavar=("PEER", "N", "TOKEN_URL"))
    args = parser.parse_args()
    if args.child:
        peer, n, token_url = args.child
        child(peer, int(n), token_url)
        return
    # SIGTERM (a test's timeout) unwinds through run()'s `finally`, which stops the server.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    sizes, rounds = ([200], 1) if args.quick else ([1_000, 10_000], max(args.rounds, 5))
    rows = run(sizes, rounds)
    print_table(rows)
    for r in rows:
        if r["client"].startswith("trio_mailoauth"):
            met = r["requests"] == 1 and r["x_round_trip"] <= 1.5
            verdict = "met" if met else "MISSED"
            print(f"target at {r['waiters']:,} waiters ({r['client']}): {verdict}")


if __name__ == "__main__":
    main()
