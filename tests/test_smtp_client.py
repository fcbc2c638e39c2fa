"""The async SMTP client against scripted servers: happy paths, STARTTLS faults, refusals,
cancellation, secrets, the token-rejected retry and the provider transcripts of
PROTOCOL-NOTES.md (Gmail, Dovecot, Microsoft)."""

from __future__ import annotations

import base64
import json
import logging
import ssl
import time

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
    RemoteProtocolError,
    SMTPPermanentError,
    SMTPResponseError,
    SMTPTransientError,
    TLSError,
)
from trio_mailoauth.oauth.tokens import AccessToken
from trio_mailoauth.sasl import Login, OAuthBearer, Plain, SASLMechanism, XOAuth2
from trio_mailoauth.smtp import Reply, SMTPClient, open_smtp
from trio_mailoauth.smtp.client import default_local_hostname

USER = "alice@example.test"
NAME = b"client.test"
GREETING: Step = Send(b"220 mx.example.test ESMTP\r\n")
EHLO: list[Step] = [
    Expect(b"EHLO " + NAME),
    Send(
        b"250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
        b"250-AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER\r\n250 8BITMIME\r\n"
    ),
]
EHLO_STARTTLS: list[Step] = [
    Expect(b"EHLO " + NAME),
    Send(b"250-mx.example.test\r\n250-STARTTLS\r\n250 AUTH\r\n"),
]
XOAUTH2_ERROR = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"}).encode()
GMAIL_ERROR = json.dumps(
    {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}
).encode()


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def xoauth2_ir(token: str) -> bytes:
    return b64(f"user={USER}\x01auth=Bearer {token}\x01\x01".encode())


def opener(server: ScriptedServer, auth: SASLMechanism | None = None) -> Opener[SMTPClient]:
    return open_smtp(
        server.host,
        server.port,
        tls="none",
        allow_insecure=True,
        auth=auth,
        local_hostname=NAME.decode(),
    )


class RotatingProvider:
    """Hands out token-1, then token-2 after token-1 is invalidated, and so on."""

    def __init__(self, *, obtained_at: float | None = None) -> None:
        self.issued = 1
        self.gets = 0
        self.invalidated: list[AccessToken] = []
        self._obtained_at = obtained_at
        self.current = self._new()

    def _new(self) -> AccessToken:
        return AccessToken(f"token-{self.issued}", obtained_at=self._obtained_at)

    async def get_token(self) -> AccessToken:
        self.gets += 1
        return self.current

    def invalidate(self, token: AccessToken) -> None:
        if token is self.current:
            self.invalidated.append(token)
            self.issued += 1
            self.current = self._new()


# --- happy paths ------------------------------------------------------------------------------


async def test_commands_and_quit() -> None:
    script = [
        GREETING,
        *EHLO,
        Expect(b"NOOP"),
        Send(b"250 2.0.0 OK\r\n"),
        Expect(b"RSET"),
        Send(b"250 2.0.0 Ok\r\n"),
        Expect(b"EHLO " + NAME),
        Send(b"250-mx.example.test\r\n250 SMTPUTF8\r\n"),
        Expect(b"QUIT"),
        Send(b"221 2.0.0 Bye\r\n"),
    ]
    async with scripted_server(script) as server:
        client = await opener(server)
        assert client.greeting == Reply(220, None, ("mx.example.test ESMTP",))
        assert client.extensions["SIZE"] == ("10240000",)
        assert client.has_extension("pipelining")
        assert not client.has_extension("STARTTLS")
        assert client.auth_mechanisms == ("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER")
        assert (await client.noop()).lines == ("OK",)
        assert (await client.rset()).enhanced_status == "2.0.0"
        await client.ehlo()
        assert client.extensions == {"SMTPUTF8": ()}
        reply = await client.quit()
        assert reply.code == 221
        assert client.state is ClientState.CLOSED
        with pytest.raises(ConnectionClosedError):
            await client.noop()


