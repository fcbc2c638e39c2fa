"""SMTPUTF8 end to end: Postfix submission → Postfix's virtual(8) agent → alice's Maildir →
read back over IMAP, byte for byte.

Dovecot 2.3 offers SMTPUTF8 neither in submission nor in LMTP, so this path (the harness's
UTF-8 alias of alice, see ``trio_mailoauth.testing.server_configs.UTF8_ALIAS``) is the one a
UTF-8 address can take here (Dovecot submission's refusal: test_smtp_send_integration.py).
"""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from typing import Any

import pytest

from trio_mailoauth.imap import open_imap
from trio_mailoauth.imap.search import Q
from trio_mailoauth.sasl import XOAuth2
from trio_mailoauth.smtp import open_smtp
from trio_mailoauth.testing.server_configs import UTF8_ALIAS

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

ALICE = "alice@example.test"
SENDER = "sørén@example.test"
TRACE_HEADERS = {b"Return-Path", b"X-Original-To", b"Delivered-To", b"Received"}


def _open_postfix(servers: Any) -> Any:
    token = servers.oauth.mint_token(ALICE)["access_token"]
    return open_smtp(
        servers.host,
        servers.ports.postfix_submissions,
        tls="implicit",
        ssl_context=servers.client_ssl_context(),
        auth=XOAuth2(ALICE, token),
    )


async def _read_back(servers: Any, message_id: str) -> bytes:
    """The message as IMAP gives it to alice (waiting for Postfix's queue to deliver it)."""
    servers.wait_for_message(ALICE, lambda data: message_id.encode() in data, count=1)
    async with open_imap(
        servers.host,
        servers.ports.imaps,
        ssl_context=servers.client_ssl_context(),
    ) as imap:
        await imap.login(ALICE, servers.users[ALICE])
        await imap.select("INBOX")
        [uid] = await imap.search(Q.header("Message-ID", message_id), uid=True)
        [message] = [m async for m in imap.fetch(str(uid), ["BODY.PEEK[]"], uid=True)]
        assert message.body is not None
        return message.body


def _assert_sent_as_is(delivered: bytes, sent: bytes) -> None:
    """``delivered`` is Postfix's trace headers, then exactly ``sent``."""
    assert delivered.endswith(sent)
    added = delivered[: len(delivered) - len(sent)]
    for line in added.split(b"\r\n"):
        assert line == b"" or line[:1] in b" \t" or line.split(b":")[0] in TRACE_HEADERS, line


async def test_utf8_addresses_and_headers_arrive_as_sent(mail_servers: Any) -> None:
    message_id = f"<{uuid.uuid4().hex}@example.test>"
    sent = (
        f"From: Sørén Ørsted <{SENDER}>\r\n"
        f"To: Ålice <{UTF8_ALIAS}>\r\n"
        "Subject: grüße aus Købnhavn ✉\r\n"
        "Date: Sat, 01 Feb 2025 10:00:00 +0000\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "hällo\r\n"
        ".a line that starts with a dot\r\n"
        "..and one with two\r\n"
        ".\r\n"
        "the end\r\n"
    ).encode()
    async with _open_postfix(mail_servers) as smtp:
        assert smtp.has_extension("SMTPUTF8")
        result = await smtp.sendmail(SENDER, [UTF8_ALIAS], sent)
        assert result.ok
        assert list(result.recipients) == [UTF8_ALIAS]
    _assert_sent_as_is(await _read_back(mail_servers, message_id), sent)


async def test_utf8_email_message_takes_its_envelope_from_the_headers(mail_servers: Any) -> None:
    message = EmailMessage()
    message["From"] = f"Sørén <{SENDER}>"
    message["To"] = UTF8_ALIAS
    message["Subject"] = "ünïcödé"
    message["Date"] = "Sat, 01 Feb 2025 10:00:00 +0000"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.test>"
    message.set_content("grüße\n")
    async with _open_postfix(mail_servers) as smtp:
        result = await smtp.send_message(message)
    assert result.sender == SENDER
    assert list(result.recipients) == [UTF8_ALIAS]
    delivered = await _read_back(mail_servers, message["Message-ID"])
    # SMTPUTF8 lets the headers travel as UTF-8, not as RFC 2047 encoded words.
    assert "Subject: ünïcödé\r\n".encode() in delivered
    assert f"From: Sørén <{SENDER}>\r\n".encode() in delivered
    assert delivered.endswith("grüße\r\n".encode())
