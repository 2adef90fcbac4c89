"""The key pool: which key serves a request, and the bookkeeping around it.

``acquire`` picks the healthy key that can admit the request's estimated cost
soonest, then the one with fewest requests in flight, then round robin; while
no key can, it blocks in FIFO order (up to ``acquire_timeout``). ``release``
reconciles the reservation with the real usage and the provider's rate-limit
headers, and records the outcome in the key's health. The retry loop that
drives both lives in :mod:`llmkit.engine.loop`.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from llmkit.engine.clock import Clock, SystemClock
from llmkit.engine.health import KeyHealth
from llmkit.engine.limiter import Cost, KeyLimiter, SharedLimits
from llmkit.engine.slot import KeySlot, Lease
from llmkit.errors import (
    AuthenticationError,
    LLMError,
    PermissionDeniedError,
    PoolClosedError,
    PoolExhaustedError,
    RateLimitError,
)
from llmkit.providers.base import Provider, ServerLimitState
from llmkit.redaction import fingerprint
from llmkit.types import Usage

if TYPE_CHECKING:
    from llmkit.config import PoolConfig, RateLimit

__all__ = ["KeyPool", "KeySlot", "Lease"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_INF = math.inf


# Pools still open when the interpreter exits. The exit hook closes them
# before concurrent.futures joins its worker threads, so a thread waiting for
# a key (up to acquire_timeout) cannot hold the interpreter's exit hostage.
_open_pools: weakref.WeakSet[KeyPool] = weakref.WeakSet()
_exit_hook_lock = threading.Lock()
_exit_hook_installed = False


def _close_open_pools() -> None:
    for pool in list(_open_pools):
        pool.close(timeout=1.0)


def _track(pool: KeyPool) -> None:
    global _exit_hook_installed
    _open_pools.add(pool)
    with _exit_hook_lock:
        if not _exit_hook_installed:
            # Runs before concurrent.futures' own hook (they run in reverse order).
            register = getattr(threading, "_register_atexit", None)
            if register is not None:
                register(_close_open_pools)
            else:  # pragma: no cover - other Pythons
                atexit.register(_close_open_pools)
            _exit_hook_installed = True


class KeyPool:
    """Many keys of one provider behind one FIFO queue. Thread-safe."""

    def __init__(
        self,
        provider: Provider,
        api_keys: Sequence[str],
        *,
        rate_limits: Sequence[RateLimit | None],
        pool_config: PoolConfig,
        clock: Clock | None = None,
        shared_limits: SharedLimits | None = None,
    ) -> None:
        self.provider = provider
        self.config = pool_config
        self.clock = clock or SystemClock()
        self.slots = [
            KeySlot(
                i,
                key,
                provider,
                self._limiter(rate_limits[i], fingerprint(key), shared_limits),
                KeyHealth(pool_config.failure_threshold, pool_config.circuit_cooldown),
            )
            for i, key in enumerate(api_keys)
        ]
        self.counts_tokens = any(s.limiter.counts_tokens for s in self.slots)
        self._lock = threading.Lock()
        self._condition = threading.Condition(self._lock)
        self._queue: deque[int] = deque()
        self._tickets = itertools.count()
        self._next = 0
        self._closed = False
        self.abandoned = False  # close() stopped waiting for calls in flight
        self._warm = False
        _track(self)
        self._executor: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"KeyPool({self.provider.name}, keys={len(self.slots)})"

    def _limiter(self, rate_limit: RateLimit | None, key_id: str, shared: SharedLimits | None) -> KeyLimiter:
        if shared is None or rate_limit is None:
            return KeyLimiter(rate_limit, self.clock)
        return shared.limiter(rate_limit, self.clock, f"{self.provider.name}:{key_id}")

    @property
    def closed(self) -> bool:
        return self._closed

    # -- acquiring -----------------------------------------------------------------

    def acquire(
        self,
        cost: Cost,
        timeout: float | None,
        avoid: int | None = None,
        cancel: threading.Event | None = None,
    ) -> Lease:
        """A key that can admit ``cost``, waiting in FIFO order up to ``timeout`` seconds.

        ``avoid`` names a key to pass over when another is free (the one that
        just failed). Raises PoolExhaustedError on timeout, AuthenticationError
        when every key is disabled, PoolClosedError once closed, and
        ``concurrent.futures.CancelledError`` once ``cancel`` is set (whoever
        sets it calls :meth:`interrupt` so the wait notices at once).
        """
        if not self._warm:
            self._warm_up()
        clock = self.clock
        with self._lock:  # the Condition's own lock, entered the cheap way
            ticket = next(self._tickets)
            self._queue.append(ticket)
            deadline = None if timeout is None else clock.now() + timeout
            try:
                while True:
                    if self._closed:
                        raise PoolClosedError("The client is closed", provider=self.provider.name)
                    if cancel is not None and cancel.is_set():
                        raise CancelledError("cancelled while waiting for a key")
                    now = clock.now()
                    slot, wait = self._best_slot(cost, now, avoid)
                    if self._queue[0] != ticket:
                        wait = _INF
                    elif slot is not None and wait <= 0:
                        lease = self._take(slot, cost, now)
                        if lease is not None:
                            return lease
                        continue  # a shared limiter knew better: rank the keys again
                    remaining = _INF if deadline is None else deadline - now
                    if remaining <= 0:
                        raise self._exhausted(timeout, now)
                    bound = min(wait, remaining)
                    clock.wait(self._condition, None if bound == _INF else bound)
            finally:
                self._queue.remove(ticket)
                if self._queue:
                    self._condition.notify_all()

    def _warm_up(self) -> None:
        """Build every key's SDK client before the first reservation.

        Building one imports the SDK (a second or more). Done lazily inside an
        attempt, that delay would fall between reserving capacity and sending:
        the local buckets would refill while the server's had already been
        charged, and the two pictures would drift apart for good.
        """
        for slot in self.slots:
            _ = slot.client
        self._warm = True

    def _best_slot(self, cost: Cost, now: float, avoid: int | None) -> tuple[KeySlot | None, float]:
        best: KeySlot | None = None
        best_rank: tuple[float, bool, int, int] | None = None
        count = len(self.slots)
        all_disabled = True
        for slot in self.slots:
            health = slot.health
            if health.disabled:
                continue
            all_disabled = False
            wait = health.ready_at(now) - now
            if wait != _INF:
                wait = max(wait, slot.limiter.wait_time(cost))
            if wait == _INF:
                continue
            rank = (wait, slot.index == avoid, slot.limiter.in_flight, (slot.index - self._next) % count)
            if best_rank is None or rank < best_rank:
                best, best_rank = slot, rank
        if all_disabled:
            raise self._all_disabled()
        return best, (best_rank[0] if best_rank else _INF)

    def _take(self, slot: KeySlot, cost: Cost, now: float) -> Lease | None:
        reservation, _ = slot.limiter.try_reserve(cost)
        if reservation is None:
            return None
        slot.health.on_acquire(now)
        slot.requests += 1
        self._next = (slot.index + 1) % len(self.slots)
        return Lease(slot, reservation)

    def all_disabled(self) -> bool:
        """True when no key is left in service."""
        return all(slot.health.disabled for slot in self.slots)

    def _all_disabled(self) -> AuthenticationError:
        reasons = "; ".join(f"{s.key_id}: {s.health.disabled_reason}" for s in self.slots)
        return AuthenticationError(
            f"All {len(self.slots)} keys for {self.provider.name} are disabled ({reasons}). "
            "Check the keys, then build a new client or call enable_key().",
            provider=self.provider.name,
        )

    def _exhausted(self, timeout: float | None, now: float) -> PoolExhaustedError:
        parts = []
        cooling = [s.health.cooldown_until for s in self.slots if s.health.state(now) == "cooling"]
        if cooling:
            parts.append(f"{len(cooling)} cooling down (first free in {min(cooling) - now:.1f} s)")
        circuit = sum(1 for s in self.slots if s.health.state(now) in ("open", "half-open"))
        if circuit:
            parts.append(f"{circuit} with an open circuit after repeated failures")
        disabled = [s.health.disabled_reason for s in self.slots if s.health.disabled]
        if disabled:
            parts.append(f"{len(disabled)} disabled ({'; '.join(sorted(set(map(str, disabled))))})")
        healthy = sum(1 for s in self.slots if s.health.state(now) == "healthy")
        if healthy:
            parts.append(f"{healthy} at their rate or concurrency limit")
        return PoolExhaustedError(
            f"Could not acquire a key for {self.provider.name} within {timeout:.1f} s: "
            f"{len(self.slots)} keys, {', '.join(parts)}. Raise acquire_timeout, add keys, "
            "or send fewer requests at once.",
            provider=self.provider.name,
        )

    def extend(
        self, lease: Lease, cost: Cost, timeout: float | None, cancel: threading.Event | None = None
    ) -> bool:
        """Take ``cost`` more on the lease's key for a call already in flight (a re-ask).

        Waits until the key's buckets hold it, up to ``timeout``; True when it
        fits. When the wait ends otherwise (timeout, close, cancel) the capacity
        is taken anyway, as debt, and False returned: the request is going out
        regardless, and the books must show it.
        """
        limiter = lease.slot.limiter
        clock = self.clock
        with self._lock:
            deadline = None if timeout is None else clock.now() + timeout
            while not self._closed and not (cancel is not None and cancel.is_set()):
                wait = limiter.try_extend(lease.reservation, cost)
                if wait <= 0:
                    return True
                remaining = _INF if deadline is None else deadline - clock.now()
                if remaining <= 0:
                    break
                clock.wait(self._condition, min(wait, remaining))
            limiter.force_extend(lease.reservation, cost)
            return False

    # -- releasing -----------------------------------------------------------------

    def release_success(
        self, lease: Lease, usage: Usage | None, limits: ServerLimitState | None, elapsed: float = 0.0
    ) -> None:
        """The call succeeded: reconcile with the real usage (if known) and the server's view.

        ``elapsed`` is how long the call took: the server's ``limits`` are at
        most that old.
        """
        with self._lock:
            slot = lease.slot
            if usage is None:
                slot.limiter.finish(lease.reservation, input_tokens=None, output_tokens=None)
            else:
                slot.limiter.finish(
                    lease.reservation, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens
                )
            if limits is not None:
                slot.limiter.apply_server_state(limits, elapsed)
            slot.health.on_success()
            self._wake()

    def release_failure(self, lease: Lease, error: LLMError, cooldown: float) -> None:
        """The call failed with ``error``; ``cooldown`` is how long a 429 cools the key."""
        with self._lock:
            slot, now = lease.slot, self.clock.now()
            limiter, health = slot.limiter, slot.health
            description = f"{type(error).__name__} ({error.status_code or 'no status'})"
            if isinstance(error, RateLimitError):
                limiter.refund(lease.reservation)
                limiter.drain()
                health.on_rate_limited(now, cooldown, description)
            elif isinstance(error, (AuthenticationError, PermissionDeniedError)):
                limiter.refund(lease.reservation)
                health.disable(f"{error.status_code or ''} {type(error).__name__}".strip())
                logger.warning("disabled %s of %s: %s", slot.key_id, self.provider.name, description)
            elif error.retryable:
                limiter.finish(lease.reservation, input_tokens=None, output_tokens=0)
                health.on_failure(now, description)
            else:
                limiter.finish(lease.reservation, input_tokens=None, output_tokens=0)
                health.on_released_unjudged()
            self._wake()

    def release_unknown(self, lease: Lease) -> None:
        """The attempt ended by something other than an LLMError (a bug, KeyboardInterrupt)."""
        with self._lock:
            lease.slot.limiter.finish(lease.reservation, input_tokens=None, output_tokens=None)
            lease.slot.health.on_released_unjudged()
            self._wake()

    def _wake(self) -> None:
        """Wake the waiters (the caller holds the lock) so the head re-checks the keys."""
        if self._queue:
            self._condition.notify_all()

    def interrupt(self) -> None:
        """Wake every waiter so each re-checks its ``cancel`` event (see :meth:`acquire`)."""
        with self._condition:
            self._condition.notify_all()

    def enable_key(self, key_id: str) -> None:
        """Put a disabled key back in service, by its fingerprint."""
        with self._condition:
            for slot in self.slots:
                if slot.key_id == key_id:
                    slot.health.enable()
                    self._condition.notify_all()
                    return
        raise KeyError(f"No key {key_id!r} in this pool")

    # -- status and lifetime ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Pool health in the spec's shape, plus per-key detail. Never shows a key."""
        with self._condition:
            now = self.clock.now()
            statuses = [self._slot_status(slot, now) for slot in self.slots]
        return {
            "provider": self.provider.name,
            "total_clients": len(statuses),
            "available_clients": sum(1 for s in statuses if s["is_available"]),
            "in_use_clients": sum(1 for s in statuses if s["in_flight"] > 0),
            "waiting_requests": len(self._queue),
            "closed": self._closed,
            "client_statuses": statuses,
        }

    def _slot_status(self, slot: KeySlot, now: float) -> dict[str, Any]:
        limiter = slot.limiter.snapshot()
        health = slot.health.snapshot(now)
        at_cap = limiter["max_concurrent"] is not None and limiter["in_flight"] >= limiter["max_concurrent"]
        return {
            "client_id": slot.key_id,
            "is_available": health["state"] == "healthy" and not at_cap,
            "requests": slot.requests,
            **health,
            **limiter,
        }

    def executor(self) -> ThreadPoolExecutor:
        """The pool's worker threads (for submit, map, batch and the async layer)."""
        with self._condition:
            if self._closed:
                raise PoolClosedError("The client is closed", provider=self.provider.name)
            if self._executor is None:
                workers = self.config.workers_for(len(self.slots))
                self._executor = ThreadPoolExecutor(
                    workers, thread_name_prefix=f"llmkit-{self.provider.name}"
                )
            return self._executor

    def in_flight(self) -> int:
        """Attempts holding a key right now."""
        return sum(slot.limiter.in_flight for slot in self.slots)

    def close(self, timeout: float | None = 30.0) -> None:
        """Refuse new work and release keys, threads and connections. Idempotent.

        Requests waiting for a key raise PoolClosedError at once; work queued
        on the executor is cancelled. Calls already on the wire are waited for
        up to ``timeout`` seconds (None: as long as they take); then their
        connections are closed under them and they end with PoolClosedError.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor, self._executor = self._executor, None
            self._condition.notify_all()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        self._wait_in_flight(timeout)
        for slot in self.slots:
            slot.close()

    def _wait_in_flight(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self.in_flight():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self.abandoned = True
                    logger.warning(
                        "closing %s with %d calls still in flight after %.1f s: their replies "
                        "will be discarded with PoolClosedError",
                        self.provider.name, self.in_flight(), timeout,
                    )  # fmt: skip
                    return
                self._condition.wait(0.05 if remaining is None else min(remaining, 0.05))