async def test_default_local_hostname_is_our_address_literal() -> None:
    script = [GREETING, Expect(b"EHLO [127.0.0.1]"), Send(b"250 mx\r\n")]
    async with scripted_server(script) as server:
        client = await open_smtp(server.host, server.port, tls="none", allow_insecure=True)
        assert client.local_hostname == "[127.0.0.1]"
        await client.aclose()


@pytest.mark.parametrize(
    ("address", "literal"),
    [
        (None, "[127.0.0.1]"),
        ("192.0.2.7", "[192.0.2.7]"),
        ("2001:db8::1", "[IPv6:2001:db8::1]"),
        ("fe80::1%eth0", "[IPv6:fe80::1]"),
        ("::ffff:192.0.2.7", "[192.0.2.7]"),
        ("not-an-ip", "[127.0.0.1]"),
    ],
)
def test_default_local_hostname(address: str | None, literal: str) -> None:
    assert default_local_hostname(address) == literal


async def test_helo_fallback() -> None:
    script = [
        GREETING,
        Expect(b"EHLO " + NAME),
        Send(b"500 5.5.1 Command unrecognized\r\n"),
        Expect(b"HELO " + NAME),
        Send(b"250 mx.example.test\r\n"),
    ]
    async with scripted_server(script) as server, opener(server) as client:
        assert client.extensions == {}


async def test_ehlo_refused_otherwise_is_an_error() -> None:
    script = [GREETING, Expect(b"EHLO " + NAME), Send(b"550 5.7.1 Go away\r\n")]
    async with scripted_server(script) as server:
        with pytest.raises(SMTPPermanentError, match=r"550 5\.7\.1 Go away"):
            await opener(server)


async def test_554_greeting_refuses_and_we_say_quit() -> None:
    script: list[Step] = [
        Send(b"554-5.7.1 No SMTP service\r\n554 5.7.1 for you\r\n"),
        Expect(b"QUIT"),
        Send(b"221 Bye\r\n"),
    ]
    async with scripted_server(script) as server:
        with pytest.raises(SMTPPermanentError) as info:
            await opener(server)
    assert info.value.code == 554
    assert info.value.enhanced_status == "5.7.1"
    assert info.value.text == "No SMTP service for you"


async def test_421_greeting() -> None:
    async with scripted_server([Send(b"421 4.3.2 Too busy\r\n")]) as server:
        with pytest.raises(SMTPTransientError, match="Too busy"):
            await opener(server)


@pytest.mark.parametrize("command", ["noop", "rset", "ehlo"])
async def test_421_to_any_command_breaks_the_connection(command: str) -> None:
    verb = command.upper().encode()
    script = [GREETING, *EHLO, Expect(pattern=verb + rb".*"), Send(b"421 4.3.2 going down\r\n")]
    async with scripted_server(script) as server, opener(server) as client:
        with pytest.raises(SMTPTransientError, match="going down"):
            await getattr(client, command)()
        # Not OK: the server is gone, and later calls say so (not "cannot send in state closing").
        assert client.state is ClientState.BROKEN
        with pytest.raises(ConnectionBrokenError):
            await client.noop()


async def test_421_to_auth_breaks_the_connection() -> None:
    script = [GREETING, *EHLO, Expect(pattern=b"AUTH PLAIN .*"), Send(b"421 4.3.2 bye\r\n")]
    async with scripted_server(script) as server, opener(server) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.authenticate(Plain("alice", "pw"))
        assert info.value.kind == "temporary"
        assert client.state is ClientState.BROKEN


async def test_refusal_keeps_the_connection_usable() -> None:
    script = [
        GREETING,
        *EHLO,
        Expect(b"NOOP"),
        Send(b"502 5.5.1 not here\r\n"),
        Expect(b"RSET"),
        Send(b"451 4.3.0 later\r\n"),
        Expect(b"NOOP"),
        Send(b"250 ok\r\n"),
    ]
    async with scripted_server(script) as server, opener(server) as client:
        with pytest.raises(SMTPPermanentError) as permanent:
            await client.noop()
        assert permanent.value.code == 502
        with pytest.raises(SMTPTransientError):
            await client.rset()
        assert client.state is ClientState.OK
        await client.noop()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="allow_insecure"):
        trio.run(_open_insecure)
    with pytest.raises(ValueError, match="printable ASCII"):
        open_smtp("localhost", local_hostname="bad name")
    with pytest.raises(ValueError, match="printable ASCII"):
        open_smtp("localhost", local_hostname="x\r\nRSET")


