"""The async IMAP client against scripted servers: happy paths, faults, STARTTLS attacks,
secrets, the token-rejected retry and the provider transcripts of PROTOCOL-NOTES.md."""

from __future__ import annotations

import base64
import json
import logging
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
    ConnectError,
    ConnectionBrokenError,
    ConnectionClosedError,
    IMAPResponseError,
    LocalProtocolError,
    RemoteProtocolError,
    SessionEndedError,
    TLSError,
)
from trio_mailoauth.imap import IMAPClient, IMAPState, open_imap
from trio_mailoauth.imap.events import Exists, Flags, StatusResponse
from trio_mailoauth.oauth.tokens import AccessToken
from trio_mailoauth.sasl import OAuthBearer, Plain, SASLMechanism, XOAuth2

USER = "alice@example.test"
TOKEN = "ya29.SECRET-access-token-1"
CAPS = b"IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE AUTH=PLAIN AUTH=XOAUTH2 AUTH=OAUTHBEARER"
GREETING: Step = Send(b"* OK [CAPABILITY " + CAPS + b"] Dovecot (Debian) ready.\r\n")
DOVECOT_401 = b'{"status":"401","schemes":"bearer","scope":"mail"}'
GMAIL_400 = json.dumps(
    {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}
).encode()
LOGOUT: list[Step] = [Expect(pattern=rb"A\d+ LOGOUT"), Send(b"* BYE Logging out\r\n")]


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def xoauth2(token: str = TOKEN) -> bytes:
    return b64(f"user={USER}\x01auth=Bearer {token}\x01\x01".encode())


def plaintext(server: ScriptedServer, auth: SASLMechanism | None = None) -> Opener[IMAPClient]:
    return open_imap(server.host, server.port, tls="none", allow_insecure=True, auth=auth)


async def connect(server: ScriptedServer, auth: SASLMechanism | None = None) -> IMAPClient:
    return await open_imap(server.host, server.port, tls="none", allow_insecure=True, auth=auth)


class RotatingProvider:
    """Serves token-1, then token-2 after token-1 is invalidated."""

    def __init__(self, *, obtained_at: float | None = None) -> None:
        self.tokens = [AccessToken(f"SECRET-token-{n}", obtained_at=obtained_at) for n in (1, 2, 3)]
        self.served = 0
        self.calls = 0
        self.invalidated: list[AccessToken] = []

    async def get_token(self) -> AccessToken:
        self.calls += 1
        return self.tokens[self.served]

    def invalidate(self, token: AccessToken) -> None:
        self.invalidated.append(token)
        if token is self.tokens[self.served]:
            self.served += 1


# --- happy paths ----------------------------------------------------------------------------


async def test_xoauth2_with_sasl_ir_noop_and_graceful_close() -> None:
    script: list[Step] = [
        GREETING,
        Expect(b"A1 AUTHENTICATE XOAUTH2 " + xoauth2()),
        Send(b"A1 OK [CAPABILITY IMAP4rev1 SASL-IR IDLE MOVE] Logged in\r\n"),
        Expect(b"A2 NOOP"),
        Send(b"* 3 EXISTS\r\n* OK [ALERT] hi\r\n* FLAGS (\\Seen)\r\nA2 OK NOOP completed.\r\n"),
        Expect(b"A3 NOOP"),
        Send(b"A3 OK NOOP completed.\r\n"),
        *LOGOUT,
        Send(b"A4 OK Logout completed.\r\n"),
        Close(),
    ]
    async with scripted_server(script) as server:
        async with plaintext(server, XOAuth2(USER, TOKEN)) as imap:
            assert imap.greeting == "Dovecot (Debian) ready."
            assert imap.protocol_state is IMAPState.AUTHENTICATED
            assert imap.capabilities == frozenset({"IMAP4REV1", "SASL-IR", "IDLE", "MOVE"})
            assert imap.has_capability("move")
            events = await imap.noop()
            assert events == [
                Exists(3),
                StatusResponse("OK", "hi", "ALERT"),
                Flags(("\\Seen",)),
            ]
            assert await imap.noop() == []
        assert imap.state is ClientState.CLOSED
        with trio.fail_after(2):  # the server's own close may lag our (complete) goodbye
            while not server.finished:  # noqa: ASYNC110 - a flag of the shared harness
                await trio.sleep(0.01)
    assert server.finished


