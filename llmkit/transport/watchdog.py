"""One thread for the whole process that calls a function when its deadline comes (ends stuck calls).

``arm(deadline, action)`` returns a :class:`Timer`; ``timer.cancel()`` disarms
it for good. A stream keeps one timer for its whole life and moves it, chunk
by chunk, with ``timer.due(when)`` and ``timer.pause()``: moving it later or
pausing it is an attribute write (the watchdog finds out when the old time
comes, and waits on or lets go); only moving it earlier than the time it is
filed under takes the watchdog's lock. Cancelled and moved timers are
skipped when their time comes.

The thread is woken only for a timer due before the time it sleeps until.
With no timer left it sleeps on for :data:`IDLE_GRACE`, and until woken only
after a grace time in which no timer came: calls in turn (each arms a timer
at its deadline and cancels it as it ends) then never wake it. Waking it on
every call cost a call ~85 µs of thread switching.

Deadlines are ``time.monotonic()`` seconds: the wall of a real HTTP call, not
the pool's injected clock. After ``os.fork()`` the child starts without the
thread; it is started again on first use.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import threading
import time
from collections.abc import Callable

__all__ = ["Timer", "arm"]

IDLE_GRACE = 1.0  # seconds the thread sleeps on with no timer, before it sleeps until woken


class Timer:
    """An armed action: :meth:`due` moves it, :meth:`pause` holds it, :meth:`cancel` ends it.

    ``when`` is the time it is due (None: paused); ``filed`` the time of its
    live entry in the watchdog's heap (None: none). The stream thread writes
    ``when`` before it reads ``filed``, the watchdog clears ``filed`` before it
    reads ``when``: whichever runs second sees the other's write, so a due time
    is never left without a live entry.
    """

    __slots__ = ("action", "cancelled", "filed", "fired", "owner", "when")

    def __init__(self, action: Callable[[], None], owner: _Watchdog, when: float) -> None:
        self.action = action
        self.owner = owner
        self.when: float | None = when
        self.filed: float | None = None
        self.cancelled = False
        self.fired = False

    def due(self, when: float) -> None:
        """Fire at ``when`` (``time.monotonic()``) instead, unless moved, paused or cancelled first."""
        self.when = when
        filed = self.filed
        if filed is None or when < filed:
            self.owner.file(self, when)

    def pause(self) -> None:
        """Do not fire until :meth:`due` is called again (the caller is busy with other things)."""
        self.when = None

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.owner.cancelled += 1  # an estimate is enough: it only triggers a clean-up


class _Watchdog:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._sleeping_until = math.inf  # when the thread wakes by itself next
        self._filed = 0  # timers filed so far
        self.cancelled = 0

    def arm(self, deadline: float, action: Callable[[], None]) -> Timer:
        timer = Timer(action, self, deadline)
        self.file(timer, deadline)
        return timer

    def file(self, timer: Timer, when: float) -> None:
        """Put ``timer`` in the heap at ``when`` (an entry it had before is stale from now on)."""
        with self._wake:
            if timer.filed is not None and timer.filed <= when:
                return  # filed meanwhile, early enough
            if self.cancelled > 1000 and self.cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if _live(entry)]  # long deadlines
                heapq.heapify(self._heap)  # leave cancelled timers behind: drop them now and then
                self.cancelled = 0
            timer.filed = when
            self._filed += 1
            heapq.heappush(self._heap, (when, next(self._order), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llmkit-watchdog", daemon=True)
                self._thread.start()
            elif when < self._sleeping_until:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            due = self._next_due()
            for timer in due:
                with contextlib.suppress(Exception):  # an action that fails must not stop the others
                    timer.action()

    def _next_due(self) -> list[Timer]:
        with self._wake:
            seen = -1  # self._filed when the thread last looked at an empty heap
            while True:
                heap = self._heap
                while heap and not _live(heap[0]):
                    heapq.heappop(heap)
                now = time.monotonic()
                due = []
                while heap and heap[0][0] <= now:
                    entry = heapq.heappop(heap)
                    if not _live(entry):
                        continue
                    timer = entry[2]
                    timer.filed = None  # before reading ``when``: see Timer
                    when = timer.when
                    if when is None:
                        continue  # paused: its next due() files it again
                    if when > now:
                        timer.filed = when
                        heapq.heappush(heap, (when, next(self._order), timer))
                        continue
                    timer.fired = True
                    due.append(timer)
                if due:
                    return due
                if heap:
                    until = heap[0][0]
                elif self._filed != seen:  # timers came and went since: more may follow
                    until, seen = now + IDLE_GRACE, self._filed
                else:
                    until = math.inf
                self._sleeping_until = until
                self._wake.wait(None if until == math.inf else until - now)

    def reset_after_fork(self) -> None:
        self._heap = []
        self.cancelled = 0
        self._sleeping_until = math.inf
        self._wake = threading.Condition(threading.Lock())
        self._thread = None


def _live(entry: tuple[float, int, Timer]) -> bool:
    """Whether a heap entry is its timer's current one (not cancelled, fired or moved)."""
    when, _, timer = entry
    return not (timer.cancelled or timer.fired) and timer.filed == when


_watchdog = _Watchdog()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watchdog.reset_after_fork)


def arm(deadline: float, action: Callable[[], None]) -> Timer:
    """Call ``action`` (in the watchdog's thread) at ``deadline`` unless the timer is cancelled first."""
    return _watchdog.arm(deadline, action)
