"""The two IMAP commands that stream: FETCH (an async iterator of messages) and IDLE (an
async context manager whose events arrive for as long as the caller waits)."""

from __future__ import annotations

import contextlib
import math
from types import TracebackType
from typing import Final, Self

import anyio

from trio_mailoauth._client import ClientState
from trio_mailoauth.errors import (
    FetchInterruptedError,
    IMAPResponseError,
    LocalProtocolError,
    RemoteProtocolError,
    SessionEndedError,
)
from trio_mailoauth.imap.commands import Fetch as FetchCommand
from trio_mailoauth.imap.commands import Idle
from trio_mailoauth.imap.events import Bye, Event, IdleStarted
from trio_mailoauth.imap.message import Fetch
from trio_mailoauth.imap.session import IMAPSession, Pending, event_size, refusal

__all__ = ["IDLE_REFRESH_SECONDS", "FetchInterruptedError", "FetchStream", "IdleSession"]

# Servers end an IDLE after ~30 minutes of silence (RFC 2177 asks clients to re-issue it at
# least every 29 minutes; Gmail and Outlook drop it at 29-30): renew after 28.
IDLE_REFRESH_SECONDS: Final = 28 * 60.0

# How long leaving IDLE (DONE and its tagged OK) may take before the connection is broken.
IDLE_DONE_SECONDS: Final = 5.0


class FetchStream:
    """``async for message in imap.fetch(...)``; also ``async with`` to close it early."""

    def __init__(self, client: IMAPSession, command: FetchCommand) -> None:
        self._client = client
        self._command = command
        self._pending: Pending | None = None
        self._done = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Fetch:
        client = self._client
        if self._done:
            raise StopAsyncIteration
        pending = self._pending
        if pending is None:
            pending = self._pending = await client._submit(self._command, owner=True)
        while True:
            if pending.events:
                event = pending.events.popleft()
                assert isinstance(event, Fetch)
                if pending.buffered:  # read for us by another task: we came back
                    pending.buffered = max(0, pending.buffered - event_size(event))
                    pending.progress = anyio.current_time()
                if client._waiting:  # a task waiting for us may read or send meanwhile
                    client._wake()
                return event
            if pending.interrupted:
                self._finish()
                raise FetchInterruptedError(
                    "the rest of this fetch() was dropped: no message was taken for a while "
                    "when another task needed the connection (see FetchInterruptedError)"
                )
            if pending.response is not None:
                self._finish()
                if pending.response.status != "OK":
                    raise refusal(pending.response)
                raise StopAsyncIteration
            pending.owner_active = True  # we read now: the others wait
            try:
                await client._wait(pending, any_event=True)
            finally:
                pending.owner_active = False
            if client._bye is not None and not pending.events and pending.response is None:
                self._finish()
                exc = SessionEndedError(client._bye.text, client._bye.code)
                await client._break(exc)
                raise exc

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        pending = self._pending
        if pending is not None:
            if pending.response is None:
                self._client._abandon(pending)  # the rest is read and dropped later
            elif pending.owner is not None:
                self._client._release(pending)
            pending.events.clear()

    async def aclose(self) -> None:
        """Stop early: the remaining messages are read and dropped by the next reader."""
        self._finish()

    def __del__(self) -> None:
        # `break` out of `async for` without aclose(): let other tasks' commands go on.
        # No I/O here, only bookkeeping and waking waiters; a finaliser may run where no
        # event loop does (after it ended, another thread): nobody waits there to be woken.
        if not self._done and self._pending is not None:
            with contextlib.suppress(Exception):
                self._finish()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finish()


