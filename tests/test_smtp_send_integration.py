"""Sending through the real servers: Dovecot submission → Postfix → LMTP → Dovecot, and Postfix
SMTP AUTH → LMTP → Dovecot. Every message is read back from the Maildir and compared byte for
byte with what we sent (Dovecot stores LF line endings and puts its trace headers on top)."""

from __future__ import annotations

import time
import uuid
from email.message import EmailMessage
from typing import Any

import pytest

from trio_mailoauth._client import ClientState
from trio_mailoauth.errors import LocalProtocolError, SMTPPermanentError
from trio_mailoauth.sasl import Login, OAuthBearer, Plain, SASLMechanism, XOAuth2
from trio_mailoauth.smtp import open_smtp, send
from trio_mailoauth.transport import TLSMode

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

ALICE = "alice@example.test"
BOB = "bob@example.test"
PORTS = {
    ("dovecot", "starttls"): "submission",
    ("dovecot", "implicit"): "submissions",
    ("postfix", "starttls"): "postfix_submission",
    ("postfix", "implicit"): "postfix_submissions",
}
# A recipient both servers refuse at RCPT time (only example.test is delivered).
REFUSED = "nobody@elsewhere.invalid"


def _auth(servers: Any, name: str) -> SASLMechanism:
    if name in ("XOAUTH2", "OAUTHBEARER"):
        token = servers.oauth.mint_token(ALICE)["access_token"]
        return XOAuth2(ALICE, token) if name == "XOAUTH2" else OAuthBearer(ALICE, token)
    password = servers.users[ALICE]
    return Plain(ALICE, password) if name == "PLAIN" else Login(ALICE, password)


def _open(servers: Any, server: str, tls: TLSMode = "starttls", auth: str = "XOAUTH2") -> Any:
    return open_smtp(
        servers.host,
        getattr(servers.ports, PORTS[server, tls]),
        tls=tls,
        ssl_context=servers.client_ssl_context(),
        auth=_auth(servers, auth),
    )


