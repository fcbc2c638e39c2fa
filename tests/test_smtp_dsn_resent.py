"""ORCPT (RFC 3461, RFC 6533) and Resent- envelopes (RFC 5322 §3.6.6): transcripts in the core,
the envelope taken from the headers, and the client's API against scripted servers. Also the
lean send path: no trace text built when nobody traces, replies read from one receive."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest

from tests.scripted import Expect, ScriptedServer, Send, Step, scripted_server
from tests.test_smtp_send import EHLO_ALL, GREETING, OPEN, check_all_ways, play
from trio_mailoauth._client import Opener
from trio_mailoauth.errors import LocalProtocolError
from trio_mailoauth.smtp import Ehlo, Mail, Rcpt, SMTPClient, SMTPConnection, open_smtp
from trio_mailoauth.smtp._envelope import orcpt_value, utf8_addr_xtext, xtext
from trio_mailoauth.smtp._writer import write_command
from trio_mailoauth.smtp.message import envelope_from_headers, message_bytes, strip_bcc
from trio_mailoauth.transport import Stream

# --- ORCPT encodings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "smtputf8", "value"),
    [
        # RFC 3461 §4: "+", "=", space and controls as +HH, the rest of printable ASCII as is.
        ("bob@example.test", False, "rfc822;bob@example.test"),
        ("a+b=c@example.test", False, "rfc822;a+2Bb+3Dc@example.test"),
        ('"john doe"@example.test', True, "rfc822;" + '"john+20doe"@example.test'),
        # RFC 6533 §3: a non-ASCII address is "utf-8;"; with SMTPUTF8, utf-8-addr-unitext
        # keeps UTF-8 as is; without, utf-8-addr-xtext is 7-bit (\x{HEXPOINT}).
        ("bøb@exämple.test", True, "utf-8;bøb@exämple.test"),
        ("bøb@exämple.test", False, "utf-8;b\\x{F8}b@ex\\x{E4}mple.test"),
        ("用户@例子.test", False, "utf-8;\\x{7528}\\x{6237}@\\x{4F8B}\\x{5B50}.test"),
        ("😀@x.test", False, "utf-8;\\x{1F600}@x.test"),
        # "+", "=" and "\" are not QCHARs: \x{..} in both forms (and in unitext).
        ('"ø+=\\\\"@x.test', True, 'utf-8;"ø\\x{2B}\\x{3D}\\x{5C}\\x{5C}"@x.test'),
    ],
)
def test_orcpt_values(address: str, smtputf8: bool, value: str) -> None:
    assert orcpt_value(address, smtputf8=smtputf8) == value


def test_encodings_only_emit_their_alphabets() -> None:
    every = "".join(chr(c) for c in range(32, 127)) + "øé中😀"
    encoded = xtext(every)
    assert all(33 <= ord(c) <= 126 for c in encoded)
    assert "=" not in encoded
    seven = utf8_addr_xtext(every, unitext=False)
    assert seven.isascii()
    assert not set(" +=") & set(seven)
    # Every backslash starts an escape: the encoding can be undone.
    assert seven.count("\\") == seven.count("\\x{")
    uni = utf8_addr_xtext(every, unitext=True)
    assert "øé中😀" in uni
    assert not set(" +=") & set(uni)


def test_orcpt_on_the_wire_follows_the_transaction() -> None:
    events, writes, _ = check_all_ways(
        [
            *OPEN,
            Mail("alice@example.test", smtputf8=True),
            Rcpt("bob@example.test", orcpt="bøb@example.test"),
            Rcpt("carol@example.test", notify=("NEVER",), orcpt="c+1@example.test"),
            b"250 ok\r\n250 ok\r\n250 ok\r\n",
        ]
    )
    assert (
        writes[1]
        == (
            "MAIL FROM:<alice@example.test> SMTPUTF8\r\n"
            "RCPT TO:<bob@example.test> ORCPT=utf-8;bøb@example.test\r\n"
            "RCPT TO:<carol@example.test> NOTIFY=NEVER ORCPT=rfc822;c+2B1@example.test\r\n"
        ).encode()
    )
    assert [e.code for e in events[2:]] == [250, 250, 250]  # type: ignore[attr-defined]
    _, writes, _ = play(
        [*OPEN, Mail("alice@example.test"), Rcpt("bob@example.test", orcpt="bøb@example.test")]
    )
    assert writes[-1].endswith(b"ORCPT=utf-8;b\\x{F8}b@example.test\r\n")
    assert writes[-1].isascii()


def test_orcpt_needs_dsn_and_a_sane_address() -> None:
    _, _, conn = play([GREETING, Ehlo("c.test"), b"250-mx\r\n250 PIPELINING\r\n"])
    conn.send(Mail("alice@example.test"))
    with pytest.raises(LocalProtocolError, match="DSN"):
        conn.send(Rcpt("bob@example.test", orcpt="bob@example.test"))
    assert conn.data_to_send() == b"MAIL FROM:<alice@example.test>\r\n"
    with pytest.raises(LocalProtocolError, match="ORCPT"):
        Rcpt("bob@example.test", orcpt="x>@example.test")


# --- the envelope of a resent message -----------------------------------------------------

RESENT = (
    b"Resent-From: rita@example.test\r\n"
    b"Resent-To: rob@example.test, Ron <ron@example.test>\r\n"
    b"Resent-Bcc: hidden@example.test\r\n"
    b"Resent-Date: Sun, 02 Feb 2025 10:00:00 +0000\r\n"
    b"Received: from somewhere\r\n"
    b"Resent-Sender: old-sender@example.test\r\n"
    b"Resent-From: old@example.test\r\n"
    b"Resent-To: old-rcpt@example.test\r\n"
    b"From: alice@example.test\r\n"
    b"To: bob@example.test\r\n"
    b"Bcc: secret@example.test\r\n"
    b"Subject: hi\r\n"
    b"\r\n"
    b"body\r\n"
)


def test_resent_envelope_comes_from_the_newest_block() -> None:
    # Prepended blocks (RFC 5322 §3.6.6): the topmost is the newest.
    expected = (
        "rita@example.test",
        ["rob@example.test", "ron@example.test", "hidden@example.test"],
    )
    assert envelope_from_headers(RESENT, None, None) == expected
    parsed = email.message_from_bytes(RESENT, policy=email.policy.default)
    assert envelope_from_headers(parsed, None, None) == expected
    assert envelope_from_headers(email.message_from_bytes(RESENT), None, None) == expected
    # Given parts win; the rest still comes from the Resent- block.
    assert envelope_from_headers(RESENT, "me@example.test", None)[1] == expected[1]
    assert envelope_from_headers(RESENT, None, ["x@example.test"]) == (
        "rita@example.test",
        ["x@example.test"],
    )


def test_resent_sender_and_blocks_appended_after_from() -> None:
    message = EmailMessage()
    message["Resent-From"] = "old@example.test"
    message["Resent-To"] = "old-rcpt@example.test"
    message["From"] = "alice@example.test"
    message["To"] = "bob@example.test"
    # What a program resending with EmailMessage does: append a block after the others.
    message["Resent-From"] = "Team <a@example.test>, b@example.test"
    message["Resent-Sender"] = "list@example.test"
    message["Resent-Cc"] = "cc@example.test"
    assert envelope_from_headers(message, None, None) == ("list@example.test", ["cc@example.test"])


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        (b"Resent-To: r@example.test\r\nFrom: a@example.test\r\n", "Resent-From or Resent-Sender"),
        (b"Resent-From: r@example.test\r\nTo: b@example.test\r\n", "Resent-To, Resent-Cc or"),
        (
            b"Resent-From: a@example.test, b@example.test\r\nResent-To: c@example.test\r\n",
            "several Resent-From addresses and no Resent-Sender",
        ),
    ],
)
def test_resent_block_must_say_who(headers: bytes, error: str) -> None:
    # No fallback to From/To: a resent message without them would go to the wrong people.
    with pytest.raises(ValueError, match=error):
        envelope_from_headers(headers + b"\r\nbody\r\n", None, None)


def test_resent_bcc_is_stripped_from_bytes_and_messages() -> None:
    stripped = strip_bcc(RESENT)
    assert b"hidden" not in stripped
    assert b"secret" not in stripped
    assert stripped.count(b"Resent-") == RESENT.count(b"Resent-") - 1
    parsed = email.message_from_bytes(RESENT, policy=email.policy.default)
    wire = message_bytes(parsed, smtputf8=False, eight_bit=True)
    assert b"hidden" not in wire
    assert b"secret" not in wire
    assert b"Resent-To: rob" in wire


# --- the client ---------------------------------------------------------------------------

NAME = b"client.test"
DSN_EHLO: list[Step] = [
    Expect(b"EHLO " + NAME),
    Send(b"250-mx.example.test\r\n250-PIPELINING\r\n250-DSN\r\n250 SMTPUTF8\r\n"),
]
PLAIN_EHLO: list[Step] = [
    Expect(b"EHLO " + NAME),
    Send(b"250-mx.example.test\r\n250 PIPELINING\r\n"),
]
SERVER_GREETING: Step = Send(b"220 mx.example.test ESMTP\r\n")
BYE: list[Step] = [Expect(b"QUIT"), Send(b"221 bye\r\n")]
BODY = b"Subject: hi\r\n\r\nhello\r\n"


def opener(server: ScriptedServer) -> Opener[SMTPClient]:
    return open_smtp(
        server.host, server.port, tls="none", allow_insecure=True, local_hostname=NAME.decode()
    )


def transaction(*commands: bytes, replies: bytes) -> list[Step]:
    return [
        *(Expect(c) for c in commands),
        Expect(b"DATA"),
        Send(replies + b"354 go\r\n"),
        Expect(b"Subject: hi"),
        Expect(b""),
        Expect(b"hello"),
        Expect(b"."),
        Send(b"250 queued\r\n"),
    ]


async def test_client_sends_orcpt_per_recipient() -> None:
    script: list[Step] = [
        SERVER_GREETING,
        *DSN_EHLO,
        *transaction(
            b"MAIL FROM:<a@example.test>",
            b"RCPT TO:<b@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.test",
            b"RCPT TO:<c@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c@example.test",
            replies=b"250 ok\r\n250 ok\r\n250 ok\r\n",
        ),
        *transaction(
            b"MAIL FROM:<a@example.test>",
            b"RCPT TO:<b@example.test> ORCPT=rfc822;old+2Bb@example.test",
            b"RCPT TO:<c@example.test>",
            replies=b"250 ok\r\n250 ok\r\n250 ok\r\n",
        ),
        *BYE,
    ]
    async with scripted_server(script) as server, opener(server) as smtp:
        recipients = ["b@example.test", "c@example.test"]
        notify = ["success", "failure"]
        await smtp.sendmail("a@example.test", recipients, BODY, notify=notify, orcpt=True)
        result = await smtp.sendmail(
            "a@example.test", recipients, BODY, orcpt={"b@example.test": "old+b@example.test"}
        )
        assert result.ok
        await smtp.quit()


async def test_orcpt_refused_before_anything_is_sent() -> None:
    script: list[Step] = [SERVER_GREETING, *PLAIN_EHLO, Expect(b"NOOP"), Send(b"250 ok\r\n"), *BYE]
    async with scripted_server(script) as server, opener(server) as smtp:
        with pytest.raises(LocalProtocolError, match="does not offer DSN"):
            await smtp.sendmail("a@example.test", ["b@example.test"], BODY, orcpt=True)
        with pytest.raises(LocalProtocolError, match="not a recipient"):
            await smtp.sendmail(
                "a@example.test", ["b@example.test"], BODY, orcpt={"x@example.test": "y@x.test"}
            )
        await smtp.noop()  # nothing was queued: the NOOP's reply is the NOOP's
        await smtp.quit()


async def test_send_message_of_a_resent_message() -> None:
    sent = strip_bcc(RESENT)
    lines = sent.split(b"\r\n")
    body_start = lines.index(b"")
    script: list[Step] = [
        SERVER_GREETING,
        *PLAIN_EHLO,
        Expect(b"MAIL FROM:<rita@example.test>"),
        Expect(b"RCPT TO:<rob@example.test>"),
        Expect(b"RCPT TO:<ron@example.test>"),
        Expect(b"RCPT TO:<hidden@example.test>"),
        Expect(b"DATA"),
        Send(b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        *(Expect(line) for line in lines[:body_start]),
        Expect(b""),
        Expect(b"body"),
        Expect(b"."),
        Send(b"250 queued\r\n"),
        *BYE,
    ]
    async with scripted_server(script) as server, opener(server) as smtp:
        result = await smtp.send_message(RESENT)
        assert result.accepted == ("rob@example.test", "ron@example.test", "hidden@example.test")
        await smtp.quit()


# --- the lean send path -------------------------------------------------------------------


def test_no_trace_text_is_built_unless_somebody_traces() -> None:
    # The trace line of MAIL/RCPT/BDAT is made from the bytes only when a trace hook is set.
    assert write_command(Mail("a@example.test", size=10)).trace is None
    assert write_command(Rcpt("b@example.test", orcpt="b@example.test")).trace is None
    lines: list[str] = []
    conn = SMTPConnection(trace=lines.append)
    conn.receive_data(GREETING)
    conn.next_event()
    conn.send(Ehlo("c.test"))
    conn.receive_data(EHLO_ALL)
    conn.next_event()
    conn.send(Mail("a@example.test", size=10))
    assert lines[-1] == "C: MAIL FROM:<a@example.test> SIZE=10"


class CountingStream:
    def __init__(self, inner: Stream) -> None:
        self._inner = inner
        self.receives = 0
        self.sends = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def send_all(self, data: bytes) -> None:
        self.sends += 1
        await self._inner.send_all(data)

    async def receive_some(self) -> bytes:
        self.receives += 1
        return await self._inner.receive_some()


async def test_replies_that_come_together_are_read_from_one_receive() -> None:
    script: list[Step] = [
        SERVER_GREETING,
        Expect(b"EHLO " + NAME),
        Send(b"250-mx.example.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n"),
        *[
            step
            for _ in range(3)
            for step in (
                Expect(b"MAIL FROM:<a@example.test>"),
                Expect(b"RCPT TO:<b@example.test>"),
                Expect(b"RCPT TO:<c@example.test>"),
                Send(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n"),
                Expect(b"BDAT 22 LAST"),
                Expect(b"Subject: hi"),
                Expect(b""),
                Expect(b"hello"),
                Send(b"250 2.0.0 queued\r\n"),
            )
        ],
        *BYE,
    ]
    async with scripted_server(script) as server, opener(server) as smtp:
        counting = CountingStream(smtp._stream)
        smtp._stream = counting  # type: ignore[assignment]
        for _ in range(3):
            result = await smtp.sendmail(
                "a@example.test", ["b@example.test", "c@example.test"], BODY
            )
            assert result.reply.text == "queued"
        # Per message: MAIL+RCPT+RCPT in one write, their three replies from one receive;
        # the chunk in a second write, its reply from a second receive.
        assert (counting.sends, counting.receives) == (6, 6)
        await smtp.quit()
