"""Server-side per-key rate limits: continuous token buckets.

A limit ``L`` per minute is a bucket that holds at most ``L * burst_seconds /
60`` and refills at ``L / 60`` per second, starting full. A chat request is
admitted when, at once, the request bucket holds 1, the input bucket holds the
request's input tokens, the output bucket holds the output reservation
(``max_tokens``, or ``default_max_tokens`` when the request has none, capped to
the bucket's capacity), and the combined bucket holds input + reservation
(capped likewise). Admission takes those amounts; when the reply is done, the
unused part of the output reservation is given back (Anthropic style).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["Admission", "BucketState", "RateLimiter", "ServerLimits"]

_EPS = 1e-9
REQUESTS, INPUT, OUTPUT, TOKENS = "requests", "input_tokens", "output_tokens", "tokens"


@dataclass(frozen=True)
class ServerLimits:
    """Per-key limits the fake server enforces (each ``None`` = unlimited, no headers).

    ``requests_per_minute``, ``input_tokens_per_minute``,
    ``output_tokens_per_minute``: Anthropic-style separate limits.
    ``tokens_per_minute``: a combined input + output limit (OpenAI's TPM).
    ``burst_seconds``: how many seconds of the per-minute rate a bucket holds:
    60 (the default) allows a full minute's worth at once; 1 models a provider
    that smooths its per-minute limit per second. Must be > 0.
    ``default_max_tokens``: the output reservation of a request without
    ``max_tokens``.
    """

    requests_per_minute: float | None = None
    input_tokens_per_minute: float | None = None
    output_tokens_per_minute: float | None = None
    tokens_per_minute: float | None = None
    burst_seconds: float = 60.0
    default_max_tokens: int = 4096

    def __post_init__(self) -> None:
        if self.burst_seconds <= 0:
            raise ValueError("ServerLimits.burst_seconds must be > 0")
        for name, value in self.per_minute().items():
            if value is not None and value <= 0:
                raise ValueError(f"ServerLimits: the {name} limit must be > 0 or None")

    def per_minute(self) -> dict[str, float | None]:
        """The four limits by bucket name."""
        return {
            REQUESTS: self.requests_per_minute,
            INPUT: self.input_tokens_per_minute,
            OUTPUT: self.output_tokens_per_minute,
            TOKENS: self.tokens_per_minute,
        }


@dataclass(frozen=True)
class BucketState:
    """One bucket as the rate-limit headers show it."""

    limit: float
    remaining: int
    reset_seconds: float  # until the bucket is full again


@dataclass
class Admission:
    """The outcome of :meth:`RateLimiter.admit`."""

    ok: bool
    key: str
    charges: dict[str, float] = field(default_factory=dict)
    input_tokens: int = 0
    retry_after: float = 0.0
    exceeded: str = ""  # the name of the bucket that refused
    too_large: bool = False  # the request can never fit in the bucket
    state: dict[str, BucketState] = field(default_factory=dict)


class _Bucket:
    __slots__ = ("capacity", "level", "limit", "rate", "stamp")

    def __init__(self, per_minute: float, burst_seconds: float, now: float) -> None:
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.capacity = per_minute * burst_seconds / 60.0
        self.level = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_for(self, amount: float) -> float:
        return max(0.0, (amount - self.level) / self.rate)

    def state(self) -> BucketState:
        remaining = max(0, math.floor(self.level + _EPS))
        return BucketState(self.limit, remaining, self.wait_for(self.capacity))


class RateLimiter:
    """Thread-safe buckets for every key, created on first use."""

    def __init__(
        self,
        limits: ServerLimits | None,
        key_limits: Mapping[str, ServerLimits] | None,
        clock: Callable[[], float],
    ) -> None:
        self._default = limits
        self._per_key = dict(key_limits or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, _Bucket]] = {}

    def _for(self, key: str, now: float) -> dict[str, _Bucket]:
        buckets = self._buckets.get(key)
        if buckets is None:
            limits = self._per_key.get(key, self._default)
            buckets = {}
            if limits is not None:
                for name, value in limits.per_minute().items():
                    if value is not None:
                        buckets[name] = _Bucket(value, limits.burst_seconds, now)
            self._buckets[key] = buckets
        for bucket in buckets.values():
            bucket.refill(now)
        return buckets

    def limits_for(self, key: str) -> ServerLimits | None:
        return self._per_key.get(key, self._default)

    def admit(self, key: str, input_tokens: int, max_tokens: int | None) -> Admission:
        """Take one request and its tokens from the key's buckets, or say how long to wait."""
        limits = self.limits_for(key)
        with self._lock:
            buckets = self._for(key, self._clock())
            if not buckets or limits is None:
                return Admission(True, key)
            reserve = limits.default_max_tokens if max_tokens is None else max_tokens
            demand = {REQUESTS: 1.0, INPUT: float(input_tokens), OUTPUT: float(reserve)}
            demand[TOKENS] = demand[INPUT] + demand[OUTPUT]
            charges: dict[str, float] = {}
            for name, bucket in buckets.items():
                amount = demand[name]
                if name in (OUTPUT, TOKENS):  # the output reservation is capped to capacity
                    fixed = demand[INPUT] if name == TOKENS else 0.0
                    amount = max(fixed, min(amount, bucket.capacity))
                charges[name] = amount
            refused = self._refusal(key, buckets, charges)
            if refused is not None:
                return refused
            for name, amount in charges.items():
                buckets[name].level -= amount
            return Admission(True, key, charges, input_tokens, state=self._state(buckets))

    def _refusal(
        self, key: str, buckets: dict[str, _Bucket], charges: dict[str, float]
    ) -> Admission | None:
        wait, exceeded, too_large = 0.0, "", False
        for name, amount in charges.items():
            bucket = buckets[name]
            if bucket.level + _EPS >= amount:
                continue
            big = amount > bucket.capacity + _EPS
            need = bucket.wait_for(bucket.capacity if big else amount)
            if need >= wait:
                wait, exceeded = need, name
            too_large = too_large or big
        if not exceeded:
            return None
        return Admission(False, key, {}, 0, wait, exceeded, too_large, self._state(buckets))

    def settle(self, admission: Admission, output_tokens: int) -> None:
        """Replace the output reservation by the tokens really produced."""
        charges, refunds = admission.charges, {}
        if OUTPUT in charges:
            refunds[OUTPUT] = charges[OUTPUT] - output_tokens
        if TOKENS in charges:
            refunds[TOKENS] = charges[TOKENS] - admission.input_tokens - output_tokens
        self._give(admission, refunds)

    def cancel(self, admission: Admission) -> None:
        """Give back everything an admission took (the reply turned out to be an error)."""
        self._give(admission, dict(admission.charges))

    def _give(self, admission: Admission, amounts: dict[str, float]) -> None:
        if not admission.charges:
            return
        admission.charges = {}  # settle or cancel only once
        with self._lock:
            buckets = self._for(admission.key, self._clock())
            for name, amount in amounts.items():
                bucket = buckets.get(name)
                if bucket is not None:  # a negative amount (output beyond the reservation) is debt
                    bucket.level = min(bucket.capacity, bucket.level + amount)

    def state(self, key: str) -> dict[str, BucketState]:
        """The key's buckets as rate-limit headers show them (empty: no limits)."""
        with self._lock:
            return self._state(self._for(key, self._clock()))

    @staticmethod
    def _state(buckets: dict[str, _Bucket]) -> dict[str, BucketState]:
        return {name: bucket.state() for name, bucket in buckets.items()}

    def reset(self) -> None:
        """Forget all bucket state: every key starts full again."""
        with self._lock:
            self._buckets.clear()
