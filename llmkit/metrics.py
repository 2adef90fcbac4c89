"""Metrics: counters of what a client's calls did, in total, per provider and per key.

:class:`MetricsMiddleware` sits in the middleware chain (see
:mod:`llmkit.middleware`) and records every call that passes through it into a
:class:`MetricsRecorder`; ``LLMClient.metrics()`` returns its snapshot::

    {"requests": 12, "successes": 11, "errors": 1,
     "errors_by_type": {"ProviderError": 1}, "cached": 0,
     "attempts": 13, "retries": 2, "input_tokens": 480, "output_tokens": 96,
     "total_tokens": 576, "cost": 0.0012, "priced": 11,
     "latency": {"count": 11, "mean": 0.21, "min": 0.1, "max": 0.5,
                 "p50": 0.2, "p95": 0.45, "p99": 0.49},
     "by_provider": {"openai": {...same fields...}},
     "by_key": {"sk-...a1b2": {...same fields...}},
     "window": 10000, "since": 1716400000.0}

What counts:

* ``requests`` is one per call through the chain, whatever happens;
  ``successes + errors == requests``.
* ``latency`` is the wall time of successful calls through the chain
  (queueing for capacity and retries included), in seconds. ``mean`` covers
  every successful call; the percentiles cover the last ``window`` ones and are
  exact (linear interpolation between ranks, as ``numpy.percentile``) while
  there are no more than ``window``.
* ``attempts``/``retries`` and tokens come from responses: a failed call counts
  as an error only, since the error does not say how many attempts it took.
* A cached response (``response.cached``) counts as a request, a success and
  a ``cached`` hit with its latency, but adds no tokens, cost or attempts and is
  not charged to a key: no key was used.
* ``cost`` sums ``response.cost`` where it is set; ``priced`` counts those calls.
* Errors are counted per provider and per key where the error carries them.

Recording takes a lock and a handful of additions: a few microseconds.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from llmkit.request import Request
from llmkit.types import Response

__all__ = ["MetricsMiddleware", "MetricsRecorder", "percentile"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

DEFAULT_WINDOW = 10_000
PERCENTILES = (50, 95, 99)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of ascending ``sorted_values``; None when empty.

    Linear interpolation between the closest ranks (``numpy.percentile``'s default).
    """
    if not sorted_values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100, got {q!r}")
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


