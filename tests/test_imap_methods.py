"""The client's newer commands against scripted servers, for what the test Dovecot does not
do: QUOTA with several roots and resources (Dovecot's has one), SEARCH RETURN on a server
without ESEARCH, and the refusals sent before anything goes out."""

from __future__ import annotations

import pytest
import trio

from tests.scripted import Expect, Send, Step, scripted_server
from trio_mailoauth.errors import LocalProtocolError
from trio_mailoauth.imap import IMAPClient, open_imap
from trio_mailoauth.imap.events import ESearch, Quota
from trio_mailoauth.imap.mailbox import QuotaRoots
from trio_mailoauth.imap.search import Q

LOGOUT: list[Step] = [Expect(pattern=rb"A\d+ LOGOUT"), Send(b"* BYE bye\r\n")]


def preauth(caps: bytes) -> Step:
    return Send(b"* PREAUTH [CAPABILITY IMAP4rev1 " + caps + b"] ready\r\n")


async def connect(port: int) -> IMAPClient:
    return await open_imap("127.0.0.1", port, tls="none", allow_insecure=True)


async def test_quota_and_quota_root() -> None:
    # RFC 9208 §4.3.2 transcript, as Dovecot's quota plugin and Gmail answer.
    script: list[Step] = [
        preauth(b"QUOTA"),
        Expect(b'A1 GETQUOTAROOT "INBOX"'),
        Send(
            b'* QUOTAROOT INBOX "" "User quota"\r\n'
            b'* QUOTA "" (STORAGE 10 512)\r\n'
            b'* QUOTA "User quota" (MESSAGE 3 100)\r\n'
            b"A1 OK Getquotaroot completed\r\n"
        ),
        Expect(b'A2 GETQUOTA ""'),
        Send(b'* QUOTA "" (STORAGE 11 512 MESSAGE 4 100)\r\nA2 OK Getquota completed\r\n'),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        with trio.fail_after(3):
            roots = await imap.get_quota_root("INBOX")
            quota = await imap.get_quota("")
        await imap.aclose()
    assert roots == QuotaRoots(
        "INBOX",
        ("", "User quota"),
        {
            "": Quota("", {"STORAGE": (10, 512)}),
            "User quota": Quota("User quota", {"MESSAGE": (3, 100)}),
        },
    )
    assert quota.resources == {"STORAGE": (11, 512), "MESSAGE": (4, 100)}
    assert server.finished, (server.errors, server.received)


async def test_esearch_with_and_without_the_capability() -> None:
    script: list[Step] = [
        preauth(b"ESEARCH"),
        Expect(b'A1 SELECT "INBOX"'),
        Send(b"* 9 EXISTS\r\nA1 OK [READ-WRITE] done\r\n"),
        Expect(b"A2 SEARCH RETURN (COUNT MIN) UNSEEN"),
        Send(b'* ESEARCH (TAG "A2") MIN 3 COUNT 4\r\nA2 OK done\r\n'),
        Expect(b"A3 UID SEARCH RETURN (ALL) ALL"),  # RETURN () means ALL (RFC 4731)
        Send(b'* ESEARCH (TAG "A3") UID ALL 4:7,9\r\nA3 OK done\r\n'),
        Expect(b"A4 SEARCH RETURN (COUNT) DELETED"),
        Send(b"* SEARCH 2 5\r\nA4 OK done\r\n"),  # a server that ignored RETURN
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        with trio.fail_after(3):
            await imap.select("INBOX")
            unseen = await imap.search(Q.unseen(), returns=["count", "min"])
            every = await imap.search("ALL", uid=True, returns=[])
            deleted = await imap.search(Q.deleted(), returns=["COUNT"])
        await imap.aclose()
    assert unseen == ESearch("A2", False, min=3, count=4)
    assert every.numbers() == [4, 5, 6, 7, 9]
    assert deleted == ESearch(None, False, count=2)
    assert server.finished, (server.errors, server.received)


async def test_esearch_emulated_from_a_plain_search() -> None:
    script: list[Step] = [
        preauth(b""),
        Expect(b'A1 SELECT "INBOX"'),
        Send(b"* 9 EXISTS\r\nA1 OK [READ-WRITE] done\r\n"),
        Expect(b"A2 UID SEARCH UNSEEN"),
        Send(b"* SEARCH 9 3 5 6 7\r\nA2 OK done\r\n"),
        Expect(b"A3 SEARCH FLAGGED"),
        Send(b"* SEARCH\r\nA3 OK done\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        with trio.fail_after(3):
            await imap.select("INBOX")
            found = await imap.search(Q.unseen(), uid=True, returns=["MIN", "MAX", "COUNT", "ALL"])
            none = await imap.search(Q.flagged(), returns=["MIN", "COUNT", "ALL"])
            with pytest.raises(LocalProtocolError, match="ESEARCH"):
                await imap.search(Q.flagged(), returns=["SAVE"])
        await imap.aclose()
    assert found == ESearch(None, True, min=3, max=9, count=5, all="3,5:7,9")
    assert none == ESearch(None, False, count=0)
    assert server.finished, (server.errors, server.received)


async def test_extensions_not_offered_are_refused_before_sending() -> None:
    script: list[Step] = [
        preauth(b"SORT THREAD=REFERENCES"),
        Expect(b'A1 SELECT "INBOX"'),
        Send(b"* 1 EXISTS\r\nA1 OK [READ-WRITE] done\r\n"),
        *LOGOUT,
    ]
    async with scripted_server(script) as server:
        imap = await connect(server.port)
        with trio.fail_after(3):
            await imap.select("INBOX")
            with pytest.raises(LocalProtocolError, match="THREAD=ORDEREDSUBJECT"):
                await imap.thread("orderedsubject")
            with pytest.raises(LocalProtocolError, match="QUOTA"):
                await imap.get_quota()
            with pytest.raises(LocalProtocolError, match="QUOTA"):
                await imap.get_quota_root()
            with pytest.raises(LocalProtocolError, match="REVERSE"):
                await imap.sort("DATE REVERSE")
            imap._conn._set_capabilities(imap.capabilities - {"SORT"})
            with pytest.raises(LocalProtocolError, match="SORT"):
                await imap.sort("DATE")
        await imap.aclose()
    assert server.finished, (server.errors, server.received)
