"""QUOTA (RFC 9208) against the real Dovecot (its quota plugin, count backend)."""

from __future__ import annotations

from typing import Any

import pytest

from trio_mailoauth.errors import IMAPResponseError
from trio_mailoauth.imap import open_imap

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

BOB = "bob@example.test"
LIMIT_KIB = 10 * 1024 * 1024  # quota_rule = *:storage=10G in the harness


async def test_quota_root_and_quota_follow_what_the_mailbox_holds(mail_servers: Any) -> None:
    async with open_imap(
        mail_servers.host, mail_servers.ports.imaps, ssl_context=mail_servers.client_ssl_context()
    ) as imap:
        await imap.login(BOB, mail_servers.users[BOB])
        assert any(name.startswith("QUOTA") for name in imap.capabilities)
        before = await imap.get_quota_root("INBOX")
        assert before.mailbox == "INBOX"
        assert before.roots == ("User quota",)
        used, limit = before.quotas["User quota"].resources["STORAGE"]
        assert limit == LIMIT_KIB
        await imap.append("INBOX", b"Subject: quota\r\n\r\n" + b"x" * 300_000 + b"\r\n")
        quota = await imap.get_quota("User quota")
        assert quota.root == "User quota"
        grown, limit = quota.resources["STORAGE"]
        assert limit == LIMIT_KIB
        assert grown >= used + 290  # KiB
        with pytest.raises(IMAPResponseError):
            await imap.get_quota("no such root")
        await imap.noop()  # a refusal leaves the connection usable
