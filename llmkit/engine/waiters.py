"""Calls waiting for a key: one :class:`Waiter` each, in the pool's FIFO queue.

A waiter is only data and a way to be woken: the pool fills in ``lease`` or
``error`` under its lock and calls :meth:`Waiter.wake`; the waiter looks at
its state under the same lock when it wakes. A thread waits on an event
(:class:`ThreadWaiter`); an asyncio task awaits a future of its own loop
(:class:`AsyncWaiter`), so async calls wait without holding a thread.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from llmkit.engine.limiter import Cost
    from llmkit.engine.slot import Lease

__all__ = ["AsyncWaiter", "ThreadWaiter", "Waiter"]


class Waiter:
    """One call waiting for a key that can admit ``cost``, until ``deadline`` (pool clock)."""

    __slots__ = ("avoid", "cost", "deadline", "error", "lease", "note", "sleep_until")

    def __init__(self, cost: Cost, deadline: float | None, avoid: int | None) -> None:
        self.cost = cost
        self.deadline = math.inf if deadline is None else deadline
        self.avoid = avoid
        self.lease: Lease | None = None
        self.error: BaseException | None = None
        self.sleep_until = math.inf  # when it will look again by itself (the pool wakes it earlier)
        self.note = ""  # the caller's story, for the error message (how long it waited already)

    @property
    def settled(self) -> bool:
        return self.lease is not None or self.error is not None

    def wake(self) -> None:
        """Make the waiter look at its state again (called under the pool's lock)."""
        raise NotImplementedError


class ThreadWaiter(Waiter):
    """A waiting thread: woken by setting its event."""

    __slots__ = ("event",)

    def __init__(self, cost: Cost, deadline: float | None, avoid: int | None) -> None:
        super().__init__(cost, deadline, avoid)
        self.event = threading.Event()

    def wake(self) -> None:
        self.event.set()


class AsyncWaiter(Waiter):
    """A waiting asyncio task: woken through its loop, from any thread."""

    __slots__ = ("loop", "signal")

    def __init__(self, cost: Cost, deadline: float | None, avoid: int | None,
                 loop: asyncio.AbstractEventLoop) -> None:  # fmt: skip
        super().__init__(cost, deadline, avoid)
        self.loop = loop
        self.signal: asyncio.Future[None] = loop.create_future()

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self.loop.call_soon_threadsafe(self._set)

    def _set(self) -> None:
        if not self.signal.done():
            self.signal.set_result(None)

    def rearm(self) -> None:
        """A new future to wait on (in the loop's thread), after the last one fired."""
        if self.signal.done():
            self.signal = self.loop.create_future()
