"""SMTPClient.send_message / sendmail against scripted servers: pipelining in one write, a
refused recipient in the middle of a pipeline, refusals reset with RSET, servers without
PIPELINING, checks before anything is sent, cancellation midway."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest
import trio

from tests.scripted import Expect, ScriptedServer, Send, Stall, Step, scripted_server
from trio_mailoauth._client import ClientState, Opener
from trio_mailoauth.errors import (
    ConnectionBrokenError,
    LocalProtocolError,
    SMTPPermanentError,
    SMTPTransientError,
)
from trio_mailoauth.smtp import SMTPClient, open_smtp
from trio_mailoauth.transport import Stream

NAME = b"client.test"
GREETING: Step = Send(b"220 mx.example.test ESMTP\r\n")


def ehlo(*keywords: bytes) -> list[Step]:
    lines = [b"mx.example.test", *keywords]
    text = b"".join(b"250-" + k + b"\r\n" for k in lines[:-1]) + b"250 " + lines[-1] + b"\r\n"
    return [Expect(b"EHLO " + NAME), Send(text)]


PIPELINED = ehlo(b"PIPELINING", b"SIZE 100000", b"8BITMIME", b"ENHANCEDSTATUSCODES")
BYE: list[Step] = [Expect(b"QUIT"), Send(b"221 bye\r\n")]
MESSAGE = b"From: alice@example.test\r\nSubject: hi\r\n\r\n.dot\r\n"


def opener(server: ScriptedServer) -> Opener[SMTPClient]:
    return open_smtp(
        server.host, server.port, tls="none", allow_insecure=True, local_hostname=NAME.decode()
    )


class RecordingStream:
    def __init__(self, inner: Stream) -> None:
        self._inner = inner
        self.sent: list[bytes] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def send_all(self, data: bytes) -> None:
        self.sent.append(data)
        await self._inner.send_all(data)


def record(client: SMTPClient) -> RecordingStream:
    recorder = RecordingStream(client._stream)
    client._stream = recorder  # type: ignore[assignment]
    return recorder


async def test_pipelined_send_with_a_refused_recipient_in_the_middle() -> None:
    script: list[Step] = [
        GREETING,
        *PIPELINED,
        Expect(b"MAIL FROM:<alice@example.test> SIZE=47"),
        Expect(b"RCPT TO:<bob@example.test>"),
        Expect(b"RCPT TO:<nobody@elsewhere.test>"),
        Expect(b"RCPT TO:<carol@example.test>"),
        Expect(b"DATA"),
        Send(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.7.1 relay denied\r\n"),
        Send(b"250 2.1.5 Ok\r\n354 go\r\n"),
        Expect(b"From: alice@example.test"),
        Expect(b"Subject: hi"),
        Expect(b""),
        Expect(b"..dot"),
        Expect(b"."),
        Send(b"250 2.0.0 queued as X\r\n"),
        *BYE,
    ]
    async with scripted_server(script) as server, opener(server) as smtp:
        recorder = record(smtp)
        result = await smtp.sendmail(
            "alice@example.test",
            ["bob@example.test", "nobody@elsewhere.test", "carol@example.test"],
            MESSAGE,
        )
        # MAIL, three RCPTs and DATA went out in one write; the content in a second.
        assert recorder.sent[0].count(b"\r\n") == 5
        assert recorder.sent[0].endswith(b"DATA\r\n")
        assert recorder.sent[1] == MESSAGE.replace(b"\r\n.dot", b"\r\n..dot") + b".\r\n"
        await smtp.quit()
    assert result.accepted == ("bob@example.test", "carol@example.test")
    assert list(result.refused) == ["nobody@elsewhere.test"]
    assert result.refused["nobody@elsewhere.test"].enhanced_status == "5.7.1"
    assert result.reply.text == "queued as X"


async def test_bdat_chunk_follows_the_replies_to_mail_and_rcpt() -> None:
    script: list[Step] = [
        GREETING,
        *ehlo(b"PIPELINING", b"CHUNKING"),
        Expect(b"MAIL FROM:<alice@example.test>"),
        Expect(b"RCPT TO:<bob@example.test>"),
        Expect(b"RCPT TO:<nobody@elsewhere.test>"),
        Send(b"250 ok\r\n250 ok\r\n550 no such user\r\n"),
        Expect(b"BDAT 47 LAST"),
        Expect(b"From: alice@example.test"),
        Expect(b"Subject: hi"),
        Expect(b""),
        Expect(b".dot"),  # BDAT: no dot-stuffing
        Send(b"250 queued\r\n"),
        # Every recipient refused: the message itself never goes.
        Expect(b"MAIL FROM:<alice@example.test>"),
        Expect(b"RCPT TO:<nobody@elsewhere.test>"),
        Send(b"250 ok\r\n550 no such user\r\n"),
        Expect(b"RSET"),
        Send(b"250 ok\r\n"),
        *BYE,
    ]
    async with scripted_server(script) as server, opener(server) as smtp:
        recorder = record(smtp)
        result = await smtp.sendmail(
            "alice@example.test", ["bob@example.test", "nobody@elsewhere.test"], MESSAGE
        )
        # MAIL and both RCPTs in one write; the chunk, after their replies, in a second (so
        # the server has our ACK when it answers: see SMTPClient._pipelined).
        assert recorder.sent == [
            b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n"
            b"RCPT TO:<nobody@elsewhere.test>\r\n",
            b"BDAT 47 LAST\r\n" + MESSAGE,
        ]
        assert result.accepted == ("bob@example.test",)
        assert result.reply.text == "queued"
        with pytest.raises(SMTPPermanentError, match="every recipient was refused"):
            await smtp.sendmail("alice@example.test", ["nobody@elsewhere.test"], MESSAGE)
        assert not any(b"BDAT" in data for data in recorder.sent[2:])
        await smtp.quit()


async def test_every_recipient_refused_raises_resets_and_stays_usable() -> None:
    script: list[Step] = [
        GREETING,
        *PIPELINED,
        Expect(b"MAIL FROM:<alice@example.test> SIZE=47"),
        Expect(b"RCPT TO:<a@elsewhere.test>"),
        Expect(b"RCPT TO:<b@elsewhere.test>"),
        Expect(b"DATA"),
        Send(b"250 ok\r\n550 5.7.1 denied\r\n450 4.2.1 busy\r\n554 5.5.1 no valid recipients\r\n"),
        Expect(b"RSET"),
        Send(b"250 2.0.0 ok\r\n"),
        Expect(b"NOOP"),
        Send(b"250 ok\r\n"),
        *BYE,
    ]
    async with scripted_server(script) as server, opener(server) as smtp:
        with pytest.raises(SMTPTransientError) as info:
            await smtp.sendmail(
                "alice@example.test", ["a@elsewhere.test", "b@elsewhere.test"], MESSAGE
            )
        assert smtp.state is ClientState.OK
        await smtp.noop()
        await smtp.quit()
    # Transient because one refusal is: a later try may reach b.
    assert info.value.code == 450
    assert "a@elsewhere.test: 550 denied" in str(info.value)


async def test_without_pipelining_one_command_at_a_time_and_mail_refused() -> None:
    script: list[Step] = [
        GREETING,
        *ehlo(b"8BITMIME"),
        Expect(b"MAIL FROM:<alice@example.test>"),
        Send(b"451 4.3.0 try later\r\n"),
        Expect(b"RSET"),
        Send(b"250 ok\r\n"),
        Expect(b"MAIL FROM:<alice@example.test>"),
        Send(b"250 ok\r\n"),
        Expect(b"RCPT TO:<bob@example.test>"),
        Send(b"250 ok\r\n"),
        Expect(b"DATA"),
        Send(b"354 go\r\n"),
        Expect(b"From: alice@example.test"),
        Expect(b"Subject: hi"),
        Expect(b""),
        Expect(b"..dot"),
        Expect(b"."),
        Send(b"554 5.6.0 content rejected\r\n"),
        Expect(b"RSET"),
        Send(b"250 ok\r\n"),
        *BYE,
    ]
    async with scripted_server(script) as server, opener(server) as smtp:
        with pytest.raises(SMTPTransientError, match="try later"):
            await smtp.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
        with pytest.raises(SMTPPermanentError, match="content rejected") as info:
            await smtp.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
        assert info.value.enhanced_status == "5.6.0"
        await smtp.quit()


async def test_send_message_takes_the_envelope_from_the_headers_and_strips_bcc() -> None:
    script: list[Step] = [
        GREETING,
        *PIPELINED,
        Expect(pattern=rb"MAIL FROM:<alice@example.test> SIZE=\d+"),
        Expect(b"RCPT TO:<bob@example.test>"),
        Expect(b"RCPT TO:<hidden@example.test>"),
        Expect(b"DATA"),
        Send(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        Expect(b"From: Alice <alice@example.test>"),
        Expect(b"To: bob@example.test"),
        Expect(b"Subject: hi"),
        Expect(b""),
        Expect(b"hello"),
        Expect(b"."),
        Send(b"250 queued\r\n"),
        *BYE,
    ]
    message = EmailMessage()
    message["From"] = "Alice <alice@example.test>"
    message["To"] = "bob@example.test"
    message["Bcc"] = "hidden@example.test"
    message["Subject"] = "hi"
    message.set_payload("hello\n")
    async with scripted_server(script) as server, opener(server) as smtp:
        result = await smtp.send_message(message)
        await smtp.quit()
    assert result.accepted == ("bob@example.test", "hidden@example.test")


async def test_checks_before_anything_is_sent() -> None:
    script: list[Step] = [GREETING, *PIPELINED, Expect(b"NOOP"), Send(b"250 ok\r\n"), *BYE]
    async with scripted_server(script) as server, opener(server) as smtp:
        recorder = record(smtp)
        with pytest.raises(LocalProtocolError, match="at most 100000"):
            await smtp.sendmail("a@example.test", ["b@example.test"], b"x" * 100_001)
        with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
            await smtp.sendmail("ä@example.test", ["b@example.test"], MESSAGE)
        with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
            await smtp.sendmail("a@example.test", ["b@example.test"], "Subject: ü\r\n\r\n".encode())
        with pytest.raises(LocalProtocolError, match="DSN"):
            await smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE, notify=["NEVER"])
        with pytest.raises(LocalProtocolError, match="CR, LF and NUL"):
            await smtp.sendmail("a@example.test", ["b@x\r\nRSET"], MESSAGE)
        with pytest.raises(LocalProtocolError, match="CHUNKING"):
            await smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE, chunking=True)
        assert recorder.sent == []
        await smtp.noop()
        await smtp.quit()


async def test_non_ascii_recipient_without_smtputf8_sends_nothing() -> None:
    script: list[Step] = [
        GREETING,
        *ehlo(b"PIPELINING", b"SMTPUTF8"),
        Expect(b"NOOP"),
        Send(b"250 ok\r\n"),
        *BYE,
    ]
    async with scripted_server(script) as server, opener(server) as smtp:
        recorder = record(smtp)
        with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
            await smtp.sendmail("a@example.test", ["bö@example.test"], MESSAGE, smtputf8=False)
        # No MAIL left queued in the core, to go out with the next command and have its
        # reply taken for that command's.
        assert recorder.sent == []
        assert (await smtp.noop()).code == 250
        await smtp.quit()


async def test_421_to_the_rset_after_a_refusal() -> None:
    script: list[Step] = [
        GREETING,
        *PIPELINED,
        Expect(pattern=rb"MAIL .*"),
        Expect(pattern=rb"RCPT .*"),
        Expect(b"DATA"),
        Send(b"250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n"),
        Expect(b"RSET"),
        Send(b"421 4.3.2 shutting down\r\n"),
    ]
    async with scripted_server(script) as server, opener(server) as smtp:
        with pytest.raises(SMTPPermanentError, match="no such user"):
            await smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE)
        assert smtp.state is ClientState.BROKEN


async def test_cancelled_midway_breaks_the_connection() -> None:
    script: list[Step] = [
        GREETING,
        *PIPELINED,
        Expect(pattern=rb"MAIL .*"),
        Expect(pattern=rb"RCPT .*"),
        Expect(b"DATA"),
        Send(b"250 ok\r\n"),
        Stall(2),
    ]
    async with scripted_server(script) as server, opener(server) as smtp:
        with trio.move_on_after(0.2):
            await smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE)
        assert smtp.state is ClientState.BROKEN
        with pytest.raises(ConnectionBrokenError):
            await smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE)


async def test_421_in_the_middle_of_a_transaction() -> None:
    script: list[Step] = [
        GREETING,
        *PIPELINED,
        Expect(pattern=rb"MAIL .*"),
        Expect(pattern=rb"RCPT .*"),
        Expect(b"DATA"),
        Send(b"421 4.3.2 shutting down\r\n"),
    ]
    async with scripted_server(script) as server, opener(server) as smtp:
        with pytest.raises(SMTPTransientError, match="shutting down"):
            await smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE)
        with pytest.raises(ConnectionBrokenError):
            await smtp.noop()
