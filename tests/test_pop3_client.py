"""The async POP3 client against scripted servers: happy paths, faults, secrets, retries and
the provider transcripts of PROTOCOL-NOTES.md (Gmail, Dovecot, Microsoft)."""

from __future__ import annotations

import base64
import json
import logging
import ssl
import time

import anyio
import pytest
import trio

from tests.scripted import (
    Close,
    Expect,
    ScriptedServer,
    Send,
    Stall,
    StartTLS,
    Step,
    scripted_server,
    tls_contexts,
)
from trio_mailoauth._client import ClientState, Opener
from trio_mailoauth.errors import (
    AuthenticationError,
    ConnectionBrokenError,
    ConnectionClosedError,
    LocalProtocolError,
    POP3ResponseError,
    RemoteProtocolError,
    TLSError,
)
from trio_mailoauth.oauth.tokens import AccessToken
from trio_mailoauth.pop3 import POP3Client, open_pop3
from trio_mailoauth.sasl import Login, OAuthBearer, Plain, SASLMechanism, XOAuth2

USER = "alice@example.test"
GREETING: Step = Send(b"+OK Dovecot ready.\r\n")
CAPA: list[Step] = [
    Expect(b"CAPA"),
    Send(
        b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\n"
        b"SASL PLAIN LOGIN XOAUTH2 OAUTHBEARER\r\n.\r\n"
    ),
]
CAPA_STLS: list[Step] = [
    Expect(b"CAPA"),
    Send(b"+OK\r\nSTLS\r\nUSER\r\nSASL PLAIN\r\n.\r\n"),
]
XOAUTH2_ERROR = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"}).encode()
GMAIL_ERROR = json.dumps(
    {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}
).encode()


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def xoauth2_line(token: str) -> bytes:
    return b64(f"user={USER}\x01auth=Bearer {token}\x01\x01".encode())


def opener(server: ScriptedServer, auth: SASLMechanism | None = None) -> Opener[POP3Client]:
    return open_pop3(server.host, server.port, tls="none", allow_insecure=True, auth=auth)


async def connect(server: ScriptedServer) -> POP3Client:
    return await opener(server)


class RotatingProvider:
    """Hands out token-1, then token-2 after token-1 is invalidated, and so on."""

    def __init__(self, *, obtained_at: float | None = None) -> None:
        self.issued = 0
        self.invalidated: list[str] = []
        self._obtained_at = obtained_at
        self._current: AccessToken | None = None

    async def get_token(self) -> AccessToken:
        if self._current is None:
            self.issued += 1
            self._current = AccessToken(f"token-{self.issued}", obtained_at=self._obtained_at)
        return self._current

    def invalidate(self, token: AccessToken) -> None:
        if token is self._current:
            self.invalidated.append(token.token)
            self._current = None


# --- happy paths ------------------------------------------------------------------------------


async def test_user_pass_noop_quit() -> None:
    script: list[Step] = [
        GREETING,
        *CAPA,
        Expect(b"USER " + USER.encode()),
        Send(b"+OK\r\n"),
        Expect(b"PASS pass word"),
        Send(b"+OK Logged in.\r\n"),
        Expect(b"NOOP"),
        Send(b"+OK\r\n"),
        Expect(b"QUIT"),
        Send(b"+OK Logging out.\r\n"),
    ]
    async with scripted_server(script) as server:
        pop = await connect(server)
        assert pop.greeting == "Dovecot ready."
        assert pop.sasl_mechanisms == ("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER")
        assert pop.capabilities["PIPELINING"] == ()
        assert not pop.authenticated
        await pop.user_pass(USER, "pass word")
        assert pop.authenticated
        await pop.noop()
        await pop.quit()
        assert pop.state is ClientState.CLOSED
        with pytest.raises(ConnectionClosedError):
            await pop.noop()
        await pop.aclose()  # idempotent


async def test_xoauth2_two_step_and_aclose_says_quit() -> None:
    script: list[Step] = [
        GREETING,
        *CAPA,
        Expect(b"AUTH XOAUTH2"),
        Send(b"+ \r\n"),
        Expect(xoauth2_line("tok")),
        Send(b"+OK Logged in.\r\n"),
        Expect(b"QUIT"),
        Send(b"+OK Logging out.\r\n"),
    ]
    async with scripted_server(script) as server, opener(server, XOAuth2(USER, "tok")) as pop:
        assert pop.authenticated
    assert server.received[-1] == b"QUIT"


