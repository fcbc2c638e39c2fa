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
broke. A streaming FETCH and an IDLE are read by their own task only: others wait.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

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

__all__ = ["IMAPSession"]

# Untagged responses received and not yet handed to the caller (``noop()``, ``idle()`` and
# ``drain_events()`` return them). A mailbox event storm (a mass EXPUNGE) can legitimately
# produce tens of thousands; a server sending more than this between two of our calls is
# flooding us. ~100 bytes each. The same cap bounds the responses one command collects
# (a LIST of 100,000 mailboxes, a FETCH collected by another task's read).
MAX_UNTAGGED: Final = 100_000

# Unsolicited events whose newer instance supersedes an older one (see ``_keep``).
_SUPERSEDING: Final = (Exists, Recent, Flags)

# What each command collects besides its tagged response: untagged data of these kinds goes
# to the oldest command in flight that collects it. Two commands collecting the same kind
# are never in flight together (their data would be ambiguous), so the second waits.
_COLLECTS: Final[dict[str, tuple[type, ...]]] = {
    "SELECT": (Exists, Recent, Flags, StatusResponse, Vanished, Fetch),
    "EXAMINE": (Exists, Recent, Flags, StatusResponse, Vanished, Fetch),
    "FETCH": (Fetch,),
    "STORE": (Fetch,),
    "SEARCH": (Search, ESearch),
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
    # The task that reads this command's data itself (a streaming fetch, an IDLE): other
    # tasks never read for it (they would take its events or hold the read lock for as
    # long as it runs), and that task may not send another command meanwhile.
    owner: object = None


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

    # --- unsolicited events ---------------------------------------------------------------

    def drain_events(self) -> list[Event]:
        """The unsolicited events received so far (EXISTS, EXPUNGE, FETCH, alerts), oldest
        first; they are removed from the queue. No I/O."""
        events = list(self._unsolicited)
        self._unsolicited.clear()
        return events

    def _keep(self, event: Event) -> None:
        if isinstance(event, _SUPERSEDING):
            # EXISTS, RECENT and FLAGS carry absolute values: a newer one makes an older one
            # of its kind redundant when only such events stand between them (an EXPUNGE, a
            # FETCH or anything else in between keeps the order meaningful). So a poller
            # that searches and fetches for days without draining keeps one of each, not
            # one per poll, and never meets the cap below.
            for index in range(len(self._unsolicited) - 1, -1, -1):
                queued = self._unsolicited[index]
                if not isinstance(queued, _SUPERSEDING):
                    break
                if type(queued) is type(event):
                    del self._unsolicited[index]
                    break
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

    def _sendable(self, command: Command, collects: tuple[type, ...]) -> bool:
        """Whether ``command`` may go now; False when it must wait for commands in flight.
        True also when nothing is in flight (``send()`` then raises what is wrong)."""
        if not self._pending:
            return True
        return self._conn.can_send(command) and not self._conflicts(collects)

    def _check_not_owner(self) -> None:
        me = _current_task()
        if any(p.owner == me for p in self._pending.values()):
            raise LocalProtocolError(
                "this task is iterating a fetch() or an idle(): finish it (aclose() a fetch, "
                "leave the idle block) before the next command"
            )

    async def _submit(self, command: Command, *, owner: bool = False) -> Pending:
        """Send ``command`` as soon as the pipelining rules allow; its :class:`Pending`.

        With ``owner``, this task reads the command's data itself (see ``Pending.owner``).
        """
        collects = _COLLECTS.get(command.name, ())
        self._ensure_usable()
        self._check_not_owner()
        while True:
            self._ensure_usable()
            completed = self._completed
            if self._sendable(command, collects):
                async with self._send_lock:
                    # Checked again: acquiring the lock is a checkpoint, and another task
                    # may have sent a command meanwhile.
                    self._ensure_usable()
                    if self._sendable(command, collects):
                        return await self._send_locked(command, collects, owner)
                continue
            await self._wait_for_completion(completed)

    async def _send_locked(
        self, command: Command, collects: tuple[type, ...], owner: bool
    ) -> Pending:
        tag = self._conn.send(command)
        pending = Pending(
            tag,
            command,
            collects,
            streaming=owner and command.name == "FETCH",
            owner=_current_task() if owner else None,
        )
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

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, TaggedResponse):
            pending = self._pending.pop(event.tag, None)
            if pending is not None:
                pending.response = event
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
                    self._collect(pending, event)
                    return
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
                    self._raise_if_ended()
        except BaseException:
            self._wake()  # we stop reading: a waiter must read in our place
            raise
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
        but never for a streaming fetch or an IDLE, whose own task reads at its own pace."""
        if self._lock.locked() or self._owner_reads():
            await completed.wait()
            return
        try:
            async with self._lock:
                while not completed.is_set():
                    self._ensure_usable()
                    if self._owner_reads():
                        break  # a fetch or IDLE started meanwhile: its task reads
                    self._dispatch(await self._read_event())
                    self._raise_if_ended()
        except BaseException as exc:
            self._wake()  # we stop reading: another waiter must read in our place
            if not isinstance(exc, anyio.get_cancelled_exc_class() | LocalProtocolError):
                await self._break(exc)
            raise

    def _owner_reads(self) -> bool:
        return any(p.owner is not None for p in self._pending.values())

    def _raise_if_ended(self) -> None:
        if self._bye is not None:
            raise SessionEndedError(self._bye.text, self._bye.code)

    def _abandon(self, pending: Pending) -> None:
        """Its task gave up: its data is dropped as it arrives, and nobody waits for it."""
        pending.abandoned = True
        pending.events.clear()
        self._release(pending)

    def _release(self, pending: Pending) -> None:
        """Its task no longer reads it: others may read for it, or send their commands."""
        pending.streaming = False
        pending.owner = None
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
        while self._pending:
            self._ensure_usable()
            await self._wait_for_completion(self._completed)
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
