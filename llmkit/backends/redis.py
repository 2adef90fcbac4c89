"""Rate limits shared through Redis by every process and machine using the same keys.

>>> limits = RedisLimits("redis://127.0.0.1:6379/0")           # doctest: +SKIP
>>> client = LLMClient("openai", api_keys=[...], rate_limit=RateLimit(...),
...                    shared_limits=limits)                     # doctest: +SKIP

Each key's buckets live in one Redis hash named by the key's fingerprint
(never the key). Every change is one Lua script, so check-and-take is atomic
across processes, and all processes refill by Redis's own clock (``TIME``),
so machines with skewed clocks still agree. Reservations are reconciled with
the real usage exactly as in memory: what was taken is given back (or more
taken) when the call ends.

Each process keeps a local mirror of the buckets, refreshed by every script
call; the pool ranks keys by the mirror and then asks Redis, which has the
last word. Concurrency caps (``max_concurrent``) stay per process.

When Redis cannot be reached, ``on_unavailable`` decides:

* ``"fail"`` (fail closed): raise :class:`SharedLimitsUnavailableError`, and
  send nothing rather than risk going over the limits with other processes;
* ``"local"``: log a warning and go on with this process's own buckets (the
  mirror), trying Redis again every ``recheck_interval`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from llmkit.engine.limiter import Cost, KeyLimiter, Reservation
from llmkit.errors import ConfigurationError, PoolError
from llmkit.providers.base import ServerLimitState

if TYPE_CHECKING:
    from llmkit.config import RateLimit
    from llmkit.engine.clock import Clock

__all__ = ["RedisLimits", "SharedKeyLimiter", "SharedLimitsUnavailableError"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

# KEYS[1]: the key's hash. ARGV: ttl, count, send allowance (s), then per bucket: name,
# capacity, rate, cost. Refills every bucket by Redis time; if each holds its cost, takes them
# all, holding back the refill of the send allowance near a full bucket (see KeyLimiter).
# Returns {ok (1/0), wait, level...} as strings (Lua numbers would be truncated).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local count, allowance = tonumber(ARGV[2]), tonumber(ARGV[3])
local levels, wait = {}, 0
for i = 0, count - 1 do
  local name, cap = ARGV[4 + i * 4], tonumber(ARGV[5 + i * 4])
  local rate, cost = tonumber(ARGV[6 + i * 4]), tonumber(ARGV[7 + i * 4])
  local level = tonumber(redis.call('HGET', KEYS[1], 'l:' .. name))
  local stamp = tonumber(redis.call('HGET', KEYS[1], 't:' .. name))
  if level == nil or stamp == nil then level, stamp = cap, now end
  level = math.min(cap, level + math.max(0, now - stamp) * rate)
  levels[i + 1] = level
  local need = math.min(cost, cap) - level
  if need > 0 then wait = math.max(wait, need / rate) end
end
local ok = 0
if wait <= 0 then ok = 1 end
local out = {tostring(ok), tostring(wait)}
for i = 0, count - 1 do
  local name, cap = ARGV[4 + i * 4], tonumber(ARGV[5 + i * 4])
  local rate, cost = tonumber(ARGV[6 + i * 4]), tonumber(ARGV[7 + i * 4])
  local level = levels[i + 1]
  if ok == 1 then
    local allow = rate * allowance
    local debt = math.max(0, math.min(allow, level + allow - cap))
    level = level - cost - debt
  end
  redis.call('HSET', KEYS[1], 'l:' .. name, tostring(level), 't:' .. name, tostring(now))
  out[#out + 1] = tostring(level)
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return out
"""

# KEYS[1]: the key's hash. ARGV: ttl, count, then per bucket: name, capacity, rate, op, amount.
# op "add": level + amount (a refund, or debt when negative); "cap": min(level, amount).
_ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local count = tonumber(ARGV[2])
local out = {}
for i = 0, count - 1 do
  local name, cap = ARGV[3 + i * 5], tonumber(ARGV[4 + i * 5])
  local rate, op, amount = tonumber(ARGV[5 + i * 5]), ARGV[6 + i * 5], tonumber(ARGV[7 + i * 5])
  local level = tonumber(redis.call('HGET', KEYS[1], 'l:' .. name))
  local stamp = tonumber(redis.call('HGET', KEYS[1], 't:' .. name))
  if level == nil or stamp == nil then level, stamp = cap, now end
  level = math.min(cap, level + math.max(0, now - stamp) * rate)
  if op == 'add' then level = math.min(cap, level + amount) else level = math.min(level, amount) end
  redis.call('HSET', KEYS[1], 'l:' .. name, tostring(level), 't:' .. name, tostring(now))
  out[#out + 1] = tostring(level)
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return out
"""


class SharedLimitsUnavailableError(PoolError):
    """Redis could not be reached and ``on_unavailable="fail"`` keeps the limits closed."""


class RedisLimits:
    """Shared limiter state in Redis. Pass it to ``LLMClient(shared_limits=...)``.

    ``redis`` is a URL (``redis://host:port/db``) or a ready ``redis.Redis``.
    ``prefix`` starts every Redis key this uses. ``on_unavailable``: ``"fail"``
    or ``"local"`` (see the module docs). ``recheck_interval``: seconds
    between attempts to reach Redis again while falling back.
    """

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str = "llmkit:limits:",
        on_unavailable: str = "fail",
        recheck_interval: float = 5.0,
        socket_timeout: float = 1.0,
    ) -> None:
        if on_unavailable not in ("fail", "local"):
            raise ConfigurationError(
                f"on_unavailable must be 'fail' (fail closed) or 'local' (fall back to "
                f"per-process limits), got {on_unavailable!r}."
            )
        import redis as redis_lib

        if isinstance(redis, str):
            self.location = redis.split("@")[-1]  # never show a password
            redis = redis_lib.Redis.from_url(
                redis, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
            )
        else:
            self.location = repr(redis.connection_pool)
        self.redis = redis
        self.prefix = prefix
        self.on_unavailable = on_unavailable
        self.recheck_interval = recheck_interval
        self.errors: tuple[type[BaseException], ...] = (
            redis_lib.exceptions.ConnectionError,
            redis_lib.exceptions.TimeoutError,
        )
        self._take = redis.register_script(_TAKE)
        self._adjust = redis.register_script(_ADJUST)
        self._down_until = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RedisLimits({self.location!r}, on_unavailable={self.on_unavailable!r})"

    def limiter(self, rate_limit: RateLimit, clock: Clock, name: str) -> SharedKeyLimiter:
        return SharedKeyLimiter(rate_limit, clock, self, self.prefix + name)

    # -- calls, with the unavailable policy ---------------------------------------------

    def run(self, script: str, key: str, args: list[Any]) -> list[float] | None:
        """Run a script; None when Redis is down and the policy is to fall back."""
        if self._down_until and time.monotonic() < self._down_until:
            return None
        runner = self._take if script == "take" else self._adjust
        try:
            result = runner(keys=[key], args=args)
        except self.errors as exc:
            self._unavailable(exc)
            return None
        if self._down_until:
            with self._lock:
                self._down_until = 0.0
            logger.warning("Redis at %s is back: limits are shared again", self.location)
        return [float(value) for value in result]

    def _unavailable(self, exc: BaseException) -> None:
        if self.on_unavailable == "fail":
            raise SharedLimitsUnavailableError(
                f"Redis at {self.location} is unreachable ({type(exc).__name__}: {exc}); "
                "on_unavailable='fail' keeps the shared limits closed rather than risk going over "
                "them with other processes. Start Redis, or pass on_unavailable='local' to fall "
                "back to per-process limits."
            ) from exc
        with self._lock:
            first = not self._down_until
            self._down_until = time.monotonic() + self.recheck_interval
        if first:
            logger.warning(
                "Redis at %s is unreachable (%s): falling back to per-process limits "
                "(on_unavailable='local'); trying again every %.0f s",
                self.location, type(exc).__name__, self.recheck_interval,
            )  # fmt: skip
        return None


class SharedKeyLimiter(KeyLimiter):
    """A key's limiter whose buckets live in Redis; the inherited buckets are its mirror."""

    def __init__(self, rate_limit: RateLimit, clock: Clock, shared: RedisLimits, redis_key: str) -> None:
        super().__init__(rate_limit, clock)
        self.shared = shared
        self.redis_key = redis_key
        longest = max((b.capacity / b.rate for b in self.buckets.values()), default=60.0)
        self.ttl = int(longest) + 60  # an idle key's hash expires once it would be full anyway

    def _spec(self) -> list[tuple[str, float, float]]:
        return [(name, b.capacity, b.rate) for name, b in self.buckets.items()]

    def _mirror(self, levels: list[float]) -> None:
        for bucket, level in zip(self.buckets.values(), levels):
            bucket.set_level(level)

    def _try_take(self, cost: Cost) -> float:
        """One atomic check-and-take in Redis: 0.0 when taken, else the seconds to wait."""
        amounts = dict(self._costs_by_name(cost))
        args: list[Any] = [self.ttl, len(self.buckets), self.send_allowance]
        for name, capacity, rate in self._spec():
            args += [name, capacity, rate, amounts[name]]
        result = self.shared.run("take", self.redis_key, args)
        if result is None:  # Redis down, policy "local": the mirror decides
            return super()._try_take(cost)
        ok, wait, levels = result[0], result[1], result[2:]
        self._mirror(levels)
        return 0.0 if ok else max(wait, 1e-3)

    def force_extend(self, reservation: Reservation, cost: Cost) -> None:
        cost = self.clamp(cost)
        self._adjust({name: ("add", -amount) for name, amount in self._costs_by_name(cost)})
        reservation.cost = reservation.cost + cost

    def _costs_by_name(self, cost: Cost) -> list[tuple[str, float]]:
        amounts = {
            "requests": cost.requests,
            "input_tokens": cost.input_tokens,
            "output_tokens": cost.output_tokens,
            "tokens": cost.input_tokens + cost.output_tokens,
        }
        return [(name, float(amounts[name])) for name in self.buckets]

    def _adjust(self, changes: dict[str, tuple[str, float]]) -> None:
        """Apply ``{bucket: (op, amount)}`` in Redis (or to the mirror while it is down)."""
        args: list[Any] = [self.ttl, 0]
        count = 0
        for name, capacity, rate in self._spec():
            if name in changes:
                op, amount = changes[name]
                args += [name, capacity, rate, op, amount]
                count += 1
        if not count:
            return
        args[1] = count
        result = self.shared.run("adjust", self.redis_key, args)
        if result is None:
            for name, (op, amount) in changes.items():
                bucket = self.buckets[name]
                bucket.credit(amount) if op == "add" else bucket.cap(amount)
            return
        for name, level in zip((n for n in self.buckets if n in changes), result):
            self.buckets[name].set_level(level)

    def finish(
        self, reservation: Reservation, *, input_tokens: int | None, output_tokens: int | None
    ) -> None:
        if reservation.finished:
            return
        reservation.finished = True
        self.in_flight -= 1
        cost = reservation.cost
        delta_in = 0 if input_tokens is None else cost.input_tokens - input_tokens
        delta_out = 0 if output_tokens is None else cost.output_tokens - output_tokens
        changes = {}
        if delta_in and "input_tokens" in self.buckets:
            changes["input_tokens"] = ("add", float(delta_in))
        if delta_out and "output_tokens" in self.buckets:
            changes["output_tokens"] = ("add", float(delta_out))
        if (delta_in or delta_out) and "tokens" in self.buckets:
            changes["tokens"] = ("add", float(delta_in + delta_out))
        self._adjust(changes)

    def refund(self, reservation: Reservation) -> None:
        if reservation.finished:
            return
        reservation.finished = True
        self.in_flight -= 1
        self._adjust({name: ("add", amount) for name, amount in self._costs_by_name(reservation.cost)})

    def drain(self) -> None:
        self._adjust({name: ("cap", 0.0) for name in self.buckets})

    def apply_server_state(self, state: ServerLimitState, elapsed: float = 0.0) -> None:
        bounds = self.server_bounds(state, elapsed)
        self._adjust(
            {name: ("cap", bound) for name, bound in bounds.items() if self.buckets[name].level > bound}
        )