class _Counters:
    """The counters of one scope (all calls, one provider or one key). Not locked: the recorder locks."""

    __slots__ = (
        "attempts",
        "cached",
        "cost",
        "errors",
        "errors_by_type",
        "input_tokens",
        "latencies",
        "latency_sum",
        "output_tokens",
        "priced",
        "requests",
    )

    def __init__(self, window: int) -> None:
        self.requests = 0
        self.errors = 0
        self.errors_by_type: dict[str, int] = {}
        self.cached = 0
        self.attempts = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = 0.0
        self.priced = 0
        self.latency_sum = 0.0
        self.latencies: deque[float] = deque(maxlen=window)

    def add_success(self, response: Response, elapsed: float) -> None:
        self.requests += 1
        self.latency_sum += elapsed
        self.latencies.append(elapsed)
        if response.cached:
            self.cached += 1
            return
        self.attempts += response.attempts
        usage = response.usage
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        if response.cost is not None:
            self.cost += response.cost
            self.priced += 1

    def add_error(self, name: str) -> None:
        self.requests += 1
        self.errors += 1
        self.errors_by_type[name] = self.errors_by_type.get(name, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        successes = self.requests - self.errors
        # Cached hits make no attempts; every other success made at least one.
        retries = max(0, self.attempts - (successes - self.cached))
        return {
            "requests": self.requests,
            "successes": successes,
            "errors": self.errors,
            "errors_by_type": dict(self.errors_by_type),
            "cached": self.cached,
            "attempts": self.attempts,
            "retries": retries,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "cost": self.cost,
            "priced": self.priced,
            "latency": self._latency(successes),
        }

    def _latency(self, successes: int) -> dict[str, float | int | None]:
        ordered = sorted(self.latencies)
        summary: dict[str, float | int | None] = {
            "count": successes,
            "mean": self.latency_sum / successes if successes else None,
            "min": ordered[0] if ordered else None,
            "max": ordered[-1] if ordered else None,
        }
        for q in PERCENTILES:
            summary[f"p{q}"] = percentile(ordered, q)
        return summary


class MetricsRecorder:
    """Thread-safe counters of calls: in total, per provider and per key.

    ``window`` bounds the latencies kept per scope for percentiles (the most
    recent ones); it must be at least 1.
    """

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a whole number of at least 1, got {window!r}")
        self.window = window
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self._total = _Counters(self.window)
        self._by_provider: dict[str, _Counters] = {}
        self._by_key: dict[str, _Counters] = {}
        self._since = time.time()

    def _scope(self, table: dict[str, _Counters], name: str) -> _Counters:
        counters = table.get(name)
        if counters is None:
            counters = table[name] = _Counters(self.window)
        return counters

    def record_success(self, response: Response, elapsed: float) -> None:
        """Count a successful call that took ``elapsed`` seconds through the chain."""
        with self._lock:
            self._total.add_success(response, elapsed)
            if response.provider:
                self._scope(self._by_provider, response.provider).add_success(response, elapsed)
            if response.key_id and not response.cached:
                self._scope(self._by_key, response.key_id).add_success(response, elapsed)

    def record_error(self, error: BaseException, provider: str | None = None) -> None:
        """Count a failed call; the provider and key come from the error where it has them."""
        name = type(error).__name__
        provider = getattr(error, "provider", None) or provider
        key_id = getattr(error, "key_id", None)
        with self._lock:
            self._total.add_error(name)
            if provider:
                self._scope(self._by_provider, provider).add_error(name)
            if key_id:
                self._scope(self._by_key, key_id).add_error(name)

    def snapshot(self, reset: bool = False) -> dict[str, Any]:
        """A plain, JSON-serializable copy of every counter (see the module docstring).

        ``reset=True`` clears the counters in the same step, so that no call
        is counted twice or lost between two periodic exports.
        """
        with self._lock:
            total, by_provider, by_key, since = self._total, self._by_provider, self._by_key, self._since
            if reset:
                self._clear()
            data = total.snapshot()
            data["by_provider"] = {name: c.snapshot() for name, c in by_provider.items()}
            data["by_key"] = {name: c.snapshot() for name, c in by_key.items()}
        data["window"] = self.window
        data["since"] = since
        return data

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._clear()


class MetricsMiddleware:
    """Middleware that records every call into a :class:`MetricsRecorder`.

    ``provider`` names the provider for errors that do not carry one (a
    capacity timeout, a middleware's own error). ``clock`` measures the
    latency (``time.perf_counter``).
    """

    def __init__(
        self,
        recorder: MetricsRecorder | None = None,
        *,
        provider: str | None = None,
        window: int = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.recorder = recorder if recorder is not None else MetricsRecorder(window)
        self.provider = provider
        self._clock = clock

    def __call__(self, request: Request, call_next: Callable[[Request], Response]) -> Response:
        clock = self._clock
        started = clock()
        try:
            response = call_next(request)
        except Exception as error:
            self.recorder.record_error(error, self.provider)
            raise
        self.recorder.record_success(response, clock() - started)
        return response

    async def acall(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """:meth:`__call__` in asyncio."""
        clock = self._clock
        started = clock()
        try:
            response = await call_next(request)
        except Exception as error:
            self.recorder.record_error(error, self.provider)
            raise
        self.recorder.record_success(response, clock() - started)
        return response

    def observe_stream(self, request: Request, response: Response, error: BaseException | None) -> None:
        """Count a stream when it ends (closed early counts as done: the call itself worked)."""
        if error is None:
            self.recorder.record_success(response, response.latency)
        elif isinstance(error, Exception):
            self.recorder.record_error(error, self.provider)

    def snapshot(self, reset: bool = False) -> dict[str, Any]:
        return self.recorder.snapshot(reset)

    def reset(self) -> None:
        self.recorder.reset()

    def __repr__(self) -> str:
        return f"MetricsMiddleware(provider={self.provider!r}, window={self.recorder.window})"
