"""A discrete-event simulation of clients, llmkit's key pool and a rate-limiting server, on fake time.

No threads and no sockets: simulated workers ask the real :class:`KeyPool`
for keys (through its own queue, waiters and timers), "send" to a server
model built from the fake server's enforcers
(:mod:`llmkit.testing._fake.enforcement`), and release with the server's
answer and its rate-limit headers, exactly as the retry loop would. Thousands
of requests over simulated minutes run in a fraction of a second, the same
every time for a given seed.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmkit.config import PoolConfig, RateLimit
from llmkit.engine.limiter import Cost
from llmkit.engine.pool import KeyPool
from llmkit.engine.slot import Lease
from llmkit.engine.waiters import Waiter
from llmkit.errors import RateLimitError
from llmkit.providers.base import Provider, ServerLimitState
from llmkit.testing._fake.enforcement import make_enforcer

DIMENSIONS = ("requests", "input_tokens", "output_tokens", "tokens")


class SimClock:
    """The simulation's time (the pool reads it; only the simulation moves it)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float, cancel: Any = None) -> bool:
        raise AssertionError("nothing sleeps in the simulation")

    def wait(self, event: Any, timeout: float | None) -> bool:
        raise AssertionError("nothing blocks in the simulation")


class _NoProvider(Provider):
    name = "sim"
    default_model = "m"

    def create_client(self, api_key: str) -> str:
        return api_key

    def complete(self, client: Any, request: Any) -> Any:
        raise AssertionError("the simulation sends nothing")


class SimServer:
    """Per key, one enforcer per limited dimension; headers as OpenAI/Anthropic send them."""

    def __init__(self, style: str, limits: dict[str, float], headers: bool = True) -> None:
        self.style, self.limits, self.headers = style, limits, headers
        self.keys: dict[str, dict[str, Any]] = {}

    def _for(self, key: str) -> dict[str, Any]:
        if key not in self.keys:
            self.keys[key] = {name: make_enforcer(self.style, per_minute)
                              for name, per_minute in self.limits.items()}  # fmt: skip
        return self.keys[key]

    def admit(self, key: str, now: float, demand: dict[str, float]) -> float:
        enforcers = self._for(key)
        wait = max((e.wait(now, demand[name]) for name, e in enforcers.items()), default=0.0)
        if wait == 0.0:
            for name, enforcer in enforcers.items():
                enforcer.take(now, demand[name])
        return wait

    def settle(self, key: str, now: float, taken_at: float, reserved: float, used: float) -> None:
        enforcers = self._for(key)
        for name in ("output_tokens", "tokens"):
            if name in enforcers:
                enforcers[name].give_back(now, reserved - used, taken_at)

    def state(self, key: str, now: float) -> ServerLimitState | None:
        if not self.headers:
            return None
        values: dict[str, float] = {}
        for name, enforcer in self._for(key).items():
            values[f"limit_{name}"] = enforcer.limit
            values[f"remaining_{name}"] = math.floor(enforcer.remaining(now) + 1e-9)
            values[f"reset_{name}"] = enforcer.reset_in(now)
        return ServerLimitState(**values)


@dataclass
class SimResult:
    requests: int
    succeeded: int = 0
    failed: int = 0
    rate_limited: int = 0  # 429s the server sent
    wall: float = 0.0
    sends_per_key_second: dict[tuple[int, int], int] = field(default_factory=dict)

    def capacity_used(self, ideal_seconds: float) -> float:
        return ideal_seconds / self.wall if self.wall else 0.0


class _SimWaiter(Waiter):
    __slots__ = ("done", "sim", "token", "worker")

    def wake(self) -> None:
        self.sim.schedule(self.sim.clock.t, self.sim._look, self, self.token)


