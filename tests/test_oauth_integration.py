"""Token providers against the real local OAuth2 server (and Dovecot, for logins).

Every grant gives tokens that log in over IMAP, SMTP and POP3; rotation persists across a
killed process; two processes sharing one SQLite store refresh once; 500 IMAP logins with an
expired token cause one refresh; Retry-After, 5xx storms and invalid_grant behave.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from trio_mailoauth.errors import InvalidGrantError, OAuth2Error, TemporaryOAuth2Error
from trio_mailoauth.imap import open_imap
from trio_mailoauth.oauth import (
    AccessToken,
    AuthorizationCodeFlow,
    CachingTokenProvider,
    ClientCredentialsProvider,
    DeviceAuthorization,
    DeviceCodeFlow,
    Endpoint,
    RefreshTokenProvider,
    ServiceAccountProvider,
    SQLiteTokenStore,
    StoredTokens,
    providers,
)
from trio_mailoauth.pop3 import open_pop3
from trio_mailoauth.sasl import OAuthBearer, XOAuth2
from trio_mailoauth.smtp import open_smtp
from trio_mailoauth.testing.oauth_server import OAuthServerControl
from trio_mailoauth.testing.servers import MailServers

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USER = "alice@example.test"
REFRESH_GRANT = "refresh_token"
# Secrets handed out during a test; the autouse fixture checks none reached the log.
SECRETS: list[str] = []


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    SECRETS[:] = ["test-secret"]
    yield
    for record in caplog.records:
        text = record.getMessage()
        for secret in SECRETS:
            assert secret not in text, record.name


def _endpoint(oauth: OAuthServerControl, *, public: bool = False) -> Endpoint:
    return providers.generic(
        token_url=oauth.token_url,
        client_id="public-client" if public else "test-client",
        client_secret=None if public else "test-secret",
        scopes=["mail"],
        authorization_url=oauth.authorization_url,
        device_authorization_url=oauth.device_authorization_url,
    )


def _refresh_provider(
    oauth: OAuthServerControl, store: SQLiteTokenStore | None = None
) -> RefreshTokenProvider:
    minted = oauth.mint_token(USER, with_refresh_token=True)
    SECRETS.extend((minted["refresh_token"], minted["access_token"]))
    return RefreshTokenProvider(
        _endpoint(oauth), account=USER, refresh_token=minted["refresh_token"], store=store
    )


async def _browser(url: str) -> None:
    """The user's browser: follows the authorization server's 302 to our loopback listener."""
    async with httpx.AsyncClient(follow_redirects=True, trust_env=False) as browser:
        # Someone else's redirect first (wrong state): the listener must ignore it.
        listener = httpx.URL(url).params["redirect_uri"]
        forged = await browser.get(f"{listener}?code=stolen&state=wrong")
        assert forged.status_code == 400
        answer = await browser.get(url)
        assert answer.status_code == 200
        assert b"Logged in" in answer.content


async def _auth_code_provider(oauth: OAuthServerControl) -> CachingTokenProvider:
    flow = AuthorizationCodeFlow(_endpoint(oauth, public=True), account=USER, open_browser=_browser)
    with anyio.fail_after(10):
        return await flow.run()


async def _device_provider(oauth: OAuthServerControl) -> CachingTokenProvider:
    oauth.configure(device_interval=0, slow_down_increment=0)
    seen: list[DeviceAuthorization] = []
    prompted = anyio.Event()
    result: list[RefreshTokenProvider] = []

    def prompt(auth: DeviceAuthorization) -> None:
        seen.append(auth)
        prompted.set()

    async def run() -> None:
        flow = DeviceCodeFlow(_endpoint(oauth), account=USER, on_prompt=prompt)
        result.append(await flow.run())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await prompted.wait()
            await anyio.sleep(0.2)  # let it poll: authorization_pending
            oauth.approve_device(seen[0].user_code, USER)
    pending = oauth.stats()["failed"].get("urn:ietf:params:oauth:grant-type:device_code", 0)
    assert pending >= 1
    return result[0]


async def _client_credentials_provider(oauth: OAuthServerControl) -> CachingTokenProvider:
    return ClientCredentialsProvider(_endpoint(oauth), extra_params={"subject": USER})


async def _service_account_provider(oauth: OAuthServerControl) -> CachingTokenProvider:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    oauth.register_service_account("mailer@project.iam.test", public)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ServiceAccountProvider(
        issuer="mailer@project.iam.test",
        private_key=pem,
        subject=USER,
        scopes=("mail",),
        token_url=oauth.token_url,
    )


async def _refresh_token_provider(oauth: OAuthServerControl) -> CachingTokenProvider:
    return _refresh_provider(oauth)


GRANTS: dict[str, Callable[[OAuthServerControl], Awaitable[CachingTokenProvider]]] = {
    "refresh_token": _refresh_token_provider,
    "authorization_code": _auth_code_provider,
    "device_code": _device_provider,
    "client_credentials": _client_credentials_provider,
    "jwt_bearer": _service_account_provider,
}


@pytest.mark.parametrize("grant", sorted(GRANTS))
async def test_every_grant_logs_in_over_imap_smtp_pop3(
    grant: str,
    mail_servers: MailServers,
    oauth: OAuthServerControl,
) -> None:
    provider = await GRANTS[grant](oauth)
    context = mail_servers.client_ssl_context()
    host, ports = mail_servers.host, mail_servers.ports
    async with provider:
        auth = XOAuth2(USER, provider)
        async with open_imap(
            host, ports.imap, tls="starttls", ssl_context=context, auth=auth
        ) as imap:
            await imap.noop()
        async with open_smtp(
            host,
            ports.submission,
            tls="starttls",
            ssl_context=context,
            auth=OAuthBearer(USER, provider),
        ) as smtp:
            await smtp.noop()
        async with open_pop3(host, ports.pop3s, ssl_context=context, auth=auth) as pop:
            await pop.noop()
        SECRETS.append((await provider.get_token()).token)
        assert provider.stats.refreshes == 1  # one token served all three logins


async def test_500_logins_with_an_expired_token_cause_one_refresh(
    mail_servers: MailServers, oauth: OAuthServerControl
) -> None:
    provider = _refresh_provider(oauth)
    stale = await provider.get_token()
    oauth.expire(token=stale.token)  # expired at the server, still "valid" in our cache
    before = oauth.stats()["issued"].get(REFRESH_GRANT, 0)
    context = mail_servers.client_ssl_context()
    # The test Dovecot runs at most 100 login and 100 imap processes (default_process_limit),
    # so 500 logins run at most 64 at a time; every one of the first 64 fails with the stale
    # token, invalidates it and waits for the same single refresh.
    limiter = anyio.CapacityLimiter(64)
    ok: list[int] = []

    async def login(i: int) -> None:
        async with (
            limiter,
            open_imap(
                mail_servers.host,
                mail_servers.ports.imaps,
                ssl_context=context,
                auth=XOAuth2(USER, provider),
            ) as imap,
        ):
            ok.append(i)
            del imap

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(500):
                tg.start_soon(login, i)
    assert len(ok) == 500
    assert oauth.stats()["issued"].get(REFRESH_GRANT, 0) - before == 1
    assert provider.stats.refreshes == 2  # the first token and the one refresh
    await provider.aclose()


async def test_retry_after_is_honoured(standalone_oauth: OAuthServerControl) -> None:
    async with _refresh_provider(standalone_oauth) as provider:
        standalone_oauth.fail_next("token", 1, 429, "slow_down", retry_after=1)
        with pytest.raises(TemporaryOAuth2Error) as info:
            await provider.get_token()
        assert info.value.retry_after == 1
        calls = standalone_oauth.stats()["calls"]["token"]
        with pytest.raises(TemporaryOAuth2Error):
            await provider.get_token()
        assert standalone_oauth.stats()["calls"]["token"] == calls  # not asked again
        await anyio.sleep(1.05)
        assert (await provider.get_token()).token


async def test_5xx_storm_keeps_the_refresh_token(
    standalone_oauth: OAuthServerControl, tmp_path: Path
) -> None:
    standalone_oauth.set_rotation(True, revoke_family_on_reuse=True)
    store = SQLiteTokenStore(tmp_path / "t.db")
    async with _refresh_provider(standalone_oauth, store) as provider:
        standalone_oauth.fail_next("token", 5, 503, retry_after=0)
        for _ in range(5):
            with pytest.raises(TemporaryOAuth2Error):
                await provider.get_token()
        seeded = (await store.load(provider.key)).refresh_token
        assert seeded is not None
        assert (await provider.get_token()).token
        rotated = (await store.load(provider.key)).refresh_token
        assert rotated not in (None, seeded)


async def test_invalid_grant_has_the_description(standalone_oauth: OAuthServerControl) -> None:
    async with _refresh_provider(standalone_oauth) as provider:
        standalone_oauth.revoke_user(USER)
        with pytest.raises(InvalidGrantError) as info:
            await provider.get_token()
        assert info.value.error_description == "refresh token was revoked"
        assert provider.stats.failures["invalid_grant"] == 1


async def test_device_flow_denied(standalone_oauth: OAuthServerControl) -> None:
    standalone_oauth.configure(device_interval=0)

    def deny(auth: DeviceAuthorization) -> None:
        standalone_oauth.deny_device(auth.user_code)

    flow = DeviceCodeFlow(_endpoint(standalone_oauth), account=USER, on_prompt=deny)
    with anyio.fail_after(10), pytest.raises(OAuth2Error, match="access_denied"):
        await flow.run()


async def test_discovery(standalone_oauth: OAuthServerControl) -> None:
    endpoint = await providers.discover(
        standalone_oauth.base_url,
        client_id="test-client",
        client_secret="test-secret",
        scopes=["mail"],
    )
    assert endpoint.token_url == standalone_oauth.token_url
    assert endpoint.device_authorization_url == standalone_oauth.device_authorization_url
    assert endpoint.client_auth == "basic"
    minted = standalone_oauth.mint_token(USER, with_refresh_token=True)
    async with RefreshTokenProvider(
        endpoint, account=USER, refresh_token=minted["refresh_token"]
    ) as p:
        assert (await p.get_token()).token


_CHILD = """
import hashlib, json, os, sys
import anyio
from trio_mailoauth.oauth import RefreshTokenProvider, SQLiteTokenStore, providers