async def _open_insecure() -> None:
    await open_smtp("127.0.0.1", 1, tls="none")


def test_default_ports() -> None:
    assert SMTPClient.default_ports == {"implicit": 465, "starttls": 587, "none": 587}


# --- TLS ---------------------------------------------------------------------------------------


async def test_starttls_then_ehlo_again_then_auth() -> None:
    _, client_context = tls_contexts()
    script = [
        GREETING,
        *EHLO_STARTTLS,
        Expect(b"STARTTLS"),
        Send(b"220 2.0.0 Ready to start TLS\r\n"),
        StartTLS(),
        *EHLO,
        Expect(b"AUTH XOAUTH2 " + xoauth2_ir("secret-token")),
        Send(b"235 2.7.0 Authentication successful\r\n"),
    ]
    async with (
        scripted_server(script) as server,
        open_smtp(
            "localhost",
            server.port,
            tls="starttls",
            ssl_context=client_context,
            auth=XOAuth2(USER, "secret-token"),
            local_hostname=NAME.decode(),
        ) as client,
    ):
        assert client.is_tls
        assert "STARTTLS" not in client.extensions  # what plaintext said is forgotten
        assert client.auth_mechanisms == ("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER")


async def test_implicit_tls() -> None:
    _, client_context = tls_contexts()
    async with (
        scripted_server([GREETING, *EHLO], tls_hostname="localhost") as server,
        open_smtp(
            "localhost", server.port, ssl_context=client_context, local_hostname="client.test"
        ) as client,
    ):
        assert client.is_tls


async def test_starttls_go_ahead_with_injected_bytes() -> None:
    _, client_context = tls_contexts()
    script = [
        GREETING,
        *EHLO_STARTTLS,
        Expect(b"STARTTLS"),
        # One write: the go-ahead and a forged reply arrive together.
        Send(b"220 2.0.0 Ready\r\n250-mx\r\n250 AUTH PLAIN XOAUTH2\r\n"),
        Stall(2),
    ]
    async with scripted_server(script) as server:
        with pytest.raises(RemoteProtocolError, match="after the STARTTLS go-ahead"):
            await open_smtp(
                "localhost",
                server.port,
                tls="starttls",
                ssl_context=client_context,
                auth=XOAuth2(USER, "secret-token"),
                local_hostname=NAME.decode(),
            )
    assert server.received == [b"EHLO " + NAME, b"STARTTLS"]


async def test_starttls_required_but_not_offered() -> None:
    script = [GREETING, *EHLO, Stall(2)]
    async with scripted_server(script) as server:
        with pytest.raises(TLSError, match="does not offer STARTTLS"):
            await open_smtp(
                server.host,
                server.port,
                tls="starttls",
                auth=XOAuth2(USER, "secret-token"),
                local_hostname=NAME.decode(),
            )
    assert server.received == [b"EHLO " + NAME]


async def test_starttls_refused() -> None:
    script = [
        GREETING,
        *EHLO_STARTTLS,
        Expect(b"STARTTLS"),
        Send(b"454 4.7.0 TLS not available\r\n"),
    ]
    async with scripted_server(script) as server:
        with pytest.raises(TLSError, match=r"refused STARTTLS: 454 4\.7\.0 TLS not available"):
            await open_smtp(server.host, server.port, tls="starttls", local_hostname=NAME.decode())


@pytest.mark.parametrize("trusted", [False, True])
async def test_starttls_certificate_checked(trusted: bool) -> None:
    # Untrusted: the default context does not trust the test CA. Trusted CA, wrong name.
    context = tls_contexts()[1] if trusted else ssl.create_default_context()
    script = [
        GREETING,
        *EHLO_STARTTLS,
        Expect(b"STARTTLS"),
        Send(b"220 go ahead\r\n"),
        StartTLS("wrong.example" if trusted else "localhost"),
    ]
    async with scripted_server(script) as server:
        with pytest.raises(TLSError):
            await open_smtp(
                "localhost",
                server.port,
                tls="starttls",
                ssl_context=context,
                local_hostname=NAME.decode(),
            )


