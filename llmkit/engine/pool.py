"""The key pool: which key serves a request, the FIFO queue of calls waiting for one, and the books.

``acquire`` hands out the healthy key that can admit the request's estimated
cost soonest (then the one with fewest calls in flight, then round robin).
While none can, the call waits in one FIFO queue, as a thread or as an asyncio
task; the head of the queue is served first, and a call behind it is served
ahead of it only when that delays the head not at all (a small request that
fits the rest of a window the head cannot use). ``release_*`` reconciles the
reservation with the real usage and the server's headers, records the
outcome in the key's health and serves whoever can now be served.

The lock rule is the engine's (see :mod:`llmkit.engine`): ``self._lock``
guards the queue and every slot's limiter and health, is held only for
in-memory decisions, and never across network I/O. Shared limits (Redis)
are confirmed and reconciled outside it (:mod:`llmkit.engine.shared`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from llmkit.engine.clock import Clock, SystemClock
from llmkit.engine.health import KeyHealth
from llmkit.engine.lifetime import track_pool
from llmkit.engine.limiter import Cost, KeyLimiter
from llmkit.engine.outcomes import apply_failure
from llmkit.engine.refusals import all_disabled_error, exhausted_error, too_large_error
from llmkit.engine.shared import SharedLimits, confirm_outside_lock, push_outside_lock
from llmkit.engine.slot import KeySlot, Lease
from llmkit.engine.waiters import AsyncWaiter, ThreadWaiter, Waiter
from llmkit.errors import LLMError, PoolClosedError
from llmkit.redaction import fingerprint

if TYPE_CHECKING:
    from llmkit.config import PoolConfig, RateLimit
    from llmkit.providers.base import Provider, ServerLimitState

__all__ = ["KeyPool", "KeySlot", "Lease"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_INF = math.inf
LOOKAHEAD = 32  # calls behind a blocked head that may be served first, if that costs it nothing


class KeyPool:
    """Many keys of one provider behind one FIFO queue. Thread-safe; see the module docstring."""

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
        self.slots = self._make_slots(api_keys, rate_limits, shared_limits)
        self._counts_tokens = any(slot.limiter.counts_tokens for slot in self.slots)
        self._lock = threading.Lock()
        self._queue: deque[Waiter] = deque()
        self._extenders: list[ThreadWaiter] = []
        self._head_wait = _INF
        self._next = 0
        self._closed = False
        self.abandoned = False  # close() stopped waiting for calls in flight
        self._warm = False
        self._executor: ThreadPoolExecutor | None = None
        track_pool(self)

    def _make_slots(self, keys: Sequence[str], limits: Sequence[RateLimit | None],
                    shared: SharedLimits | None) -> list[KeySlot]:  # fmt: skip
        """One slot per key; keys whose RateLimit names the same ``group`` share one limiter."""
        now = self.clock.now()
        groups: dict[str, KeyLimiter] = {}
        slots = []
        for index, key in enumerate(keys):
            rate_limit = limits[index]
            group = getattr(rate_limit, "group", None)
            name = f"{self.provider.name}:{group or fingerprint(key)}"
            limiter = groups.get(name)
            if limiter is None:
                limiter = groups[name] = KeyLimiter(rate_limit, now, name)
                if shared is not None:
                    limiter.shared = shared.link(name, rate_limit)
                    limiter.outbox = []
            health = KeyHealth(self.config.failure_threshold, self.config.circuit_cooldown)
            slots.append(KeySlot(index, key, self.provider, limiter, health))
        return slots

    def __repr__(self) -> str:
        return f"KeyPool({self.provider.name}, keys={len(self.slots)})"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def counts_tokens(self) -> bool:
        """Whether any key has a token lane, so that requests reserve their estimated tokens.

        Known without looking at every key on every call: lanes are configured at the start
        or learned later (from headers, a 429, the shared store) and never dropped, and a
        key's are looked at whenever it is granted or released (:meth:`_heard_lanes`).
        """
        return self._counts_tokens

    def _heard_lanes(self, limiter: KeyLimiter) -> None:
        """Under the lock: note a token lane ``limiter`` may have learned."""
        if not self._counts_tokens and limiter.counts_tokens:
            self._counts_tokens = True

    # -- acquiring ------------------------------------------------------------------------

    def check_fits(self, cost: Cost) -> None:
        """RequestTooLargeError, before anything is sent, when no key could ever admit ``cost``.

        Stops at the first key that could (per call, a thousand keys cost what one does);
        every key's reason is gathered only for the error.
        """
        for slot in self.slots:
            if slot.limiter.too_large(cost) is None:
                return
        raise too_large_error(self.provider.name, [slot.limiter.too_large(cost) for slot in self.slots])

    def acquire(self, cost: Cost, *, deadline: float | None = None, avoid: int | None = None,
                cancel: threading.Event | None = None, note: str = "") -> Lease:  # fmt: skip
        """A key that can admit ``cost``, waiting in FIFO order until ``deadline`` (pool clock).

        ``avoid`` names a key to pass over when another is as good (the one
        that just failed). Raises PoolExhaustedError or RateLimitError when
        the deadline comes (or is sure to come first), AuthenticationError or
        QuotaExceededError when every key is disabled, PoolClosedError once
        closed, and ``concurrent.futures.CancelledError`` once ``cancel`` is
        set (whoever sets it calls :meth:`interrupt`). ``note`` is added to
        those errors' messages (the caller's own story: how long it waited already).
        """
        while True:
            lease = self._acquire_once(cost, deadline, avoid, cancel, note)
            if confirm_outside_lock(self, lease):
                return lease

    def _acquire_once(self, cost: Cost, deadline: float | None, avoid: int | None,
                      cancel: threading.Event | None, note: str) -> Lease:  # fmt: skip
        self._ensure_warm()
        with self._lock:
            now = self.clock.now()
            lease = self._grant_now(cost, now, avoid)
            if lease is not None:
                return lease
            waiter = ThreadWaiter(cost, deadline, avoid)
            waiter.note = note
            self._enqueue(waiter, now)
        return self._wait(waiter, cancel)

    async def acquire_async(self, cost: Cost, *, deadline: float | None = None,
                            avoid: int | None = None, note: str = "") -> Lease:  # fmt: skip
        """:meth:`acquire` for asyncio: the task waits on its loop, holding no thread.

        Cancelling the task takes it out of the queue (a key granted meanwhile is given back).
        """
        import asyncio

        if not self._warm:  # building SDK clients imports the SDKs: not on the loop
            await asyncio.to_thread(self._ensure_warm)
        while True:
            lease = await self._acquire_once_async(cost, deadline, avoid, note)
            if lease.slot.limiter.shared is None:
                return lease
            if await asyncio.to_thread(confirm_outside_lock, self, lease):  # Redis: blocking I/O
                return lease

    async def _acquire_once_async(self, cost: Cost, deadline: float | None, avoid: int | None,
                                  note: str) -> Lease:  # fmt: skip
        import asyncio

        loop = asyncio.get_running_loop()
        with self._lock:
            now = self.clock.now()
            lease = self._grant_now(cost, now, avoid)
            if lease is not None:
                return lease
            waiter = AsyncWaiter(cost, deadline, avoid, loop)
            waiter.note = note
            self._enqueue(waiter, now)
        return await self._wait_async(waiter)

    def _grant_now(self, cost: Cost, now: float, avoid: int | None) -> Lease | None:
        """The fast path, under the lock: a key at once when nobody is queued and one is free."""
        if self._closed:
            raise PoolClosedError("The client is closed", provider=self.provider.name)
        if self._queue:
            return None
        slot, wait = self._choose(cost, now, avoid)
        if slot is None or wait > 0:
            return None
        return self._take(slot, cost, now)

    def _enqueue(self, waiter: Waiter, now: float) -> None:
        self._queue.append(waiter)
        self._dispatch(now)

    def _wait(self, waiter: ThreadWaiter, cancel: threading.Event | None) -> Lease:
        clock = self.clock
        while True:
            with self._lock:
                now = clock.now()
                if not waiter.settled:
                    self._look_again(waiter, now, cancel is not None and cancel.is_set())
                if waiter.settled:
                    return self._outcome(waiter)
                timeout = self._sleep_time(waiter, now)
                waiter.event.clear()
            clock.wait(waiter.event, None if timeout == _INF else max(timeout, 0.0))

    async def _wait_async(self, waiter: AsyncWaiter) -> Lease:
        import asyncio

        try:
            while True:
                with self._lock:
                    now = self.clock.now()
                    if not waiter.settled:
                        self._look_again(waiter, now, False)
                    if waiter.settled:
                        return self._outcome(waiter)
                    timeout = self._sleep_time(waiter, now)
                    waiter.rearm()
                    signal = waiter.signal
                with contextlib.suppress(asyncio.TimeoutError):
                    limit = None if timeout == _INF else max(0.0, timeout)
                    await asyncio.wait_for(asyncio.shield(signal), limit)
        except BaseException:  # cancelled: leave the queue; give back a key granted meanwhile
            self._abandon(waiter)
            raise

    def _look_again(self, waiter: Waiter, now: float, cancelled: bool) -> None:
        """Under the lock: serve the queue if ``waiter`` heads it, or settle it as stopped."""
        if self._closed:
            self._drop(waiter, PoolClosedError("The client is closed", provider=self.provider.name))
        elif cancelled:
            self._drop(waiter, CancelledError("cancelled while waiting for a key"))
        elif self._queue and self._queue[0] is waiter:
            self._dispatch(now)
        if not waiter.settled and now >= waiter.deadline:
            self._drop(waiter, exhausted_error(self.provider.name, self.slots, waiter, now))

    def _sleep_time(self, waiter: Waiter, now: float) -> float:
        timeout = waiter.deadline - now
        if self._queue and self._queue[0] is waiter:
            timeout = min(timeout, self._head_wait)
        waiter.sleep_until = now + timeout
        return timeout

    def _outcome(self, waiter: Waiter) -> Lease:
        if waiter.lease is not None:
            return waiter.lease
        assert waiter.error is not None
        raise waiter.error

    def _drop(self, waiter: Waiter, error: BaseException) -> None:
        """Take ``waiter`` out of the queue with ``error`` (under the lock); serve the new head."""
        waiter.error = error
        was_head = bool(self._queue) and self._queue[0] is waiter
        with contextlib.suppress(ValueError):
            self._queue.remove(waiter)
        waiter.wake()
        if was_head:
            self._dispatch(self.clock.now())

    def _abandon(self, waiter: Waiter) -> None:
        """A waiter went away (its task was cancelled): out of the queue, its lease given back."""
        with self._lock:
            if waiter.lease is None:
                if waiter.error is None:
                    self._drop(waiter, CancelledError("cancelled while waiting for a key"))
                return
            lease, waiter.lease = waiter.lease, None
            waiter.error = CancelledError("cancelled")
            now = self.clock.now()
            lease.slot.limiter.refund(lease.reservation, now)
            lease.slot.health.on_released_unjudged()
            self._dispatch(now)

    def give_back(self, lease: Lease, *, shared: bool = True) -> None:
        """Return a lease that was never used (``shared=False``: the shared store never had it)."""
        with self._lock:
            now = self.clock.now()
            lease.slot.limiter.refund(lease.reservation, now, record=shared)
            lease.slot.health.on_released_unjudged()
            self._dispatch(now)

    def wait_estimate(self, cost: Cost) -> tuple[float, bool]:
        """How long until some key could admit ``cost``, and whether that is certain
        (no call in flight could free capacity sooner)."""
        with self._lock:
            now = self.clock.now()
            try:
                _, wait = self._choose(cost, now, None)
            except LLMError:
                return _INF, True
            return wait, self._certain()

    def all_disabled(self) -> bool:
        """True when no key is left in service."""
        return all(slot.health.disabled for slot in self.slots)

    def interrupt(self) -> None:
        """Wake every waiting thread so each re-checks its ``cancel`` event (see :meth:`acquire`)."""
        with self._lock:
            for waiter in self._queue:
                waiter.wake()

    # -- serving the queue (all under the lock) ----------------------------------------------

    def _dispatch(self, now: float) -> None:
        """Serve the queue in order; a blocked head gets its timer, calls behind it may fit first."""
        queue = self._queue
        while queue:
            head = queue[0]
            try:
                slot, wait = self._choose(head.cost, now, head.avoid)
            except LLMError as error:  # every key disabled: nobody can be served
                self._fail_all(error)
                return
            if slot is not None and wait <= 0:
                queue.popleft()
                self._grant(head, slot, now)
                continue
            if wait > head.deadline - now and self._certain():
                queue.popleft()
                head.error = exhausted_error(self.provider.name, self.slots, head, now, needed=wait)
                head.wake()
                continue
            self._head_wait = wait
            self._serve_behind(head, slot, wait, now)
            if now + wait < head.sleep_until - 1e-6:
                head.wake()  # it sleeps longer than it must: let it set its timer again
            return
        self._head_wait = _INF

    def _serve_behind(self, head: Waiter, head_slot: KeySlot | None, head_wait: float, now: float) -> None:
        for waiter in list(itertools.islice(self._queue, 1, 1 + LOOKAHEAD)):
            slot, wait = self._choose(waiter.cost, now, waiter.avoid)
            if slot is None or wait > 0:
                continue
            if head_slot is not None and slot.limiter is head_slot.limiter:
                cost = slot.limiter.clamp(waiter.cost)
                after = max(slot.health.ready_at(now) - now, slot.limiter.wait_time(head.cost, now, cost))
                if after > head_wait + 1e-9:
                    continue
            self._queue.remove(waiter)
            self._grant(waiter, slot, now)

    def _certain(self) -> bool:
        """Whether no call in flight could free capacity sooner than the keys now say."""
        return all(slot.limiter.in_flight == 0 for slot in self.slots)

    def _fail_all(self, error: LLMError) -> None:
        while self._queue:
            waiter = self._queue.popleft()
            waiter.error = error
            waiter.wake()

    def _choose(self, cost: Cost, now: float, avoid: int | None) -> tuple[KeySlot | None, float]:
        """The slot that can admit ``cost`` soonest and its wait (raises when all are disabled)."""
        best: KeySlot | None = None
        best_rank: tuple[float, bool, int] | None = None
        slots = self.slots
        count = len(slots)
        enabled = False
        for offset in range(count):
            slot = slots[(self._next + offset) % count]
            health = slot.health
            if health.disabled:
                continue
            enabled = True
            wait = health.ready_at(now) - now
            if wait != _INF:
                limiter = slot.limiter
                wait = max(wait, limiter.wait_time(limiter.clamp(cost), now))
            if wait == _INF:
                continue
            rank = (wait, slot.index == avoid, slot.limiter.in_flight)
            if best_rank is None or rank < best_rank:
                best, best_rank = slot, rank
                if rank == (0.0, False, 0):
                    break  # nothing can beat an idle key free now
        if not enabled:
            raise all_disabled_error(self.provider.name, self.slots)
        return best, (best_rank[0] if best_rank is not None else _INF)

    def _take(self, slot: KeySlot, cost: Cost, now: float) -> Lease:
        limiter = slot.limiter
        reservation = limiter.take(limiter.clamp(cost), now)
        slot.health.on_acquire(now)
        slot.requests += 1
        self._next = (slot.index + 1) % len(self.slots)
        self._heard_lanes(limiter)
        return Lease(slot, reservation)

    def _grant(self, waiter: Waiter, slot: KeySlot, now: float) -> None:
        waiter.lease = self._take(slot, waiter.cost, now)
        waiter.wake()

    def _ensure_warm(self) -> None:
        """Build every key's SDK client before the first reservation (after checking we are open).

        Building one imports the SDK (a second or more). Done lazily inside an
        attempt, that delay would fall between reserving capacity and sending.
        """
        if self._warm:
            return
        if self._closed:
            raise PoolClosedError("The client is closed", provider=self.provider.name)
        self.provider.warm()
        if not self.provider.lean:  # the SDK is how every call goes: build each key's client now
            self.warm_sdk()
        self._warm = True

    def warm_sdk(self) -> None:
        """Build every key's SDK client now (the lean path makes them only for instructor)."""
        for slot in self.slots:
            _ = slot.client

    # -- extending a lease (structured re-asks) ---------------------------------------------

    def extend(self, lease: Lease, cost: Cost, deadline: float | None,
               cancel: threading.Event | None = None) -> bool:  # fmt: skip
        """Take ``cost`` more on the lease's key for a call already in flight (a re-ask).

        Waits until the key's lanes hold it, up to ``deadline``; True when it
        fits. When the wait ends otherwise (deadline, close, cancel) the
        capacity is taken anyway, as debt, and False returned: the request is
        going out regardless, and the books must show it.
        """
        limiter, clock = lease.slot.limiter, self.clock
        waiter = ThreadWaiter(cost, deadline, None)
        with self._lock:
            self._extenders.append(waiter)
        try:
            while True:
                with self._lock:
                    now = clock.now()
                    wait = limiter.lanes_wait(cost, now)
                    stop = self._closed or (cancel is not None and cancel.is_set()) or now >= waiter.deadline
                    if wait <= 0 or stop:
                        limiter.extend(lease.reservation, cost, now)
                        return wait <= 0
                    waiter.event.clear()
                    timeout = min(wait, waiter.deadline - now)
                clock.wait(waiter.event, timeout)
        finally:
            with self._lock:
                self._extenders.remove(waiter)

    # -- releasing ---------------------------------------------------------------------------

    def release_success(self, lease: Lease, input_tokens: int | None, output_tokens: int | None,
                        limits: ServerLimitState | None) -> None:  # fmt: skip
        """The call succeeded: reconcile with the real usage (None: unknown) and the server's word.

        Never raises: the reply has been paid for and goes to the caller whatever
        fails in the bookkeeping (a failure here is logged).
        """
        try:
            with self._lock:
                now = self.clock.now()
                slot, reservation = lease.slot, lease.reservation
                slot.limiter.finish(reservation, input_tokens, output_tokens, now)
                slot.limiter.observe(
                    limits, reservation.sent_at, now, reservation.cost, reservation.granted_at
                )
                slot.limiter.on_success(now)
                slot.health.on_success()
                self._heard_lanes(slot.limiter)
                self._after_release(now)
        except Exception:
            logger.exception("llmkit bookkeeping failed after a successful call (the reply is kept)")
        push_outside_lock(self, lease)

    def headers_in(self, lease: Lease, limits: ServerLimitState | None) -> None:
        """A stream's reply headers are in: learn from them now rather than when it ends (it may
        last minutes), which also lets go the calls waiting for this key's first reply."""
        try:
            with self._lock:
                now = self.clock.now()
                reservation = lease.reservation
                lease.slot.limiter.observe(
                    limits, reservation.sent_at, now, reservation.cost, reservation.granted_at
                )
                self._heard_lanes(lease.slot.limiter)
                self._after_release(now)
        except Exception:
            logger.exception("llmkit bookkeeping failed on a stream's headers (the stream goes on)")
        push_outside_lock(self, lease)

    def release_failure(self, lease: Lease, error: LLMError, cooldown: float) -> None:
        """The attempt failed with ``error``; ``cooldown`` is how long a 429 rests the key."""
        try:
            with self._lock:
                now = self.clock.now()
                apply_failure(lease, error, cooldown, now)
                self._heard_lanes(lease.slot.limiter)
                self._after_release(now)
        except Exception:
            logger.exception("llmkit bookkeeping failed after a failed call")
        push_outside_lock(self, lease)

    def release_unjudged(self, lease: Lease) -> None:
        """The attempt ended without a verdict on the key (a bug, KeyboardInterrupt, cancellation)."""
        try:
            with self._lock:
                now = self.clock.now()
                lease.slot.limiter.finish(lease.reservation, None, None, now)
                lease.slot.health.on_released_unjudged()
                self._after_release(now)
        except Exception:
            logger.exception("llmkit bookkeeping failed after an interrupted call")
        push_outside_lock(self, lease)

    def _after_release(self, now: float) -> None:
        self._dispatch(now)
        for waiter in self._extenders:
            waiter.wake()

    def enable_key(self, key_id: str) -> None:
        """Put a disabled key back in service, by its fingerprint."""
        with self._lock:
            for slot in self.slots:
                if slot.key_id == key_id:
                    slot.health.enable()
                    self._dispatch(self.clock.now())
                    return
        raise KeyError(f"No key {key_id!r} in this pool")

    # -- status and lifetime --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Pool health in the spec's shape, plus per-key detail. Never shows a key."""
        with self._lock:
            now = self.clock.now()
            statuses = [slot.status(now) for slot in self.slots]
            waiting = len(self._queue)
        return {
            "provider": self.provider.name,
            "total_clients": len(statuses),
            "available_clients": sum(1 for s in statuses if s["is_available"]),
            "in_use_clients": sum(1 for s in statuses if s["in_flight"] > 0),
            "waiting_requests": waiting,
            "closed": self._closed,
            "client_statuses": statuses,
        }

    def executor(self) -> ThreadPoolExecutor:
        """The pool's worker threads (for submit, map and batch), :meth:`workers` of them at most
        (started as work needs them)."""
        with self._lock:
            if self._closed:
                raise PoolClosedError("The client is closed", provider=self.provider.name)
            if self._executor is None:
                name = f"llmkit-{self.provider.name}"
                self._executor = ThreadPoolExecutor(self.workers(), thread_name_prefix=name)
            return self._executor

    def workers(self) -> int:
        """How many worker threads the pool runs: ``PoolConfig.max_workers``, or what the keys'
        limits allow in flight (``PoolConfig.workers_for``; keys of one limit group count once)."""
        caps = [limiter.max_concurrent for limiter in self._limiters()]
        return self.config.workers_for(len(self.slots), caps)

    def in_flight(self) -> int:
        """Attempts holding a key right now."""
        return sum(limiter.in_flight for limiter in self._limiters())

    def _limiters(self) -> list[KeyLimiter]:
        """Each limit once: keys of one ``RateLimit(group=...)`` share a limiter."""
        return list({id(slot.limiter): slot.limiter for slot in self.slots}.values())

    def close(self, timeout: float | None = 30.0) -> None:
        """Refuse new work and release keys, threads and connections. Idempotent.

        Calls waiting for a key raise PoolClosedError at once; work queued on
        the executor is cancelled. Calls already on the wire are waited for up
        to ``timeout`` seconds (None: as long as they take); then their
        connections are closed under them and they end with PoolClosedError.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor, self._executor = self._executor, None
            self._fail_all(PoolClosedError("The client is closed", provider=self.provider.name))
            for waiter in self._extenders:
                waiter.wake()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        self._wait_in_flight(timeout)
        if self.abandoned:
            self.provider.abort()  # end the calls still on the wire: they raise PoolClosedError
        for slot in self.slots:
            slot.close()
        self.provider.close()

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's threads, waiters and connections are not here.

        Start afresh with the same keys, limits and books: new locks, no
        waiters, worker threads made on next need, and no key held by the
        calls the parent had in flight (their capacity stays spent here).
        """
        self._lock = threading.Lock()
        self._queue = deque()
        self._extenders = []
        self._head_wait = _INF
        self._executor = None
        for slot in self.slots:
            slot.reset_after_fork()
        self.provider.reset_after_fork()

    def _wait_in_flight(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
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
            time.sleep(0.01 if remaining is None else min(remaining, 0.01))