async def test_long_token_goes_on_its_own_line() -> None:
    token = "t" * 2500
    script: list[Step] = [
        GREETING,
        *CAPA,
        Expect(b"AUTH XOAUTH2"),
        Send(b"+ \r\n"),
        Expect(xoauth2_line(token)),
        Send(b"+OK\r\n"),
    ]
    async with scripted_server(script) as server:
        pop = await connect(server)
        await pop.authenticate(XOAuth2(USER, token))
        assert len(server.received[-1]) > 3000
        await pop.aclose()


async def test_login_mechanism_answers_two_challenges() -> None:
    script: list[Step] = [
        GREETING,
        *CAPA,
        Expect(b"AUTH LOGIN"),
        Send(b"+ " + b64(b"Username:") + b"\r\n"),
        Expect(b64(USER.encode())),
        Send(b"+ " + b64(b"Password:") + b"\r\n"),
        Expect(b64(b"pw")),
        Send(b"+OK\r\n"),
    ]
    async with scripted_server(script) as server:
        pop = await connect(server)
        await pop.authenticate(Login(USER, "pw"))
        await pop.aclose()


async def test_capa_refused_means_no_capabilities() -> None:
    script: list[Step] = [GREETING, Expect(b"CAPA"), Send(b"-ERR unknown command\r\n")]
    async with scripted_server(script) as server:
        pop = await connect(server)
        assert pop.capabilities == {}
        assert pop.sasl_mechanisms == ()
        await pop.aclose()


async def test_refusal_keeps_the_connection_usable() -> None:
    script: list[Step] = [
        GREETING,
        *CAPA,
        Expect(b"USER a"),
        Send(b"+OK\r\n"),
        Expect(b"PASS b"),
        Send(b"+OK\r\n"),
        Expect(b"NOOP"),
        Send(b"-ERR [SYS/TEMP] busy\r\n"),
        Expect(b"NOOP"),
        Send(b"+OK\r\n"),
    ]
    async with scripted_server(script) as server:
        pop = await connect(server)
        await pop.user_pass("a", "b")
        with pytest.raises(POP3ResponseError) as info:
            await pop.noop()
        assert (info.value.code, info.value.text) == ("SYS/TEMP", "busy")
        assert pop.state is ClientState.OK
        await pop.noop()
        await pop.aclose()


async def test_local_refusals_send_nothing() -> None:
    async with scripted_server([GREETING, *CAPA]) as server:
        pop = await connect(server)
        with pytest.raises(LocalProtocolError, match="NOOP in state AUTHORIZATION"):
            await pop.noop()
        with pytest.raises(LocalProtocolError):
            await pop.user_pass("a" * 300, "x")
        assert pop.state is ClientState.OK
        await pop.aclose()
    assert server.received == [b"CAPA"]


async def test_refused_greeting_is_an_error_at_open() -> None:
    async with scripted_server([Send(b"-ERR [SYS/TEMP] overloaded\r\n")]) as server:
        with pytest.raises(POP3ResponseError) as info:
            await connect(server)
    assert info.value.code == "SYS/TEMP"


async def test_user_pass_refused_is_an_authentication_error() -> None:
    script: list[Step] = [
        GREETING,
        *CAPA,
        Expect(b"USER a"),
        Send(b"+OK\r\n"),
        Expect(b"PASS hunter2"),
        Send(b"-ERR [AUTH] Authentication failed.\r\n"),
        Expect(b"USER a"),
        Send(b"+OK\r\n"),
        Expect(b"PASS hunter2"),
        Send(b"-ERR [IN-USE] Mailbox locked.\r\n"),
    ]
    async with scripted_server(script) as server:
        pop = await connect(server)
        with pytest.raises(AuthenticationError) as info:
            await pop.user_pass("a", "hunter2")
        assert info.value.kind == "permanent"
        assert isinstance(info.value.response, POP3ResponseError)
        assert info.value.response.code == "AUTH"
        with pytest.raises(AuthenticationError) as info:
            await pop.user_pass("a", "hunter2")
        assert info.value.kind == "temporary"
        assert "hunter2" not in str(info.value)
        await pop.aclose()


# --- STLS ---------------------------------------------------------------------------------------


