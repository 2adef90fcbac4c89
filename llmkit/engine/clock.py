"""Injected time, so limiter and retry logic can be tested fast and exactly.

Everything in the engine that reads the time, sleeps, or waits for a wake-up
does so through a :class:`Clock`. Production code uses :class:`SystemClock`;
tests use :class:`FakeClock`, whose time moves only when the test says so.

Waiting is on a ``threading.Event`` that stands for "something changed, look
again" (a grant, a release, a close); the waiter re-checks its state under
the pool's lock whether the event was set or the timeout passed.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        """Block for ``seconds``; True if ``cancel`` was set first (the sleep ends early)."""

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Block until ``event`` is set or ``timeout`` passes; True if it was set."""

    async def asleep(self, seconds: float) -> None:
        """``sleep`` for asyncio code (cancellable as any await)."""


class SystemClock:
    """Real time: ``time.monotonic`` and real sleeps."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        if cancel is not None:
            return cancel.wait(seconds) if seconds > 0 else cancel.is_set()
        if seconds > 0:
            time.sleep(seconds)
        return False

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        return event.wait(timeout)

    async def asleep(self, seconds: float) -> None:
        import asyncio

        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock for tests: time stands still until :meth:`advance` is called.

    ``sleep`` advances the time itself (and records the sleep in ``sleeps``),
    so single-threaded retry loops run instantly. ``wait`` blocks for real
    until another thread sets the event or calls :meth:`advance` (which wakes
    every waiter so it looks again), so multi-threaded pool tests can move
    time step by step.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._events: set[threading.Event] = set()
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every thread waiting on this clock."""
        with self._lock:
            self._now += seconds
            events = list(self._events)
        for event in events:
            event.set()

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        self.sleeps.append(seconds)
        if cancel is not None and cancel.is_set():
            return True
        if seconds > 0:
            self.advance(seconds)
        return False

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        with self._lock:
            self._events.add(event)
        try:
            # A real timeout only as a safety net: fake time moves by advance().
            return event.wait(5.0)
        finally:
            with self._lock:
                self._events.discard(event)

    @property
    def waiting(self) -> int:
        """How many threads are blocked in :meth:`wait` right now."""
        with self._lock:
            return len(self._events)