async def test_implicit_tls_untrusted_certificate() -> None:
    with pytest.raises(AssertionError, match="TLS handshake failed"):  # noqa: PT012
        async with scripted_server([GREETING], tls_hostname="localhost") as server:
            with pytest.raises(TLSError):
                await open_smtp("localhost", server.port, local_hostname="client.test")


# --- faults ------------------------------------------------------------------------------------


async def test_cancelled_command_breaks_the_connection() -> None:
    script = [GREETING, *EHLO, Expect(b"NOOP"), Stall(3)]
    async with scripted_server(script) as server:
        client = await opener(server)
        with trio.move_on_after(0.2):
            await client.noop()
        assert client.state is ClientState.BROKEN
        with pytest.raises(ConnectionBrokenError, match="broken"):
            await client.noop()
        await client.aclose()
        assert client.state.value == "closed"


async def test_server_closes_mid_reply() -> None:
    script = [GREETING, *EHLO, Expect(b"NOOP"), Send(b"250-partial\r\n250 cut"), Close()]
    async with scripted_server(script) as server:
        client = await opener(server)
        with pytest.raises(RemoteProtocolError, match="within a reply"):
            await client.noop()
        assert client.state is ClientState.BROKEN
        with pytest.raises(ConnectionBrokenError):
            await client.rset()


async def test_server_closes_instead_of_replying() -> None:
    script = [GREETING, *EHLO, Expect(b"NOOP"), Close()]
    async with scripted_server(script) as server:
        client = await opener(server)
        with pytest.raises(ConnectionBrokenError, match="closed"):
            await client.noop()
        assert client.state is ClientState.BROKEN


async def test_server_sends_garbage() -> None:
    script = [GREETING, *EHLO, Expect(b"NOOP"), Send(b"250-ok\r\n354 mixed\r\n")]
    async with scripted_server(script) as server:
        client = await opener(server)
        with pytest.raises(RemoteProtocolError, match="code changed"):
            await client.noop()
        assert client.state is ClientState.BROKEN


# --- authentication ----------------------------------------------------------------------------


