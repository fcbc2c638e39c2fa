"""The POP3 client against the real Dovecot POP3 (STLS and implicit TLS) and the local OAuth2
server that Dovecot asks to introspect tokens."""

from __future__ import annotations

import time
from typing import Any

import pytest

from trio_mailoauth._client import ClientState, Opener
from trio_mailoauth.errors import AuthenticationError, POP3ResponseError
from trio_mailoauth.oauth.tokens import AccessToken
from trio_mailoauth.pop3 import POP3Client, open_pop3
from trio_mailoauth.sasl import Login, OAuthBearer, Plain, SASLMechanism, XOAuth2
from trio_mailoauth.testing.oauth_server import OAuthServerControl
from trio_mailoauth.testing.servers import MailServers
from trio_mailoauth.testing.token_provider import LocalTokenProvider
from trio_mailoauth.transport import TLSMode

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USER = "alice@example.test"
TLS_MODES: list[TLSMode] = ["starttls", "implicit"]


def _open(servers: MailServers, tls: TLSMode, **kwargs: Any) -> Opener[POP3Client]:
    port = servers.ports.pop3 if tls == "starttls" else servers.ports.pop3s
    return open_pop3(
        servers.host, port, tls=tls, ssl_context=servers.client_ssl_context(), **kwargs
    )


def _token(servers: MailServers, **kwargs: Any) -> str:
    token: str = servers.oauth.mint_token(USER, **kwargs)["access_token"]
    return token


def _mechanism(servers: MailServers, name: str) -> SASLMechanism:
    password = servers.users[USER]
    if name == "XOAUTH2":
        return XOAuth2(USER, _token(servers))
    if name == "OAUTHBEARER":
        return OAuthBearer(USER, _token(servers))
    return Plain(USER, password) if name == "PLAIN" else Login(USER, password)


async def _check_session(pop: POP3Client) -> None:
    assert pop.is_tls
    assert pop.authenticated
    await pop.noop()
    await pop.quit()
    assert pop.state is ClientState.CLOSED


@pytest.mark.parametrize("tls", TLS_MODES)
@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER", "PLAIN", "LOGIN"])
async def test_sasl_login_noop_quit(
    mail_servers: MailServers, tls: TLSMode, mechanism: str
) -> None:
    auth = _mechanism(mail_servers, mechanism)
    pop = await _open(mail_servers, tls)
    try:
        assert pop.greeting.startswith("Dovecot")
        if mechanism not in pop.sasl_mechanisms:
            pytest.skip(f"Dovecot does not offer {mechanism} on POP3 here")
        assert {"RESP-CODES", "AUTH-RESP-CODE", "UIDL", "TOP", "USER"} <= set(pop.capabilities)
        assert "STLS" not in pop.capabilities  # after TLS (or with implicit TLS)
        await pop.authenticate(auth)
        await _check_session(pop)
    finally:
        await pop.aclose()


@pytest.mark.parametrize("tls", TLS_MODES)
async def test_user_pass(mail_servers: MailServers, tls: TLSMode) -> None:
    async with _open(mail_servers, tls) as pop:
        await pop.user_pass(USER, mail_servers.users[USER])
        await _check_session(pop)


async def test_wrong_password_is_permanent_and_connection_stays_usable(
    mail_servers: MailServers,
) -> None:
    async with _open(mail_servers, "implicit") as pop:
        with pytest.raises(AuthenticationError) as info:
            await pop.user_pass(USER, "wrong-password")
        assert info.value.kind == "permanent"
        assert isinstance(info.value.response, POP3ResponseError)
        assert info.value.response.code == "AUTH"
        assert pop.state is ClientState.OK
        await pop.user_pass(USER, mail_servers.users[USER])
        await pop.noop()


async def test_auth_option_of_open_pop3(mail_servers: MailServers) -> None:
    auth = XOAuth2(USER, _token(mail_servers))
    async with _open(mail_servers, "starttls", auth=auth) as pop:
        assert pop.authenticated
        await pop.noop()


async def test_starttls_from_a_non_loopback_source_learns_auth_after_tls(
    mail_servers: MailServers,
) -> None:
    # From 127.0.0.2 Dovecot treats plaintext as insecure: the mechanisms appear only after
    # TLS, so this passes only if the client asks CAPA again after STLS.
    async with _open(
        mail_servers,
        "starttls",
        source_address="127.0.0.2",
        auth=XOAuth2(USER, _token(mail_servers)),
    ) as pop:
        assert "XOAUTH2" in pop.sasl_mechanisms
        assert pop.authenticated


@pytest.mark.parametrize(
    ("mechanism", "detail"),
    [
        ("XOAUTH2", {"status": "401", "schemes": "bearer", "scope": "mail"}),
        ("OAUTHBEARER", {"status": "invalid_token"}),
    ],
)
@pytest.mark.parametrize("how", ["expired", "unknown"])
async def test_rejected_token(
    mail_servers: MailServers, mechanism: str, detail: dict[str, str], how: str
) -> None:
    token = _token(mail_servers, expires_in=0) if how == "expired" else "not-a-real-token"
    auth = XOAuth2(USER, token) if mechanism == "XOAUTH2" else OAuthBearer(USER, token)
    async with _open(mail_servers, "implicit") as pop:
        with pytest.raises(AuthenticationError) as info:
            await pop.authenticate(auth)
        error = info.value
        assert error.kind == "token_rejected"
        assert error.detail == detail
        assert isinstance(error.response, POP3ResponseError)
        assert (error.response.code, error.response.text) == ("AUTH", "Authentication failed.")
        assert token not in str(error)
        # The refusal is a completed round trip: a good token now works on this connection.
        await pop.authenticate(XOAuth2(USER, _token(mail_servers)))
        await pop.noop()


async def test_introspection_outage_is_temporary(
    mail_servers: MailServers, oauth: OAuthServerControl
) -> None:
    provider = LocalTokenProvider(
        mail_servers.oauth.token_url,
        refresh_token=mail_servers.oauth.mint_token(USER, with_refresh_token=True)["refresh_token"],
    )
    async with _open(mail_servers, "implicit") as pop:
        await provider.get_token()
        oauth.fail_next("introspect", 1, 503)
        with pytest.raises(AuthenticationError) as info:
            await pop.authenticate(XOAuth2(USER, provider))
        assert info.value.kind == "temporary"
        assert isinstance(info.value.response, POP3ResponseError)
        assert info.value.response.code == "SYS/TEMP"
        assert provider.requests == 1  # no retry, no new token
        assert provider.invalidations == 0
        await pop.authenticate(XOAuth2(USER, provider))
        await pop.noop()


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
async def test_long_token(mail_servers: MailServers, mechanism: str) -> None:
    token = _token(mail_servers, size=2500)
    assert len(token) >= 2500
    auth = XOAuth2(USER, token) if mechanism == "XOAUTH2" else OAuthBearer(USER, token)
    async with _open(mail_servers, "starttls", auth=auth) as pop:
        await pop.noop()


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
async def test_expired_token_is_replaced_once(mail_servers: MailServers, mechanism: str) -> None:
    minted = mail_servers.oauth.mint_token(USER, expires_in=0, with_refresh_token=True)
    expired = AccessToken(minted["access_token"], expires_at=time.time() - 1)
    provider = LocalTokenProvider(
        mail_servers.oauth.token_url, refresh_token=minted["refresh_token"], first=expired
    )
    auth = XOAuth2(USER, provider) if mechanism == "XOAUTH2" else OAuthBearer(USER, provider)
    async with _open(mail_servers, "implicit", auth=auth) as pop:
        assert pop.authenticated
        await pop.noop()
    assert provider.requests == 1  # exactly one extra token
    assert provider.invalidations == 1