class Simulation:
    """``workers`` callers sending ``requests`` through one pool to one server model."""

    def __init__(self, server: SimServer, rate_limit: RateLimit | None, *, keys: int = 4, workers: int = 16,
                 latency: Callable[[random.Random], float] | None = None, seed: int = 7,
                 acquire_timeout: float = 120.0) -> None:  # fmt: skip
        self.clock = SimClock()
        self.rng = random.Random(seed)
        self.server = server
        self.workers = workers
        self.latency = latency or (lambda rng: 0.05 + rng.uniform(0.0, 0.01))
        self.acquire_timeout = acquire_timeout
        names = [f"sk-sim-{i}-0000000000" for i in range(keys)]
        self.key_names = names
        config = PoolConfig(acquire_timeout=acquire_timeout)
        self.pool = KeyPool(_NoProvider(), names, rate_limits=[rate_limit] * keys, pool_config=config,
                            clock=self.clock)  # fmt: skip
        self.pool._warm = True
        self._events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()
        self._tokens = itertools.count()

    def schedule(self, at: float, fn: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._events, (at, next(self._order), fn, args))

    def run(self, costs: list[Cost], output_tokens: Callable[[Cost], int] | None = None) -> SimResult:
        """Send every cost (each is one request) and return what happened."""
        self.todo = list(reversed(costs))
        self.output_tokens = output_tokens or (lambda cost: min(cost.output_tokens, 16))
        self.result = SimResult(len(costs))
        self.started = self.clock.t
        self.retry_queue: list[Cost] = []
        for worker in range(self.workers):
            self.schedule(self.clock.t, self._next, worker)
        while self._events:
            at, _, fn, args = heapq.heappop(self._events)
            self.clock.t = max(self.clock.t, at)
            fn(*args)
        return self.result

    # -- a worker's life --------------------------------------------------------------------

    def _next(self, worker: int, cost: Cost | None = None) -> None:
        if cost is None:
            if not self.todo:
                return
            cost = self.todo.pop()
        pool, now = self.pool, self.clock.t
        with pool._lock:
            lease = pool._grant_now(cost, now, None)
            if lease is None:
                waiter = _SimWaiter(cost, now + self.acquire_timeout, None)
                waiter.sim, waiter.worker, waiter.token, waiter.done = self, worker, next(self._tokens), False
                pool._enqueue(waiter, now)
                if not waiter.settled:
                    self._arm(waiter)
        if lease is not None:
            self._send(worker, cost, lease)
        elif waiter.settled:
            self._settled(waiter)

    def _arm(self, waiter: _SimWaiter) -> None:
        waiter.token = next(self._tokens)
        timeout = self.pool._sleep_time(waiter, self.clock.t)
        if timeout != math.inf:
            self.schedule(self.clock.t + max(timeout, 0.0), self._look, waiter, waiter.token)

    def _look(self, waiter: _SimWaiter, token: int) -> None:
        if token != waiter.token or waiter.done:
            return
        pool = self.pool
        with pool._lock:
            if not waiter.settled:
                pool._look_again(waiter, self.clock.t, False)
            if not waiter.settled:
                self._arm(waiter)
                return
        self._settled(waiter)

    def _settled(self, waiter: _SimWaiter) -> None:
        if waiter.done:
            return
        waiter.done = True
        if waiter.lease is None:
            self.result.failed += 1
            self.schedule(self.clock.t, self._next, waiter.worker)
            return
        self._send(waiter.worker, waiter.cost, waiter.lease)

    def _send(self, worker: int, cost: Cost, lease: Lease) -> None:
        up = self.latency(self.rng) * 0.1
        self.schedule(self.clock.t + up, self._arrive, worker, cost, lease)

    def _arrive(self, worker: int, cost: Cost, lease: Lease) -> None:
        key, now = lease.slot.secret, self.clock.t
        demand = {name: cost.amount(name) for name in DIMENSIONS}
        wait = self.server.admit(key, now, demand)
        rtt = self.latency(self.rng)
        state = self.server.state(key, now)
        second = (lease.slot.index, int(now - self.started))
        self.result.sends_per_key_second[second] = self.result.sends_per_key_second.get(second, 0) + 1
        if wait > 0:
            self.result.rate_limited += 1
            self.schedule(now + rtt * 0.1, self._refused, worker, cost, lease, wait, state)
        else:
            used = self.output_tokens(cost)
            state = self.server.state(key, now)  # the headers say what was left once it was taken
            self.schedule(now + rtt * 0.9, self._answered, worker, cost, lease, used, now, state)

    def _answered(self, worker: int, cost: Cost, lease: Lease, used: int, admitted_at: float,
                  state: ServerLimitState | None) -> None:  # fmt: skip
        key, now = lease.slot.secret, self.clock.t
        self.server.settle(key, now, admitted_at, cost.output_tokens, used)
        self.pool.release_success(lease, cost.input_tokens, used, state)
        self.result.succeeded += 1
        self.result.wall = now - self.started
        self._next(worker)

    def _refused(self, worker: int, cost: Cost, lease: Lease, wait: float,
                 state: ServerLimitState | None) -> None:  # fmt: skip
        error = RateLimitError("429", status_code=429, retry_after=math.ceil(wait * 1000) / 1000)
        error.limits = state
        self.pool.release_failure(lease, error, error.retry_after or 0.0)
        self._next(worker, cost)  # a 429 is a wait: the same request goes round again
