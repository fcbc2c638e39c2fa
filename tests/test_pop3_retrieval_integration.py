"""Retrieval against the real Dovecot POP3 (STLS and implicit TLS; XOAUTH2, OAUTHBEARER and
USER/PASS): every maildrop command, byte-identical messages (dot-stuffed lines included),
streaming, pipelined retrieval, fetch_new, and deletions that only QUIT commits.

Each test empties bob's maildrop first: the tests share one Dovecot."""

from __future__ import annotations

import io
from typing import Any

import pytest

from trio_mailoauth._client import ClientState, Opener
from trio_mailoauth.errors import POP3ResponseError
from trio_mailoauth.pop3 import POP3Client, open_pop3
from trio_mailoauth.sasl import OAuthBearer, XOAuth2
from trio_mailoauth.testing.servers import MailServers
from trio_mailoauth.transport import TLSMode

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USER = "bob@example.test"

DOTS = (
    b"From: alice@example.test\nTo: bob@example.test\nSubject: dots\n\n"
    b".leading dot\n..two dots\n.\nx\n...\nend\n"
)
PLAIN = b"From: alice@example.test\nTo: bob@example.test\nSubject: plain\n\nhello\n"
BIG = b"Subject: big\n\n" + b"".join(
    b"%s line %06d\n" % (b"." if i % 7 == 0 else b"", i) for i in range(30_000)
)


def wire(message: bytes) -> bytes:
    """What POP3 serves for a message stored with LF line endings."""
    return message.replace(b"\n", b"\r\n")


def empty_maildrop(servers: MailServers) -> None:
    for path in servers.message_paths(USER):
        path.unlink(missing_ok=True)


def seed(servers: MailServers, *messages: bytes) -> None:
    empty_maildrop(servers)
    for message in messages:
        servers.deliver(USER, message)


async def login(servers: MailServers, tls: TLSMode = "implicit", how: str = "USER") -> POP3Client:
    port = servers.ports.pop3 if tls == "starttls" else servers.ports.pop3s
    kwargs: dict[str, Any] = {}
    if how != "USER":
        token = servers.oauth.mint_token(USER)["access_token"]
        kwargs["auth"] = XOAuth2(USER, token) if how == "XOAUTH2" else OAuthBearer(USER, token)
    pop = await open_pop3(
        servers.host, port, tls=tls, ssl_context=servers.client_ssl_context(), **kwargs
    )
    if how == "USER":
        await pop.user_pass(USER, servers.users[USER])
    assert pop.authenticated
    return pop


def _open(servers: MailServers) -> Opener[POP3Client]:
    return open_pop3(servers.host, servers.ports.pop3s, ssl_context=servers.client_ssl_context())


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
@pytest.mark.parametrize("how", ["XOAUTH2", "OAUTHBEARER", "USER"])
async def test_every_command(mail_servers: MailServers, tls: TLSMode, how: str) -> None:
    seed(mail_servers, DOTS, PLAIN)
    pop = await login(mail_servers, tls, how)
    try:
        assert pop.is_tls
        assert pop.pipelining  # Dovecot advertises PIPELINING
        count, size = await pop.stat()
        assert count == 2
        listing = await pop.list()
        assert [n for n, _ in listing] == [1, 2]
        assert size == sum(s for _, s in listing)
        assert await pop.list(2) == listing[1][1]
        uids = await pop.uidl()
        assert [n for n, _ in uids] == [1, 2]
        assert len({uid for _, uid in uids}) == 2
        assert await pop.uidl(1) == uids[0][1]
        messages = {await pop.retr(1), await pop.retr(2)}
        assert messages == {wire(DOTS), wire(PLAIN)}  # byte-identical, dots and all
        top = await pop.top(1, 0)
        assert top.endswith(b"\r\n\r\n")
        assert b"Subject:" in top
        sink = io.BytesIO()
        assert await pop.retr_to(1, sink) == len(sink.getvalue())
        assert sink.getvalue() in messages
        with pytest.raises(POP3ResponseError):
            await pop.retr(3)
        await pop.dele(1)
        assert (await pop.stat())[0] == 1
        with pytest.raises(POP3ResponseError):
            await pop.retr(1)  # marked deleted
        await pop.rset()
        assert (await pop.stat())[0] == 2
        await pop.noop()
        await pop.quit()
        assert pop.state is ClientState.CLOSED
    finally:
        await pop.aclose()
    assert len(mail_servers.message_paths(USER)) == 2  # RSET undid the DELE