def _message(body: str | bytes = "hello\n", to: str = BOB, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = ALICE
    message["To"] = to
    message["Subject"] = headers.pop("subject", "test")
    # Date and Message-ID present, so no server adds them inside our header block.
    message["Date"] = "Sat, 01 Feb 2025 10:00:00 +0000"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.test>"
    for name, value in headers.items():
        message[name] = value
    if isinstance(body, bytes):
        message.set_content(body, maintype="application", subtype="octet-stream")
    else:
        message.set_content(body)
    return message


def _delivered(servers: Any, user: str, message_id: str, timeout: float = 10.0) -> bytes:
    [data] = servers.wait_for_message(
        user, lambda d: message_id.encode() in d, count=1, timeout=timeout
    )
    return bytes(data)


def _assert_identical(delivered: bytes, sent: bytes) -> None:
    """``delivered`` is trace headers + ``sent``, with LF line endings on disk."""
    assert delivered.endswith(sent.replace(b"\r\n", b"\n"))
    added = delivered[: len(delivered) - len(sent.replace(b"\r\n", b"\n"))]
    for line in added.split(b"\n"):
        assert (
            line == b""
            or line[:1] in b" \t"
            or line.split(b":")[0]
            in {
                b"Return-Path",
                b"Delivered-To",
                b"Received",
            }
        )


def _wire(message: EmailMessage) -> bytes:
    """The bytes we put on the wire for an 8BITMIME server."""
    from trio_mailoauth.smtp.message import message_bytes

    return message_bytes(message, smtputf8=False, eight_bit=True)


@pytest.mark.parametrize("server", ["dovecot", "postfix"])
@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER", "PLAIN", "LOGIN"])
async def test_messages_arrive_byte_identical(
    mail_servers: Any, server: str, mechanism: str
) -> None:
    tls: TLSMode = "starttls" if mechanism in ("XOAUTH2", "PLAIN") else "implicit"
    dotted = ".starts with a dot\n.\n..two dots\nété 8-bit\n.\n"
    message = _message(dotted, subject=f"{server} {mechanism}")
    async with _open(mail_servers, server, tls, mechanism) as smtp:
        assert smtp.has_extension("CHUNKING")
        result = await smtp.send_message(message)
        # And once more with DATA: dot-stuffed on the wire, restored by the server.
        again = _message(dotted, subject="data")
        await smtp.send_message(again, chunking=False)
    assert result.ok
    assert result.accepted == (BOB,)
    assert result.reply.code == 250
    for sent in (message, again):
        delivered = _delivered(mail_servers, BOB, sent["Message-ID"])
        _assert_identical(delivered, _wire(sent))
        assert b"\n..two dots\n" in delivered


@pytest.mark.parametrize("server", ["dovecot", "postfix"])
@pytest.mark.parametrize("chunking", [True, False])
async def test_refused_recipient_in_the_middle_of_a_pipeline(
    mail_servers: Any, server: str, chunking: bool
) -> None:
    message = _message(to=f"{BOB}, {REFUSED}, {ALICE}")
    async with _open(mail_servers, server) as smtp:
        result = await smtp.send_message(message, chunking=chunking)
    assert result.accepted == (BOB, ALICE)
    assert list(result.refused) == [REFUSED]
    assert result.refused[REFUSED].code in (550, 554)
    for user in (BOB, ALICE):
        _assert_identical(_delivered(mail_servers, user, message["Message-ID"]), _wire(message))


@pytest.mark.parametrize("server", ["dovecot", "postfix"])
async def test_every_recipient_refused_then_the_connection_still_works(
    mail_servers: Any, server: str
) -> None:
    async with _open(mail_servers, server) as smtp:
        with pytest.raises(SMTPPermanentError, match="every recipient was refused"):
            await smtp.send_message(_message(to=REFUSED))
        assert smtp.state is ClientState.OK
        # Many messages on one connection, each waiting for its final reply.
        messages = [_message(subject=f"burst {i}") for i in range(10)]
        for message in messages:
            await smtp.send_message(message)
    for message in messages:
        _delivered(mail_servers, BOB, message["Message-ID"])


@pytest.mark.parametrize("server", ["dovecot", "postfix"])
async def test_25_mb_attachment(mail_servers: Any, server: str) -> None:
    payload = bytes(range(256)) * (25 * 1024 * 1024 // 256)
    message = _message(payload, subject="big")
    start = time.monotonic()
    async with _open(mail_servers, server, "implicit") as smtp:
        result = await smtp.send_message(message)
    assert result.ok
    delivered = _delivered(mail_servers, BOB, message["Message-ID"], timeout=30)
    _assert_identical(delivered, _wire(message))
    assert time.monotonic() - start < 20


async def test_smtputf8_address_gives_a_clear_error(mail_servers: Any) -> None:
    # Dovecot 2.3 submission does not offer SMTPUTF8: we refuse before sending. (Postfix
    # does; tests/test_smtp_utf8_integration.py sends through it.)
    async with _open(mail_servers, "dovecot") as smtp:
        assert not smtp.has_extension("SMTPUTF8")
        with pytest.raises(LocalProtocolError, match="needs SMTPUTF8"):
            await smtp.send_message(_message(), sender="sørén@example.test")
        await smtp.noop()


async def test_dsn_parameters_at_postfix_and_refused_without_dsn(mail_servers: Any) -> None:
    message = _message(subject="dsn")
    async with _open(mail_servers, "postfix") as smtp:
        result = await smtp.send_message(
            message, notify=["FAILURE", "DELAY"], ret="HDRS", envid="id+1"
        )
        assert result.ok
    _delivered(mail_servers, BOB, message["Message-ID"])
    async with _open(mail_servers, "dovecot") as smtp:
        with pytest.raises(LocalProtocolError, match="DSN"):
            await smtp.send_message(_message(), notify=["NEVER"])


async def test_vrfy_and_size(mail_servers: Any) -> None:
    async with _open(mail_servers, "postfix") as smtp:
        assert smtp.max_message_size == 52428800
        reply = await smtp.vrfy(BOB)
        assert reply.code in (250, 252)


async def test_module_level_send(mail_servers: Any) -> None:
    message = _message(subject="one-shot")
    result = await send(
        message,
        mail_servers.host,
        mail_servers.ports.submissions,
        ssl_context=mail_servers.client_ssl_context(),
        auth=_auth(mail_servers, "XOAUTH2"),
    )
    assert result.accepted == (BOB,)
    _assert_identical(_delivered(mail_servers, BOB, message["Message-ID"]), _wire(message))