async def test_stls_upgrades_and_asks_capa_again() -> None:
    _, client_context = tls_contexts()
    script: list[Step] = [
        GREETING,
        *CAPA_STLS,
        Expect(b"STLS"),
        Send(b"+OK Begin TLS negotiation now.\r\n"),
        StartTLS(),
        *CAPA,
        Expect(b"QUIT"),
        Send(b"+OK\r\n"),
    ]
    async with (
        scripted_server(script) as server,
        open_pop3(server.host, server.port, tls="starttls", ssl_context=client_context) as pop,
    ):
        assert pop.is_tls
        assert "STLS" not in pop.capabilities
        assert "XOAUTH2" in pop.sasl_mechanisms


async def test_stls_required_but_not_offered_sends_only_capa() -> None:
    async with scripted_server([GREETING, *CAPA]) as server:
        with pytest.raises(TLSError, match="does not offer STLS"):
            await open_pop3(server.host, server.port, tls="starttls")
    assert server.received == [b"CAPA"]


async def test_stls_refused_is_a_tls_error() -> None:
    script: list[Step] = [GREETING, *CAPA_STLS, Expect(b"STLS"), Send(b"-ERR not now\r\n")]
    async with scripted_server(script) as server:
        with pytest.raises(TLSError, match="refused STLS"):
            await open_pop3(server.host, server.port, tls="starttls")


async def test_bytes_injected_after_stls_ok_are_refused() -> None:
    script: list[Step] = [
        GREETING,
        *CAPA_STLS,
        Expect(b"STLS"),
        Send(b"+OK Begin TLS\r\n+OK Logged in.\r\n"),
        Stall(1),
    ]
    async with scripted_server(script) as server:
        with pytest.raises(RemoteProtocolError, match="after STLS"):
            await open_pop3(server.host, server.port, tls="starttls", auth=Plain(USER, "hunter2"))
    assert server.received == [b"CAPA", b"STLS"]


@pytest.mark.parametrize("wrong_host", [False, True])
async def test_untrusted_or_wrong_certificate_is_a_tls_error(wrong_host: bool) -> None:
    hostname = "wrong.example" if wrong_host else "localhost"
    # Trusting the test CA still fails for the wrong host; the default context never trusts it.
    context = tls_contexts()[1] if wrong_host else ssl.create_default_context()
    async with scripted_server([GREETING], tls_hostname=hostname) as server:
        with pytest.raises(TLSError):
            await open_pop3("localhost", server.port, ssl_context=context)
        await anyio.sleep(0.05)  # let the server side record its failed handshake
        server.errors.clear()


async def test_implicit_tls() -> None:
    _, client_context = tls_contexts()
    async with scripted_server([GREETING, *CAPA], tls_hostname="localhost") as server:
        pop = await open_pop3("localhost", server.port, ssl_context=client_context)
        assert pop.is_tls
        await pop.aclose()


def test_default_ports() -> None:
    assert POP3Client.default_ports == {"implicit": 995, "starttls": 110, "none": 110}


async def test_plaintext_needs_allow_insecure() -> None:
    with pytest.raises(ValueError, match="allow_insecure"):
        await open_pop3("127.0.0.1", 1, tls="none")


# --- faults -------------------------------------------------------------------------------------


async def test_cancelled_command_breaks_the_connection() -> None:
    script: list[Step] = [
        GREETING,
        *CAPA,
        Expect(b"USER a"),
        Send(b"+OK\r\n"),
        Expect(b"PASS b"),
        Send(b"+OK\r\n"),
        Expect(b"NOOP"),
        Stall(1),
    ]
    async with scripted_server(script) as server:
        pop = await connect(server)
        await pop.user_pass("a", "b")
        with trio.move_on_after(0.2) as scope:
            await pop.noop()
        assert scope.cancelled_caught
        assert pop.state is ClientState.BROKEN
        with pytest.raises(ConnectionBrokenError, match="broken"):
            await pop.noop()
        await pop.aclose()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"+OK\r\nTOP\r\nUI", RemoteProtocolError),  # inside the CAPA body
        (b"+OK part", RemoteProtocolError),  # inside the status line
        (b"", ConnectionBrokenError),  # before any byte of the reply
    ],
)
async def test_server_closes_mid_reply(reply: bytes, error: type[Exception]) -> None:
    script: list[Step] = [GREETING, *CAPA, Expect(b"CAPA"), Send(reply), Close()]
    async with scripted_server(script) as server:
        pop = await connect(server)
        with pytest.raises(error):
            await pop.capa()
        assert pop.state is ClientState.BROKEN
        with pytest.raises(ConnectionBrokenError):
            await pop.capa()


