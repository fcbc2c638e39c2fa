"""The quickstart (the README's main job) runs against the real servers and says what it did."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from trio_mailoauth.testing.servers import MailServers

pytestmark = pytest.mark.integration

QUICKSTART = Path(__file__).parent.parent / "examples" / "quickstart.py"


async def test_quickstart_runs(
    mail_servers: MailServers, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("quickstart", QUICKSTART)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    mail_servers.oauth.reset()
    await module.main(mail_servers)
    out = capsys.readouterr().out
    for proto in ("IMAP  STARTTLS", "IMAP  implicit", "SMTP  STARTTLS", "SMTP  implicit"):
        for mechanism in ("XOAUTH2", "OAUTHBEARER"):
            assert f"  {proto}  {mechanism:<11} ok" in out
    for proto in ("POP3  STLS    ", "POP3  implicit"):
        for mechanism in ("XOAUTH2", "OAUTHBEARER"):
            assert f"  {proto}  {mechanism:<11} ok" in out
    # The refresh-token provider: one request for three logins; a token expired at the
    # server mid-run is invalidated and replaced once.
    assert "IMAP, SMTP and POP3 logged in, 1 token request in all" in out
    assert "mode 0o600" in out
    assert "token rejected; retrying once" in out
    assert "1 token invalidated, 2 token requests in all" in out
    assert "<redacted>" in out
    assert "kind='temporary'" in out
    # IMAP, SMTP, POP3 sections.
    assert "SEARCH SUBJECT quickstart -> 3 UIDs" in out
    assert "IDLE event: Exists(" in out
    assert "refused:  nobody@elsewhere.invalid (554" in out
    assert "the dotted line arrived intact: True" in out
    assert "none of the new ones: True" in out