class IdleSession:
    """``async with imap.idle() as events: async for event in events`` (see IMAPClient.idle).

    Another task's command (or this task's own, inside the block) ends the IDLE with DONE
    and runs; the next iteration waits until no command is waiting or in flight, yielding
    the events that arrive meanwhile, and issues IDLE again.
    """

    def __init__(self, client: IMAPSession, refresh_after: float) -> None:
        if not refresh_after > 0:
            raise ValueError("refresh_after must be positive")
        self._client = client
        self._refresh_after = refresh_after
        self._pending: Pending | None = None
        self._deadline = math.inf
        self._ended = False
        self._open = False
        self.restarts = 0  # how many times IDLE was issued again (renewed or resumed)

    async def _start(self) -> None:
        client = self._client
        pending = await client._submit(Idle(), owner=True)
        self._pending = pending
        while True:
            if pending.events and isinstance(pending.events[0], IdleStarted):
                pending.events.popleft()
                break
            if pending.response is not None:
                self._pending = None
                if pending.response.status != "OK":
                    raise refusal(pending.response)
                raise RemoteProtocolError("IDLE completed before the server accepted it")
            await client._wait(pending, any_event=True)
            if client._bye is not None:
                return  # the caller sees the Bye first
        self._deadline = anyio.current_time() + self._refresh_after

    async def _stop(self) -> None:
        client = self._client
        pending, self._pending = self._pending, None
        if pending is None or pending.response is not None:
            return
        if not pending.idling:
            raise LocalProtocolError("IDLE was not accepted yet: it cannot be ended")
        await client._send_done(pending)  # nothing sent if another task already did
        await client._wait(pending)
        if pending.response is not None and pending.response.status != "OK":
            raise refusal(pending.response)

    async def __aenter__(self) -> Self:
        if self._client.state is not ClientState.OK:
            self._client._ensure_usable()
        await self._start()
        self._open = True
        self._client._idle_blocks += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client = self._client
        if self._open:
            self._open = False
            client._idle_blocks -= 1
        if client.state is not ClientState.OK or client._closing:
            return
        # Even when cancelled: DONE must go out and its OK be read, or the connection is
        # stuck in IDLE. Bounded, and shielded from the cancellation that brought us here.
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + IDLE_DONE_SECONDS
            try:
                await self._stop()
            except IMAPResponseError:
                # A tagged NO/BAD after DONE completes the IDLE: a refusal, the connection
                # is in sync and stays usable.
                if exc is None:
                    raise
            except BaseException as error:
                await client._break(error)
                if exc is None:
                    raise
        if scope.cancelled_caught:
            await client._break(TimeoutError("the server did not end IDLE"))

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        client = self._client
        while True:
            if client._unsolicited:
                event = client._unsolicited.popleft()
                if isinstance(event, Bye):
                    self._ended = True
                    await client._break(SessionEndedError(event.text, event.code))
                return event
            if self._ended or client.state is not ClientState.OK:
                raise StopAsyncIteration
            pending = self._pending
            if pending is None:
                raise LocalProtocolError("the IDLE session is over")
            if pending.response is not None:
                # Ended by the server on its own, or by DONE from a task that needed the
                # connection: once no command waits, IDLE again.
                if pending.response.status != "OK":
                    raise refusal(pending.response)
                if not await self._others_done():
                    continue  # events arrived meanwhile: yield them first
                await self._renew()
                continue
            try:
                with anyio.move_on_after(self._deadline - anyio.current_time()):
                    # Reading is cancel-safe: a cancelled wait leaves IDLE running, and
                    # __aexit__ ends it.
                    await client._read_until(pending, any_event=True, unsolicited=True)
            except BaseException as exc:
                if not isinstance(exc, anyio.get_cancelled_exc_class()):
                    closed = client._closed_instead(exc)
                    await client._break(exc)
                    if closed is not None:
                        raise closed from exc
                raise
            if (
                anyio.current_time() >= self._deadline
                and not client._unsolicited
                and pending.response is None
            ):
                # Time to renew: DONE and its OK now; the next round issues IDLE again.
                await client._send_done(pending)
                await client._wait(pending)

    async def _others_done(self) -> bool:
        """Wait until no other command waits to be sent or is in flight; False as soon as
        an unsolicited event arrives first (the caller yields it, then comes back)."""
        client = self._client
        while client._submitting or client._pending:
            if client._unsolicited:
                return False
            client._ensure_usable()
            completed = client._completed
            client._event_waiters += 1
            try:
                if client._pending:
                    await client._wait_for_completion(completed)
                else:  # a task is about to send: it wakes us when done
                    await client._wait_event(completed)
            finally:
                client._event_waiters -= 1
        return not client._unsolicited

    async def _renew(self) -> None:
        self._pending = None
        self.restarts += 1
        await self._start()
