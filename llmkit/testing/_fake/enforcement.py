"""How a provider enforces one per-minute limit: pure, clock-injected enforcers, one per style.

An :class:`Enforcer` holds the state of one limited dimension (requests, input
tokens, output tokens or combined tokens) of one key. It never reads a clock:
every call takes ``now``, the server clock's reading in seconds, so a test can
drive thousands of simulated requests on a fake clock, exactly and fast, with
no server::

    enforcer = make_enforcer("per_second", 1200)      # 20 per whole second
    enforcer.admit(1000.0, 1)      # 0.0: taken
    enforcer.wait(1000.5, 20)      # 0.5: 20 more fit when the next second starts
    enforcer.remaining(1000.5)     # 19.0
    enforcer.reset_in(1000.5)      # 0.5: fully replenished at 1001.0

The interface (every amount in the dimension's unit, every time in seconds):

* ``admit(now, amount) -> float``: take ``amount`` and return ``0.0``, or take
  nothing and return how long until it could be taken (``math.inf``: never,
  it is larger than :attr:`~Enforcer.capacity`). A refusal changes nothing.
* ``wait(now, amount) -> float``: the same answer without taking anything.
* ``take(now, amount)``: take unconditionally (after a ``wait`` of 0).
* ``give_back(now, amount, taken_at=None)``: return part of what was taken at
  ``taken_at`` (default ``now``), e.g. the unused part of an output-token
  reservation; a negative amount charges more (output beyond the reservation).
* ``remaining(now) -> float``: how much is admissible now (never below 0).
* ``reset_in(now) -> float``: seconds until fully replenished (0 when full).
* ``limit``: the per-minute number a dashboard shows; ``capacity``: the most
  one admission can take; ``style``: the style's name.

The styles (:data:`STYLES`), for a limit of ``L`` per minute:

* ``"per_second"`` (the fake server's default): fixed windows of 1 s aligned
  on whole seconds of the server clock, each admitting ``max(1, L / 60)``.
* ``"minute_bucket"``: a continuous token bucket holding ``L`` (a whole
  minute), refilling ``L / 60`` per second, starting full.
* ``"second_bucket"``: the same bucket holding ``L / 60`` (one second). A
  bucket always holds at least 1, so that a limit below 60/min still admits
  one request at a time.
* ``"leaky"``: nginx ``limit_req rate=L/60r/s burst=B nodelay`` as nginx
  computes it, in integer milliseconds and thousandths of a request: the excess
  drains at the rate, a request is refused when the excess after adding it would
  pass ``burst``, a refusal changes nothing, a key's first request finds no
  excess. An amount of ``n`` units counts as ``n`` requests arriving at once,
  all admitted or none (nginx counts only requests; this is the same rule per
  token). nginx's expiry of idle entries (memory management) is not modelled.
* ``"fixed_minute"``: a fixed window of ``L`` per minute, aligned on whole
  minutes of the server clock.
* ``"sliding_minute"``: a sliding 60 s log: at most ``L`` in any 60 s; what
  was taken at ``t`` counts until ``t + 60``.

Window boundaries: a time within 1 ns before a boundary counts as after it, so
that waiting exactly the returned time on a float clock always lands in the
next window. Likewise amounts within a billionth (relative) of what is left
fit. Enforcers are not thread-safe: the server's ``RateLimiter`` holds a lock.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque

__all__ = [
    "STYLES",
    "Enforcer",
    "FixedWindow",
    "NginxLeakyBucket",
    "SlidingLog",
    "TokenBucket",
    "make_enforcer",
]

STYLES: tuple[str, ...] = (
    "per_second",
    "minute_bucket",
    "second_bucket",
    "leaky",
    "fixed_minute",
    "sliding_minute",
)
"""The enforcement styles, the default first."""

BUCKET = "bucket"
"""The style of a continuous bucket holding ``seconds`` of its rate (``ServerLimits.burst_seconds``)."""

_TIME_EPS = 1e-9  # seconds: float noise around window boundaries


def _slack(scale: float) -> float:
    """The float noise tolerated when comparing amounts of size ``scale``."""
    return 1e-9 * max(1.0, scale)


class Enforcer(ABC):
    """One limited dimension of one key, enforced in one style (see the module doc)."""

    __slots__ = ()

    style: str
    limit: float
    capacity: float

    @abstractmethod
    def wait(self, now: float, amount: float) -> float:
        """0.0 if ``amount`` could be taken now, else the seconds until it could (inf: never)."""

    @abstractmethod
    def take(self, now: float, amount: float) -> None:
        """Take ``amount`` now, whatever is left (the caller checked :meth:`wait`)."""

    @abstractmethod
    def give_back(self, now: float, amount: float, taken_at: float | None = None) -> None:
        """Return ``amount`` of what was taken at ``taken_at`` (negative: charge more now)."""

    @abstractmethod
    def remaining(self, now: float) -> float:
        """How much could be taken now (>= 0)."""

    @abstractmethod
    def reset_in(self, now: float) -> float:
        """Seconds until fully replenished (0.0 when it is)."""

    def admit(self, now: float, amount: float) -> float:
        """Take ``amount`` and return 0.0, or return the wait and take nothing."""
        wait = self.wait(now, amount)
        if wait == 0.0:
            self.take(now, amount)
        return wait

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.style} {self.limit:g}/min>"


class TokenBucket(Enforcer):
    """A continuous token bucket: holds ``limit * seconds / 60`` (at least 1), refills
    ``limit / 60`` a second, starts full."""

    __slots__ = ("capacity", "level", "limit", "rate", "stamp", "style")

    def __init__(self, per_minute: float, seconds: float, style: str = BUCKET) -> None:
        if per_minute <= 0 or seconds <= 0:
            raise ValueError("a token bucket needs a limit > 0 and seconds > 0")
        self.style = style
        self.limit = float(per_minute)
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute * seconds / 60.0)
        self.level = self.capacity
        self.stamp: float | None = None

    def _refill(self, now: float) -> None:
        if self.stamp is None:
            self.stamp = now
        elif now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait(self, now: float, amount: float) -> float:
        self._refill(now)
        slack = _slack(self.capacity)
        if amount > self.capacity + slack:
            return math.inf
        if self.level + slack >= amount:
            return 0.0
        return (amount - self.level) / self.rate

    def take(self, now: float, amount: float) -> None:
        self._refill(now)
        self.level -= amount

    def give_back(self, now: float, amount: float, taken_at: float | None = None) -> None:
        self._refill(now)
        self.level = min(self.capacity, self.level + amount)

    def remaining(self, now: float) -> float:
        self._refill(now)
        return max(0.0, self.level)

    def reset_in(self, now: float) -> float:
        self._refill(now)
        return max(0.0, (self.capacity - self.level) / self.rate)


class FixedWindow(Enforcer):
    """Fixed windows of ``window`` seconds, each admitting ``capacity``; what a window did not
    use is lost. Windows start on the multiples of ``window`` of ``clock + origin``: with the
    server's offset to Unix time as ``origin`` they are the wall clock's whole seconds and
    minutes, as a provider's windows are, so a reset named to the whole second is exact."""

    __slots__ = ("capacity", "index", "limit", "origin", "style", "used", "window")

    def __init__(self, per_minute: float, window: float, capacity: float, style: str,
                 origin: float = 0.0) -> None:  # fmt: skip
        if per_minute <= 0 or window <= 0 or capacity <= 0:
            raise ValueError("a fixed window needs a limit, a length and a capacity > 0")
        self.style = style
        self.limit = float(per_minute)
        self.window = float(window)
        self.capacity = float(capacity)
        self.origin = float(origin) % self.window
        self.index: int | None = None
        self.used = 0.0

    def _index(self, now: float) -> int:
        return math.floor((now + self.origin + _TIME_EPS) / self.window)

    def _roll(self, now: float) -> int:
        index = self._index(now)
        if index != self.index:
            self.index, self.used = index, 0.0
        return index

    def _next_start(self, index: int, now: float) -> float:
        return max(0.0, (index + 1) * self.window - self.origin - now)

    def wait(self, now: float, amount: float) -> float:
        index = self._roll(now)
        slack = _slack(self.capacity)
        if amount > self.capacity + slack:
            return math.inf
        if self.used + amount <= self.capacity + slack:
            return 0.0
        return self._next_start(index, now)

    def take(self, now: float, amount: float) -> None:
        self._roll(now)
        self.used += amount

    def give_back(self, now: float, amount: float, taken_at: float | None = None) -> None:
        index = self._roll(now)
        if amount < 0:  # produced now: charged to the current window
            self.used -= amount
        elif self._index(now if taken_at is None else taken_at) == index:
            self.used = max(0.0, self.used - amount)

    def remaining(self, now: float) -> float:
        self._roll(now)
        return max(0.0, self.capacity - self.used)

    def reset_in(self, now: float) -> float:
        index = self._roll(now)
        return self._next_start(index, now) if self.used > 0 else 0.0


