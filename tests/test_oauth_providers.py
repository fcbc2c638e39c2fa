"""The refreshing-provider core against a scripted token endpoint (httpx.MockTransport).

Single flight, cancellation, invalidate, proactive refresh, backoff, rotation, stores, the
device flow's polling rules, JWT signing, and no secret in logs/reprs/exceptions.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
import trio
import trio.lowlevel

from trio_mailoauth.errors import InvalidGrantError, OAuth2Error, TemporaryOAuth2Error
from trio_mailoauth.oauth import (
    AccessToken,
    ClientCredentialsProvider,
    DeviceCodeFlow,
    MemoryTokenStore,
    RefreshTokenProvider,
    ServiceAccountProvider,
    SQLiteTokenStore,
    StoredTokens,
    providers,
)
from trio_mailoauth.oauth.jwt import service_account_claims, sign_rs256

SECRETS = ("RT-SECRET", "client-SECRET", "AT-SECRET")
ENDPOINT = providers.generic(
    token_url="https://id.test/token",
    client_id="cid",
    client_secret="client-SECRET",
    scopes=["mail"],
)

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class Endpoint:
    """A scripted token endpoint: answers with `plan` entries in order (then the default)."""

    def __init__(self, delay: float = 0.0, rotate: bool = False) -> None:
        self.delay = delay
        self.rotate = rotate
        self.forms: list[dict[str, str]] = []
        self.plan: list[httpx.Response | Exception] = []
        self.issued = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.forms.append(form)
        if self.delay:
            await trio.sleep(self.delay)
        if self.plan:
            step = self.plan.pop(0)
            if isinstance(step, Exception):
                raise step
            return step
        self.issued += 1
        body = {"access_token": f"AT-SECRET-{self.issued}", "token_type": "Bearer"}
        body["expires_in"] = 3600  # type: ignore[assignment]
        if self.rotate:
            body["refresh_token"] = f"RT-SECRET-{self.issued}"
        return httpx.Response(200, json=body)


def _provider(
    endpoint: Endpoint, store: MemoryTokenStore | SQLiteTokenStore | None = None
) -> RefreshTokenProvider:
    http = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
    return RefreshTokenProvider(
        ENDPOINT, account="alice@example.test", refresh_token="RT-SECRET", store=store, http=http
    )


@pytest.fixture(autouse=True)
def _no_secrets_logged(caplog: pytest.LogCaptureFixture) -> object:
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        text = record.getMessage()
        assert not any(s in text for s in SECRETS), text


async def test_one_refresh_for_a_thousand_waiters() -> None:
    endpoint = Endpoint(delay=0.2)
    provider = _provider(endpoint)
    tokens: list[AccessToken] = []

    async def ask() -> None:
        tokens.append(await provider.get_token())

    async with trio.open_nursery() as nursery:
        for _ in range(1000):
            nursery.start_soon(ask)
    assert len(endpoint.forms) == 1
    assert {t.token for t in tokens} == {"AT-SECRET-1"}
    assert provider.stats.requests == 1
    assert provider.stats.waiters_served == 999
    assert endpoint.forms[0]["refresh_token"] == "RT-SECRET"
    assert endpoint.forms[0]["scope"] == "mail"


async def test_cancelled_waiters_do_not_cancel_the_refresh() -> None:
    endpoint = Endpoint(delay=0.2)
    provider = _provider(endpoint)
    served: list[AccessToken] = []

    async def patient() -> None:
        served.append(await provider.get_token())

    async with trio.open_nursery() as nursery:
        with trio.move_on_after(0.05) as leader_scope:
            nursery.start_soon(patient)  # a waiter started after the leader
            await provider.get_token()  # the leader, cancelled midway
        nursery.start_soon(patient)
    # The leader finished the refresh (shielded) and was cancelled only afterwards.
    assert leader_scope.cancelled_caught
    assert [t.token for t in served] == ["AT-SECRET-1", "AT-SECRET-1"]
    assert len(endpoint.forms) == 1
    # Every caller cancelled: the refresh still lands, and is reused.
    provider.invalidate(served[0])
    with trio.move_on_after(0.01):
        await provider.get_token()
    assert (await provider.get_token()).token == "AT-SECRET-2"
    assert len(endpoint.forms) == 2


async def test_invalidate_of_a_replaced_token_does_nothing() -> None:
    endpoint = Endpoint(delay=0.05)
    provider = _provider(endpoint)
    old = await provider.get_token()
    results: list[str] = []

    async def connection() -> None:
        provider.invalidate(old)  # every connection saw the same old token fail
        results.append((await provider.get_token()).token)
        provider.invalidate(old)  # late: already replaced

    async with trio.open_nursery() as nursery:
        for _ in range(200):
            nursery.start_soon(connection)
    assert len(endpoint.forms) == 2
    assert set(results) == {"AT-SECRET-2"}
    assert (await provider.get_token()).token == "AT-SECRET-2"
    assert provider.stats.invalidations == 1


async def test_proactive_refresh_serves_the_valid_token_meanwhile() -> None:
    endpoint = Endpoint(delay=0.1)
    provider = _provider(endpoint)
    now = [1_000_000.0]
    provider._clock = lambda: now[0]
    first = await provider.get_token()  # expires_at = now + 3600
    now[0] += 3600 - 200  # inside the 300 s window (jitter delays it by at most 75 s)
    got: dict[str, str] = {}

    async def ask(name: str) -> None:
        got[name] = (await provider.get_token()).token

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "leader")
        await trio.sleep(0.01)
        nursery.start_soon(ask, "other")
        await trio.sleep(0.01)
        assert got == {"other": first.token}  # not blocked by the refresh
    assert got["leader"] == "AT-SECRET-2"
    assert (await provider.get_token()).token == "AT-SECRET-2"
    # A failing early refresh still serves the valid token, and is not retried at once.
    now[0] += 3600 - 200
    endpoint.plan.append(httpx.Response(503, json={"error": "temporarily_unavailable"}))
    assert (await provider.get_token()).token == "AT-SECRET-2"
    assert (await provider.get_token()).token == "AT-SECRET-2"
    assert len(endpoint.forms) == 3


async def test_retry_after_is_honoured_and_the_refresh_token_kept() -> None:
    endpoint = Endpoint(rotate=True)
    store = MemoryTokenStore()
    provider = _provider(endpoint, store)
    now = [1_000_000.0]
    provider._clock = lambda: now[0]
    endpoint.plan = [
        httpx.Response(429, headers={"Retry-After": "30"}, json={"error": "slow"}),
        httpx.Response(503, text="<html>down</html>"),
        httpx.ConnectError("refused"),
    ]
    with pytest.raises(TemporaryOAuth2Error) as info:
        await provider.get_token()
    assert info.value.retry_after == 30
    now[0] += 10
    with pytest.raises(TemporaryOAuth2Error) as info:
        await provider.get_token()  # backing off: no request
    assert info.value.retry_after == pytest.approx(20)
    assert len(endpoint.forms) == 1
    now[0] += 21
    with pytest.raises(TemporaryOAuth2Error):  # the 503 (2nd failure in a row, no Retry-After)
        await provider.get_token()
    now[0] += 2.5  # exponential: 2 s after the second failure
    with pytest.raises(TemporaryOAuth2Error) as info:
        await provider.get_token()  # the network error
    assert info.value.error == "network_error"
    assert (await store.load(provider.key)).refresh_token == "RT-SECRET"
    now[0] += 4.5  # 4 s after the third
    assert (await provider.get_token()).token == "AT-SECRET-1"
    assert [f["refresh_token"] for f in endpoint.forms] == ["RT-SECRET"] * 4
    assert (await store.load(provider.key)).refresh_token == "RT-SECRET-1"  # rotated, persisted
    assert provider.stats.failures["temporary"] == 3


async def test_invalid_grant_rereads_the_store() -> None:
    endpoint = Endpoint(rotate=True)
    store = MemoryTokenStore()
    provider = _provider(endpoint, store)
    await provider.get_token()
    provider.invalidate(await provider.get_token())
    # A sibling rotated the refresh token behind our back (no lease): ours is dead.
    record = await store.load(provider.key)
    await store.save(provider.key, StoredTokens("RT-SECRET-sibling", None), record.version)
    await store.save(provider.key, StoredTokens("RT-SECRET-1", None), record.version + 1)
    endpoint.plan.append(httpx.Response(400, json={"error": "invalid_grant"}))
    # Our refresh with RT-SECRET-1 gets invalid_grant; the re-read sees a sibling's rotation.
    original_save = store.save
    real_load = store.load
    loads = [0]

    async def load(key: str) -> StoredTokens:
        loads[0] += 1
        if loads[0] == 2:  # the re-read after invalid_grant sees a sibling's rotation
            current = await real_load(key)
            await original_save(key, StoredTokens("RT-SECRET-sib2", None), current.version)
        return await real_load(key)

    store.load = load  # type: ignore[method-assign]
    token = await provider.get_token()
    assert token.token == "AT-SECRET-2"
    assert [f["refresh_token"] for f in endpoint.forms[-2:]] == ["RT-SECRET-1", "RT-SECRET-sib2"]
    # A plain invalid_grant (nobody rotated) surfaces with the provider's description.
    provider.invalidate(token)
    description = "AADSTS700082: The refresh token has expired due to inactivity."
    endpoint.plan.append(
        httpx.Response(400, json={"error": "invalid_grant", "error_description": description})
    )
    with pytest.raises(InvalidGrantError) as info:
        await provider.get_token()
    assert info.value.error_description == description
    assert provider.stats.failures["invalid_grant"] == 1


async def test_store_holds_the_newest_tokens_and_a_new_provider_uses_them(tmp_path: Path) -> None:
    endpoint = Endpoint(rotate=True)
    store = SQLiteTokenStore(tmp_path / "tokens.db")
    provider = _provider(endpoint, store)
    first = await provider.get_token()
    assert stat.S_IMODE(os.stat(tmp_path / "tokens.db").st_mode) == 0o600
    # A new process (a new provider on the same file) reuses the stored access token...
    again = _provider(endpoint, SQLiteTokenStore(tmp_path / "tokens.db"))
    assert (await again.get_token()).token == first.token
    assert again.stats.store_hits == 1
    # ...and, once it is rejected, refreshes with the rotated refresh token, not the seed.
    again.invalidate(first)
    assert (await again.get_token()).token == "AT-SECRET-2"
    assert endpoint.forms[-1]["refresh_token"] == "RT-SECRET-1"
    assert len(endpoint.forms) == 2


async def test_sqlite_cas_lease_and_encryption(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key()
    path = tmp_path / "enc.db"
    store = SQLiteTokenStore(path, encryption_key=key)
    token = AccessToken("AT-SECRET", expires_at=5.0, scopes=("a", "b"), obtained_at=1.0)
    assert await store.save("k", StoredTokens("RT-SECRET", token), 0)
    assert not await store.save("k", StoredTokens("RT-SECRET-old", None), 0)  # stale writer
    loaded = await store.load("k")
    assert loaded.refresh_token == "RT-SECRET"
    assert loaded.access_token == token
    assert loaded.version == 1
    raw = await trio.Path(path).read_bytes()  # the WAL is checkpointed at close
    assert b"RT-SECRET" not in raw
    assert b"AT-SECRET" not in raw
    with pytest.raises(ValueError, match="encrypted"):
        await SQLiteTokenStore(path).load("k")
    with pytest.raises(ValueError, match="decrypted"):
        await SQLiteTokenStore(path, encryption_key=Fernet.generate_key()).load("k")
    with pytest.raises(ValueError, match="key"):
        SQLiteTokenStore(path, encryption_key="not-a-key")
    # The lease excludes a second store object on the same file (another process, in effect).
    other = SQLiteTokenStore(path, encryption_key=key)
    order: list[str] = []

    async def hold(name: str, s: SQLiteTokenStore) -> None:
        async with s.lease("k"):
            order.append(f"{name}+")
            await trio.sleep(0.1)
            order.append(f"{name}-")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, "a", store)
        await trio.sleep(0.03)
        nursery.start_soon(hold, "b", other)
    assert order == ["a+", "a-", "b+", "b-"]


async def test_env_var_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.fernet import Fernet

    monkeypatch.setenv("TRIO_MAILOAUTH_TOKEN_KEY", Fernet.generate_key().decode())
    store = SQLiteTokenStore(tmp_path / "t.db")
    assert "encrypted=True" in repr(store)
    await store.save("k", StoredTokens("RT-SECRET"), 0)
    assert (await store.load("k")).refresh_token == "RT-SECRET"


async def test_owned_http_client_is_closed_injected_is_not() -> None:
    provider = ClientCredentialsProvider(ENDPOINT)
    client = provider._client()
    await provider.aclose()
    assert client.is_closed
    injected = httpx.AsyncClient(transport=httpx.MockTransport(Endpoint()))
    async with ClientCredentialsProvider(ENDPOINT, http=injected) as app:
        assert (await app.get_token()).token == "AT-SECRET-1"
    assert not injected.is_closed
    await injected.aclose()


async def test_device_flow_pending_and_slow_down() -> None:
    polls: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if request.url.path == "/device":
            body = {"device_code": "DC-SECRET", "user_code": "WXYZ-1234"}
            body |= {"verification_uri": "https://id.test/device", "interval": "0"}
            return httpx.Response(200, json=body)
        assert form["device_code"] == "DC-SECRET"
        polls.append(trio.current_time())
        answers = ["authorization_pending", "slow_down", "authorization_pending"]
        if len(polls) <= len(answers):
            return httpx.Response(400, json={"error": answers[len(polls) - 1]})
        tokens = {"access_token": "AT-SECRET", "refresh_token": "RT-SECRET", "expires_in": 60}
        return httpx.Response(200, json=tokens)

    endpoint = providers.generic(
        token_url="https://id.test/token",
        client_id="pub",
        device_authorization_url="https://id.test/device",
    )
    prompts: list[str] = []
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    flow = DeviceCodeFlow(
        endpoint,
        account="a@b",
        on_prompt=lambda auth: prompts.append(auth.user_code),
        slow_down_increment=0.2,
        http=http,
    )
    provider = await flow.run()
    assert prompts == ["WXYZ-1234"]
    assert flow.polls == 4
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert gaps[0] < 0.15  # interval 0 -> the 50 ms floor
    assert gaps[2] >= 0.2  # slow_down added its increment from then on
    assert (await provider.get_token()).token == "AT-SECRET"
    assert (await provider.store.load(provider.key)).refresh_token == "RT-SECRET"
    denied = [httpx.Response(400, json={"error": "access_denied"})]

    async def deny(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/device":
            return await handler(request)
        return denied[0]

    flow = DeviceCodeFlow(
        endpoint,
        account="a@b",
        on_prompt=lambda auth: None,
        http=httpx.AsyncClient(transport=httpx.MockTransport(deny)),
    )
    with pytest.raises(Exception, match="access_denied"):
        await flow.run()


def test_rs256_assertion_verifies_with_the_public_key() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from trio_mailoauth.testing.oauth_model import verify_assertion

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = service_account_claims(
        issuer="sa@p.iam",
        subject="alice@example.test",
        scopes=("mail",),
        audience="https://t/token",
        now=1000.0,
    )
    assert claims["exp"] - claims["iat"] == 3600
    jws = sign_rs256(claims, key, key_id="kid1")
    verified = verify_assertion(jws, {"sa@p.iam": key.public_key()}, {"https://t/token"}, 1000.0)
    assert verified["sub"] == "alice@example.test"
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {"client_email": "sa@p.iam", "private_key": pem, "private_key_id": "kid1"}
    provider = ServiceAccountProvider.from_service_account_info(
        info, subject="bob@x", scopes=("s",)
    )
    assert "PRIVATE" not in repr(provider)
    assert provider.for_subject("carol@x").subject == "carol@x"
    with pytest.raises(ValueError, match="PEM") as excinfo:
        ServiceAccountProvider(issuer="i", private_key="garbage", subject=None, scopes=("s",))
    assert "garbage" not in str(excinfo.value)


def test_reprs_and_errors_hide_secrets() -> None:
    provider = _provider(Endpoint())
    assert not any(s in repr(provider) for s in SECRETS)
    assert not any(s in repr(StoredTokens("RT-SECRET", AccessToken("AT-SECRET"))) for s in SECRETS)
    assert "client-SECRET" not in repr(ENDPOINT)
    assert json.dumps(provider.stats.failures) == "{}"


async def test_a_refresh_past_its_deadline_gives_every_caller_a_timeout() -> None:
    # The shielded refresh's own deadline: its Cancelled must not escape to the callers.
    endpoint = Endpoint(delay=10)
    provider = _provider(endpoint)
    provider._refresh_timeout = 0.1
    errors: list[BaseException] = []

    async def ask() -> None:
        try:
            await provider.get_token()
        except BaseException as exc:  # a Cancelled is the bug looked for
            errors.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)  # the leader
            await trio.sleep(0.01)
            nursery.start_soon(ask)  # a waiter
    assert [type(e) for e in errors] == [TemporaryOAuth2Error] * 2
    assert all(isinstance(e, TemporaryOAuth2Error) and e.error == "timeout" for e in errors)


async def test_a_failure_that_is_not_oauth2_reaches_every_caller_typed() -> None:
    class BrokenStore(MemoryTokenStore):
        async def load(self, key: str) -> StoredTokens:
            await trio.sleep(0.05)
            raise ValueError("a stored token cannot be decrypted with this key")

    provider = _provider(Endpoint(), BrokenStore())
    errors: list[BaseException] = []

    async def ask() -> None:
        try:
            await provider.get_token()
        except Exception as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(ask)
    assert [type(e) for e in errors] == [OAuth2Error] * 3
    assert len({id(e) for e in errors}) == 3  # one object per caller
    assert all(isinstance(e.__cause__, ValueError) for e in errors)
    assert all("decrypted" in str(e) for e in errors)


async def test_a_leader_interrupted_by_a_base_exception_releases_its_waiters() -> None:
    class Interrupting(MemoryTokenStore):
        async def load(self, key: str) -> StoredTokens:
            await trio.sleep(0.05)
            raise KeyboardInterrupt

    provider = _provider(Endpoint(), Interrupting())
    waiter_error: list[BaseException] = []

    async def waiter() -> None:
        try:
            await provider.get_token()
        except Exception as exc:
            waiter_error.append(exc)

    async def leader() -> None:
        with pytest.raises(KeyboardInterrupt):
            await provider.get_token()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(leader)
            await trio.sleep(0.01)
            nursery.start_soon(waiter)
    assert [type(e) for e in waiter_error] == [OAuth2Error]


async def test_a_failed_early_refresh_does_not_serve_a_token_rejected_meanwhile() -> None:
    endpoint = Endpoint(delay=0.1)
    provider = _provider(endpoint)
    now = [1_000_000.0]
    provider._clock = lambda: now[0]
    first = await provider.get_token()
    now[0] += 3600 - 200  # inside the proactive window
    endpoint.plan.append(httpx.Response(503, json={"error": "temporarily_unavailable"}))
    async with trio.open_nursery() as nursery:

        async def reject_it() -> None:
            await trio.sleep(0.05)  # while the early refresh runs, a server rejects it
            provider.invalidate(first)

        nursery.start_soon(reject_it)
        with pytest.raises(TemporaryOAuth2Error):
            await provider.get_token()


async def test_a_rotated_refresh_token_is_persisted_even_when_the_cas_keeps_losing() -> None:
    store = MemoryTokenStore()
    provider = _provider(Endpoint(rotate=True), store)
    real_save = store.save
    losses = [2]

    async def save(key: str, tokens: StoredTokens, expected_version: int) -> bool:
        if losses[0] and tokens.refresh_token == "RT-SECRET-1":
            losses[0] -= 1
            current = await store.load(key)  # someone else writes just before us, twice
            await real_save(key, StoredTokens("RT-SECRET-other"), current.version)
            return False
        return await real_save(key, tokens, expected_version)

    store.save = save  # type: ignore[method-assign]
    token = await provider.get_token()
    record = await store.load(provider.key)
    assert record.refresh_token == "RT-SECRET-1"
    assert record.access_token == token


# Stopping early leaves httpx's nested body generators unexhausted: trio warns when they are
# collected (the connection itself is closed by the stream's context manager).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_huge_token_response_is_not_buffered() -> None:
    chunks = [0]

    async def endless() -> AsyncIterator[bytes]:
        while True:
            chunks[0] += 1
            await trio.lowlevel.checkpoint()  # the refresh deadline can end it: no hang
            yield b" " * 65536

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    provider = RefreshTokenProvider(
        ENDPOINT, account="a", refresh_token="RT-SECRET", http=http, refresh_timeout=2
    )
    error: BaseException | None = None
    with trio.fail_after(5):
        try:
            await provider.get_token()
        except BaseException as exc:  # a Cancelled from the deadline would be the bug
            error = exc
    assert isinstance(error, TemporaryOAuth2Error)
    assert error.error == "invalid_response"
    assert chunks[0] <= 6  # 256 KiB and a bit, not what the server would send


@pytest.mark.parametrize("expires_in", ["NaN", "-5"])
async def test_a_nonsense_expiry_does_not_refresh_on_every_call(expires_in: str) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        body = '{"access_token": "AT-SECRET", "expires_in": ' + expires_in + "}"
        return httpx.Response(200, content=body.encode())

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    provider = RefreshTokenProvider(ENDPOINT, account="a", refresh_token="RT-SECRET", http=http)
    for _ in range(3):
        await provider.get_token()
    assert provider.stats.requests == 1


async def test_discovery_checks_the_issuer_and_survives_bad_json() -> None:
    documents: dict[str, bytes] = {}

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=documents[request.url.host])

    metadata = {"token_endpoint": "https://evil.test/token"}
    documents["good.test"] = json.dumps({**metadata, "issuer": "https://good.test"}).encode()
    documents["spoof.test"] = json.dumps({**metadata, "issuer": "https://evil.test"}).encode()
    documents["garbage.test"] = b"{not json"
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        found = await providers.discover("https://good.test/", client_id="c", http=http)
        assert found.token_url == "https://evil.test/token"
        for host in ("spoof.test", "garbage.test"):
            with pytest.raises(OAuth2Error, match="discovery_failed"):
                await providers.discover(f"https://{host}", client_id="c", http=http)
