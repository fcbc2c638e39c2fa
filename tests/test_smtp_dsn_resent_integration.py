"""ORCPT and Resent- envelopes against the real servers.

ORCPT: Postfix checks the parameter's syntax (a bad xtext is ``501 5.5.4``) and, asked for a
success notification, reports the original recipient it decoded in the DSN it mails back to
the sender: the round trip proves the encoding. Resent-: a resent message goes to the
Resent- recipients, not to the original ones, and arrives without its Resent-Bcc.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.test_smtp_send_integration import ALICE, BOB, REFUSED, _assert_identical, _open
from trio_mailoauth.smtp.message import strip_bcc

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def _simple(message_id: str, **headers: str) -> bytes:
    lines = [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    lines += [
        "Subject: test",
        "Date: Sat, 01 Feb 2025 10:00:00 +0000",
        f"Message-ID: {message_id}",
        "",
        "hello",
        "",
    ]
    return "\r\n".join(lines).encode()


def _dsn(servers: Any, message_id: str) -> bytes:
    """The delivery report Postfix mailed back to alice for ``message_id``."""
    [data] = servers.wait_for_message(
        ALICE,
        lambda d: message_id.encode() in d and b"message/delivery-status" in d,
        count=1,
        timeout=15,
    )
    return bytes(data)


@pytest.mark.parametrize(
    ("original", "reported"),
    [
        # xtext: "+" and "=" travel as +2B and +3D; Postfix decodes them for the report.
        ("bob+orig=1@example.test", b"Original-Recipient: rfc822;bob+orig=1@example.test"),
        # RFC 6533 utf-8-addr-xtext (no SMTPUTF8 in this transaction): accepted and decoded
        # (the report shows the non-ASCII octets as "?" or as UTF-8, by Postfix's settings).
        ("bøb+1@exämple.test", b"Original-Recipient: utf-8;b"),
    ],
)
async def test_orcpt_comes_back_in_postfix_success_report(
    mail_servers: Any, original: str, reported: bytes
) -> None:
    message_id = f"<{uuid.uuid4().hex}@example.test>"
    content = _simple(message_id, From=ALICE, To=BOB)
    async with _open(mail_servers, "postfix") as smtp:
        result = await smtp.sendmail(
            ALICE, [BOB], content, notify=["SUCCESS"], orcpt={BOB: original}, envid="e+1"
        )
    assert result.ok
    report = _dsn(mail_servers, message_id)
    assert reported in report
    assert b"Final-Recipient: rfc822; bob@example.test" in report
    assert b"Original-Envelope-Id: e+1" in report


@pytest.mark.parametrize("server", ["dovecot", "postfix"])
async def test_resent_message_goes_to_the_resent_recipients(mail_servers: Any, server: str) -> None:
    message_id = f"<{uuid.uuid4().hex}@example.test>"
    # If the envelope came from To, the only recipient would be refused and the send fail.
    # A whole Resent- block, so no server adds a Resent-Message-ID inside our headers.
    content = _simple(
        message_id,
        Resent_From=ALICE,
        Resent_To=BOB,
        Resent_Bcc=ALICE,
        Resent_Date="Sun, 02 Feb 2025 10:00:00 +0000",
        Resent_Message_ID=f"<{uuid.uuid4().hex}@example.test>",
        From="someone@example.test",
        To=REFUSED,
    )
    async with _open(mail_servers, server) as smtp:
        result = await smtp.send_message(content)
    assert result.sender == ALICE
    assert result.accepted == (BOB, ALICE)
    sent = strip_bcc(content)
    assert b"Resent-Bcc" not in sent
    for user in (BOB, ALICE):
        [delivered] = mail_servers.wait_for_message(
            user, lambda d: message_id.encode() in d, count=1
        )
        _assert_identical(bytes(delivered), sent)
