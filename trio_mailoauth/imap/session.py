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

Tasks waiting for a command to complete are woken (``_wake``) whenever what they wait on may
have changed: a command completed, was abandoned, a reader stopped reading, the connection
broke. Two commands read at their own task's pace:

- a **streaming FETCH**: while its task waits in ``__anext__`` it reads; while that task is
  elsewhere (its loop body, or it forgot the stream), a task that needs the connection reads
  the rest into the stream's buffer, up to ``FETCH_BUFFER_BYTES``; when that is full and
  the stream's task takes nothing for ``STREAM_GRACE_SECONDS``, the rest is dropped and the
  stream raises ``FetchInterruptedError``. Memory stays bounded, nobody waits forever.
- an **IDLE**: another task's command (or the idler's own) ends it with DONE, runs, and the
  idler re-issues IDLE once no command is waiting; its events keep flowing to the idler.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

import anyio
import anyio.lowlevel

from trio_mailoauth._client import BaseClient
from trio_mailoauth._sansio import NEED_DATA, ConnectionClosed
from trio_mailoauth.errors import (
    ConnectionBrokenError,
    ConnectionClosedError,
    IMAPResponseError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    SessionEndedError,
    TransportError,
)
from trio_mailoauth.imap._connection import IMAPConnection
from trio_mailoauth.imap.commands import Command
from trio_mailoauth.imap.commands import Fetch as FetchCommand
from trio_mailoauth.imap.commands import Store as StoreCommand
from trio_mailoauth.imap.events import (
    Bye,
    Enabled,
    ESearch,
    Event,
    EventQueue,
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
    Sort,
    StatusResponse,
    TaggedResponse,
    Thread,
    Vanished,
)

__all__ = ["IMAPSession"]

# The responses one command collects (a LIST of 100,000 mailboxes, a SELECT's data): a
# server sending more for one command is flooding us. ~100 bytes each.
MAX_UNTAGGED: Final = 100_000

# Unsolicited events kept for a caller who does not drain them (``noop()``, ``idle()``,
# ``drain_events()``), after coalescing (see EventQueue). Beyond this the oldest are dropped
# and an ``Overflow`` tells the caller to resynchronise: a mass EXPUNGE of more messages is
# better answered by a new SELECT than by replaying it. A flag-change FETCH is ~1 KB of
# Python objects, so this stays under ~10 MB.
MAX_QUEUED: Final = 10_000

# What other tasks read into a streaming fetch's buffer while its task is busy elsewhere, so
# that their commands can go on: ~1,600 messages of 10 KB; at least one message is always
# taken, however big (the literal limit bounds it).
FETCH_BUFFER_BYTES: Final = 16 * 1024 * 1024

# How long a full stream buffer waits for its task to take a message before the rest of
# the FETCH is dropped (the stream raises FetchInterruptedError): long enough for slow work
# per message (writing it to disk), short enough that a forgotten stream does not stall the
# other tasks for long.
STREAM_GRACE_SECONDS: Final = 10.0

