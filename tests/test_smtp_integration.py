"""The SMTP client against the real servers: Dovecot submission and Postfix SMTP AUTH
(``smtpd_sasl_type = dovecot``), each with STARTTLS and implicit TLS, and the local OAuth2
server that Dovecot asks to introspect tokens."""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

import pytest

from trio_mailoauth._client import ClientState
from trio_mailoauth.errors import (
    AuthenticationError,
    LocalProtocolError,
    SMTPPermanentError,
    SMTPTransientError,
)
from trio_mailoauth.oauth.tokens import AccessToken
from trio_mailoauth.sasl import Login, OAuthBearer, Plain, SASLMechanism, XOAuth2
from trio_mailoauth.smtp import SMTPClient, open_smtp
from trio_mailoauth.testing.token_provider import LocalTokenProvider
from trio_mailoauth.transport import Stream, TLSMode

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USER = "alice@example.test"
# (server, tls): the port attribute of mail_servers.ports for each.
ENDPOINTS: dict[tuple[str, TLSMode], str] = {
    ("dovecot", "starttls"): "submission",
    ("dovecot", "implicit"): "submissions",
    ("postfix", "starttls"): "postfix_submission",
    ("postfix", "implicit"): "postfix_submissions",
}
ALL = list(ENDPOINTS)
# The final refusal of a rejected token, after the error challenge and our answer.
REJECTED = {
    "dovecot": "535 5.7.8 Authentication failed.",
    "postfix": "535 5.7.8 Error: authentication failed: ",
}


def _port(servers: Any, server: str, tls: TLSMode) -> int:
    port: int = getattr(servers.ports, ENDPOINTS[server, tls])
    return port


def _open(servers: Any, server: str, tls: TLSMode, **kwargs: Any) -> Any:
    return open_smtp(
        servers.host,
        _port(servers, server, tls),
        tls=tls,
        ssl_context=servers.client_ssl_context(),
        **kwargs,
    )


def _token(servers: Any, **kwargs: Any) -> str:
    token: str = servers.oauth.mint_token(USER, **kwargs)["access_token"]
    return token


def _mechanism(servers: Any, name: str, token: str | None = None) -> SASLMechanism:
    if name == "XOAUTH2":
        return XOAuth2(USER, token or _token(servers))
    if name == "OAUTHBEARER":
        return OAuthBearer(USER, token or _token(servers))
    password = servers.users[USER]
    return Plain(USER, password) if name == "PLAIN" else Login(USER, password)


