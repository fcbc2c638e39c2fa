"""The IMAP client against the real Dovecot (STARTTLS on ports.imap, implicit TLS on
ports.imaps) and the local OAuth2 server that Dovecot asks to introspect tokens."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any

import anyio
import pytest

from trio_mailoauth._client import ClientState, Opener
from trio_mailoauth.errors import (
    AuthenticationError,
    ConnectionBrokenError,
    IMAPResponseError,
    SessionEndedError,
)
from trio_mailoauth.imap import IMAPClient, IMAPState, open_imap
from trio_mailoauth.oauth.tokens import AccessToken
from trio_mailoauth.sasl import Login, OAuthBearer, Plain, SASLMechanism, XOAuth2
from trio_mailoauth.testing.oauth_server import OAuthServerControl
from trio_mailoauth.testing.servers import MailServers
from trio_mailoauth.testing.token_provider import LocalTokenProvider
from trio_mailoauth.transport import TLSMode

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USER = "alice@example.test"
TLS_MODES: list[TLSMode] = ["starttls", "implicit"]


def _open(servers: MailServers, tls: TLSMode, **kwargs: Any) -> Opener[IMAPClient]:
    port = servers.ports.imap if tls == "starttls" else servers.ports.imaps
    return open_imap(
        servers.host, port, tls=tls, ssl_context=servers.client_ssl_context(), **kwargs
    )


def _token(servers: MailServers, **kwargs: Any) -> str:
    token: str = servers.oauth.mint_token(USER, **kwargs)["access_token"]
    return token


def _bearer(mechanism: str, token: str) -> SASLMechanism:
    return XOAuth2(USER, token) if mechanism == "XOAUTH2" else OAuthBearer(USER, token)


def _mechanism(servers: MailServers, name: str) -> SASLMechanism:
    password = servers.users[USER]
    if name in ("XOAUTH2", "OAUTHBEARER"):
        return _bearer(name, _token(servers))
    return Plain(USER, password) if name == "PLAIN" else Login(USER, password)


async def _check_session(imap: IMAPClient) -> None:
    assert imap.is_tls
    assert imap.protocol_state is IMAPState.AUTHENTICATED
    assert "IMAP4REV1" in imap.capabilities
    assert not imap.has_capability("STARTTLS")
    await imap.noop()
    await imap.logout()
    assert imap.state is ClientState.CLOSED


@pytest.mark.parametrize("tls", TLS_MODES)
@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER", "PLAIN", "LOGIN"])
async def test_sasl_login_noop_logout(
    mail_servers: MailServers, tls: TLSMode, mechanism: str
) -> None:
    auth = _mechanism(mail_servers, mechanism)
    imap = await _open(mail_servers, tls)
    try:
        assert imap.greeting.startswith("Dovecot")
        assert imap.protocol_state is IMAPState.NOT_AUTHENTICATED
        assert imap.has_capability(f"AUTH={mechanism}")
        assert imap.has_capability("SASL-IR")
        await imap.authenticate(auth)
        await _check_session(imap)
    finally:
        await imap.aclose()


@pytest.mark.parametrize("tls", TLS_MODES)
async def test_login_command(mail_servers: MailServers, tls: TLSMode) -> None:
    async with _open(mail_servers, tls) as imap:
        await imap.login(USER, mail_servers.users[USER])
        await _check_session(imap)


async def test_wrong_password_is_permanent_and_connection_stays_usable(
    mail_servers: MailServers,
) -> None:
    async with _open(mail_servers, "implicit") as imap:
        with pytest.raises(AuthenticationError) as info:
            await imap.login(USER, "wrong-password")
        assert info.value.kind == "permanent"
        assert isinstance(info.value.response, IMAPResponseError)
        assert info.value.response.code == "AUTHENTICATIONFAILED"
        assert imap.state is ClientState.OK
        await imap.login(USER, mail_servers.users[USER])
        assert imap.protocol_state is IMAPState.AUTHENTICATED


async def test_auth_option_and_capabilities_after_authentication(
    mail_servers: MailServers,
) -> None:
    async with _open(mail_servers, "starttls", auth=XOAuth2(USER, _token(mail_servers))) as imap:
        # Dovecot lists the post-login capabilities in the tagged OK.
        assert imap.has_capability("IDLE")
        assert not imap.has_capability("AUTH=XOAUTH2")
        assert await imap.capability() == imap.capabilities


async def test_starttls_from_a_non_loopback_source(mail_servers: MailServers) -> None:
    # From 127.0.0.2 Dovecot treats plaintext as insecure (LOGINDISABLED, no mechanisms):
    # this passes only if the client asks CAPABILITY again after STARTTLS.
    async with _open(mail_servers, "starttls", source_address="127.0.0.2") as imap:
        assert not imap.has_capability("LOGINDISABLED")
        assert imap.has_capability("AUTH=XOAUTH2")
        await imap.login(USER, mail_servers.users[USER])
        await imap.noop()


@pytest.mark.parametrize(
    ("mechanism", "detail"),
    [
        ("XOAUTH2", {"status": "401", "schemes": "bearer", "scope": "mail"}),
        ("OAUTHBEARER", {"status": "invalid_token"}),
    ],
)
@pytest.mark.parametrize("how", ["expired", "unknown"])
async def test_rejected_token(
    mail_servers: MailServers,
    caplog: pytest.LogCaptureFixture,
    mechanism: str,
    detail: dict[str, str],
    how: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mailoauth.imap")
    token = _token(mail_servers, expires_in=0) if how == "expired" else "not-a-real-token"
    async with _open(mail_servers, "implicit") as imap:
        with pytest.raises(AuthenticationError) as info:
            await imap.authenticate(_bearer(mechanism, token))
        error = info.value
        assert error.kind == "token_rejected"
        assert error.detail == detail
        assert isinstance(error.response, IMAPResponseError)
        assert (error.response.status, error.response.code, error.response.text) == (
            "NO",
            "AUTHENTICATIONFAILED",
            "Authentication failed.",
        )
        assert token not in str(error)
        # The refusal is a completed round trip: a good token now works on this connection.
        await imap.authenticate(_bearer(mechanism, _token(mail_servers)))
        await imap.noop()
    # The exact sequence: our initial response (SASL-IR), the error challenge, our answer
    # (its bytes are checked by the core tests), the tagged NO.
    lines = [record.getMessage().split(" ", 1)[1] for record in caplog.records]
    start = lines.index(f"C: A1 AUTHENTICATE {mechanism} <redacted>")
    challenge = lines[start + 1].removeprefix("S: + ")
    assert json.loads(base64.b64decode(challenge)) == detail
    assert lines[start + 2] == "C: <redacted SASL response>"
    assert lines[start + 3] == "S: A1 NO [AUTHENTICATIONFAILED] Authentication failed."
    assert token not in caplog.text


async def test_introspection_outage_is_temporary(
    mail_servers: MailServers, oauth: OAuthServerControl
) -> None:
    provider = LocalTokenProvider(
        mail_servers.oauth.token_url,
        refresh_token=mail_servers.oauth.mint_token(USER, with_refresh_token=True)["refresh_token"],
    )
    async with _open(mail_servers, "implicit") as imap:
        await provider.get_token()
        oauth.fail_next("introspect", 1, 503)
        with pytest.raises(AuthenticationError) as info:
            await imap.authenticate(XOAuth2(USER, provider))
        assert info.value.kind == "temporary"
        assert isinstance(info.value.response, IMAPResponseError)
        assert info.value.response.code == "UNAVAILABLE"
        assert provider.requests == 1  # no retry, no new token
        assert provider.invalidations == 0
        await imap.authenticate(XOAuth2(USER, provider))
        await imap.noop()


@pytest.mark.parametrize(
    ("mechanism", "size"), [("XOAUTH2", 2500), ("OAUTHBEARER", 2500), ("XOAUTH2", 6000)]
)
async def test_long_token(mail_servers: MailServers, mechanism: str, size: int) -> None:
    token = _token(mail_servers, size=size)
    assert len(token) >= size
    async with _open(mail_servers, "starttls", auth=_bearer(mechanism, token)) as imap:
        await imap.noop()


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
async def test_expired_token_is_replaced_once(mail_servers: MailServers, mechanism: str) -> None:
    minted = mail_servers.oauth.mint_token(USER, expires_in=0, with_refresh_token=True)
    expired = AccessToken(minted["access_token"], expires_at=time.time() - 1)
    provider = LocalTokenProvider(
        mail_servers.oauth.token_url, refresh_token=minted["refresh_token"], first=expired
    )
    auth = XOAuth2(USER, provider) if mechanism == "XOAUTH2" else OAuthBearer(USER, provider)
    async with _open(mail_servers, "implicit", auth=auth) as imap:
        assert imap.protocol_state is IMAPState.AUTHENTICATED
        await imap.noop()
    assert provider.requests == 1  # exactly one extra token
    assert provider.invalidations == 1


async def test_kick_ends_the_session(mail_servers: MailServers) -> None:
    user = "bob@example.test"
    async with _open(mail_servers, "implicit") as imap:
        await imap.login(user, mail_servers.users[user])
        await imap.noop()
        await anyio.to_thread.run_sync(mail_servers.kick, user)
        await anyio.sleep(0.2)  # let the BYE arrive before our NOOP goes out
        with pytest.raises(ConnectionBrokenError) as info:
            await imap.noop()
        assert isinstance(info.value, SessionEndedError), info.value
        assert imap.state is ClientState.BROKEN


async def test_runs_on_the_requested_backend(anyio_backend: str) -> None:
    # Every test of this file runs twice, on trio and on asyncio (see conftest.py).
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = "trio"
    else:
        running = "asyncio"
    assert running == anyio_backend