async def test_short_token_uses_the_initial_response(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mailoauth.smtp")
    script = [
        GREETING,
        *EHLO,
        Expect(b"AUTH XOAUTH2 " + xoauth2_ir("short-token")),
        Send(b"235 2.7.0 Accepted\r\n"),
    ]
    async with scripted_server(script) as server, opener(server, XOAuth2(USER, "short-token")):
        pass
    assert "C: AUTH XOAUTH2 <redacted>" in caplog.text
    assert "short-token" not in caplog.text


async def test_long_token_uses_the_two_step_form(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mailoauth.smtp")
    token = "x" * 2500
    script = [
        GREETING,
        *EHLO,
        Expect(b"AUTH XOAUTH2"),
        Send(b"334 \r\n"),
        Expect(xoauth2_ir(token)),
        Send(b"235 2.7.0 Accepted\r\n"),
    ]
    async with scripted_server(script) as server, opener(server, XOAuth2(USER, token)):
        pass
    assert "C: <redacted SASL response>" in caplog.text
    assert token not in caplog.text


async def test_plain_and_login() -> None:
    script = [
        GREETING,
        *EHLO,
        Expect(b"AUTH PLAIN " + b64(b"\x00alice\x00hunter2")),
        Send(b"235 ok\r\n"),
    ]
    async with scripted_server(script) as server, opener(server, Plain("alice", "hunter2")):
        pass
    script = [
        GREETING,
        *EHLO,
        Expect(b"AUTH LOGIN " + b64(b"alice")),
        Send(b"334 " + b64(b"Password:") + b"\r\n"),
        Expect(b64(b"hunter2")),
        Send(b"235 ok\r\n"),
    ]
    async with scripted_server(script) as server, opener(server, Login("alice", "hunter2")):
        pass


async def test_wrong_password_is_permanent() -> None:
    script = [
        GREETING,
        *EHLO,
        Expect(pattern=b"AUTH PLAIN .*"),
        Send(b"535 5.7.8 Authentication failed.\r\n"),
    ]
    async with scripted_server(script) as server, opener(server) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.authenticate(Plain("alice", "wrong"))
        assert info.value.kind == "permanent"
        assert isinstance(info.value.response, SMTPPermanentError)
        assert client.state is ClientState.OK


async def test_mechanism_not_offered_sends_nothing() -> None:
    provider = RotatingProvider()
    script = [GREETING, Expect(b"EHLO " + NAME), Send(b"250-mx\r\n250 AUTH PLAIN LOGIN\r\n")]
    async with scripted_server(script) as server, opener(server) as client:
        with pytest.raises(
            LocalProtocolError, match="does not offer AUTH XOAUTH2; it offers: PLAIN"
        ):
            await client.authenticate(XOAuth2(USER, provider))
        assert client.state is ClientState.OK
    assert provider.gets == 0
    assert server.received == [b"EHLO " + NAME]


async def test_no_auth_keyword_at_all() -> None:
    script = [GREETING, Expect(b"EHLO " + NAME), Send(b"250 mx\r\n")]
    async with scripted_server(script) as server, opener(server) as client:
        with pytest.raises(LocalProtocolError, match="it offers: none"):
            await client.authenticate(Plain("alice", "pw"))


async def test_token_rejected_retry_succeeds_with_one_fresh_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mailoauth")
    provider = RotatingProvider()
    script = [
        GREETING,
        *EHLO,
        Expect(b"AUTH XOAUTH2 " + xoauth2_ir("token-1")),
        Send(b"334 " + b64(XOAUTH2_ERROR) + b"\r\n"),
        Expect(b""),
        Send(b"535 5.7.8 Authentication failed.\r\n"),
        Expect(b"AUTH XOAUTH2 " + xoauth2_ir("token-2")),
        Send(b"235 2.7.0 Authentication successful\r\n"),
    ]
    async with scripted_server(script) as server, opener(server, XOAuth2(USER, provider)) as client:
        assert client.state is ClientState.OK
        assert "token-" not in repr(client)
    assert provider.gets == 2
    assert [t.token for t in provider.invalidated] == ["token-1"]
    for secret in ("token-1", "token-2", xoauth2_ir("token-1").decode()):
        assert secret not in caplog.text


async def test_no_retry_on_temporary_failure() -> None:
    provider = RotatingProvider()
    script = [
        GREETING,
        *EHLO,
        Expect(b"AUTH XOAUTH2 " + xoauth2_ir("token-1")),
        Send(b"454 4.7.0 Temporary authentication failure\r\n"),
    ]
    async with scripted_server(script) as server, opener(server) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.authenticate(XOAuth2(USER, provider))
        assert info.value.kind == "temporary"
        assert isinstance(info.value.response, SMTPTransientError)
    assert provider.gets == 1
    assert provider.invalidated == []


async def test_secrets_stay_out_of_logs_reprs_and_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_mailoauth.smtp")
    token = "very-secret-token"
    script = [
        GREETING,
        *EHLO,
        Expect(pattern=b"AUTH OAUTHBEARER .*"),
        Send(b"334 " + b64(b'{"status":"invalid_token"}') + b"\r\n"),
        Expect(b"AQ=="),
        Send(b"535 5.7.8 Authentication failed.\r\n"),
    ]
    async with scripted_server(script) as server, opener(server) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.authenticate(OAuthBearer(USER, token))
        texts = [caplog.text, repr(client), str(info.value), repr(info.value.args)]
        texts += [repr(info.value.response), str(info.value.detail)]
    sent_ir = server.received[1].split(b" ", 2)[2].decode()
    for text in texts:
        assert token not in text
        assert sent_ir not in text
    assert info.value.kind == "token_rejected"
    assert info.value.detail == {"status": "invalid_token"}


# --- provider transcripts (PROTOCOL-NOTES.md) --------------------------------------------------


async def _auth_fails(
    server_steps: list[Step], mechanism: SASLMechanism, first_line: bytes | None = None
) -> AuthenticationError:
    script = [GREETING, *EHLO, Expect(first_line) if first_line else Expect(pattern=b"AUTH .*")]
    script += server_steps
    async with scripted_server(script) as server, opener(server) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.authenticate(mechanism)
        assert client.state is ClientState.OK
    return info.value


async def test_gmail_transcript() -> None:
    error = await _auth_fails(
        [
            Send(b"334 " + b64(GMAIL_ERROR) + b"\r\n"),
            Expect(b""),
            Send(
                b"535-5.7.8 Username and Password not accepted. Learn more at\r\n"
                b"535 5.7.8  https://support.google.com/mail/?p=BadCredentials x1si\r\n"
            ),
        ],
        XOAuth2(USER, "gmail-token"),
        b"AUTH XOAUTH2 " + xoauth2_ir("gmail-token"),
    )
    assert error.kind == "token_rejected"
    assert error.detail == json.loads(GMAIL_ERROR)
    assert isinstance(error.response, SMTPResponseError)
    assert error.response.code == 535
    assert error.response.enhanced_status == "5.7.8"
    assert "Username and Password not accepted" in str(error)


async def test_dovecot_transcript() -> None:
    error = await _auth_fails(
        [
            Send(b"334 " + b64(XOAUTH2_ERROR) + b"\r\n"),
            Expect(b""),
            Send(b"535 5.7.8 Authentication failed.\r\n"),
        ],
        XOAuth2(USER, "old-token"),
    )
    assert error.kind == "token_rejected"
    assert error.detail == {"status": "401", "schemes": "bearer", "scope": "mail"}


@pytest.mark.parametrize(("age", "kind"), [(None, "token_rejected"), (0.0, "permanent")])
async def test_microsoft_transcript(age: float | None, kind: str) -> None:
    # The token's age is taken when the test runs, not when it is collected.
    obtained_at = None if age is None else time.time() - age
    # No error challenge: an old token was probably expired, a fresh one is refused for good.
    token = AccessToken("ms-token", obtained_at=obtained_at)
    error = await _auth_fails(
        [Send(b"535 5.7.3 Authentication unsuccessful [SN4PR0201CA0040.namprd02]\r\n")],
        XOAuth2(USER, token),
    )
    assert error.kind == kind
    assert error.detail is None


@pytest.mark.parametrize(
    "reply",
    [
        b"535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
        b"the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.\r\n",
        b"501 5.5.124 Invalid XOAUTH2 auth data\r\n",
        b"534 5.7.9 Authentication mechanism is too weak\r\n",
        b"538 5.7.11 Encryption required\r\n",
    ],
)
async def test_permanent_auth_refusals(reply: bytes) -> None:
    provider = RotatingProvider()
    error = await _auth_fails([Send(reply)], XOAuth2(USER, provider))
    assert error.kind == "permanent"
    assert provider.gets == 1


async def test_oauthbearer_insufficient_scope_is_permanent() -> None:
    error = await _auth_fails(
        [
            Send(b"334 " + b64(b'{"status":"insufficient_scope","scope":"mail"}') + b"\r\n"),
            Expect(b"AQ=="),
            Send(b"535 5.7.8 Authentication failed.\r\n"),
        ],
        OAuthBearer(USER, "scoped-token"),
    )
    assert error.kind == "permanent"


async def test_unexpected_second_challenge_is_cancelled() -> None:
    error = await _auth_fails(
        [
            Send(b"334 " + b64(XOAUTH2_ERROR) + b"\r\n"),
            Expect(b""),
            Send(b"334 " + b64(b"more?") + b"\r\n"),
            Expect(b"*"),
            Send(b"501 5.7.0 Authentication aborted\r\n"),
        ],
        XOAuth2(USER, "token"),
    )
    assert error.kind == "permanent"