async def test_dropped_connection_deletes_nothing_quit_commits(mail_servers: MailServers) -> None:
    seed(mail_servers, DOTS, PLAIN)

    class Failing:
        def write(self, data: bytes) -> None:
            raise OSError("disk full")

    pop = await login(mail_servers)
    await pop.dele(1)
    # A failing sink breaks the connection in the middle of a message, as a crash or a
    # lost network would: the session ends without QUIT.
    with pytest.raises(OSError, match="disk full"):
        await pop.retr_to(2, Failing())
    assert pop.state is ClientState.BROKEN
    await pop.aclose()

    pop = await login(mail_servers)
    try:
        assert (await pop.stat())[0] == 2  # nothing was deleted
        first = await pop.retr(1)
        await pop.dele(1)
        await pop.quit()  # QUIT commits
    finally:
        await pop.aclose()
    assert len(mail_servers.message_paths(USER)) == 1
    pop = await login(mail_servers)
    try:
        assert (await pop.stat())[0] == 1
        assert {await pop.retr(1), first} == {wire(DOTS), wire(PLAIN)}
    finally:
        await pop.aclose()


async def test_leaving_async_with_on_an_exception_deletes_nothing(
    mail_servers: MailServers,
) -> None:
    seed(mail_servers, DOTS, PLAIN)

    class StorageFailed(Exception):
        pass

    async def mark_then_fail() -> POP3Client:
        async with _open(mail_servers) as pop:
            await pop.user_pass(USER, mail_servers.users[USER])
            await pop.dele(1)
            raise StorageFailed(pop)

    with pytest.raises(StorageFailed) as info:
        await mark_then_fail()
    assert info.value.args[0].state is ClientState.CLOSED
    assert len(mail_servers.message_paths(USER)) == 2  # no QUIT: nothing deleted

    async with _open(mail_servers) as pop:
        await pop.user_pass(USER, mail_servers.users[USER])
        await pop.dele(1)
    assert len(mail_servers.message_paths(USER)) == 1  # a normal exit says QUIT


async def test_big_message_streams_byte_identical(mail_servers: MailServers) -> None:
    seed(mail_servers, BIG)
    chunks: list[int] = []
    out = io.BytesIO()

    class Recording:
        def write(self, data: bytes) -> None:
            chunks.append(len(data))
            out.write(data)

    async with _open(mail_servers) as pop:
        await pop.user_pass(USER, mail_servers.users[USER])
        assert await pop.retr_to(1, Recording()) == len(wire(BIG))
    assert out.getvalue() == wire(BIG)
    assert len(chunks) > 1
    assert max(chunks) <= 64 * 1024 + 4  # written as it arrived


async def test_retrieve_pipelined_many(mail_servers: MailServers) -> None:
    messages = [b"Subject: %d\n\n.%d\n..\nbody\n" % (i, i) for i in range(60)]
    seed(mail_servers, *messages)
    async with _open(mail_servers) as pop:
        await pop.user_pass(USER, mail_servers.users[USER])
        got = []
        async with pop.retrieve(range(1, 61)) as stream:
            async for number, data in stream:
                got.append((number, data))
        assert [n for n, _ in got] == list(range(1, 61))
        assert sorted(d for _, d in got) == sorted(wire(m) for m in messages)
        await pop.noop()  # still in step


async def test_fetch_new_deletes_after_confirmation(mail_servers: MailServers) -> None:
    seed(mail_servers, DOTS, PLAIN, b"Subject: third\n\nthird\n")
    async with _open(mail_servers) as pop:
        await pop.user_pass(USER, mail_servers.users[USER])
        uids = dict(await pop.uidl())
        seen = {uids[1]}
        stored: dict[str, bytes] = {}
        async with pop.fetch_new(seen, delete=True) as messages:
            async for uid, data in messages:
                stored[uid] = data
        assert set(stored) == {uids[2], uids[3]}
        await pop.quit()
    assert len(mail_servers.message_paths(USER)) == 1
    async with _open(mail_servers) as pop:
        await pop.user_pass(USER, mail_servers.users[USER])
        assert await pop.uidl() == [(1, uids[1])]
        async with pop.fetch_new(seen) as messages:
            assert [uid async for uid, _ in messages] == []
