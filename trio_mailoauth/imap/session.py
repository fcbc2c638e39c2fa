"""The IMAP client's engine: commands from several tasks over one connection.

Commands are *submitted* under a short send lock (the core checks the state table and RFC
9051 §5.5's pipelining rules; a command that may not join those in flight waits for them),
then each task *waits* for its tagged response. One task at a time reads: it takes the read
lock, reads events and dispatches each to the command it belongs to (by tag, or by kind for
untagged data: FETCH to the FETCH in flight, LIST to the LIST...), or to the queue of
unsolicited events (EXISTS, EXPUNGE, flag changes, alerts), until its own response arrives.
Another task then finds its response already there, or reads on.

A task cancelled while waiting leaves the connection usable: reading is cancel-safe (no
byte is lost), and the abandoned command's reply is read and dropped by whoever reads next.
A cancelled *send*, an interactive command (AUTHENTICATE, IDLE) interrupted midway, a
protocol or transport error, or an unsolicited ``* BYE`` break the connection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import anyio

from trio_mailoauth._client import BaseClient
from trio_mailoauth._sansio import NEED_DATA, ConnectionClosed
from trio_mailoauth.errors import (
    ConnectionBrokenError,
    IMAPResponseError,
    LocalProtocolError,
    RemoteProtocolError,
    SessionEndedError,
)
from trio_mailoauth.imap._connection import IMAPConnection
from trio_mailoauth.imap.commands import Command
from trio_mailoauth.imap.events import (
    Bye,
    Enabled,
    ESearch,
    Event,
    Exists,
    Fetch,
    Flags,
    IdleStarted,
    IdResponse,
    ListEntry,
    MailboxStatus,
    Namespace,
    Quota,
    QuotaRoot,
    Recent,
    SASLChallenge,
    Search,
    StatusResponse,
    TaggedResponse,
    Vanished,
)

if TYPE_CHECKING:
    from trio_mailoauth.sasl import SASLFlow

__all__ = ["IMAPSession"]

# Untagged responses received and not yet handed to the caller (``noop()``, ``idle()`` and
# ``drain_events()`` return them). A mailbox event storm (a mass EXPUNGE) can legitimately
# produce tens of thousands; a server sending more than this between two of our calls is
# flooding us. ~100 bytes each. The same cap bounds the responses one command collects
# (a LIST of 100,000 mailboxes, a FETCH collected by another task's read).
MAX_UNTAGGED: Final = 100_000

# What each command collects besides its tagged response: untagged data of these kinds goes
# to the oldest command in flight that collects it. Two commands collecting the same kind
# are never in flight together (their data would be ambiguous), so the second waits.
_COLLECTS: Final[dict[str, tuple[type, ...]]] = {
    "SELECT": (Exists, Recent, Flags, StatusResponse, Vanished, Fetch),
    "EXAMINE": (Exists, Recent, Flags, StatusResponse, Vanished, Fetch),
    "FETCH": (Fetch,),
    "STORE": (Fetch,),
    "SEARCH": (Search, ESearch),
    "LIST": (ListEntry,),
    "LSUB": (ListEntry,),
    "STATUS": (MailboxStatus,),
    "ID": (IdResponse,),
    "NAMESPACE": (Namespace,),
    "ENABLE": (Enabled,),
    "GETQUOTA": (Quota,),
    "GETQUOTAROOT": (Quota, QuotaRoot),
    "IDLE": (IdleStarted,),
}

# Commands whose exchange cannot be abandoned halfway: a challenge or a "+" would wait for
# an answer nobody gives. Interrupting one breaks the connection.
_INTERACTIVE: Final = frozenset({"AUTHENTICATE", "STARTTLS", "IDLE", "LOGIN"})


@dataclass(eq=False)
class Pending:
    """A command in flight and what arrived for it so far."""

    tag: str
    command: Command
    collects: tuple[type, ...]
    events: deque[Event] = field(default_factory=deque)
    response: TaggedResponse | None = None
    abandoned: bool = False
    streaming: bool = False  # a fetch() being iterated: others wait (bounded memory)
    flow: SASLFlow | None = None


def refusal(response: TaggedResponse) -> IMAPResponseError:
    return IMAPResponseError(response.status, response.text, response.code)


class IMAPSession(BaseClient[IMAPConnection]):
    """Submitting, reading and dispatching; the commands live in :class:`IMAPClient`."""

    def _init_session(self) -> None:
        self._send_lock = anyio.Lock()
        self._pending: dict[str, Pending] = {}
        self._unsolicited: deque[Event] = deque()
        self._completed = anyio.Event()  # set (and replaced) whenever a command completes
        self._bye: Bye | None = None
        self._stream_owner: object = None

    # --- unsolicited events ---------------------------------------------------------------

    def drain_events(self) -> list[Event]:
        """The unsolicited events received so far (EXISTS, EXPUNGE, FETCH, alerts), oldest
        first; they are removed from the queue. No I/O."""
        events = list(self._unsolicited)
        self._unsolicited.clear()
        return events

    def _keep(self, event: Event) -> None:
        if len(self._unsolicited) >= MAX_UNTAGGED:
            raise RemoteProtocolError(
                f"more than {MAX_UNTAGGED} unsolicited responses arrived without being drained"
            )
        self._unsolicited.append(event)

    # --- submitting -------------------------------------------------------------------------

    def _conflicts(self, collects: tuple[type, ...]) -> bool:
        for pending in self._pending.values():
            if pending.streaming:
                return True
            if any(kind in pending.collects for kind in collects):
                return True
        return False

    async def _submit(
        self, command: Command, *, streaming: bool = False, flow: SASLFlow | None = None
    ) -> Pending:
        """Send ``command`` as soon as the pipelining rules allow; its :class:`Pending`."""
        collects = _COLLECTS.get(command.name, ())
        if streaming and self._stream_owner == _current_task():
            raise LocalProtocolError(
                "this task is iterating a fetch(): finish it or aclose() it before the next "
                "command (its unread messages would have to be buffered)"
            )
        while True:
            self._ensure_usable()
            completed = self._completed
            if self._conn.can_send(command) and not self._conflicts(collects):
                break
            if not self._pending:
                break  # nothing will change: send() raises the LocalProtocolError
            if any(p.streaming for p in self._pending.values()) and (
                self._stream_owner == _current_task()
            ):
                raise LocalProtocolError(
                    "this task is iterating a fetch(): finish it or aclose() it before the "
                    "next command"
                )
            await self._wait_for_completion(completed)
        async with self._send_lock:
            self._ensure_usable()
            tag = self._conn.send(command)
            pending = Pending(tag, command, collects, streaming=streaming, flow=flow)
            self._pending[tag] = pending
            try:
                await self._flush()
            except BaseException as exc:
                await self._break(exc)  # part of a command may have gone out
                raise
        return pending

    # --- reading ----------------------------------------------------------------------------

    async def _read_event(self) -> Event:
        """The next event from the core, reading (and flushing what it queued) as needed."""
        conn = self._conn
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                if conn.has_data_to_send():
                    async with self._send_lock:
                        await self._flush()
                conn.receive_data(await self._stream.receive_some())
                continue
            if isinstance(event, ConnectionClosed):
                raise ConnectionBrokenError("the server closed the connection")
            return event

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, TaggedResponse):
            pending = self._pending.pop(event.tag, None)
            if pending is not None:
                pending.response = event
            self._completed.set()
            self._completed = anyio.Event()
            return
        if isinstance(event, SASLChallenge):
            flow = next((p.flow for p in self._pending.values() if p.flow is not None), None)
            if flow is None:
                raise RemoteProtocolError("SASL challenge outside AUTHENTICATE")
            self._conn.send_sasl_response(flow.respond(event.data))
            return
        if isinstance(event, Bye):
            self._bye = event
            self._keep(event)
            return
        live_vanished = isinstance(event, Vanished) and not event.earlier
        if not live_vanished and not isinstance(event, Exists | Recent | Flags):
            for pending in self._pending.values():
                if isinstance(event, pending.collects):
                    if pending.abandoned:
                        return
                    if len(pending.events) >= MAX_UNTAGGED:
                        raise RemoteProtocolError(
                            f"more than {MAX_UNTAGGED} responses to one {pending.command.name}"
                        )
                    pending.events.append(event)
                    return
        if isinstance(event, Exists | Recent | Flags | StatusResponse):
            # During SELECT/EXAMINE these describe the new mailbox: its answer.
            for pending in self._pending.values():
                if pending.command.name in ("SELECT", "EXAMINE"):
                    pending.events.append(event)
                    return
        self._keep(event)

    async def _read_until(
        self, pending: Pending, *, any_event: bool = False, unsolicited: bool = False
    ) -> None:
        """Hold the read lock and dispatch until ``pending`` completes (or, with
        ``any_event``, until it has an event; with ``unsolicited`` too, until an unsolicited
        one is queued)."""
        lock = self._lock
        try:
            lock.acquire_nowait()  # the common case: no checkpoint per message
        except anyio.WouldBlock:
            await lock.acquire()
        try:
            while pending.response is None:
                if any_event and (pending.events or (unsolicited and self._unsolicited)):
                    return
                self._ensure_usable()
                self._dispatch(await self._read_event())
                if self._bye is not None and pending.command.name != "LOGOUT":
                    if any_event:
                        return
                    raise SessionEndedError(self._bye.text, self._bye.code)
        finally:
            lock.release()

    async def _wait(
        self, pending: Pending, *, any_event: bool = False, unsolicited: bool = False
    ) -> None:
        try:
            await self._read_until(pending, any_event=any_event, unsolicited=unsolicited)
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()) and (
                pending.command.name not in _INTERACTIVE
            ):
                # Nothing was lost mid-read: the reply will be read and dropped later.
                if pending.response is None:
                    self._abandon(pending)
                raise
            if isinstance(exc, IMAPResponseError | LocalProtocolError):
                raise
            await self._break(exc)
            raise

    async def _wait_for_completion(self, completed: anyio.Event) -> None:
        """Wait until a command in flight completes. When nobody reads (the commands in
        flight were abandoned by cancelled tasks, or their tasks are busy), read for them;
        but never for a streaming fetch, whose own task reads at its own pace."""
        if self._lock.locked() or any(p.streaming for p in self._pending.values()):
            await completed.wait()
            return
        try:
            async with self._lock:
                while not completed.is_set():
                    self._ensure_usable()
                    if any(p.streaming for p in self._pending.values()):
                        break  # a fetch started meanwhile: its task reads
                    self._dispatch(await self._read_event())
                    self._raise_if_ended()
        except BaseException as exc:
            if not isinstance(exc, anyio.get_cancelled_exc_class() | LocalProtocolError):
                await self._break(exc)
            raise

    def _raise_if_ended(self) -> None:
        if self._bye is not None:
            raise SessionEndedError(self._bye.text, self._bye.code)

    def _abandon(self, pending: Pending) -> None:
        pending.abandoned = True
        pending.events.clear()
        if pending.streaming:
            pending.streaming = False
            self._stream_owner = None
            self._completed.set()
            self._completed = anyio.Event()

    async def _command(self, command: Command, *, flow: SASLFlow | None = None) -> Pending:
        """Submit, wait, and raise :class:`IMAPResponseError` on NO/BAD."""
        pending = await self._submit(command, flow=flow)
        await self._wait(pending)
        assert pending.response is not None
        if pending.response.status != "OK":
            raise refusal(pending.response)
        return pending

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """For the opening/auth/logout flows written as one round trip: wait until nothing
        is in flight, then hold the read lock (BaseClient's round trip)."""
        while self._pending:
            self._ensure_usable()
            await self._wait_for_completion(self._completed)
        async with self._round_trip():
            yield


def _current_task() -> object:
    return anyio.get_current_task().id
