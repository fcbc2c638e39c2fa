"""The single flight on each event loop (trio and asyncio, through anyio): what a waiter
does and does not do, cancellation on both loops, and the jitter of planned refreshes."""

from __future__ import annotations

import asyncio
import random
import statistics
from urllib.parse import parse_qs

import anyio
import httpx
import pytest
import trio

from trio_mailoauth.oauth import (
    AccessToken,
    MemoryTokenStore,
    RefreshTokenProvider,
    StoredTokens,
    providers,
)
from trio_mailoauth.oauth.refresh import _new_signal

ENDPOINT = providers.generic(
    token_url="https://id.test/token", client_id="cid", client_secret="sec", scopes=["mail"]
)


class SlowEndpoint:
    """Issues AT-1, AT-2, ... after ``delay`` seconds; ``started`` is set at each request."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests = 0
        self.started = anyio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        assert parse_qs(request.content.decode())["refresh_token"] == ["RT"]
        self.requests += 1
        self.started.set()
        await anyio.sleep(self.delay)
        body = {"access_token": f"AT-{self.requests}", "expires_in": 3600}
        return httpx.Response(200, json=body)


class CountingStore(MemoryTokenStore):
    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    async def load(self, key: str) -> StoredTokens:
        self.loads += 1
        return await super().load(key)


def _provider(endpoint: SlowEndpoint, store: MemoryTokenStore) -> RefreshTokenProvider:
    http = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
    return RefreshTokenProvider(
        ENDPOINT, account="a@example.test", refresh_token="RT", store=store, http=http
    )


@pytest.mark.anyio
async def test_waiters_park_on_the_flight_and_touch_nothing_else() -> None:
    endpoint = SlowEndpoint(delay=0.2)
    store = CountingStore()
    provider = _provider(endpoint, store)
    await store.save(provider.key, StoredTokens("RT"), 0)  # seeded: the leader reads once
    store.loads = 0
    clock_calls = [0]
    real_clock = provider._clock

    def clock() -> float:
        clock_calls[0] += 1
        return real_clock()

    provider._clock = clock
    served: list[AccessToken] = []

    async def ask() -> None:
        served.append(await provider.get_token())

    async with anyio.create_task_group() as tg:
        for _ in range(1000):
            tg.start_soon(ask)
    assert endpoint.requests == 1
    assert {t.token for t in served} == {"AT-1"}
    assert provider.stats.waiters_served == 999
    # Only the leader reads the store; a waiter looks at the clock once, on arrival.
    assert store.loads == 1
    assert clock_calls[0] <= 1000 + 5


@pytest.mark.anyio
async def test_cancelled_waiters_and_leader_on_each_loop() -> None:
    endpoint = SlowEndpoint(delay=0.3)
    provider = _provider(endpoint, MemoryTokenStore())
    served: list[str] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def patient() -> None:
                served.append((await provider.get_token()).token)

            async def impatient() -> None:
                with anyio.move_on_after(0.05) as scope:
                    await provider.get_token()
                assert scope.cancelled_caught  # stopped waiting at once
                served.append("gave up")

            leader_scope = anyio.CancelScope()

            async def leader() -> None:
                with leader_scope:
                    await provider.get_token()
                served.append("leader cancelled after the refresh")

            tg.start_soon(leader)
            await endpoint.started.wait()
            tg.start_soon(impatient)
            tg.start_soon(patient)
            await anyio.sleep(0.1)
            leader_scope.cancel()  # mid-refresh: it must finish the refresh first
    assert served == ["gave up", "AT-1", "leader cancelled after the refresh"]
    assert endpoint.requests == 1
    assert (await provider.get_token()).token == "AT-1"  # cached: nothing was lost


@pytest.mark.anyio
async def test_a_flight_waits_on_the_running_loops_own_event(anyio_backend: str) -> None:
    # anyio.Event would add a coroutine per waiter (docs/tokens.md: the token storm).
    expected = trio.Event if anyio_backend == "trio" else asyncio.Event
    assert isinstance(_new_signal(), expected)


def test_the_issuers_refresh_time_is_jittered_too() -> None:
    provider = RefreshTokenProvider(ENDPOINT, account="a", refresh_token="RT")
    obtained = 1_000_000.0
    # Microsoft: expires_in 3600, refresh_in 1800 -> refresh_on half-way.
    token = AccessToken(
        "AT", expires_at=obtained + 3600, obtained_at=obtained, refresh_on=obtained + 1800
    )
    random.seed(6)
    planned = [provider._plan_refresh(token) - obtained for _ in range(400)]
    # Never before the issuer's time, never later than a quarter of what is left after it,
    # and spread over that range, not one instant for a whole fleet.
    assert min(planned) >= 1800
    assert max(planned) <= 1800 + 0.25 * 1800
    assert max(planned) - min(planned) > 0.8 * 0.25 * 1800
    assert statistics.pstdev(planned) > 100
    # Without an expiry, the suggestion stands as it is: there is no window to spread over.
    bare = AccessToken("AT", obtained_at=obtained, refresh_on=obtained + 1800)
    assert provider._plan_refresh(bare) == obtained + 1800
