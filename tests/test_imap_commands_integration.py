"""The IMAP mailbox commands (ESEARCH, SORT, THREAD too), streaming FETCH, IDLE and
concurrency (other tasks' commands during IDLE, kept fetch streams) against the real Dovecot.

Tests share one Dovecot: each works in mailboxes of its own (a fresh name per test) or finds
its own messages in bob's INBOX by a unique Message-ID.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import anyio
import pytest

from trio_mailoauth._client import ClientState
from trio_mailoauth.errors import ConnectionBrokenError, IMAPResponseError, LocalProtocolError
from trio_mailoauth.imap import IMAPClient, IMAPState, open_imap
from trio_mailoauth.imap.commands import QResync
from trio_mailoauth.imap.events import Bye, Exists, Expunge, Fetch, ThreadNode, Vanished
from trio_mailoauth.imap.message import MultiPart, SinglePart
from trio_mailoauth.imap.search import Q
from trio_mailoauth.testing.servers import MailServers

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USER = "bob@example.test"


def _message(subject: str, body: str = "hello\r\n", *, message_id: str | None = None) -> bytes:
    message_id = message_id or f"<{uuid.uuid4().hex}@example.test>"
    return (
        f"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\n"
        f"Subject: {subject}\r\nMessage-ID: {message_id}\r\n"
        f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n{body}"
    ).encode()


MULTIPART = (
    b"From: a@example.test\r\nTo: b@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
    b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi there\r\n"
    b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
    b'Content-Disposition: attachment; filename="a.bin"\r\n\r\nAAECAw==\r\n--XX--\r\n'
)


async def _client(servers: MailServers) -> IMAPClient:
    imap = await open_imap(
        servers.host, servers.ports.imaps, ssl_context=servers.client_ssl_context()
    )
    await imap.login(USER, servers.users[USER])
    return imap


def _name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_mailbox_lifecycle_with_utf7_names(mail_servers: MailServers) -> None:
    name = _name("Entwürfe & Co")
    async with await _client(mail_servers) as imap:
        await imap.create(name)
        entries = await imap.list("", name)
        assert [entry.name for entry in entries] == [name]
        assert entries[0].delimiter == "."
        assert entries[0].selectable
        await imap.subscribe(name)
        assert name in [entry.name for entry in await imap.lsub("", "*")]
        await imap.unsubscribe(name)
        assert name not in [entry.name for entry in await imap.lsub("", "*")]
        status = await imap.status(name, ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"])
        assert (status.mailbox, status.messages, status.uidnext, status.unseen) == (
            name,
            0,
            1,
            0,
        )
        renamed = name + "-ü2"
        await imap.rename(name, renamed)
        info = await imap.select(renamed)
        assert info.exists == 0
        assert info.uidnext == 1
        assert info.uidvalidity
        assert "\\Seen" in info.flags
        assert info.permanent_flags is not None
        assert imap.protocol_state is IMAPState.SELECTED
        await imap.unselect()
        assert imap.protocol_state.name == "AUTHENTICATED"
        await imap.delete(renamed)
        assert await imap.list("", renamed) == []
        with pytest.raises(IMAPResponseError) as info_error:
            await imap.select(renamed)
        assert info_error.value.status == "NO"
        assert imap.state is ClientState.OK


async def test_append_fetch_every_item(mail_servers: MailServers) -> None:
    box = _name()
    subject = 'Grüße "quoted" \\ back'
    date = datetime(2023, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    message = _message(subject.encode("utf-8").decode("latin-1"), "line one\r\nline two\r\n")
    async with await _client(mail_servers) as imap:
        await imap.create(box)
        appended = await imap.append(box, message, flags=["\\Flagged", "$Work"], internal_date=date)
        assert appended is not None
        assert appended.uid == 1
        info = await imap.examine(box)
        assert info.read_only
        assert info.exists == 1
        items = [
            "UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE",
            "BODY.PEEK[]", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]", "BODY.PEEK[TEXT]<0.4>",
            "BINARY.PEEK[1]", "BINARY.SIZE[1]",
        ]  # fmt: skip
        messages = [m async for m in imap.fetch("1", items)]
        assert len(messages) == 1
        msg = messages[0]
        assert isinstance(msg, Fetch)
        assert msg.sequence == 1
        assert msg.uid == 1
        assert set(msg.flags or ()) - {"\\Recent"} == {"\\Flagged", "$Work"}
        assert msg.internal_date == date
        assert msg.size == len(message)
        assert msg.body == message
        assert msg.section("BODY.PEEK[HEADER.FIELDS (SUBJECT)]") is not None
        assert msg.sections["BODY[TEXT]<0>"] == b"line"
        assert msg.section("BINARY[1]") == b"line one\r\nline two\r\n"
        assert msg.binary_sizes == {"[1]": 20}
        assert msg.envelope is not None
        assert msg.envelope.from_[0].email == "alice@example.test"
        assert msg.envelope.from_[0].name == "Alice"
        assert msg.envelope.to[0].email == "bob@example.test"
        assert isinstance(msg.body_structure, SinglePart)
        assert msg.body_structure.content_type == "text/plain"
        assert msg.body_structure.lines == 2
        await imap.append(box, MULTIPART)
        (multi,) = [m async for m in imap.fetch("2", ["BODYSTRUCTURE"], uid=True)]
        structure = multi.body_structure
        assert isinstance(structure, MultiPart)
        assert structure.subtype == "mixed"
        assert [part.content_type for part in structure.parts] == [
            "text/plain",
            "application/octet-stream",
        ]
        attachment = structure.parts[1]
        assert isinstance(attachment, SinglePart)
        assert attachment.disposition == ("attachment", {"filename": "a.bin"})
        assert attachment.encoding == "base64"
        (binary,) = [m async for m in imap.fetch("2", ["BINARY.PEEK[2]"], uid=True)]
        assert binary.section("BINARY[2]") == b"\x00\x01\x02\x03"
        await imap.unselect()
        await imap.delete(box)


async def test_search_store_copy_move_expunge(mail_servers: MailServers) -> None:
    box, other, third = _name(), _name(), _name()
    async with await _client(mail_servers) as imap:
        for name in (box, other, third):
            await imap.create(name)
        subjects = ["alpha", "beta", "Größe", 'in "quotes"', "alpha two"]
        for subject in subjects:
            await imap.append(box, _message(subject.encode().decode("latin-1")))
        await imap.select(box)
        assert await imap.search() == [1, 2, 3, 4, 5]
        assert await imap.search(Q.subject("alpha"), uid=True) == [1, 5]
        assert await imap.search(Q.subject('"quotes"')) == [4]
        assert await imap.search(Q.subject("alpha") & ~Q.subject("two")) == [1]
        assert await imap.search(Q.subject("beta") | Q.subject("two")) == [2, 5]
        assert await imap.search(Q.since(datetime(2000, 1, 1)) & Q.larger(10)) == [1, 2, 3, 4, 5]
        assert await imap.search("UNSEEN") == [1, 2, 3, 4, 5]
        result = await imap.store("1:2", ["\\Seen", "$Label"])
        assert [(f.sequence, set(f.flags or ()) - {"\\Recent"}) for f in result.fetches] == [
            (1, {"\\Seen", "$Label"}),
            (2, {"\\Seen", "$Label"}),
        ]
        assert (await imap.store([2], ["$Label"], "-", silent=True)).fetches == ()
        assert await imap.search(Q.keyword("$Label")) == [1]
        assert await imap.search(Q.seen(), uid=True) == [1, 2]
        copied = await imap.copy([1, 2], other, uid=True)
        assert copied is not None
        assert copied.source == "1:2"
        assert copied.destination == "1:2"
        moved = await imap.move("3", other)
        assert moved is not None
        assert moved.destination == "3"
        assert [e for e in imap.drain_events() if isinstance(e, Expunge)] == [Expunge(3)]
        assert (await imap.status(other)).messages == 3
        # The fallback (no MOVE): COPY, STORE \Deleted, UID EXPUNGE of exactly those.
        await imap.store("1", ["\\Deleted"])  # another deleted message must survive
        imap._conn._set_capabilities(imap.capabilities - {"MOVE"})
        fallback = await imap.move([5], third, uid=True)
        assert fallback is not None
        assert fallback.source == "5"
        assert await imap.search(uid=True) == [1, 2, 4]
        await imap.uid_expunge("2")  # 2 is not \Deleted: nothing happens
        assert await imap.search(uid=True) == [1, 2, 4]
        await imap.expunge()
        assert await imap.search(uid=True) == [2, 4]
        events = imap.drain_events()
        assert Expunge(1) in events
        await imap.close_mailbox()
        for name in (box, other, third):
            await imap.delete(name)


async def test_condstore_qresync(mail_servers: MailServers) -> None:
    box = _name()
    async with await _client(mail_servers) as imap:
        assert await imap.enable("QRESYNC") >= {"QRESYNC"}
        await imap.create(box)
        for index in range(4):
            await imap.append(box, _message(f"m{index}"))
        info = await imap.select(box, condstore=True)
        assert info.highestmodseq is not None
        assert info.uidvalidity is not None
        modseq = info.highestmodseq
        await imap.store("2", ["\\Flagged"], uid=True)
        changed = [m async for m in imap.fetch("1:*", ["FLAGS"], uid=True, changedsince=modseq)]
        assert [(m.uid, m.modseq is not None) for m in changed] == [(2, True)]
        stale = await imap.store("2:3", ["$X"], uid=True, unchangedsince=modseq)
        assert stale.modified == "2"
        await imap.store("4", ["\\Deleted"], uid=True)
        await imap.expunge()
        vanished_live = [e for e in imap.drain_events() if isinstance(e, Vanished)]
        assert [list(v) for v in vanished_live] == [[4]]
        await imap.unselect()
        resync = await imap.select(box, qresync=QResync(info.uidvalidity, modseq, "1:4"))
        assert [list(v) for v in resync.vanished] == [[4]]
        assert sorted(m.uid or 0 for m in resync.changed) == [2, 3]
        await imap.unselect()
        await imap.delete(box)


async def test_id_namespace_noop_capability(mail_servers: MailServers) -> None:
    async with await _client(mail_servers) as imap:
        server = await imap.id({"name": "trio_mailoauth", "version": "test"})
        assert server is not None
        assert server.get("name") == "Dovecot"
        namespace = await imap.namespace()
        assert namespace.personal == (("", "."),)
        assert await imap.noop() == []
        assert "IDLE" in await imap.capability()


async def test_fetch_streams_and_can_be_left_early(mail_servers: MailServers) -> None:
    box = _name()
    async with await _client(mail_servers) as imap:
        await imap.create(box)
        for index in range(30):
            await imap.append(box, _message(f"n{index}", "x" * 2000 + "\r\n"))
        await imap.select(box)
        seen = 0
        async for message in imap.fetch("1:*", ["UID", "BODY.PEEK[]"]):
            assert isinstance(message, Fetch)
            assert message.body is not None
            seen += 1
            if seen == 5:
                with pytest.raises(LocalProtocolError, match="iterating a fetch"):
                    await imap.noop()
                break
        # The rest of that FETCH is read and dropped before the next reply.
        assert await imap.search(uid=True) == list(range(1, 31))
        stream = imap.fetch("1:10", ["UID"], uid=True)
        async with stream:
            first = await stream.__anext__()
            assert isinstance(first, Fetch)
            assert first.uid == 1
        assert len([m async for m in imap.fetch("1:*", "UID")]) == 30
        await imap.unselect()
        await imap.delete(box)


async def test_concurrent_tasks_share_one_client(mail_servers: MailServers) -> None:
    boxes = [_name() for _ in range(3)]
    async with await _client(mail_servers) as imap:
        for box in boxes:
            await imap.create(box)
            await imap.append(box, _message(box))
        await imap.select(boxes[0])
        results: dict[str, object] = {}

        async def status(box: str) -> None:
            results[box] = (await imap.status(box)).messages

        async def fetch() -> None:
            results["fetch"] = [m.uid async for m in imap.fetch("1:*", "UID", uid=True)]

        async def listing() -> None:
            results["list"] = len(await imap.list("", "t-*"))

        async def noop() -> None:
            results["noop"] = await imap.noop()

        async with anyio.create_task_group() as tg:
            for box in boxes:
                tg.start_soon(status, box)
            tg.start_soon(fetch)
            tg.start_soon(listing)
            tg.start_soon(noop)
        assert [results[box] for box in boxes] == [1, 1, 1]
        assert results["fetch"] == [1]
        assert isinstance(results["list"], int)
        assert results["list"] >= 3
        await imap.unselect()
        for box in boxes:
            await imap.delete(box)


async def test_idle_sees_a_delivery_and_renews(mail_servers: MailServers) -> None:
    async with await _client(mail_servers) as imap:
        info = await imap.select("INBOX")
        async with imap.idle(refresh_after=0.3) as events:
            await anyio.sleep(0.5)  # at least one renewal before the delivery
            await anyio.to_thread.run_sync(mail_servers.deliver, USER, _message("idle"))
            with anyio.fail_after(10):
                async for event in events:
                    if isinstance(event, Exists) and event.count > info.exists:
                        break
            assert events.restarts >= 1
        assert imap.state is ClientState.OK
        await imap.noop()  # the connection is out of IDLE and usable


async def test_idle_cancelled_sends_done(mail_servers: MailServers) -> None:
    async with await _client(mail_servers) as imap:
        await imap.select("INBOX")
        with anyio.move_on_after(0.3):
            async with imap.idle() as events:
                async for _ in events:
                    pass
        assert imap.state is ClientState.OK
        await imap.noop()


async def test_kick_during_idle_gives_bye_and_a_broken_client(mail_servers: MailServers) -> None:
    async with await _client(mail_servers) as imap:
        await imap.select("INBOX")
        seen: list[object] = []
        with anyio.fail_after(10):
            async with imap.idle() as events:
                await anyio.to_thread.run_sync(mail_servers.kick, USER)
                async for event in events:
                    seen.append(event)
        assert isinstance(seen[-1], Bye)
        assert imap.state is ClientState.BROKEN
        with pytest.raises(ConnectionBrokenError, match="ended the session"):
            await imap.noop()


async def test_dates_are_aware(mail_servers: MailServers) -> None:
    box = _name()
    async with await _client(mail_servers) as imap:
        await imap.create(box)
        await imap.append(box, _message("date"))
        await imap.select(box)
        (message,) = [m async for m in imap.fetch("1", "INTERNALDATE")]
        assert isinstance(message, Fetch)
        assert message.internal_date is not None
        assert abs(message.internal_date - datetime.now(UTC)) < timedelta(minutes=5)
        await imap.unselect()
        await imap.delete(box)


def _threaded(subject: str, message_id: str, date: str, parent: str | None = None) -> bytes:
    references = f"In-Reply-To: {parent}\r\nReferences: {parent}\r\n" if parent else ""
    return (
        f"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\n{references}Date: {date}\r\n\r\nbody\r\n"
    ).encode()


async def test_esearch_sort_thread(mail_servers: MailServers) -> None:
    box = _name()
    ids = [f"<{uuid.uuid4().hex}@example.test>" for _ in range(5)]
    messages = [  # two threads: 1 <- 2 <- 4 and 1 <- 5; 3 alone
        _threaded("alpha", ids[0], "Mon, 1 Jan 2024 10:00:00 +0000"),
        _threaded("Re: alpha", ids[1], "Mon, 1 Jan 2024 12:00:00 +0000", ids[0]),
        _threaded("beta", ids[2], "Mon, 1 Jan 2024 11:00:00 +0000"),
        _threaded("Re: alpha", ids[3], "Mon, 1 Jan 2024 13:00:00 +0000", ids[1]),
        _threaded("Re: alpha", ids[4], "Mon, 1 Jan 2024 09:00:00 +0000", ids[0]),
    ]
    async with await _client(mail_servers) as imap:
        await imap.create(box)
        for message in messages:
            await imap.append(box, message)
        await imap.select(box)
        await imap.store("2,4", ["\\Seen"])
        # ESEARCH: the answer without the list of numbers.
        result = await imap.search(Q.unseen(), returns=["MIN", "MAX", "COUNT", "ALL"])
        assert (result.min, result.max, result.count, result.all) == (1, 5, 3, "1,3,5")
        assert result.numbers() == [1, 3, 5]
        counted = await imap.search(Q.subject("alpha"), uid=True, returns=["COUNT"])
        assert (counted.uid, counted.count, counted.min) == (True, 4, None)
        nothing = await imap.search(Q.subject("nowhere"), returns=["MIN", "COUNT"])
        assert (nothing.count, nothing.min) == (0, None)
        # SORT: by the Date header, newest first; by base subject then date; within a search.
        assert await imap.sort(["REVERSE", "DATE"]) == [4, 2, 3, 1, 5]
        assert await imap.sort("SUBJECT DATE") == [5, 1, 2, 4, 3]
        assert await imap.sort("DATE", Q.unseen(), uid=True) == [5, 1, 3]
        # THREAD: 1 with two branches, 5 and 2 -> 4 (children by date, RFC 5256), then 3.
        threads = await imap.thread("REFERENCES")
        assert threads == [
            ThreadNode((1,), (ThreadNode((5,)), ThreadNode((2, 4)))),
            ThreadNode((3,)),
        ]
        assert list(threads[0]) == [1, 5, 2, 4]
        by_subject = await imap.thread("ORDEREDSUBJECT", uid=True)
        assert sorted(sorted(thread) for thread in by_subject) == [[1, 2, 4, 5], [3]]
        assert await imap.thread("REFERENCES", Q.subject("beta")) == [ThreadNode((3,))]
        with pytest.raises(LocalProtocolError, match="THREAD=NOSUCH"):
            await imap.thread("NOSUCH")
        with pytest.raises(LocalProtocolError, match="not a SORT key"):
            await imap.sort("DATE ALL")  # never sent: a key must be a key
        await imap.unselect()
        await imap.delete(box)


async def test_other_tasks_commands_run_during_idle(mail_servers: MailServers) -> None:
    # While one task waits in IDLE, another task's commands do not wait for the whole IDLE:
    # DONE, the commands, IDLE again; a delivery afterwards still reaches the idler.
    box = _name()
    async with await _client(mail_servers) as imap:
        await imap.create(box)
        await anyio.to_thread.run_sync(mail_servers.deliver, USER, _message("before idle"))
        info = await imap.select("INBOX")
        idling = anyio.Event()
        done: list[str] = []
        seen: list[object] = []

        async def idler() -> None:
            async with imap.idle() as events:
                idling.set()
                async for event in events:
                    seen.append(event)
                    if isinstance(event, Exists) and event.count > info.exists:
                        break
                done.append(f"restarts={events.restarts}")

        async def other() -> None:
            await idling.wait()
            await imap.append(box, _message("during idle"))
            status = await imap.status(box)
            done.append(f"status={status.messages}")
            assert [m.uid async for m in imap.fetch("1:*", "UID", uid=True)]
            done.append("fetched")
            # Through Dovecot (not a file in the Maildir): right after the FETCH, the idler
            # may be re-entering IDLE in the same clock tick as Dovecot's last look.
            await anyio.to_thread.run_sync(mail_servers.save, USER, _message("for idler"))

        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(idler)
                tg.start_soon(other)
        assert done[:2] == ["status=1", "fetched"]
        assert done[2].startswith("restarts=")
        assert int(done[2].split("=")[1]) >= 1
        assert any(isinstance(event, Exists) for event in seen)
        assert imap.state is ClientState.OK
        await imap.noop()
        await imap.unselect()
        await imap.delete(box)


async def test_a_kept_fetch_stream_does_not_block_other_tasks(mail_servers: MailServers) -> None:
    box = _name()
    async with await _client(mail_servers) as imap:
        await imap.create(box)
        for index in range(30):
            await imap.append(box, _message(f"k{index}", "y" * 3000 + "\r\n"))
        await imap.select(box)
        stream = imap.fetch("1:*", ["UID", "BODY.PEEK[]"], uid=True)
        first = await stream.__anext__()
        # Another task needs the connection while the stream is kept and not iterated.
        status: list[int | None] = []

        async def other() -> None:
            status.append((await imap.status("INBOX")).messages)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(other)
        assert status
        rest = [m.uid async for m in stream]
        assert [first.uid, *rest] == list(range(1, 31))
        await imap.unselect()
        await imap.delete(box)
