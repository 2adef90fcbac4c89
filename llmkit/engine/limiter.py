"""Token buckets and the per-key limiter built from them.

A :class:`TokenBucket` refills continuously at ``rate`` per second up to
``capacity``. Its level may go below zero: a reservation that turned out too
small is reconciled as debt, paid back by the refill before anything else is
admitted.

A :class:`KeyLimiter` holds one bucket per limit of a key (requests, input
tokens, output tokens, combined tokens per minute) and a concurrency cap. The
pool asks it how long a request would wait (:meth:`KeyLimiter.wait_time`),
reserves the estimated cost (:meth:`KeyLimiter.reserve`) and, after the call,
reconciles the reservation with the real usage (:meth:`KeyLimiter.finish`).
What the provider's rate-limit headers say is applied with
:meth:`KeyLimiter.apply_server_state`: when the server knows of less capacity
than we think we have (other processes use the same key), we believe it.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from llmkit.engine.clock import Clock, SystemClock
from llmkit.errors import CapacityTimeoutError
from llmkit.providers.base import ServerLimitState

if TYPE_CHECKING:
    from llmkit.config import RateLimit

__all__ = ["Cost", "KeyLimiter", "Reservation", "ServerLimitState", "SharedLimits", "TokenBucket"]

_INF = math.inf


class TokenBucket:
    """A thread-safe token bucket with continuous refill.

    ``acquire(cost, timeout)`` blocks in FIFO order: a waiter never overtakes
    one that came before it, so a large request cannot starve.
    """

    def __init__(
        self,
        capacity: float,
        rate: float,
        *,
        clock: Clock | None = None,
        initial: float | None = None,
    ) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError(f"capacity and rate must be positive, got {capacity}, {rate}")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self._clock = clock or SystemClock()
        self._level = self.capacity if initial is None else float(initial)
        self._updated = self._clock.now()
        # Plain ``with self._lock`` is much cheaper than entering the Condition
        # (a Python-level __enter__); only blocking acquire needs the Condition.
        self._lock = threading.Lock()
        self._condition = threading.Condition(self._lock)
        self._queue: deque[int] = deque()
        self._tickets = itertools.count()

    def __repr__(self) -> str:
        return f"TokenBucket(level={self.level:.1f}, capacity={self.capacity:g}, rate={self.rate:g}/s)"

    def _refill(self) -> None:
        now = self._clock.now()
        elapsed = now - self._updated
        if elapsed > 0:
            self._level = min(self.capacity, self._level + elapsed * self.rate)
        self._updated = now

    @property
    def level(self) -> float:
        """Tokens available now (negative while in debt)."""
        with self._lock:
            self._refill()
            return self._level

    def wait_time(self, cost: float) -> float:
        """Seconds until ``cost`` could be taken (0 if now). Costs above capacity count as full."""
        with self._lock:
            self._refill()
            return self._wait_time(cost)

    def _wait_time(self, cost: float) -> float:
        needed = min(cost, self.capacity) - self._level
        return 0.0 if needed <= 0 else needed / self.rate

    def consume(self, cost: float) -> None:
        """Take ``cost`` unconditionally (the level may go negative)."""
        with self._lock:
            self._refill()
            self._level -= cost

    def credit(self, amount: float) -> None:
        """Give back ``amount`` (negative takes more: debt), never above capacity."""
        with self._lock:
            self._refill()
            self._level = min(self.capacity, self._level + amount)
            if self._queue:
                self._condition.notify_all()

    def drain(self) -> None:
        """Empty the bucket (keep any debt): the server said we are over the limit."""
        with self._lock:
            self._refill()
            self._level = min(self._level, 0.0)

    def set_level(self, level: float) -> None:
        """Set the level as of now (a mirror of shared state elsewhere)."""
        with self._lock:
            self._updated = self._clock.now()
            self._level = min(self.capacity, level)

    def cap(self, level: float) -> None:
        """Lower the level to ``level`` if it is above it."""
        with self._lock:
            self._refill()
            self._level = min(self._level, level)

    def _check_cost(self, cost: float) -> None:
        if cost > self.capacity:
            raise ValueError(
                f"A cost of {cost:g} can never be admitted by a bucket of {self.capacity:g}: "
                "raise the limit or split the work."
            )

    def try_acquire(self, cost: float) -> bool:
        """Take ``cost`` if it is available now and nobody is queued before us."""
        self._check_cost(cost)
        with self._lock:
            self._refill()
            if self._queue or self._wait_time(cost) > 0:
                return False
            self._level -= cost
            return True

    def acquire(self, cost: float, timeout: float | None = None) -> None:
        """Block until ``cost`` can be taken, in FIFO order.

        Raises :class:`CapacityTimeoutError` if that takes longer than
        ``timeout`` seconds (None waits as long as needed).
        """
        self._check_cost(cost)
        with self._condition:
            ticket = next(self._tickets)
            self._queue.append(ticket)
            deadline = None if timeout is None else self._clock.now() + timeout
            try:
                while True:
                    self._refill()
                    wait = self._wait_time(cost)
                    if self._queue[0] == ticket and wait <= 0:
                        self._level -= cost
                        return
                    if self._queue[0] != ticket:
                        wait = _INF
                    remaining = _INF if deadline is None else deadline - self._clock.now()
                    if remaining <= 0:
                        raise CapacityTimeoutError(
                            f"Could not take {cost:g} from a bucket of {self.capacity:g} "
                            f"within {timeout:g} s."
                        )
                    bound = min(wait, remaining)
                    self._clock.wait(self._condition, None if bound == _INF else bound)
            finally:
                self._queue.remove(ticket)
                if self._queue:
                    self._condition.notify_all()


@dataclass(frozen=True, slots=True)
class Cost:
    """What one request is expected to take from a key's limits."""

    requests: int = 1
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.requests + other.requests,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
        )