async def test_garbage_reply_breaks_the_connection() -> None:
    async with scripted_server([GREETING, *CAPA, Expect(b"CAPA"), Send(b"* OK\r\n")]) as server:
        pop = await connect(server)
        with pytest.raises(RemoteProtocolError):
            await pop.capa()
        assert pop.state is ClientState.BROKEN


# --- secrets ------------------------------------------------------------------------------------


async def test_secrets_never_reach_logs_reprs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mailoauth.pop3")
    token = "SECRET-TOKEN-123"
    script: list[Step] = [
        GREETING,
        *CAPA,
        Expect(b"AUTH XOAUTH2"),
        Send(b"+ \r\n"),
        Expect(xoauth2_line(token)),
        Send(b"+ " + b64(XOAUTH2_ERROR) + b"\r\n"),
        Expect(b""),
        Send(b"-ERR [AUTH] Authentication failed.\r\n"),
        Expect(b"USER a"),
        Send(b"+OK\r\n"),
        Expect(b"PASS hunter2"),
        Send(b"-ERR [AUTH] Authentication failed.\r\n"),
    ]
    async with scripted_server(script) as server:
        pop = await connect(server)
        mechanism = XOAuth2(USER, token)
        with pytest.raises(AuthenticationError) as first:
            await pop.authenticate(mechanism)
        with pytest.raises(AuthenticationError) as second:
            await pop.user_pass("a", "hunter2")
        texts = [
            caplog.text,
            repr(pop),
            repr(mechanism),
            str(first.value),
            repr(first.value),
            str(second.value),
            repr(second.value.args),
        ]
        await pop.aclose()
    assert "C: PASS <redacted>" in caplog.text
    assert "C: <redacted SASL response>" in caplog.text
    for text in texts:
        assert token not in text
        assert "hunter2" not in text
        assert xoauth2_line(token).decode() not in text


# --- token rejected: retry once -----------------------------------------------------------------


def _rejected_then(second: list[Step], first_token: str = "token-1") -> list[Step]:  # noqa: S107
    return [
        GREETING,
        *CAPA,
        Expect(b"AUTH XOAUTH2"),
        Send(b"+ \r\n"),
        Expect(xoauth2_line(first_token)),
        Send(b"+ " + b64(XOAUTH2_ERROR) + b"\r\n"),
        Expect(b""),
        Send(b"-ERR [AUTH] Authentication failed.\r\n"),
        *second,
    ]


async def test_rejected_token_is_retried_once_with_a_fresh_one() -> None:
    provider = RotatingProvider()
    script = _rejected_then(
        [
            Expect(b"AUTH XOAUTH2"),
            Send(b"+ \r\n"),
            Expect(xoauth2_line("token-2")),
            Send(b"+OK\r\n"),
        ]
    )
    async with scripted_server(script) as server:
        pop = await connect(server)
        await pop.authenticate(XOAuth2(USER, provider))
        assert pop.authenticated
        await pop.aclose()
    assert provider.issued == 2
    assert provider.invalidated == ["token-1"]


async def test_retry_happens_only_once() -> None:
    provider = RotatingProvider()
    second = _rejected_then([], "token-2")[len(CAPA) + 1 :]
    async with scripted_server(_rejected_then(second)) as server:
        pop = await connect(server)
        with pytest.raises(AuthenticationError) as info:
            await pop.authenticate(XOAuth2(USER, provider))
        assert info.value.kind == "token_rejected"
        assert info.value.detail == {"status": "401", "schemes": "bearer", "scope": "mail"}
        assert pop.state is ClientState.OK
        await pop.aclose()
    assert provider.issued == 2


async def test_temporary_failure_is_not_retried() -> None:
    provider = RotatingProvider()
    script: list[Step] = [
        GREETING,
        *CAPA,
        Expect(b"AUTH XOAUTH2"),
        Send(b"+ \r\n"),
        Expect(xoauth2_line("token-1")),
        Send(b"-ERR [SYS/TEMP] Temporary authentication failure.\r\n"),
    ]
    async with scripted_server(script) as server:
        pop = await connect(server)
        with pytest.raises(AuthenticationError) as info:
            await pop.authenticate(XOAuth2(USER, provider))
        assert info.value.kind == "temporary"
        assert isinstance(info.value.response, POP3ResponseError)
        assert info.value.response.code == "SYS/TEMP"
        await pop.aclose()
    assert provider.issued == 1
    assert provider.invalidated == []


# --- provider transcripts (PROTOCOL-NOTES.md) ---------------------------------------------------