class SlidingLog(Enforcer):
    """At most ``limit`` in any ``window`` seconds: a log of what was taken when."""

    __slots__ = ("capacity", "entries", "limit", "style", "total", "window")

    def __init__(self, per_minute: float, window: float = 60.0, style: str = "sliding_minute") -> None:
        if per_minute <= 0 or window <= 0:
            raise ValueError("a sliding log needs a limit > 0 and a window > 0")
        self.style = style
        self.limit = float(per_minute)
        self.capacity = float(per_minute)
        self.window = float(window)
        self.entries: deque[list[float]] = deque()  # [time, amount], oldest first
        self.total = 0.0

    def _expire(self, now: float) -> None:
        entries = self.entries
        while entries and entries[0][0] + self.window <= now + _TIME_EPS:
            self.total -= entries.popleft()[1]
        if not entries:
            self.total = 0.0  # no float drift survives an empty log

    def wait(self, now: float, amount: float) -> float:
        self._expire(now)
        slack = _slack(self.capacity)
        if amount > self.capacity + slack:
            return math.inf
        excess = self.total + amount - self.capacity
        if excess <= slack:
            return 0.0
        freed = 0.0
        for when, taken in self.entries:
            freed += taken
            if freed + slack >= excess:
                return max(0.0, when + self.window - now)
        return math.inf  # unreachable: the whole log frees total >= excess

    def take(self, now: float, amount: float) -> None:
        self._expire(now)
        if self.entries and self.entries[-1][0] == now:
            self.entries[-1][1] += amount
        else:
            self.entries.append([now, amount])
        self.total += amount

    def give_back(self, now: float, amount: float, taken_at: float | None = None) -> None:
        self._expire(now)
        if amount < 0:
            self.take(now, -amount)
            return
        when = now if taken_at is None else taken_at
        entries = self.entries
        for index in range(len(entries) - 1, -1, -1):
            entry = entries[index]
            if entry[0] < when:
                break
            if entry[0] == when:
                back = min(amount, entry[1])
                entry[1] -= back
                self.total -= back
                if entry[1] <= 0:
                    del entries[index]
                break
        if not entries:
            self.total = 0.0

    def remaining(self, now: float) -> float:
        self._expire(now)
        return max(0.0, self.capacity - self.total)

    def reset_in(self, now: float) -> float:
        self._expire(now)
        if not self.entries:
            return 0.0
        return max(0.0, self.entries[-1][0] + self.window - now)