@dataclass(slots=True)
class Reservation:
    """Capacity taken for one call, to be reconciled when it ends."""

    cost: Cost
    finished: bool = False


class KeyLimiter:
    """The limits of one API key: buckets per kind of limit, and a concurrency cap.

    Not locked on its own: the key pool calls it under the pool's lock. The
    buckets it holds are thread-safe by themselves.
    """

    def __init__(self, rate_limit: RateLimit | None, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.max_concurrent = rate_limit.max_concurrent if rate_limit else None
        self.in_flight = 0
        self.buckets: dict[str, TokenBucket] = {}
        if rate_limit is not None:
            burst = rate_limit.burst_seconds / 60.0
            for name, per_minute in (
                ("requests", rate_limit.requests_per_minute),
                ("input_tokens", rate_limit.input_tokens_per_minute),
                ("output_tokens", rate_limit.output_tokens_per_minute),
                ("tokens", rate_limit.tokens_per_minute),
            ):
                if per_minute:
                    capacity = max(1.0, per_minute * burst)
                    self.buckets[name] = TokenBucket(capacity, per_minute / 60.0, clock=self.clock)
        self.counts_tokens = any(name != "requests" for name in self.buckets)
        self.send_allowance = rate_limit.send_allowance if rate_limit is not None else 0.0

    def _costs(self, cost: Cost) -> list[tuple[TokenBucket, float]]:
        buckets = self.buckets
        pairs = []
        if "requests" in buckets:
            pairs.append((buckets["requests"], float(cost.requests)))
        if "input_tokens" in buckets:
            pairs.append((buckets["input_tokens"], float(cost.input_tokens)))
        if "output_tokens" in buckets:
            pairs.append((buckets["output_tokens"], float(cost.output_tokens)))
        if "tokens" in buckets:
            pairs.append((buckets["tokens"], float(cost.input_tokens + cost.output_tokens)))
        return pairs

    def wait_time(self, cost: Cost) -> float:
        """Seconds until this key could admit ``cost``; ``inf`` while at its concurrency cap."""
        if self.max_concurrent is not None and self.in_flight >= self.max_concurrent:
            return _INF
        wait = 0.0
        for bucket, amount in self._costs(cost):
            wait = max(wait, bucket.wait_time(amount))
        return wait

    def clamp(self, cost: Cost) -> Cost:
        """``cost`` with each token count cut to what this key's buckets can ever hold.

        A request asking for ``max_tokens=4096`` on a key allowed 2,000 output
        tokens a minute must still be admissible; the reservation is
        reconciled with the real usage afterwards anyway.
        """
        buckets = self.buckets
        input_tokens, output_tokens = cost.input_tokens, cost.output_tokens
        if "input_tokens" in buckets:
            input_tokens = min(input_tokens, int(buckets["input_tokens"].capacity))
        if "output_tokens" in buckets:
            output_tokens = min(output_tokens, int(buckets["output_tokens"].capacity))
        if "tokens" in buckets:
            total_cap = int(buckets["tokens"].capacity)
            if input_tokens + output_tokens > total_cap:
                input_tokens = min(input_tokens, total_cap)
                output_tokens = total_cap - input_tokens
        if (input_tokens, output_tokens) == (cost.input_tokens, cost.output_tokens):
            return cost
        return Cost(cost.requests, input_tokens, output_tokens)

    def try_reserve(self, cost: Cost) -> tuple[Reservation | None, float]:
        """Reserve ``cost`` if this key can admit it now; else ``(None, seconds to wait)``.

        Shared limiters (``llmkit.backends.redis``) override :meth:`_try_take`
        with one atomic check-and-take; :meth:`wait_time` is then only an estimate.
        """
        if self.max_concurrent is not None and self.in_flight >= self.max_concurrent:
            return None, _INF
        cost = self.clamp(cost)
        wait = self._try_take(cost)
        if wait > 0:
            return None, wait
        self.in_flight += 1
        return Reservation(cost), 0.0

    def try_extend(self, reservation: Reservation, cost: Cost) -> float:
        """Take ``cost`` more for a call already in flight (a re-ask on its key): 0.0 once
        taken and added to ``reservation``, else the seconds to wait. Concurrency is not
        checked: the call holds its place already."""
        cost = self.clamp(cost)
        wait = self._try_take(cost)
        if wait <= 0:
            reservation.cost = reservation.cost + cost
        return wait

    def force_extend(self, reservation: Reservation, cost: Cost) -> None:
        """Take ``cost`` more now, into debt if need be (for a re-ask that will not wait)."""
        cost = self.clamp(cost)
        for bucket, amount in self._costs(cost):
            bucket.consume(amount)
        reservation.cost = reservation.cost + cost

    def _try_take(self, cost: Cost) -> float:
        """Take a clamped ``cost`` from the buckets if they hold it now (0.0), else the wait."""
        pairs = self._costs(cost)
        wait = max((bucket.wait_time(amount) for bucket, amount in pairs), default=0.0)
        if wait > 0:
            return wait
        for bucket, amount in pairs:
            bucket.consume(amount + self._timing_debt(bucket))
        return 0.0

    def reserve(self, cost: Cost) -> Reservation:
        """Take ``cost`` (clamped) from every bucket and count one more request in flight."""
        cost = self.clamp(cost)
        for bucket, amount in self._costs(cost):
            bucket.consume(amount + self._timing_debt(bucket))
        self.in_flight += 1
        return Reservation(cost)

    def _timing_debt(self, bucket: TokenBucket) -> float:
        """What to hold back of a nearly full bucket for the request's time on the way.

        The provider counts a request when it arrives, up to ``send_allowance``
        seconds after we took it. If its bucket is full meanwhile, it throws
        that refill away while ours keeps it: without this debt the two would
        drift apart by ``rate * delay`` at every burst, and the drift would
        surface as 429s.
        """
        if not self.send_allowance:
            return 0.0
        allowance = bucket.rate * self.send_allowance
        return max(0.0, min(allowance, bucket.level + allowance - bucket.capacity))

    def finish(
        self, reservation: Reservation, *, input_tokens: int | None, output_tokens: int | None
    ) -> None:
        """Reconcile a reservation with what the call really used, and release it.

        ``None`` for a kind means "unknown": the reservation stands as it was
        (the safe choice when a call failed after the server may have counted it).
        """
        if reservation.finished:
            return
        reservation.finished = True
        self.in_flight -= 1
        cost = reservation.cost
        delta_in = 0 if input_tokens is None else cost.input_tokens - input_tokens
        delta_out = 0 if output_tokens is None else cost.output_tokens - output_tokens
        buckets = self.buckets
        if delta_in and "input_tokens" in buckets:
            buckets["input_tokens"].credit(delta_in)
        if delta_out and "output_tokens" in buckets:
            buckets["output_tokens"].credit(delta_out)
        if (delta_in or delta_out) and "tokens" in buckets:
            buckets["tokens"].credit(delta_in + delta_out)

    def refund(self, reservation: Reservation) -> None:
        """Release a reservation the server never counted (nothing was admitted)."""
        if reservation.finished:
            return
        reservation.finished = True
        self.in_flight -= 1
        for bucket, amount in self._costs(reservation.cost):
            bucket.credit(amount)

    def drain(self) -> None:
        """The server said 429: take every bucket to empty."""
        for bucket in self.buckets.values():
            bucket.drain()

    def server_bounds(self, state: ServerLimitState, elapsed: float = 0.0) -> dict[str, float]:
        """Per bucket, the most the server can have left now, from what its headers said.

        The server counted ``remaining`` when it admitted the call, at most
        ``elapsed`` seconds ago (the call's duration); its bucket has refilled
        since, so the bound is ``remaining + rate * elapsed``. Without that
        allowance every reply would throw away the refill of its own latency.
        """
        bounds = {}
        for name, remaining in (
            ("requests", state.remaining_requests),
            ("input_tokens", state.remaining_input_tokens),
            ("output_tokens", state.remaining_output_tokens),
            ("tokens", state.remaining_tokens),
        ):
            bucket = self.buckets.get(name)
            if bucket is not None and remaining is not None:
                bounds[name] = remaining + bucket.rate * elapsed
        return bounds

    def apply_server_state(self, state: ServerLimitState, elapsed: float = 0.0) -> None:
        """Lower local levels to what the server says remains, where it says less."""
        for name, bound in self.server_bounds(state, elapsed).items():
            self.buckets[name].cap(bound)

    def snapshot(self) -> dict[str, Any]:
        """Remaining capacity per limit, for status output."""
        remaining = {name: round(bucket.level, 1) for name, bucket in self.buckets.items()}
        return {"in_flight": self.in_flight, "max_concurrent": self.max_concurrent, "remaining": remaining}


class SharedLimits(Protocol):
    """Where limiters share their buckets with other processes (e.g. Redis).

    ``name`` identifies the key (provider and fingerprint, never the key).
    """

    def limiter(self, rate_limit: RateLimit, clock: Clock, name: str) -> KeyLimiter: ...
