"""Pools and the life of the process: closed at interpreter exit, reset in a forked child.

At exit, every open pool is closed before ``concurrent.futures`` joins its
worker threads, so a thread waiting for a key (up to ``acquire_timeout``)
cannot hold the interpreter's exit hostage; calls still on the wire get
``EXIT_CLOSE_TIMEOUT`` seconds, then their connections are closed.

In a child made by ``os.fork()`` (multiprocessing's "fork" start method,
gunicorn's preload, Celery's prefork) only the forking thread exists: each
open pool is reset (:meth:`KeyPool.reset_after_fork`) so that ``complete``,
``submit``, ``map`` and ``batch`` work there as in the parent.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from typing import Protocol

__all__ = ["Tracked", "track_pool"]



class Tracked(Protocol):
    """What this module needs of a pool (a :class:`~llmkit.engine.pool.KeyPool`)."""

    @property
    def closed(self) -> bool: ...

    def close(self, timeout: float | None = ...) -> None: ...

    def reset_after_fork(self) -> None: ...


_open_pools: weakref.WeakSet[Tracked] = weakref.WeakSet()
_hook_lock = threading.Lock()
_hook_installed = False
EXIT_CLOSE_TIMEOUT = 1.0


def _close_open_pools() -> None:
    for pool in list(_open_pools):
        pool.close(timeout=EXIT_CLOSE_TIMEOUT)


def _reset_open_pools() -> None:
    for pool in list(_open_pools):
        if not pool.closed:
            pool.reset_after_fork()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_open_pools)


def track_pool(pool: Tracked) -> None:
    """Close ``pool`` at interpreter exit unless it was closed before."""
    global _hook_installed
    _open_pools.add(pool)
    with _hook_lock:
        if not _hook_installed:
            # Runs before concurrent.futures' own hook (they run in reverse order).
            register = getattr(threading, "_register_atexit", None)
            if register is not None:
                register(_close_open_pools)
            else:  # pragma: no cover - other Pythons
                atexit.register(_close_open_pools)
            _hook_installed = True