async def main() -> None:
    endpoint = providers.generic(token_url=sys.argv[2], client_id="test-client",
                                 client_secret="test-secret", scopes=["mail"])
    store = SQLiteTokenStore(sys.argv[1])
    provider = RefreshTokenProvider(endpoint, account=sys.argv[3], store=store)
    token = await provider.get_token()
    print(json.dumps({"token": hashlib.sha256(token.token.encode()).hexdigest(),
                      "requests": provider.stats.requests}), flush=True)
    if sys.argv[4] == "kill":
        os._exit(0)  # no cleanup at all, right after the refresh
    await provider.aclose()

anyio.run(main, backend=sys.argv[5])
"""


async def _child(db: Path, oauth: OAuthServerControl, mode: str, backend: str) -> dict[str, object]:
    args = [sys.executable, "-c", _CHILD, str(db), oauth.token_url, USER, mode, backend]
    result = await anyio.run_process(args)
    value: dict[str, object] = json.loads(result.stdout)
    return value


@pytest.fixture
async def seeded_store(
    standalone_oauth: OAuthServerControl, tmp_path: Path
) -> AsyncIterator[tuple[Path, RefreshTokenProvider]]:
    standalone_oauth.set_rotation(True, revoke_family_on_reuse=True)
    db = tmp_path / "shared.db"
    provider = _refresh_provider(standalone_oauth, SQLiteTokenStore(db))
    assert provider._seed is not None
    await provider.store.save(provider.key, StoredTokens(provider._seed), 0)
    yield db, provider
    await provider.aclose()


async def test_two_processes_share_one_store_and_refresh_once(
    standalone_oauth: OAuthServerControl,
    seeded_store: tuple[Path, RefreshTokenProvider],
    anyio_backend: str,
) -> None:
    db, _ = seeded_store
    standalone_oauth.delay("token", 0.5)  # both processes ask while the refresh runs
    results: list[dict[str, object]] = []

    async def run() -> None:
        results.append(await _child(db, standalone_oauth, "normal", anyio_backend))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        tg.start_soon(run)
    stats = standalone_oauth.stats()
    assert stats["issued"].get(REFRESH_GRANT) == 1
    assert stats["failed"].get(REFRESH_GRANT, 0) == 0  # nobody reused the rotated token
    assert results[0]["token"] == results[1]["token"]
    assert sorted(r["requests"] for r in results) == [0, 1]  # type: ignore[type-var]


async def test_rotation_persists_when_the_process_dies(
    standalone_oauth: OAuthServerControl,
    seeded_store: tuple[Path, RefreshTokenProvider],
    anyio_backend: str,
) -> None:
    db, _ = seeded_store
    killed = await _child(db, standalone_oauth, "kill", anyio_backend)
    assert killed["requests"] == 1
    # The next process: the stored access token is rejected, it refreshes with the rotated
    # refresh token (the seed was rotated out: reusing it would revoke the whole family).
    endpoint = _endpoint(standalone_oauth)
    async with RefreshTokenProvider(endpoint, account=USER, store=SQLiteTokenStore(db)) as nxt:
        first = await nxt.get_token()
        assert hashlib.sha256(first.token.encode()).hexdigest() == killed["token"]
        nxt.invalidate(first)
        second = await nxt.get_token()
        assert second.token != first.token
    assert standalone_oauth.stats()["issued"][REFRESH_GRANT] == 2
    assert standalone_oauth.stats()["failed"].get(REFRESH_GRANT, 0) == 0


async def test_expired_cached_token_recovers_on_the_next_login(
    mail_servers: MailServers, oauth: OAuthServerControl, tmp_path: Path
) -> None:
    store = SQLiteTokenStore(tmp_path / "tokens.db")
    async with _refresh_provider(oauth, store) as provider:
        token = await provider.get_token()
        oauth.expire(token=token.token)
        async with open_imap(
            mail_servers.host,
            mail_servers.ports.imaps,
            ssl_context=mail_servers.client_ssl_context(),
            auth=XOAuth2(USER, provider),
        ) as imap:
            await imap.noop()
        assert provider.stats.invalidations == 1
        new: AccessToken | None = (await store.load(provider.key)).access_token
        assert new is not None
        assert new.token != token.token