def _trace(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The conversation as the client traced it, without the "host:port " prefix."""
    lines = [r.getMessage().split(" ", 1)[-1] for r in caplog.records if r.name.endswith("smtp")]
    return [line for line in lines if line[:3] in ("C: ", "S: ")]


class RecordingStream:
    """Wraps a client's stream and keeps every write (to check the bytes we really sent)."""

    def __init__(self, inner: Stream) -> None:
        self._inner = inner
        self.sent: list[bytes] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def send_all(self, data: bytes) -> None:
        self.sent.append(data)
        await self._inner.send_all(data)


def _record(client: SMTPClient) -> RecordingStream:
    recorder = RecordingStream(client._stream)
    client._stream = recorder  # type: ignore[assignment]
    return recorder


@pytest.mark.parametrize(("server", "tls"), ALL)
@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER", "PLAIN", "LOGIN"])
async def test_authenticate_noop_quit(
    mail_servers: Any,
    caplog: pytest.LogCaptureFixture,
    server: str,
    tls: TLSMode,
    mechanism: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mailoauth.smtp")
    auth = _mechanism(mail_servers, mechanism)
    async with _open(mail_servers, server, tls, auth=auth) as smtp:
        assert smtp.is_tls
        assert smtp.authenticated
        assert "STARTTLS" not in smtp.extensions
        assert {"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"} <= set(smtp.extensions)
        assert set(smtp.auth_mechanisms) >= {"PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"}
        assert (await smtp.noop()).code == 250
        assert (await smtp.rset()).code == 250
        reply = await smtp.quit()
        assert reply.code == 221
        assert smtp.state is ClientState.CLOSED
    trace = _trace(caplog)
    # A short response rides on the AUTH line (one round trip).
    assert f"C: AUTH {mechanism} <redacted>" in trace
    if tls == "starttls":
        assert trace.index("C: STARTTLS") < trace.index(f"C: AUTH {mechanism} <redacted>")
        assert sum(line.startswith("C: EHLO ") for line in trace) == 2


@pytest.mark.parametrize(("server", "tls"), ALL)
@pytest.mark.parametrize(
    ("mechanism", "answer", "detail"),
    [
        ("XOAUTH2", b"", {"status": "401", "schemes": "bearer", "scope": "mail"}),
        ("OAUTHBEARER", b"AQ==", {"status": "invalid_token"}),
    ],
)
async def test_rejected_token(
    mail_servers: Any,
    caplog: pytest.LogCaptureFixture,
    server: str,
    tls: TLSMode,
    mechanism: str,
    answer: bytes,
    detail: dict[str, str],
) -> None:
    # Every failed AUTH costs ~0.5 s at Dovecot: an expired token on STARTTLS connections and
    # an unknown one on implicit TLS cover both kinds on both servers without doubling that.
    caplog.set_level(logging.DEBUG, logger="trio_mailoauth.smtp")
    token = _token(mail_servers, expires_in=0) if tls == "starttls" else "not-a-real-token"
    async with _open(mail_servers, server, tls) as smtp:
        recorder = _record(smtp)
        start = len(_trace(caplog))
        with pytest.raises(AuthenticationError) as info:
            await smtp.authenticate(_mechanism(mail_servers, mechanism, token))
        assert smtp.state is ClientState.OK
        trace = _trace(caplog)[start:]
        # The exact exchange: AUTH with the initial response, the error challenge, our answer,
        # the final refusal.
        assert recorder.sent[0].startswith(f"AUTH {mechanism} ".encode())
        assert recorder.sent[1:] == [answer + b"\r\n"]
        assert trace[0] == f"C: AUTH {mechanism} <redacted>"
        assert trace[1].startswith("S: 334 ")
        assert json.loads(base64.b64decode(trace[1][7:])) == detail
        assert trace[2] == ("C: " if not answer else "C: <redacted SASL response>")
        assert trace[3].startswith("S: " + REJECTED[server])
        assert len(trace) == 4
        # The connection is still good: a fresh token now succeeds.
        await smtp.authenticate(_mechanism(mail_servers, mechanism))
        assert smtp.authenticated
    error = info.value
    assert error.kind == "token_rejected"
    assert error.detail == detail
    assert isinstance(error.response, SMTPPermanentError)
    assert error.response.code == 535
    assert error.response.enhanced_status == "5.7.8"
    assert token not in str(error)


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_introspection_outage_at_dovecot_is_temporary(
    mail_servers: Any, tls: TLSMode
) -> None:
    provider = LocalTokenProvider(
        mail_servers.oauth.token_url,
        refresh_token=mail_servers.oauth.mint_token(USER, with_refresh_token=True)["refresh_token"],
    )
    async with _open(mail_servers, "dovecot", tls) as smtp:
        mail_servers.oauth.fail_next("introspect", 1, 503)
        with pytest.raises(AuthenticationError) as info:
            await smtp.authenticate(XOAuth2(USER, provider))
        assert info.value.kind == "temporary"
        assert info.value.detail is None  # no error challenge, just the final refusal
        assert isinstance(info.value.response, SMTPTransientError)
        assert info.value.response.code == 454
        assert info.value.response.enhanced_status == "4.7.0"
        assert provider.requests == 1  # no retry on a temporary failure
        assert provider.invalidations == 0
        await smtp.authenticate(XOAuth2(USER, provider))  # the endpoint is back
        assert smtp.authenticated


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_introspection_outage_at_postfix_is_a_plain_535(
    mail_servers: Any, tls: TLSMode
) -> None:
    # Postfix hides Dovecot's temporary failure behind a plain 535 with no error challenge,
    # so we cannot see it is temporary: the kind follows the token's age, as for Microsoft.
    async with _open(mail_servers, "postfix", tls) as smtp:
        mail_servers.oauth.fail_next("introspect", 1, 503)
        old = AccessToken(_token(mail_servers), obtained_at=time.time() - 600)
        with pytest.raises(AuthenticationError) as info:
            await smtp.authenticate(XOAuth2(USER, old))
        assert info.value.kind == "token_rejected"
        assert info.value.detail is None
        assert isinstance(info.value.response, SMTPPermanentError)
        assert info.value.response.code == 535
        assert info.value.response.text.startswith("Error: authentication failed")

        provider = LocalTokenProvider(
            mail_servers.oauth.token_url,
            refresh_token=mail_servers.oauth.mint_token(USER, with_refresh_token=True)[
                "refresh_token"
            ],
        )
        mail_servers.oauth.fail_next("introspect", 1, 503)
        with pytest.raises(AuthenticationError) as info:
            await smtp.authenticate(XOAuth2(USER, provider))
        # A token obtained a moment ago and refused without a reason: permanent, no retry.
        assert info.value.kind == "permanent"
        assert provider.requests == 1
        await smtp.authenticate(XOAuth2(USER, provider))
        assert smtp.authenticated


@pytest.mark.parametrize(("server", "tls"), ALL)
@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
async def test_long_token_uses_the_two_step_form(
    mail_servers: Any,
    caplog: pytest.LogCaptureFixture,
    server: str,
    tls: TLSMode,
    mechanism: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mailoauth.smtp")
    token = _token(mail_servers, size=2500)
    assert len(token) >= 2500
    async with _open(mail_servers, server, tls) as smtp:
        start = len(_trace(caplog))
        await smtp.authenticate(_mechanism(mail_servers, mechanism, token))
        assert smtp.authenticated
        trace = _trace(caplog)[start:]
    assert trace[:3] == [f"C: AUTH {mechanism}", "S: 334 ", "C: <redacted SASL response>"]
    assert trace[3].startswith("S: 235 2.7.0")
    assert not any(token in line for line in caplog.messages)


@pytest.mark.parametrize(("server", "tls"), ALL)
async def test_expired_token_is_replaced_once(mail_servers: Any, server: str, tls: TLSMode) -> None:
    mechanism = "XOAUTH2" if tls == "starttls" else "OAUTHBEARER"
    minted = mail_servers.oauth.mint_token(USER, expires_in=0, with_refresh_token=True)
    expired = AccessToken(minted["access_token"], expires_at=time.time() - 1)
    provider = LocalTokenProvider(
        mail_servers.oauth.token_url, refresh_token=minted["refresh_token"], first=expired
    )
    auth = XOAuth2(USER, provider) if mechanism == "XOAUTH2" else OAuthBearer(USER, provider)
    async with _open(mail_servers, server, tls, auth=auth) as smtp:
        assert smtp.authenticated
    assert provider.requests == 1  # exactly one extra token
    assert provider.invalidations == 1


@pytest.mark.parametrize("server", ["dovecot", "postfix"])
async def test_wrong_password_is_permanent(mail_servers: Any, server: str) -> None:
    async with _open(mail_servers, server, "implicit") as smtp:
        with pytest.raises(AuthenticationError) as info:
            await smtp.authenticate(Plain(USER, "wrong-password"))
        assert info.value.kind == "permanent"
        assert smtp.state is ClientState.OK
        await smtp.noop()


@pytest.mark.parametrize("server", ["dovecot", "postfix"])
async def test_from_a_non_local_address_mechanisms_appear_only_after_starttls(
    mail_servers: Any, caplog: pytest.LogCaptureFixture, server: str
) -> None:
    # From 127.0.0.2 the servers treat plaintext as insecure (production behaviour): no
    # mechanisms before STARTTLS, so this works only because EHLO is asked again after TLS.
    caplog.set_level(logging.DEBUG, logger="trio_mailoauth.smtp")
    auth = XOAuth2(USER, _token(mail_servers))
    async with _open(
        mail_servers, server, "starttls", source_address="127.0.0.2", auth=auth
    ) as smtp:
        assert smtp.local_hostname == "[127.0.0.2]"
        assert smtp.authenticated
    trace = _trace(caplog)
    before_tls = trace[: trace.index("C: STARTTLS")]
    assert "C: EHLO [127.0.0.2]" in before_tls
    offered = [line for line in before_tls if line[7:].upper().startswith("AUTH")]
    assert all(line[7:].strip().upper() == "AUTH" for line in offered)  # none listed


async def test_plaintext_mechanisms_hidden_gives_a_clear_error(mail_servers: Any) -> None:
    # With tls="none" from 127.0.0.2, Dovecot lists no mechanism: we refuse before sending.
    async with open_smtp(
        mail_servers.host,
        mail_servers.ports.submission,
        tls="none",
        allow_insecure=True,
        source_address="127.0.0.2",
    ) as smtp:
        assert smtp.auth_mechanisms == ()
        assert smtp.has_extension("STARTTLS")
        with pytest.raises(LocalProtocolError, match="does not offer AUTH XOAUTH2"):
            await smtp.authenticate(XOAuth2(USER, "unused-token"))
