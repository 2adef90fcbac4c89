"""Injected time, so limiter and retry logic can be tested fast and exactly.

Everything in llmkit that reads the time, sleeps, or waits on a condition with
a timeout does so through a :class:`Clock`. Production code uses
:class:`SystemClock`; tests use :class:`FakeClock`, whose time moves only when
the test says so.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        """Like ``condition.wait(timeout)``; the caller holds ``condition``."""


class SystemClock:
    """Real time: ``time.monotonic`` and real sleeps."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        condition.wait(timeout)


class FakeClock:
    """A clock for tests: time stands still until :meth:`advance` is called.

    ``sleep`` advances the time itself (and records the sleep in ``sleeps``),
    so single-threaded retry loops run instantly. ``wait`` blocks for real
    until another thread calls :meth:`advance` or notifies the condition, so
    multi-threaded limiter tests can move time step by step.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._conditions: set[threading.Condition] = set()
        self._waiting = 0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every thread waiting on this clock."""
        with self._lock:
            self._now += seconds
            conditions = list(self._conditions)
        for condition in conditions:
            with condition:
                condition.notify_all()

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds > 0:
            self.advance(seconds)

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        with self._lock:
            self._conditions.add(condition)
            self._waiting += 1
        try:
            # A real timeout only as a safety net: fake time moves by advance().
            condition.wait(5.0)
        finally:
            with self._lock:
                self._waiting -= 1

    @property
    def waiting(self) -> int:
        """How many threads are blocked in :meth:`wait` right now."""
        return self._waiting