# What each command collects besides its tagged response: untagged data of these kinds goes
# to the oldest command in flight that collects it. Two commands collecting the same kind
# are never in flight together (their data would be ambiguous), so the second waits.
_COLLECTS: Final[dict[str, tuple[type, ...]]] = {
    "SELECT": (Exists, Recent, Flags, StatusResponse, Vanished, Fetch),
    "EXAMINE": (Exists, Recent, Flags, StatusResponse, Vanished, Fetch),
    "FETCH": (Fetch,),
    "STORE": (Fetch,),
    "SEARCH": (Search, ESearch),
    "SORT": (Sort,),
    "THREAD": (Thread,),
    # RFC 6851 §4.3: a server may send COPYUID in an untagged OK before the EXPUNGEs.
    "MOVE": (StatusResponse,),
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

# Commands that open or close a mailbox: message numbers before and after name different
# messages, so queued events are never merged across them.
_MAILBOX_CHANGES: Final = frozenset({"SELECT", "EXAMINE", "CLOSE", "UNSELECT"})

# Commands whose exchange cannot be abandoned halfway: a challenge or a "+" would wait for
# an answer nobody gives. Interrupting one breaks the connection.
_INTERACTIVE: Final = frozenset({"AUTHENTICATE", "STARTTLS", "IDLE", "LOGIN"})


def event_size(event: object) -> int:
    """Roughly what a buffered FETCH response holds in memory."""
    if isinstance(event, Fetch):
        return 512 + sum(len(value) for value in event.sections.values() if value)
    return 512


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
    # The task that reads this command's data itself (a streaming fetch, an IDLE): other
    # tasks never read for it while it does, and it may not send another command meanwhile.
    owner: object = None
    # FETCH/STORE: tells this command's FETCH responses from unsolicited flag changes.
    answers: Callable[[Fetch], bool] | None = None
    owner_active: bool = False  # a stream's task waits in __anext__: it reads, others wait
    buffered: int = 0  # bytes other tasks read into the stream for its busy task
    progress: float = 0.0  # when the stream's task last took a buffered message
    interrupted: bool = False  # the stream's rest was dropped (its task did not come back)
    idling: bool = False  # IDLE: the server's "+" arrived, DONE may be sent
    done_sent: bool = False  # IDLE: DONE went out (from the idler or another task)


def refusal(response: TaggedResponse) -> IMAPResponseError:
    return IMAPResponseError(response.status, response.text, response.code)


class IMAPSession(BaseClient[IMAPConnection]):
    """Submitting, reading and dispatching; the commands live in :class:`IMAPClient`."""

    def _init_session(self) -> None:
        self._send_lock = anyio.Lock()
        self._pending: dict[str, Pending] = {}
        self._stream_pending: Pending | None = None  # the streaming fetch in flight, if any
        # The streaming fetch whose task has not finished iterating it (its FETCH may have
        # completed on the wire already, its messages still buffered): that task may not
        # send a command meanwhile, whatever the timing of the server's tagged reply.
        self._iterated: Pending | None = None
        self._unsolicited = EventQueue(MAX_QUEUED)
        self._completed = anyio.Event()  # set (and replaced) whenever a command completes
        self._bye: Bye | None = None
        self._closing = False  # aclose() started: every other use is "you closed it"
        self._submitting = 0  # tasks waiting to send: an interrupted IDLE waits for them
        self._waiting = 0  # tasks waiting in _wait_for_completion (woken by a stream's task)
        self._event_waiters = 0  # paused idlers, woken when an unsolicited event arrives
        self._idle_blocks = 0  # open idle() blocks: the unsolicited events are theirs
        self._deferred_error: RemoteProtocolError | None = None  # see _dispatch_buffered

    # --- unsolicited events ---------------------------------------------------------------

    def drain_events(self) -> list[Event]:
        """The unsolicited events received so far (EXISTS, EXPUNGE, FETCH, alerts), oldest
        first; they are removed from the queue. No I/O. An :class:`Overflow` first means
        older ones were dropped (the queue holds ``MAX_QUEUED``): resynchronise."""
        return self._unsolicited.drain()

    def _keep(self, event: Event) -> None:
        self._unsolicited.append(event)
        if self._event_waiters:
            self._wake()

    # --- closing ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close: LOGOUT when the connection is idle and healthy, then close the stream.

        Other tasks' commands, waiting or in flight, end with ConnectionClosedError.
        """
        self._closing = True
        self._wake()
        await super().aclose()

    def _ensure_usable(self) -> None:
        if self._closing:
            raise ConnectionClosedError("the IMAP connection was closed")
        super()._ensure_usable()

    def _closed_instead(self, exc: BaseException) -> ConnectionClosedError | None:
        """When another task closed the connection under us, that is what to report."""
        if self._closing and isinstance(exc, ProtocolError | TransportError):
            return ConnectionClosedError("the IMAP connection was closed")
        return None

    # --- submitting -------------------------------------------------------------------------

    def _conflicts(self, collects: tuple[type, ...]) -> bool:
        for pending in self._pending.values():
            if pending.streaming:
                return True
            if any(kind in pending.collects for kind in collects):
                return True
        return False

    def _sendable(self, command: Command, collects: tuple[type, ...]) -> bool:
        """Whether ``command`` may go now; False when it must wait for commands in flight.
        True also when nothing is in flight (``send()`` then raises what is wrong)."""
        if not self._pending:
            return True
        return self._conn.can_send(command) and not self._conflicts(collects)

    def _check_not_owner(self) -> None:
        me = _current_task()
        stream = self._iterated
        if stream is not None and stream.owner == me:
            raise LocalProtocolError(
                "this task is iterating a fetch(): finish it (aclose() it, or use "
                "async with imap.fetch(...)) before the next command"
            )

    async def _submit(self, command: Command, *, owner: bool = False) -> Pending:
        """Send ``command`` as soon as the pipelining rules allow; its :class:`Pending`.

        With ``owner``, this task reads the command's data itself (see ``Pending.owner``).
        """
        collects = _COLLECTS.get(command.name, ())
        self._ensure_usable()
        self._check_not_owner()
        self._submitting += 1
        try:
            while True:
                self._ensure_usable()
                completed = self._completed
                if self._sendable(command, collects):
                    async with self._send_lock:
                        # Checked again: acquiring the lock is a checkpoint, and another
                        # task may have sent a command meanwhile.
                        self._ensure_usable()
                        if self._sendable(command, collects):
                            return await self._send_locked(command, collects, owner)
                    continue
                if not await self._interrupt_idle():
                    await self._wait_for_completion(completed)
        except BaseException as exc:
            closed = self._closed_instead(exc)
            if closed is not None:
                raise closed from exc
            raise
        finally:
            self._submitting -= 1
            if self._event_waiters:
                self._wake()  # a paused idler may go on

    async def _send_locked(
        self, command: Command, collects: tuple[type, ...], owner: bool
    ) -> Pending:
        if command.name in _MAILBOX_CHANGES:
            self._unsolicited.barrier()
        tag = self._conn.send(command)
        streaming = owner and command.name == "FETCH"
        pending = Pending(
            tag,
            command,
            collects,
            streaming=streaming,
            owner=_current_task() if owner else None,
            answers=command.answered_by
            if isinstance(command, FetchCommand | StoreCommand)
            else None,
        )
        self._pending[tag] = pending
        if streaming:
            self._stream_pending = self._iterated = pending
        try:
            await self._flush()
        except BaseException as exc:
            await self._break(exc)  # part of a command may have gone out
            raise
        return pending

    # --- IDLE shared with other tasks --------------------------------------------------------

    async def _interrupt_idle(self) -> bool:
        """End a running IDLE (DONE) so that a command can go; True when DONE went out.

        The idler sees its IDLE completed after a DONE it did not send, waits until no
        command is waiting or in flight (still yielding events), and re-issues IDLE.
        """
        for pending in self._pending.values():
            if pending.command.name == "IDLE" and pending.idling and not pending.done_sent:
                await self._send_done(pending)
                return True
        return False

    async def _send_done(self, pending: Pending) -> None:
        async with self._send_lock:
            if pending.done_sent or pending.response is not None:
                return
            self._ensure_usable()
            self._conn.idle_done()
            pending.done_sent = True
            pending.owner = None  # whoever reads next reads the end of the IDLE
            try:
                await self._flush()
            except BaseException as exc:
                await self._break(exc)
                raise

    def _idle_reads(self) -> bool:
        """An IDLE runs and its task reads it (nobody else may read: it would take the
        idler's events and hold the read lock for as long as the IDLE runs)."""
        return any(p.owner is not None and p.command.name == "IDLE" for p in self._pending.values())

    # --- reading ----------------------------------------------------------------------------

    async def _read_event(self) -> Event:
        """The next event from the core, reading (and flushing what it queued) as needed."""
        if self._deferred_error is not None:
            error, self._deferred_error = self._deferred_error, None
            raise error
        conn = self._conn
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                if conn.has_data_to_send():  # a literal released by the server's "+"
                    flushing = False
                    try:
                        async with self._send_lock:
                            flushing = True
                            await self._flush()
                    except BaseException as exc:
                        if flushing:  # a command may be cut in the middle
                            await self._break(exc)
                        raise
                conn.receive_data(await self._stream.receive_some())
                continue
            if isinstance(event, ConnectionClosed):
                raise ConnectionBrokenError("the server closed the connection")
            return event

    def _dispatch_buffered(self, pending: Pending) -> None:
        """Dispatch the responses already whole in the receive buffer, without I/O, until
        ``pending`` completes: a stream's task then takes the messages of one receive
        without a read-lock round trip each (the hot path of a big FETCH). Memory stays what
        was received; an error in those bytes is raised by the next read, after the
        messages before it were delivered."""
        conn = self._conn
        while pending.response is None and self._bye is None:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                self._deferred_error = exc
                return
            if event is NEED_DATA or isinstance(event, ConnectionClosed):
                return  # the next read waits for data, or reports the close
            self._dispatch(event)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, TaggedResponse):
            pending = self._pending.pop(event.tag, None)
            if pending is not None:
                pending.response = event
                if pending is self._stream_pending:
                    self._stream_pending = None  # nothing more to read for it
            self._wake()
            return
        if isinstance(event, SASLChallenge):  # AUTHENTICATE runs in IMAPClient._run
            raise RemoteProtocolError("SASL challenge outside AUTHENTICATE")
        if isinstance(event, Bye):
            self._bye = event
            self._keep(event)
            return
        live_vanished = isinstance(event, Vanished) and not event.earlier
        if not live_vanished and not isinstance(event, Exists | Recent | Flags):
            for pending in self._pending.values():
                if isinstance(event, pending.collects):
                    # A FETCH response that does not answer the FETCH/STORE in flight (a
                    # flag change the server reports on its own, RFC 9051 §7.5.2) is
                    # unsolicited: see Fetch.answered_by.
                    answers = pending.answers
                    if answers is None or not isinstance(event, Fetch) or answers(event):
                        self._collect(pending, event)
                        return
                    break
        if isinstance(event, Exists | Recent | Flags | StatusResponse):
            # During SELECT/EXAMINE these describe the new mailbox: its answer.
            for pending in self._pending.values():
                if pending.command.name in ("SELECT", "EXAMINE"):
                    self._collect(pending, event)
                    return
        self._keep(event)

    def _collect(self, pending: Pending, event: Event) -> None:
        if pending.abandoned:
            return
        if isinstance(event, IdleStarted):
            pending.idling = True
            self._wake()  # a task waiting to interrupt the IDLE may now
        elif pending.streaming and not pending.owner_active:
            # Read by another task while the stream's task is elsewhere: counted against
            # FETCH_BUFFER_BYTES; its task has STREAM_GRACE_SECONDS from now to take one.
            if not pending.buffered:
                pending.progress = anyio.current_time()
            pending.buffered += event_size(event)
        if len(pending.events) >= MAX_UNTAGGED:
            raise RemoteProtocolError(
                f"more than {MAX_UNTAGGED} responses to one {pending.command.name}"
            )
        pending.events.append(event)

    def _wake(self) -> None:
        """Wake the tasks waiting for a command to complete: something changed."""
        self._completed.set()
        self._completed = anyio.Event()

    async def _break(self, exc: BaseException) -> None:
        self._wake()  # waiters find the connection broken instead of waiting forever
        await super()._break(exc)

    def _stream_blocks(self, reader: Pending | None) -> Pending | None:
        """The streaming fetch that ``reader`` (None: a task reading for others) must stop
        reading for: its task wants to read itself, or its buffer is full."""
        stream = self._stream_pending
        if stream is None or stream is reader:
            return None
        if stream.owner_active or stream.buffered >= FETCH_BUFFER_BYTES:
            return stream
        return None

    async def _read_until(
        self, pending: Pending, *, any_event: bool = False, unsolicited: bool = False
    ) -> None:
        """Hold the read lock and dispatch until ``pending`` completes (or, with
        ``any_event``, until it has an event; with ``unsolicited`` too, until an unsolicited
        one is queued)."""
        while True:
            lock = self._lock
            try:
                lock.acquire_nowait()  # the common case: no checkpoint per message
            except anyio.WouldBlock:
                await lock.acquire()
            blocked: Pending | None = None
            try:
                while pending.response is None:
                    if any_event and (pending.events or (unsolicited and self._unsolicited)):
                        return
                    self._ensure_usable()
                    stream = self._stream_pending
                    reading_for_stream = stream is not None and stream is not pending
                    if reading_for_stream:
                        blocked = self._stream_blocks(pending)
                        if blocked is not None:
                            break
                    self._dispatch(await self._read_event())
                    if pending.owner_active and pending.events:
                        self._dispatch_buffered(pending)
                    if self._bye is not None and pending.command.name != "LOGOUT":
                        if any_event:
                            return
                        self._raise_if_ended()
                    if reading_for_stream:  # let the stream's task come back and read
                        await anyio.lowlevel.checkpoint()
            except BaseException:
                self._wake()  # we stop reading: a waiter must read in our place
                raise
            finally:
                lock.release()
            if blocked is None:
                return
            await self._wait_for_stream(blocked, self._completed)

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
            closed = self._closed_instead(exc)
            if closed is not None:
                raise closed from exc
            if isinstance(exc, IMAPResponseError | LocalProtocolError):
                raise
            await self._break(exc)
            raise

    async def _wait_event(self, completed: anyio.Event) -> None:
        self._waiting += 1
        try:
            await completed.wait()
        finally:
            self._waiting -= 1

    async def _wait_for_stream(self, stream: Pending, completed: anyio.Event) -> None:
        """A streaming fetch's task reads (wait), or its buffer is full: wait for its task
        to take a message, for at most STREAM_GRACE_SECONDS, then drop the stream's rest."""
        if stream.owner_active or stream.buffered < FETCH_BUFFER_BYTES:
            await self._wait_event(completed)
            return
        deadline = stream.progress + STREAM_GRACE_SECONDS
        if anyio.current_time() < deadline:
            with anyio.move_on_after(deadline - anyio.current_time()):
                await self._wait_event(completed)
            return
        stream.interrupted = True
        self._abandon(stream)

    async def _wait_for_completion(self, completed: anyio.Event) -> None:
        """Wait until a command in flight completes. When nobody reads (the commands in
        flight were abandoned by cancelled tasks, or their tasks are busy), read for them;
        but never for an IDLE whose task reads, nor for a stream whose task reads or whose
        buffer is full (see ``_wait_for_stream``)."""
        try:
            stream = self._stream_blocks(None)
            if stream is not None:
                await self._wait_for_stream(stream, completed)
                return
            if self._lock.locked() or self._idle_reads():
                await self._wait_event(completed)
                return
            async with self._lock:
                while not completed.is_set():
                    self._ensure_usable()
                    if self._idle_reads() or self._stream_blocks(None) is not None:
                        break  # an IDLE or a stream's task reads now, or the buffer is full
                    reading_for_stream = self._stream_pending is not None
                    self._dispatch(await self._read_event())
                    self._raise_if_ended()
                    if reading_for_stream:  # let the stream's task come back and read
                        await anyio.lowlevel.checkpoint()
        except BaseException as exc:
            self._wake()  # we stop reading: another waiter must read in our place
            closed = self._closed_instead(exc)
            if closed is not None:
                raise closed from exc
            if not isinstance(exc, anyio.get_cancelled_exc_class() | LocalProtocolError):
                await self._break(exc)
            raise

    def _raise_if_ended(self) -> None:
        if self._bye is not None:
            raise SessionEndedError(self._bye.text, self._bye.code)

    def _abandon(self, pending: Pending) -> None:
        """Its task gave up: its data is dropped as it arrives, and nobody waits for it."""
        pending.abandoned = True
        pending.events.clear()
        pending.buffered = 0
        self._release(pending)

    def _release(self, pending: Pending) -> None:
        """Its task no longer reads it: others may read for it, or send their commands."""
        pending.streaming = False
        pending.owner = None
        if self._stream_pending is pending:
            self._stream_pending = None
        if self._iterated is pending:
            self._iterated = None
        self._wake()

    async def _command(self, command: Command) -> Pending:
        """Submit, wait, and raise :class:`IMAPResponseError` on NO/BAD."""
        pending = await self._submit(command)
        await self._wait(pending)
        assert pending.response is not None
        if pending.response.status != "OK":
            raise refusal(pending.response)
        return pending

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """For the auth/logout flows written as one round trip (``IMAPClient._run``): wait
        until nothing is in flight, then hold the read lock (BaseClient's round trip) and
        the send lock, so that no other task's command joins them."""
        self._check_not_owner()  # it would wait for itself
        self._submitting += 1
        try:
            while self._pending:
                self._ensure_usable()
                if not await self._interrupt_idle():
                    await self._wait_for_completion(self._completed)
        finally:
            self._submitting -= 1
        try:
            async with self._round_trip(), self._send_lock:
                # A command may have been sent while we took the locks (each a checkpoint):
                # read until it completes (``_run`` sees only its own command's responses).
                while self._pending:
                    self._dispatch(await self._next_event())
                    self._raise_if_ended()
                yield
        finally:
            self._wake()  # the state changed (authenticated, logged out): re-check


def _current_task() -> object:
    return anyio.get_current_task().id