async def test_gmail_400_challenge_is_token_rejected() -> None:
    script: list[Step] = [
        Send(b"+OK Gpop ready for requests from 192.0.2.1\r\n"),
        *CAPA,
        Expect(b"AUTH XOAUTH2"),
        Send(b"+ \r\n"),
        Expect(xoauth2_line("tok")),
        Send(b"+ " + b64(GMAIL_ERROR) + b"\r\n"),
        Expect(b""),  # an empty line, never the token again
        Send(b"-ERR [AUTH] Invalid credentials (Failure)\r\n"),
    ]
    async with scripted_server(script) as server:
        pop = await connect(server)
        with pytest.raises(AuthenticationError) as info:
            await pop.authenticate(XOAuth2(USER, "tok"))
        assert info.value.kind == "token_rejected"
        assert info.value.detail is not None
        assert info.value.detail["status"] == "400"
        await pop.aclose()


@pytest.mark.parametrize(
    ("status", "kind"), [("invalid_token", "token_rejected"), ("insufficient_scope", "permanent")]
)
async def test_dovecot_oauthbearer_error_is_answered_with_ctrl_a(status: str, kind: str) -> None:
    script: list[Step] = [
        GREETING,
        *CAPA,
        Expect(b"AUTH OAUTHBEARER"),
        Send(b"+ \r\n"),
        Expect(pattern=b"[A-Za-z0-9+/=]+"),
        Send(b"+ " + b64(json.dumps({"status": status}).encode()) + b"\r\n"),
        Expect(b"AQ=="),
        Send(b"-ERR [AUTH] Authentication failed.\r\n"),
    ]
    async with scripted_server(script) as server:
        pop = await connect(server)
        with pytest.raises(AuthenticationError) as info:
            await pop.authenticate(OAuthBearer(USER, "tok"))
        assert info.value.kind == kind
        assert info.value.detail == {"status": status}
        await pop.aclose()
    first = base64.b64decode(server.received[2])
    assert first.startswith(b"n,a=alice@example.test,\x01host=127.0.0.1\x01port=")


@pytest.mark.parametrize(("age", "kind"), [(None, "token_rejected"), (0.0, "permanent")])
async def test_microsoft_bare_failure_depends_on_token_age(age: float | None, kind: str) -> None:
    # The token's age is taken when the test runs, not when it is collected.
    obtained_at = None if age is None else time.time() - age
    script: list[Step] = [
        Send(b"+OK The Microsoft Exchange POP3 service is ready.\r\n"),
        Expect(b"CAPA"),
        Send(b"+OK\r\nTOP\r\nUIDL\r\nSASL PLAIN XOAUTH2\r\nUSER\r\n.\r\n"),
        Expect(b"AUTH XOAUTH2"),
        Send(b"+ \r\n"),
        Expect(xoauth2_line("ms-token")),
        Send(b"-ERR Authentication failure: unknown user name or bad password.\r\n"),
    ]
    token = AccessToken("ms-token", obtained_at=obtained_at)
    async with scripted_server(script) as server:
        pop = await connect(server)
        with pytest.raises(AuthenticationError) as info:
            await pop.authenticate(XOAuth2(USER, token))  # static: no fresher token to retry
        assert info.value.kind == kind
        assert info.value.detail is None
        assert isinstance(info.value.response, POP3ResponseError)
        assert info.value.response.code is None
        await pop.aclose()


async def test_unexpected_challenge_is_cancelled() -> None:
    script: list[Step] = [
        GREETING,
        *CAPA,
        Expect(b"AUTH PLAIN"),
        Send(b"+ \r\n"),
        Expect(b64(b"\x00a\x00b")),
        Send(b"+ " + b64(b"more?") + b"\r\n"),
        Expect(b"*"),
        Send(b"-ERR [AUTH] cancelled\r\n"),
    ]
    async with scripted_server(script) as server:
        pop = await connect(server)
        with pytest.raises(AuthenticationError) as info:
            await pop.authenticate(Plain("a", "b"))
        assert info.value.kind == "permanent"
        await pop.aclose()


async def test_authenticate_after_login_is_refused_locally() -> None:
    script: list[Step] = [
        GREETING,
        *CAPA,
        Expect(b"USER a"),
        Send(b"+OK\r\n"),
        Expect(b"PASS b"),
        Send(b"+OK\r\n"),
    ]
    async with scripted_server(script) as server:
        pop = await connect(server)
        await pop.user_pass("a", "b")
        with pytest.raises(LocalProtocolError, match="TRANSACTION"):
            await pop.authenticate(Plain("a", "b"))
        await pop.aclose()