async def test_two_step_form_and_capability_reask_after_auth() -> None:
    script: list[Step] = [
        Send(b"* OK ready\r\n"),
        Expect(b"A1 CAPABILITY"),
        Send(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nA1 OK done\r\n"),
        Expect(b"A2 AUTHENTICATE PLAIN"),
        Send(b"+ \r\n"),
        Expect(b64(b"\x00alice\x00pw")),
        Send(b"A2 OK Logged in\r\n"),
        Expect(b"A3 CAPABILITY"),
        Send(b"* CAPABILITY IMAP4rev1 IDLE\r\nA3 OK done\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server, Plain("alice", "pw"))
        assert imap.capabilities == frozenset({"IMAP4REV1", "IDLE"})
        await imap.aclose()


async def test_login_command_quoted_and_literal() -> None:
    script: list[Step] = [
        Send(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n"),
        Expect(b"A1 LOGIN {5}"),  # CR LF in the user name: only a literal can carry it
        Send(b"+ go\r\n"),
        Expect(b"al"),  # the scripted server reads lines: the literal's CRLF splits it
        Expect(b'i "p\\"w"'),
        Send(b"A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        Expect(b'A2 LOGIN "alice" "pw"'),
        Send(b"A2 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server)
        with pytest.raises(AuthenticationError) as info:
            await imap.login("al\r\ni", 'p"w')
        assert info.value.kind == "permanent"
        assert info.value.mechanism == "LOGIN"
        assert isinstance(info.value.response, IMAPResponseError)
        assert info.value.response.code == "AUTHENTICATIONFAILED"
        assert imap.state is ClientState.OK
        await imap.login("alice", "pw")
        assert imap.protocol_state is IMAPState.AUTHENTICATED
        await imap.aclose()


async def test_logindisabled_sends_nothing() -> None:
    script: list[Step] = [Send(b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] ready\r\n"), *LOGOUT]
    async with scripted_server(script) as server:
        imap = await connect(server)
        with pytest.raises(LocalProtocolError, match="LOGINDISABLED"):
            await imap.login("alice", "pw")
        assert imap.state is ClientState.OK
        await imap.aclose()
    assert server.received == [b"A1 LOGOUT"]


async def test_logout_then_use_is_closed() -> None:
    script: list[Step] = [GREETING, *LOGOUT, Send(b"A1 OK Logout completed.\r\n")]
    async with scripted_server(script) as server:
        imap = await connect(server)
        await imap.logout()
        assert imap.state is ClientState.CLOSED
        with pytest.raises(ConnectionClosedError):
            await imap.noop()


async def test_refusal_keeps_the_connection() -> None:
    script: list[Step] = [
        GREETING,
        Expect(b"A1 NOOP"),
        Send(b"A1 BAD [CLIENTBUG] no\r\n"),
        Expect(b"A2 NOOP"),
        Send(b"A2 OK\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server)
        with pytest.raises(IMAPResponseError) as info:
            await imap.noop()
        assert (info.value.status, info.value.code, info.value.text) == ("BAD", "CLIENTBUG", "no")
        assert await imap.noop() == []
        await imap.aclose()


async def test_greeting_bye_is_a_connect_error() -> None:
    async with scripted_server([Send(b"* BYE [UNAVAILABLE] Too many connections\r\n")]) as server:
        with pytest.raises(ConnectError, match="Too many connections"):
            await connect(server)


async def test_defaults_and_insecure_guard() -> None:
    assert IMAPClient.default_ports == {"implicit": 993, "starttls": 143, "none": 143}
    with pytest.raises(ValueError, match="allow_insecure"):
        await open_imap("127.0.0.1", 1, tls="none")


async def test_6kb_token_in_one_line() -> None:
    token = "t" * 6000
    script: list[Step] = [
        GREETING,
        Expect(b"A1 AUTHENTICATE XOAUTH2 " + xoauth2(token)),
        Send(b"A1 OK Logged in\r\n"),
        Expect(b"A2 CAPABILITY"),
        Send(b"* CAPABILITY IMAP4rev1\r\nA2 OK\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server, XOAuth2(USER, token))
        await imap.aclose()


# --- authentication failures: the provider transcripts --------------------------------------


@pytest.mark.parametrize(
    ("challenge", "final"),
    [
        (DOVECOT_401, b"A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        (GMAIL_400, b"A1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"),
    ],
)
async def test_error_challenge_is_token_rejected(challenge: bytes, final: bytes) -> None:
    script: list[Step] = [
        GREETING,
        Expect(b"A1 AUTHENTICATE XOAUTH2 " + xoauth2()),
        Send(b"+ " + b64(challenge) + b"\r\n"),
        Expect(b""),  # XOAUTH2 answers the error challenge with an empty line
        Send(final),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server)
        with pytest.raises(AuthenticationError) as info:
            await imap.authenticate(XOAuth2(USER, TOKEN))  # a static token: no retry
        assert info.value.kind == "token_rejected"
        assert info.value.detail == json.loads(challenge)
        assert isinstance(info.value.response, IMAPResponseError)
        assert info.value.response.code == "AUTHENTICATIONFAILED"
        assert imap.state is ClientState.OK
        await imap.aclose()


async def test_oauthbearer_error_answer_is_ctrl_a() -> None:
    initial = f"n,a={USER},\x01host=127.0.0.1\x01port=%d\x01auth=Bearer {TOKEN}\x01\x01"
    script: list[Step] = [
        GREETING,
        Expect(pattern=rb"A1 AUTHENTICATE OAUTHBEARER [A-Za-z0-9+/=]+"),
        Send(b"+ " + b64(b'{"status":"invalid_token"}') + b"\r\n"),
        Expect(b"AQ=="),
        Send(b"A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server)
        with pytest.raises(AuthenticationError) as info:
            await imap.authenticate(OAuthBearer(USER, TOKEN))
        assert info.value.kind == "token_rejected"
        assert info.value.detail == {"status": "invalid_token"}
        await imap.aclose()
    sent = base64.b64decode(server.received[0].split()[-1]).decode()
    assert sent == initial % server.port


@pytest.mark.parametrize(
    ("obtained_at", "kind"), [(None, "token_rejected"), (time.time(), "permanent")]
)
async def test_microsoft_refusal_without_challenge(obtained_at: float | None, kind: str) -> None:
    script: list[Step] = [
        Send(b"* OK The Microsoft Exchange IMAP4 service is ready.\r\n"),
        Expect(b"A1 CAPABILITY"),
        Send(b"* CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR\r\nA1 OK CAPABILITY completed.\r\n"),
        Expect(b"A2 AUTHENTICATE XOAUTH2 " + xoauth2()),
        Send(b"A2 NO AUTHENTICATE failed.\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server)
        token = AccessToken(TOKEN, obtained_at=obtained_at)
        with pytest.raises(AuthenticationError) as info:
            await imap.authenticate(XOAuth2(USER, token))
        assert info.value.kind == kind
        assert info.value.detail is None
        await imap.aclose()


async def test_token_rejected_retry_with_a_fresh_token() -> None:
    provider = RotatingProvider()
    script: list[Step] = [
        GREETING,
        Expect(b"A1 AUTHENTICATE XOAUTH2 " + xoauth2("SECRET-token-1")),
        Send(b"+ " + b64(DOVECOT_401) + b"\r\n"),
        Expect(b""),
        Send(b"A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        Expect(b"A2 AUTHENTICATE XOAUTH2 " + xoauth2("SECRET-token-2")),
        Send(b"A2 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server, XOAuth2(USER, provider))
        assert imap.protocol_state is IMAPState.AUTHENTICATED
        await imap.aclose()
    assert provider.invalidated == [provider.tokens[0]]
    assert provider.calls == 2


async def test_no_retry_on_temporary_failure() -> None:
    provider = RotatingProvider()
    script: list[Step] = [
        GREETING,
        Expect(b"A1 AUTHENTICATE XOAUTH2 " + xoauth2("SECRET-token-1")),
        Send(b"A1 NO [UNAVAILABLE] Temporary authentication failure.\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server)
        with pytest.raises(AuthenticationError) as info:
            await imap.authenticate(XOAuth2(USER, provider))
        assert info.value.kind == "temporary"
        await imap.aclose()
    assert provider.calls == 1
    assert provider.invalidated == []


async def test_unexpected_second_challenge_is_cancelled() -> None:
    script: list[Step] = [
        GREETING,
        Expect(b"A1 AUTHENTICATE XOAUTH2 " + xoauth2()),
        Send(b"+ " + b64(DOVECOT_401) + b"\r\n"),
        Expect(b""),
        Send(b"+ " + b64(b"again?") + b"\r\n"),
        Expect(b"*"),
        Send(b"A1 BAD Authentication canceled\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server)
        with pytest.raises(AuthenticationError) as info:
            await imap.authenticate(XOAuth2(USER, TOKEN))
        assert info.value.kind == "permanent"
        await imap.aclose()


# --- STARTTLS and certificates ------------------------------------------------------------


async def test_starttls_upgrades_and_reasks_capabilities() -> None:
    _, client_context = tls_contexts()
    script: list[Step] = [
        Send(b"* OK ready\r\n"),
        Expect(b"A1 CAPABILITY"),
        Send(b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\nA1 OK\r\n"),
        Expect(b"A2 STARTTLS"),
        Send(b"A2 OK Begin TLS negotiation now.\r\n"),
        StartTLS(),
        Expect(b"A3 CAPABILITY"),
        Send(b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2\r\nA3 OK\r\n"),
        Expect(b"A4 AUTHENTICATE XOAUTH2 " + xoauth2()),
        Send(b"A4 OK Logged in\r\n"),
        Expect(b"A5 CAPABILITY"),
        Send(b"* CAPABILITY IMAP4rev1 IDLE\r\nA5 OK\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await open_imap(
            "localhost",
            server.port,
            tls="starttls",
            ssl_context=client_context,
            auth=XOAuth2(USER, TOKEN),
        )
        assert imap.is_tls
        assert imap.capabilities == frozenset({"IMAP4REV1", "IDLE"})
        await imap.aclose()


async def test_starttls_injection_is_refused_and_nothing_secret_sent() -> None:
    _, client_context = tls_contexts()
    script: list[Step] = [
        Send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
        Expect(b"A1 STARTTLS"),
        Send(b"A1 OK go ahead\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"),
        Stall(1),
    ]
    async with scripted_server(script) as server:
        with pytest.raises(RemoteProtocolError, match="STARTTLS"):
            await open_imap(
                "localhost",
                server.port,
                tls="starttls",
                ssl_context=client_context,
                auth=Plain("alice", "SECRET-pw"),
            )
    assert server.received == [b"A1 STARTTLS"]


async def test_starttls_not_offered_sends_only_the_capability_query() -> None:
    script: list[Step] = [
        Send(b"* OK ready\r\n"),
        Expect(b"A1 CAPABILITY"),
        Send(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nA1 OK\r\n"),
        Stall(1),
    ]
    async with scripted_server(script) as server:
        with pytest.raises(TLSError, match="does not offer STARTTLS"):
            await open_imap(
                server.host, server.port, tls="starttls", auth=Plain("alice", "SECRET-pw")
            )
    assert server.received == [b"A1 CAPABILITY"]


async def test_starttls_refused_and_preauth() -> None:
    script: list[Step] = [
        Send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
        Expect(b"A1 STARTTLS"),
        Send(b"A1 NO not now\r\n"),
        Stall(1),
    ]
    async with scripted_server(script) as server:
        with pytest.raises(TLSError, match="refused STARTTLS"):
            await open_imap(server.host, server.port, tls="starttls")
    async with scripted_server([Send(b"* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n")]) as server:
        with pytest.raises(TLSError, match="PREAUTH"):
            await open_imap(server.host, server.port, tls="starttls")
    assert server.received == []


async def test_untrusted_certificate() -> None:
    async with scripted_server([GREETING], tls_hostname="localhost") as server:
        with pytest.raises(TLSError):
            await open_imap("localhost", server.port)  # the default context: test CA unknown
        server.errors.clear()


async def test_wrong_host_certificate() -> None:
    _, client_context = tls_contexts()
    async with scripted_server([GREETING], tls_hostname="wrong.example") as server:
        with pytest.raises(TLSError):
            await open_imap("localhost", server.port, ssl_context=client_context)
        server.errors.clear()


async def test_implicit_tls() -> None:
    _, client_context = tls_contexts()
    async with (
        scripted_server([GREETING, *LOGOUT], tls_hostname="localhost") as server,
        open_imap("localhost", server.port, ssl_context=client_context) as imap,
    ):
        assert imap.is_tls
        assert imap.has_capability("AUTH=XOAUTH2")


# --- faults ---------------------------------------------------------------------------------


async def test_cancelled_wait_leaves_the_connection_usable() -> None:
    # The NOOP went out whole; only the wait for its reply was cancelled. Reading is
    # cancel-safe, so its reply is read (and dropped) before the next command's.
    script: list[Step] = [
        GREETING,
        Expect(b"A1 NOOP"),
        Stall(0.4),
        Send(b"* 4 EXISTS\r\nA1 OK done\r\n"),
        Expect(b"A2 NOOP"),
        Send(b"A2 OK done\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server)
        with trio.move_on_after(0.2) as scope:
            await imap.noop()
        assert scope.cancelled_caught
        assert imap.state is ClientState.OK
        assert await imap.noop() == [Exists(4)]
        await imap.aclose()
    assert server.finished, (server.errors, server.received)


async def test_cancelled_login_breaks_the_connection() -> None:
    script: list[Step] = [GREETING, Expect(pattern=rb"A1 LOGIN .*"), Stall(2)]
    async with scripted_server(script) as server:
        imap = await connect(server)
        with trio.move_on_after(0.2) as scope:
            await imap.login("alice", "secret")
        assert scope.cancelled_caught
        assert imap.state is ClientState.BROKEN
        with pytest.raises(ConnectionBrokenError, match="broken"):
            await imap.noop()
        await imap.aclose()
        assert imap.state.value == "closed"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"* 3 FETCH (BODY[] {10}\r\nabc", RemoteProtocolError),
        (b"* 3 EXI", RemoteProtocolError),
        (b"* 3 EXISTS\r\n", ConnectionBrokenError),
    ],
)
async def test_server_closes_mid_reply(reply: bytes, error: type[Exception]) -> None:
    script: list[Step] = [GREETING, Expect(b"A1 NOOP"), Send(reply), Close()]
    async with scripted_server(script) as server:
        imap = await connect(server)
        with pytest.raises(error):
            await imap.noop()
        assert imap.state is ClientState.BROKEN
        with pytest.raises(ConnectionBrokenError):
            await imap.noop()


async def test_unsolicited_bye_ends_the_session() -> None:
    script: list[Step] = [
        GREETING,
        Expect(b"A1 NOOP"),
        Send(b"* BYE Session invalidated - AccessTokenExpired\r\n"),
        Close(),
    ]
    async with scripted_server(script) as server:
        imap = await connect(server)
        with pytest.raises(SessionEndedError) as info:
            await imap.noop()
        assert info.value.text == "Session invalidated - AccessTokenExpired"
        assert isinstance(info.value, ConnectionBrokenError)
        assert imap.state is ClientState.BROKEN
        await imap.aclose()


async def test_garbage_is_a_protocol_error() -> None:
    script: list[Step] = [GREETING, Expect(b"A1 NOOP"), Send(b"A9 OK who?\r\n"), Stall(1)]
    async with scripted_server(script) as server:
        imap = await connect(server)
        with pytest.raises(RemoteProtocolError, match="not a command in flight"):
            await imap.noop()
        assert imap.state is ClientState.BROKEN


# --- secrets --------------------------------------------------------------------------------


async def test_secrets_never_logged_or_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mailoauth.imap")
    provider = RotatingProvider()
    password = "SECRET-password-9"
    script: list[Step] = [
        GREETING,
        Expect(b"A1 AUTHENTICATE XOAUTH2 " + xoauth2("SECRET-token-1")),
        Send(b"+ " + b64(DOVECOT_401) + b"\r\n"),
        Expect(b""),
        Send(b"A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        Expect(b"A2 AUTHENTICATE XOAUTH2 " + xoauth2("SECRET-token-2")),
        Send(b"A2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        Expect(b'A3 LOGIN "alice" "SECRET-password-9"'),
        Send(b"A3 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        Expect(b"A4 AUTHENTICATE PLAIN " + b64(f"\x00alice\x00{password}".encode())),
        Send(b"A4 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        Expect(b"A5 NOOP"),
        Send(b"* BYE bye\r\n"),
        Close(),
    ]
    errors: list[BaseException] = []
    async with scripted_server(script) as server:
        imap = await connect(server)
        for attempt in (
            imap.authenticate(XOAuth2(USER, provider)),
            imap.login("alice", password),
            imap.authenticate(Plain("alice", password)),
            imap.noop(),
        ):
            try:
                await attempt
            except Exception as exc:
                errors.append(exc)
        shown = [repr(imap), repr(imap._conn), repr(provider.tokens), repr(Plain("a", password))]
    assert len(errors) == 4
    text = "\n".join([caplog.text, *shown, *(str(e) for e in errors), *(repr(e) for e in errors)])
    secrets = [password, "SECRET-token-1", "SECRET-token-2", xoauth2("SECRET-token-1").decode()]
    for secret in secrets:
        assert secret not in text
    assert "C: A1 AUTHENTICATE XOAUTH2 <redacted>" in caplog.text
    assert "C: A3 LOGIN <redacted>" in caplog.text
    assert "S: A1 NO [AUTHENTICATIONFAILED]" in caplog.text


# --- asyncio --------------------------------------------------------------------------------


def test_runs_on_asyncio() -> None:
    async def main() -> list[bytes]:
        script: list[Step] = [
            GREETING,
            Expect(b"A1 AUTHENTICATE XOAUTH2 " + xoauth2()),
            Send(b"A1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n"),
            Expect(b"A2 NOOP"),
            Send(b"* 1 EXISTS\r\nA2 OK\r\n"),
            *LOGOUT,
        ]
        async with (
            scripted_server(script) as server,
            open_imap(
                server.host,
                server.port,
                tls="none",
                allow_insecure=True,
                auth=XOAuth2(USER, TOKEN),
            ) as imap,
        ):
            assert await imap.noop() == [Exists(1)]
        return server.received

    received = anyio.run(main, backend="asyncio")
    assert received[-1] == b"A3 LOGOUT"
