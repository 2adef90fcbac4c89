"""The deadline of an asyncio call or stream: the task itself is cancelled when its time comes.

:class:`AsyncGuard` is ``asyncio.timeout()`` made to measure (and for Python
3.10): one per call or stream, not one task per chunk. While the task awaits
the network (between :meth:`AsyncGuard.watch` and :meth:`AsyncGuard.rest`)
the guard cancels it at its due time, or at once when the endpoint is
aborted from any thread; :meth:`AsyncGuard.error` then turns that
cancellation into RequestTimeoutError or PoolClosedError. While the task is
elsewhere (the caller's code between two chunks) nothing is cancelled: an
abort is remembered and raised at the next read. Moving the due time later
is an attribute write; the loop's timer handle is only replaced when it
would fire too late.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

__all__ = ["AsyncGuard"]


class AsyncGuard:
    """Cancel the current task at ``due`` (``time.monotonic()``) while it is watched."""

    __slots__ = ("_handle", "_handle_at", "_loop", "_task", "_watching", "aborted", "due", "fired", "stage")

    def __init__(self, due: float, stage: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self.due = due
        self.stage = stage  # what the task waits for, for the error's message
        self.fired = False
        self.aborted = False
        self._watching = False
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at = 0.0

    def watch(self, due: float | None = None) -> None:
        """The task now awaits the network, until ``due`` (default: the due time it has)."""
        if self.aborted:
            raise asyncio.CancelledError  # error() says PoolClosedError
        if due is not None:
            self.due = due
        self._watching = True
        if self._handle is None or self.due < self._handle_at:
            self._schedule()

    def rest(self) -> None:
        """The task is back from the network: no cancelling until the next :meth:`watch`."""
        self._watching = False

    def _schedule(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle_at = self.due
        self._handle = self._loop.call_later(max(0.0, self.due - time.monotonic()), self._check)

    def _check(self) -> None:
        self._handle = None
        if not self._watching or self.fired:
            return  # the next watch() schedules again
        if time.monotonic() < self.due:
            self._schedule()
            return
        self.fired = True
        self._cancel()

    def abort(self) -> None:
        """End the call (in the loop's thread: ``loop.call_soon_threadsafe(guard.abort)``)."""
        self.aborted = True
        if self._watching:
            self._cancel()

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def close(self) -> None:
        """The call is over: drop the timer handle."""
        self._watching = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def caused(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the cancellation this guard made (not the caller's own): then the
        task's cancel request is taken back (Python 3.11+ counts them)."""
        if not isinstance(exc, asyncio.CancelledError) or not (self.fired or self.aborted):
            return False
        uncancel: Any = getattr(self._task, "uncancel", None)
        cancelling: Any = getattr(self._task, "cancelling", None)
        if cancelling is not None and cancelling() > 1:
            return False  # the caller cancelled too: let its cancellation through
        if uncancel is not None:
            uncancel()
        return True

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop
