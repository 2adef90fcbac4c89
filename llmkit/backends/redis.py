"""Rate limits shared through Redis by every process and machine using the same keys.

>>> limits = RedisLimits("redis://127.0.0.1:6379/0")           # doctest: +SKIP
>>> client = LLMClient("openai", api_keys=[...], rate_limit=RateLimit(...),
...                    shared_limits=limits)                     # doctest: +SKIP

Each key's (or limit group's) state lives in one Redis hash named by its
fingerprint (never the key): every lane's pacing bucket, the server's last
word on it (what remained, until when) and what was learned (limits from
headers, the adaptive burst and pace). Every change is one Lua script, so
check-and-take is atomic across processes, and all processes refill by
Redis's own clock (``TIME``), so machines with skewed clocks still agree.

The engine's lock rule holds here: Redis is never called under the pool's
lock. The pool decides from its local mirror of this state under its lock,
then this module confirms the take in Redis outside it (a refusal gives the
capacity back locally and the call asks again); the books' changes after a
call (refunds, reconciliation, the server's word, what was learned) are
queued under the lock and sent outside it. A change that cannot be sent is
logged and kept for the next send: accounting that fails never replaces a reply.

When Redis cannot be reached, ``on_unavailable`` decides, before anything is sent:

* ``"fail"`` (fail closed): raise :class:`SharedLimitsUnavailableError`, and
  send nothing rather than risk going over the limits with other processes;
* ``"local"``: log a warning and go on with this process's own limits (the
  mirror), trying Redis again every ``recheck_interval`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from llmkit.errors import ConfigurationError, PoolError

if TYPE_CHECKING:
    from llmkit.config import RateLimit
    from llmkit.engine.limiter import KeyLimiter
    from llmkit.engine.pool import KeyPool
    from llmkit.engine.slot import Lease

__all__ = ["RedisLimits", "RedisLink", "SharedLimitsUnavailableError"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

MAX_QUEUED_CHANGES = 10_000  # changes kept while Redis is away; older ones are dropped (logged)

# Both scripts start with the lanes: ARGV[1] ttl, ARGV[2] lane count, then per lane name, capacity,
# rate. Each lane's bucket refills by Redis time. Both return {ok, wait, then per lane: level,
# view remaining ("" if none), seconds the view still holds} and the learned fields, as strings.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local count = tonumber(ARGV[2])
local lanes = {}
for i = 0, count - 1 do
  local name, cap, rate = ARGV[3 + i * 3], tonumber(ARGV[4 + i * 3]), tonumber(ARGV[5 + i * 3])
  local level = tonumber(redis.call('HGET', KEYS[1], 'l:' .. name))
  local stamp = tonumber(redis.call('HGET', KEYS[1], 't:' .. name))
  if level == nil or stamp == nil then level, stamp = cap, now end
  level = math.min(cap, level + math.max(0, now - stamp) * rate)
  local view = tonumber(redis.call('HGET', KEYS[1], 'v:' .. name))
  local untl = tonumber(redis.call('HGET', KEYS[1], 'u:' .. name)) or 0
  if untl <= now then view = nil end
  lanes[i + 1] = {name = name, cap = cap, rate = rate, level = level, view = view, untl = untl}
end
local pos = 3 + count * 3
"""

_FINISH = """
local out = {tostring(ok), tostring(wait)}
for i, lane in ipairs(lanes) do
  redis.call('HSET', KEYS[1], 'l:' .. lane.name, tostring(lane.level), 't:' .. lane.name, tostring(now))
  if lane.view ~= nil then
    redis.call('HSET', KEYS[1], 'v:' .. lane.name, tostring(lane.view),
               'u:' .. lane.name, tostring(lane.untl))
    out[#out + 1] = tostring(lane.level)
    out[#out + 1] = tostring(lane.view)
    out[#out + 1] = tostring(lane.untl - now)
  else
    out[#out + 1] = tostring(lane.level)
    out[#out + 1] = ''
    out[#out + 1] = '0'
  end
end
local learned = redis.call('HGETALL', KEYS[1])
for i = 1, #learned, 2 do
  if string.sub(learned[i], 1, 2) == 'k:' then
    out[#out + 1] = learned[i]
    out[#out + 1] = learned[i + 1]
  end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return out
"""

# TAKE: ARGV after the lanes: one amount per lane. Takes them all if every lane holds its amount
# (its bucket min(amount, cap), its view the amount), else takes nothing and says how long to wait.
_TAKE = _PRELUDE + """
local wait = 0
for i, lane in ipairs(lanes) do
  local amount = tonumber(ARGV[pos + i - 1])
  lane.amount = amount
  local need = math.min(amount, lane.cap) - lane.level
  if amount > 0 and need > 1e-9 then wait = math.max(wait, need / lane.rate) end
  if lane.view ~= nil and lane.view < amount - 1e-9 then wait = math.max(wait, lane.untl - now) end
end
local ok = 0
if wait <= 0 then
  ok = 1
  for i, lane in ipairs(lanes) do
    lane.level = lane.level - lane.amount
    if lane.view ~= nil then lane.view = lane.view - lane.amount end
  end
end
""" + _FINISH

# ADJUST: ARGV after the lanes: changes as (op, lane or field, a, b): "add" amount to a lane's
# bucket (never above capacity; negative: debt), "empty" a lane's bucket (debt kept), "view"
# (remaining, seconds it holds), "learn" a field's value (k:... fields, read back by every process).
_ADJUST = _PRELUDE + """
local ok, wait = 1, 0
local index = {}
for i, lane in ipairs(lanes) do index[lane.name] = lane end
while pos <= #ARGV do
  local op, name, a, b = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3]
  local lane = index[name]
  if op == 'learn' then
    redis.call('HSET', KEYS[1], 'k:' .. name, a)
  elseif lane ~= nil and op == 'add' then
    lane.level = math.min(lane.cap, lane.level + tonumber(a))
  elseif lane ~= nil and op == 'empty' then
    lane.level = math.min(lane.level, 0)
  elseif lane ~= nil and op == 'view' then
    lane.view, lane.untl = tonumber(a), now + tonumber(b)
  end
  pos = pos + 4
end
""" + _FINISH


class SharedLimitsUnavailableError(PoolError):
    """Redis could not be reached and ``on_unavailable="fail"`` keeps the limits closed."""


class RedisLimits:
    """Shared limiter state in Redis. Pass it to ``LLMClient(shared_limits=...)``.

    ``redis`` is a URL (``redis://host:port/db``) or a ready ``redis.Redis``.
    ``prefix`` starts every Redis key this uses. ``on_unavailable``: ``"fail"``
    or ``"local"`` (see the module docs). ``recheck_interval``: seconds
    between attempts to reach Redis again while falling back.
    ``socket_timeout``: seconds one Redis call may take.
    """

    def __init__(self, redis: Any, *, prefix: str = "llmkit:limits:", on_unavailable: str = "fail",
                 recheck_interval: float = 5.0, socket_timeout: float = 1.0) -> None:  # fmt: skip
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
        self.errors: tuple[type[BaseException], ...] = (redis_lib.exceptions.RedisError, OSError)
        self._scripts = {"take": redis.register_script(_TAKE), "adjust": redis.register_script(_ADJUST)}
        self._down_until = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RedisLimits({self.location!r}, on_unavailable={self.on_unavailable!r})"

    def link(self, name: str, rate_limit: RateLimit | None) -> RedisLink:
        return RedisLink(self, self.prefix + name)

    # -- calls, with the unavailable policy ---------------------------------------------

    @property
    def down(self) -> bool:
        return bool(self._down_until) and time.monotonic() < self._down_until

    def run(self, script: str, key: str, args: list[Any]) -> list[str] | None:
        """Run a script; None when Redis is away (and the policy is to go on without it).

        Raises SharedLimitsUnavailableError when Redis is away and the policy is "fail".
        """
        if self.down:
            if self.on_unavailable == "fail":
                raise self._unavailable_error(None)
            return None
        try:
            result = self._scripts[script](keys=[key], args=args)
        except self.errors as exc:
            self._mark_down(exc)
            if self.on_unavailable == "fail":
                raise self._unavailable_error(exc) from exc
            return None
        if self._down_until:
            with self._lock:
                self._down_until = 0.0
            logger.warning("Redis at %s is back: limits are shared again", self.location)
        return [value.decode() if isinstance(value, bytes) else str(value) for value in result]

    def _mark_down(self, exc: BaseException) -> None:
        with self._lock:
            first = not self._down_until
            self._down_until = time.monotonic() + self.recheck_interval
        if first:
            logger.warning(
                "Redis at %s is unreachable (%s): %s; trying again every %.0f s",
                self.location, type(exc).__name__,
                "falling back to per-process limits (on_unavailable='local')"
                if self.on_unavailable == "local" else "no call is sent meanwhile (on_unavailable='fail')",
                self.recheck_interval,
            )  # fmt: skip

    def _unavailable_error(self, exc: BaseException | None) -> SharedLimitsUnavailableError:
        what = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
        return SharedLimitsUnavailableError(
            f"Redis at {self.location} is unreachable{what}; on_unavailable='fail' keeps the shared "
            "limits closed rather than risk going over them with other processes. Start Redis, "
            "or pass on_unavailable='local' to fall back to per-process limits."
        )


class RedisLink:
    """One limiter's twin in Redis (see the module): confirms takes, sends the books' changes."""

    def __init__(self, limits: RedisLimits, redis_key: str) -> None:
        self.limits = limits
        self.redis_key = redis_key
        self._dropped = 0

    def __repr__(self) -> str:
        return f"RedisLink({self.redis_key!r})"

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock (redis-py itself reconnects in a new process)."""
        self.limits._lock = threading.Lock()

    def confirm(self, pool: KeyPool, lease: Lease) -> bool:
        limiter = lease.slot.limiter
        with pool._lock:
            lanes = _lane_args(limiter)
            amounts = [lease.reservation.cost.amount(name) for name in _lane_names(limiter)]
        try:
            result = self.limits.run("take", self.redis_key, [*lanes, *amounts])
        except SharedLimitsUnavailableError:
            pool.give_back(lease, shared=False)
            raise
        if result is None:  # Redis away, policy "local": the local decision stands
            return True
        if result[0] != "1":  # refused: give the local take back first, then mirror Redis
            pool.give_back(lease, shared=False)
        with pool._lock:
            _mirror(limiter, result, pool.clock.now())
        return result[0] == "1"

    def push(self, pool: KeyPool, limiter: KeyLimiter) -> None:
        with pool._lock:
            if not limiter.outbox:
                return
            changes, limiter.outbox = _coalesced(limiter.outbox), []
            lanes = _lane_args(limiter)
        args = [*lanes]
        for change in changes:
            args += [str(part) for part in change]
        try:
            result = self.limits.run("adjust", self.redis_key, args)
        except Exception:  # whatever Redis says: the changes are kept, the reply is not touched
            result = None
            logger.warning("llmkit could not send the limits' changes for %s to Redis (kept for "
                           "the next try)", self.redis_key, exc_info=True)  # fmt: skip
        with pool._lock:
            if result is None:
                self._keep(limiter, changes)
            else:
                _mirror(limiter, result, pool.clock.now())

    def _keep(self, limiter: KeyLimiter, changes: list[tuple[Any, ...]]) -> None:
        """Redis is away: keep the changes for the next push (the oldest dropped past a bound)."""
        outbox = limiter.outbox
        if outbox is None:
            return
        outbox[:0] = changes
        excess = len(outbox) - MAX_QUEUED_CHANGES
        if excess > 0:
            del outbox[:excess]
            self._dropped += excess
            logger.warning("dropped %d queued limit changes for %s (Redis away)", excess, self.redis_key)


def _lane_names(limiter: KeyLimiter) -> list[str]:
    return [name for name, lane in limiter.lanes.items() if lane.bucket is not None]


def _lane_args(limiter: KeyLimiter) -> list[Any]:
    args: list[Any] = [limiter.redis_ttl(), 0]
    for name in _lane_names(limiter):
        bucket = limiter.lanes[name].bucket
        assert bucket is not None
        args += [name, bucket.capacity, bucket.rate]
        args[1] += 1
    return args


def _coalesced(changes: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The changes with repeated "learn" and "view" ones reduced to their last value."""
    last: dict[tuple[str, str], int] = {}
    for index, change in enumerate(changes):
        if change[0] in ("learn", "view"):
            last[(change[0], change[1])] = index
    return [c for i, c in enumerate(changes) if c[0] not in ("learn", "view") or last[(c[0], c[1])] == i]


def _mirror(limiter: KeyLimiter, result: list[str], now: float) -> None:
    """Copy Redis's answer into the local limiter (the caller holds the pool's lock)."""
    names = _lane_names(limiter)
    values = result[2:]
    for i, name in enumerate(names):
        level, view, holds = values[3 * i : 3 * i + 3]
        lane = limiter.lanes[name]
        assert lane.bucket is not None
        lane.bucket.level, lane.bucket.stamp = min(float(level), lane.bucket.capacity), now
        if view:
            lane.view.remaining, lane.view.until = float(view), now + float(holds)
    learned = values[3 * len(names) :]
    limiter.adopt({learned[i][2:]: learned[i + 1] for i in range(0, len(learned) - 1, 2)}, now)
