"""One thread for the whole process that calls a function when its deadline comes (ends stuck calls).

``arm(deadline, action)`` returns a :class:`Timer`; ``timer.cancel()`` disarms
it (cheap: it is only marked, and skipped when its time comes). Deadlines are
``time.monotonic()`` seconds: the wall of a real HTTP call, not the pool's
injected clock. After ``os.fork()`` the child starts without the thread; it
is started again on first use.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable

__all__ = ["Timer", "arm"]


class Timer:
    """An armed action; :meth:`cancel` it when the work finished in time."""

    __slots__ = ("action", "cancelled", "fired", "owner")

    def __init__(self, action: Callable[[], None], owner: _Watchdog) -> None:
        self.action = action
        self.owner = owner
        self.cancelled = False
        self.fired = False

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
        self.cancelled = 0

    def arm(self, deadline: float, action: Callable[[], None]) -> Timer:
        timer = Timer(action, self)
        with self._wake:
            if self.cancelled > 1000 and self.cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]  # long deadlines
                heapq.heapify(self._heap)  # leave cancelled timers behind: drop them now and then
                self.cancelled = 0
            heapq.heappush(self._heap, (deadline, next(self._order), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llmkit-watchdog", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is timer:
                self._wake.notify()
        return timer

    def _run(self) -> None:
        while True:
            due = self._next_due()
            for timer in due:
                timer.fired = True
                with contextlib.suppress(Exception):  # an action that fails must not stop the others
                    timer.action()

    def _next_due(self) -> list[Timer]:
        with self._wake:
            while True:
                heap = self._heap
                while heap and heap[0][2].cancelled:
                    heapq.heappop(heap)
                now = time.monotonic()
                due = []
                while heap and heap[0][0] <= now:
                    timer = heapq.heappop(heap)[2]
                    if not timer.cancelled:
                        due.append(timer)
                if due:
                    return due
                self._wake.wait(None if not heap else heap[0][0] - now)

    def reset_after_fork(self) -> None:
        self._heap = []
        self.cancelled = 0
        self._wake = threading.Condition(threading.Lock())
        self._thread = None


_watchdog = _Watchdog()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watchdog.reset_after_fork)


def arm(deadline: float, action: Callable[[], None]) -> Timer:
    """Call ``action`` (in the watchdog's thread) at ``deadline`` unless the timer is cancelled first."""
    return _watchdog.arm(deadline, action)
