"""Waiting for futures in a way a Ctrl-C cannot wedge.

``concurrent.futures.wait`` takes every future's lock, one after the other,
before it registers its waiter. A KeyboardInterrupt that lands in that loop
leaves some of those locks held: the worker that then finishes such a future
blocks for ever, and so does the interpreter's exit, which joins the workers
(seen: ``llmkit chat``, Ctrl-C during ``stress``, hung after ``bye``). Here
each future's done callback drops it into a ``SimpleQueue``, whose ``put``
never blocks, and the waiting thread reads the queue.
"""

from __future__ import annotations

import queue
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

__all__ = ["Finished"]


class Finished:
    """The futures given, handed back one by one as each finishes."""

    def __init__(self, futures: Iterable[Future[Any]]) -> None:
        self._queue: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
        self.pending = 0
        for future in futures:
            self.pending += 1
            future.add_done_callback(self._queue.put)

    def next(self, timeout: float | None = None) -> Future[Any] | None:
        """The next future to finish, or None if none did within ``timeout`` s."""
        try:
            future = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        self.pending -= 1
        return future