def _to_ms(seconds: float) -> int:
    """The clock's reading in whole milliseconds, as nginx's ``ngx_current_msec``."""
    return math.floor(seconds * 1000.0 + 1e-6)


def _to_milli(amount: float) -> int:
    """An amount in thousandths of a unit, nginx's fixed point."""
    return round(amount * 1000)


class NginxLeakyBucket(Enforcer):
    """nginx ``limit_req`` (``nodelay``), in its integer arithmetic.

    nginx keeps ``excess`` (thousandths of a request) and ``last`` (ms) per key;
    on a request ``ms = now - last`` and ``excess' = max(0, excess - rate * ms /
    1000 + 1000)`` (``rate`` in thousandths per second, integer division); over
    ``burst * 1000`` it refuses and keeps its state; else it stores ``excess'``
    and, when ``ms`` is not 0, ``last = now``. Held here as the equivalent
    ``level = (burst + 1) * 1000 - 1000 - excess`` (thousandths still
    admissible), which also takes amounts other than one request and give-backs.
    """

    __slots__ = ("burst", "capacity", "full", "last", "level", "limit", "rate", "style")

    def __init__(self, per_minute: float, burst: float = 1, style: str = "leaky") -> None:
        rate = math.floor(per_minute * 1000 / 60)  # nginx: rate=Lr/m -> L * 1000 / 60
        if rate < 1:
            raise ValueError(f"a leaky bucket needs a limit of at least 0.06/min, not {per_minute:g}")
        if burst < 0:
            raise ValueError(f"the leaky burst must be >= 0, not {burst:g}")
        self.style = style
        self.limit = float(per_minute)
        self.rate = rate
        self.burst = float(burst)
        self.full = _to_milli(burst) + 1000
        self.capacity = self.full / 1000
        self.level = self.full
        self.last: int | None = None  # None: no request yet (nginx has no entry)

    def _elapsed(self, now_ms: int) -> int:
        assert self.last is not None
        ms = now_ms - self.last
        if ms < -60000:  # nginx's guard against a clock that jumped back
            return 1
        return max(0, ms)

    def _level(self, now_ms: int) -> int:
        if self.last is None:
            return self.full
        return min(self.full, self.level + self.rate * self._elapsed(now_ms) // 1000)

    def _at(self, needed: int) -> float:
        """The time (s) at which the level, drained since ``last``, reaches ``needed``."""
        assert self.last is not None
        ms = -((self.level - needed) * 1000 // self.rate)  # ceil((needed - level) * 1000 / rate)
        return (self.last + ms) / 1000.0

    def wait(self, now: float, amount: float) -> float:
        needed = _to_milli(amount)
        if needed > self.full:
            return math.inf
        if self._level(_to_ms(now)) >= needed:
            return 0.0
        return max(0.0, self._at(needed) - now)

    def take(self, now: float, amount: float) -> None:
        now_ms = _to_ms(now)
        level = self._level(now_ms)
        if self.last is None or self._elapsed(now_ms):
            self.last = now_ms
        self.level = level - _to_milli(amount)

    def give_back(self, now: float, amount: float, taken_at: float | None = None) -> None:
        back = _to_milli(amount)
        if self.last is None:  # nothing taken yet: only a charge changes anything
            if back < 0:
                self.last, self.level = _to_ms(now), self.full + back
            return
        # min(full, min(full, level + drained) + back) == min(full, level + back + drained)
        self.level = min(self.full, self.level + back)

    def remaining(self, now: float) -> float:
        return max(0, self._level(_to_ms(now))) / 1000.0

    def reset_in(self, now: float) -> float:
        if self._level(_to_ms(now)) >= self.full:
            return 0.0
        return max(0.0, self._at(self.full) - now)


def make_enforcer(
    style: str,
    per_minute: float,
    *,
    burst: float | None = None,
    seconds: float | None = None,
    origin: float = 0.0,
) -> Enforcer:
    """A fresh enforcer of ``per_minute`` in ``style`` (one of :data:`STYLES`).

    ``burst``: the ``"leaky"`` style's nginx ``burst`` in units of the dimension
    (default 1). ``seconds``: what a ``"bucket"`` holds, in seconds of its rate
    (the internal style behind ``ServerLimits(burst_seconds=...)``). ``origin``: where
    fixed windows start, as an offset of the clock (the server passes its offset to Unix
    time, so its windows are the wall clock's seconds and minutes).
    """
    if per_minute <= 0:
        raise ValueError(f"a limit must be > 0 per minute, not {per_minute!r}")
    if style == "per_second":
        return FixedWindow(per_minute, 1.0, max(1.0, per_minute / 60.0), style, origin)
    if style == "fixed_minute":
        return FixedWindow(per_minute, 60.0, per_minute, style, origin)
    if style == "minute_bucket":
        return TokenBucket(per_minute, 60.0, style)
    if style == "second_bucket":
        return TokenBucket(per_minute, 1.0, style)
    if style == "sliding_minute":
        return SlidingLog(per_minute, 60.0, style)
    if style == "leaky":
        return NginxLeakyBucket(per_minute, 1 if burst is None else burst, style)
    if style == BUCKET and seconds is not None:
        return TokenBucket(per_minute, seconds, style)
    raise ValueError(f"unknown enforcement style {style!r}; choose one of {', '.join(STYLES)}")
