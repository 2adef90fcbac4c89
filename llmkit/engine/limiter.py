"""The limits of one key (or one group of keys that a provider counts together).

A :class:`KeyLimiter` holds a :class:`~llmkit.engine.lanes.Lane` per limited
kind (requests, input tokens, output tokens, all tokens per minute) and a
concurrency cap, and adapts how it spends them:

* **Pace.** A limit of ``L`` per minute is sent at ``L / (60 + MAX_BURST)``
  per second, never in a minute's burst: over any minute a key sends at most
  ``L`` (the pacing bucket's burst plus the minute's refill), so a provider
  that enforces its per-minute number over a second, a sliding minute or
  fixed windows is never crossed.
* **Burst, additive increase and multiplicative decrease.** The burst a key
  allows itself starts at one request and grows by ``BURST_STEP`` seconds
  with every success, up to ``MAX_BURST`` (and to what the server's own
  ``remaining`` headers showed it can take); a 429 that the local picture did
  not predict halves it at once and cuts the pace by ``PACE_CUT`` (the pace
  grows back by ``PACE_STEP`` a success), as TCP does with its window.
* **Learning.** With no configured limits, the limits come from the
  provider's headers (the first reply teaches them: until it arrives a key
  sends one request at a time) or, where a provider sends none, from a 429
  that names its limit (Gemini's ``QuotaFailure``).
* **The server's word.** Every reply's headers update each lane's
  :class:`~llmkit.engine.lanes.ServerView`; values outside sane bounds (a
  negative remaining count, one above the limit, a reset of more than a day,
  anything not finite) are not believed.

``RateLimit(burst_seconds=b)`` turns the adaptation off: a plain token bucket
holding ``b`` seconds of the limit, refilled at ``L / 60``.

Not locked: the pool's lock guards every limiter (see :mod:`llmkit.engine`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmkit.engine.lanes import INPUT, LANE_NAMES, OUTPUT, REQUESTS, TOKENS, Lane
from llmkit.errors import RateLimitError

if TYPE_CHECKING:
    from llmkit.config import RateLimit
    from llmkit.engine.shared import SharedLink
    from llmkit.providers.base import ServerLimitState

__all__ = ["Cost", "KeyLimiter", "Reservation"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

MAX_BURST = 1.0  # seconds of the limit a key may spend at once, at most
BURST_STEP = 0.05  # seconds of burst gained per success
PACE_CUT = 0.97  # the pace after a 429 nobody predicted, as a fraction of the pace before
PACE_STEP = 0.002  # pace regained per success (a fraction of the full pace)
PACE_FLOOR = 0.5
_MAX_RESET = 86_400.0  # a reset further away than a day is not believed
_DEFAULT_RESET = 1.0  # seconds a view lasts when the server gave no reset
_INF = math.inf


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

    def amount(self, lane: str) -> float:
        """What this cost takes from the lane named ``lane``."""
        if lane == REQUESTS:
            return float(self.requests)
        if lane == INPUT:
            return float(self.input_tokens)
        if lane == OUTPUT:
            return float(self.output_tokens)
        return float(self.input_tokens + self.output_tokens)


@dataclass(slots=True)
class Reservation:
    """Capacity taken for one call, to be reconciled when it ends (``granted_at``: when it was
    taken; ``sent_at``: when the request left, the same until the sender says so)."""

    cost: Cost
    sent_at: float
    granted_at: float
    finished: bool = False


class KeyLimiter:
    """Lanes, pacing, concurrency and what was learned, for one key or group (see the module)."""

    def __init__(self, rate_limit: RateLimit | None, now: float, name: str = "") -> None:
        self.name = name
        self.max_concurrent = rate_limit.max_concurrent if rate_limit else None
        self.in_flight = 0
        fixed = rate_limit.burst_seconds if rate_limit is not None else None
        self.fixed_burst: float | None = fixed
        self.burst = 0.0 if fixed is None else fixed
        self.pace = 1.0
        self.heard = False  # a reply (with or without limit headers) came back
        self.lanes: dict[str, Lane] = {}
        self.peaks: dict[str, float] = {}  # the most a server's headers said remained, per lane
        self.shared: SharedLink | None = None  # the limiter's twin in Redis, when limits are shared
        self.outbox: list[tuple[Any, ...]] | None = None  # changes for the twin (a list when shared)
        for lane_name, per_minute in _configured(rate_limit).items():
            self.lanes[lane_name] = Lane(lane_name, float(per_minute), configured=True)
        self.configured = bool(self.lanes)
        self._repace(now)

    def __repr__(self) -> str:
        return f"KeyLimiter({self.name or '?'}, in_flight={self.in_flight}, lanes={list(self.lanes)})"

    @property
    def counts_tokens(self) -> bool:
        """Whether any token lane exists (then requests reserve their estimated tokens)."""
        return any(name != REQUESTS for name in self.lanes)

    # -- admission ------------------------------------------------------------------

    def wait_time(self, cost: Cost, now: float, already: Cost | None = None) -> float:
        """Seconds until ``cost`` could be taken (``inf`` while at a concurrency cap),
        as if ``already`` had been taken first."""
        in_flight = self.in_flight + (1 if already is not None else 0)
        if self.max_concurrent is not None and in_flight >= self.max_concurrent:
            return _INF
        if not self.lanes and not self.heard and in_flight >= 1:
            return _INF  # nothing known yet: one request at a time until a reply teaches the limits
        wait = 0.0
        for lane in self.lanes.values():
            earlier = already.amount(lane.name) if already is not None else 0.0
            wait = max(wait, lane.wait(cost.amount(lane.name), now, earlier))
        return wait

    def lanes_wait(self, cost: Cost, now: float) -> float:
        """Seconds until the lanes hold ``cost`` (no concurrency check: for a call already in flight)."""
        cost = self.clamp(cost)
        return max((lane.wait(cost.amount(lane.name), now) for lane in self.lanes.values()), default=0.0)

    def clamp(self, cost: Cost) -> Cost:
        """``cost`` with its output reservation cut to what a minute can ever hold.

        A call asking for ``max_tokens=4096`` on a key allowed 2,000 output
        tokens a minute must still be admissible: the reservation is only an
        estimate, reconciled with the real usage afterwards.
        """
        output = cost.output_tokens
        lane = self.lanes.get(OUTPUT)
        if lane is not None and lane.limit is not None:
            output = min(output, int(lane.limit))
        lane = self.lanes.get(TOKENS)
        if lane is not None and lane.limit is not None:
            output = min(output, max(0, int(lane.limit) - cost.input_tokens))
        return cost if output == cost.output_tokens else Cost(cost.requests, cost.input_tokens, output)

    def too_large(self, cost: Cost) -> str | None:
        """Why ``cost`` could never be admitted by this key (None when it could)."""
        for name in (INPUT, TOKENS, REQUESTS):
            lane = self.lanes.get(name)
            needed = cost.input_tokens if name != REQUESTS else cost.requests
            if lane is not None and lane.limit is not None and needed > lane.limit:
                what = "input tokens" if name != REQUESTS else "requests"
                kind = lane.name.replace("_", " ")
                return f"{needed:,} {what}, more than its {kind} limit of {lane.limit:,.0f} a minute"
        return None

    def take(self, cost: Cost, now: float) -> Reservation:
        """Take ``cost`` (already clamped) from every lane and count one more call in flight."""
        for lane in self.lanes.values():
            lane.take(cost.amount(lane.name), now)
        self.in_flight += 1
        return Reservation(cost, now, now)

    def extend(self, reservation: Reservation, cost: Cost, now: float) -> None:
        """Take ``cost`` more for a call already in flight (a re-ask on the same key)."""
        cost = self.clamp(cost)
        for lane in self.lanes.values():
            lane.take(cost.amount(lane.name), now)
            self._note("add", lane.name, -cost.amount(lane.name))
        reservation.cost = reservation.cost + cost

    # -- reconciliation -----------------------------------------------------------------

    def finish(self, reservation: Reservation, input_tokens: int | None, output_tokens: int | None,
               now: float) -> None:  # fmt: skip
        """Release a reservation, giving back what the call did not use.

        ``None`` for a kind means "unknown": the reservation stands as it was
        (the safe choice when a call failed after the server may have counted it).
        """
        if reservation.finished:
            return
        reservation.finished = True
        self.in_flight -= 1
        cost = reservation.cost
        unused_in = 0 if input_tokens is None else cost.input_tokens - input_tokens
        unused_out = 0 if output_tokens is None else cost.output_tokens - output_tokens
        for name, amount in ((INPUT, unused_in), (OUTPUT, unused_out), (TOKENS, unused_in + unused_out)):
            lane = self.lanes.get(name)
            if lane is not None and amount:
                lane.give(amount, now)
                self._note("add", name, amount)

    def refund(self, reservation: Reservation, now: float, record: bool = True) -> None:
        """Release a reservation the server never counted (it refused the request).

        ``record=False``: the shared twin never had it either (it refused the take).
        """
        if reservation.finished:
            return
        reservation.finished = True
        self.in_flight -= 1
        for lane in self.lanes.values():
            amount = reservation.cost.amount(lane.name)
            lane.give(amount, now)
            if record:
                self._note("add", lane.name, amount)

    # -- what the server says -------------------------------------------------------------

    def observe(self, state: ServerLimitState | None, sent_at: float, now: float,
                admitted: Cost | None = None, granted_at: float | None = None) -> None:  # fmt: skip
        """Learn from a reply's rate-limit headers (``sent_at``: when its request was sent, and
        ``granted_at`` when it was given its key; ``admitted``: what the server took for it, None
        when it refused it)."""
        self.heard = True
        if state is None:
            return
        learned = repace = False
        for name in LANE_NAMES:
            limit = _sane_limit(getattr(state, f"limit_{name}"))
            remaining = getattr(state, f"remaining_{name}")
            lane = self.lanes.get(name)
            if lane is None and limit is not None:
                lane = self.lanes[name] = Lane(name, limit, configured=False)
                learned = True
            elif lane is not None and limit is not None and limit < (lane.limit or _INF):
                lane.limit, learned = limit, True  # the server knows of less than we were told
            if lane is None or not _believable(remaining, lane.limit):
                continue
            reset = _sane_reset(getattr(state, f"reset_{name}"))
            if reset is None:
                reset = _DEFAULT_RESET
            elif state.resets_from_reply:  # a timestamp, read when the reply came: as of the count
                reset += max(0.0, now - sent_at) / 2
            took = admitted.amount(name) if admitted is not None else 0.0
            lane.view.observe(float(remaining), reset, (lane.limit or 0.0) / 60.0, sent_at, now, took,
                              granted_at)  # fmt: skip
            if float(remaining) > self.peaks.get(name, -1.0):
                self.peaks[name] = float(remaining)
                repace = True
            self._note("view", name, lane.view.remaining, reset)
        if learned or repace:
            self._repace(now)
        if learned:
            for lane in self.lanes.values():
                if not lane.configured:
                    self._note("learn", f"limit:{lane.name}", lane.limit)
            logger.info("%s: limits %s", self.name, self.describe())

    def on_success(self, now: float) -> None:
        """The server took a request: grow the burst and the pace back (additive increase)."""
        if self.fixed_burst is not None or not self.lanes:
            return
        burst, pace = min(MAX_BURST, self.burst + BURST_STEP), min(1.0, self.pace + PACE_STEP)
        if (burst, pace) != (self.burst, self.pace):
            self.burst, self.pace = burst, pace
            self._repace(now)
            self._note_pacing()

    def on_rate_limited(self, now: float, error: RateLimitError) -> None:
        """A 429: learn what it teaches, and halve the burst and cut the pace (multiplicative decrease)."""
        if not self.lanes:
            self._learn_from_429(error)
        if self.fixed_burst is None:
            self.burst = self.burst / 2 if self.burst >= 2 * BURST_STEP else 0.0
            self.pace = max(PACE_FLOOR, self.pace * PACE_CUT)
        for lane in self.lanes.values():
            if lane.bucket is not None:
                lane.bucket.empty(now)
                self._note("empty", lane.name)
        self._repace(now)
        self._note_pacing()

    def _learn_from_429(self, error: RateLimitError) -> None:
        """No limits known: take the one the 429 names (Gemini's QuotaFailure does), if any.

        A 429 that names nothing teaches nothing certain: the key rests for its
        Retry-After, and guessing a limit from our own send rate would throttle
        the key for the rest of its life on a server's passing hiccup.
        """
        limit = _sane_limit(getattr(error, "limit", None))
        lane = getattr(error, "limit_kind", None) or REQUESTS
        if limit is None or lane not in LANE_NAMES:
            return
        self.lanes[lane] = Lane(lane, limit, configured=False)
        self._note("learn", f"limit:{lane}", limit)
        logger.info("%s: learned from a 429: %.0f %s a minute", self.name, limit, lane.replace("_", " "))

    # -- sharing (when a twin exists: see llmkit.engine.shared) -------------------------------------

    def _note(self, op: str, name: str, a: Any = "", b: Any = "") -> None:
        if self.outbox is not None:
            self.outbox.append((op, name, a, b))

    def _note_pacing(self) -> None:
        self._note("learn", "burst", self.burst)
        self._note("learn", "pace", self.pace)

    def adopt(self, learned: dict[str, str], now: float) -> None:
        """Take what other processes learned (``limit:<lane>``, ``burst``, ``pace``) from the twin."""
        changed = False
        for field, raw in learned.items():
            try:
                value = float(raw)
            except ValueError:
                continue
            if field.startswith("limit:"):
                name = field[6:]
                lane = self.lanes.get(name)
                if name in LANE_NAMES and (lane is None or not lane.configured) and _sane_limit(value):
                    if lane is None:
                        self.lanes[name] = Lane(name, value, configured=False)
                        changed = True
                    elif lane.limit != value:
                        lane.limit, changed = value, True
            elif field == "burst" and self.fixed_burst is None and 0 <= value <= MAX_BURST:
                changed, self.burst = changed or value != self.burst, value
            elif field == "pace" and PACE_FLOOR <= value <= 1:
                changed, self.pace = changed or value != self.pace, value
        if changed:
            self._repace(now)

    def redis_ttl(self) -> int:
        """Seconds the twin may outlive its last use: until its buckets would be full anyway."""
        longest = max((lane.bucket.capacity / lane.bucket.rate for lane in self.lanes.values()
                       if lane.bucket is not None), default=0.0)  # fmt: skip
        return int(longest) + 120

    # -- pacing ---------------------------------------------------------------------------------

    def _repace(self, now: float) -> None:
        for lane in self.lanes.values():
            if lane.limit is None:
                continue
            if self.fixed_burst is not None:
                rate = lane.limit / 60.0
                capacity = max(1.0, lane.limit * self.fixed_burst / 60.0)
            else:
                rate = self.pace * lane.limit / (60.0 + MAX_BURST)
                capacity = max(1.0, rate * self._burst_for(lane.name, rate))
            lane.pace(rate, capacity, now)

    def _burst_for(self, name: str, rate: float) -> float:
        """The burst in seconds, no more than the server's headers showed to be left at once.

        A server that shows at most one more request left (nginx's ``burst=1``)
        gains nothing from two sent together: the second only makes the third
        wait a whole interval.
        """
        peak = self.peaks.get(name)
        return self.burst if peak is None else min(self.burst, peak / rate)

    # -- status -----------------------------------------------------------------------------------

    def describe(self) -> str:
        """The limits in one line: ``1,200 requests/min (learned), ...``."""
        parts = []
        for lane in self.lanes.values():
            source = "configured" if lane.configured else "learned"
            parts.append(f"{lane.limit:,.0f} {lane.name.replace('_', ' ')}/min ({source})")
        return ", ".join(parts) or "none known"

    def snapshot(self, now: float) -> dict[str, Any]:
        """What status() shows: in flight, each lane's limit, pace, burst, level and the server's word."""
        limits: dict[str, Any] = {}
        for lane in self.lanes.values():
            bucket = lane.bucket
            view = lane.view
            limits[lane.name] = {
                "per_minute": lane.limit,
                "source": "configured" if lane.configured else "learned",
                "pace_per_second": None if bucket is None else round(bucket.rate, 4),
                "burst": None if bucket is None else round(bucket.capacity, 2),
                "level": None if bucket is None else round(lane.level(now) or 0.0, 2),
                "server_remaining": view.remaining if now < view.until else None,
            }
        return {
            "in_flight": self.in_flight,
            "max_concurrent": self.max_concurrent,
            "remaining": {name: info["level"] for name, info in limits.items()},
            "limits": limits,
            "burst_seconds": round(self.burst, 3),
            "pace": round(self.pace, 3),
        }


def _configured(rate_limit: RateLimit | None) -> dict[str, int]:
    if rate_limit is None:
        return {}
    pairs = (
        (REQUESTS, rate_limit.requests_per_minute),
        (INPUT, rate_limit.input_tokens_per_minute),
        (OUTPUT, rate_limit.output_tokens_per_minute),
        (TOKENS, rate_limit.tokens_per_minute),
    )
    return {name: value for name, value in pairs if value}


def _sane_limit(value: Any) -> float | None:
    if isinstance(value, (int, float)) and math.isfinite(value) and 0 < value < 1e12:
        return float(value)
    return None


def _believable(remaining: Any, limit: float | None) -> bool:
    if not isinstance(remaining, (int, float)) or not math.isfinite(remaining) or remaining < 0:
        return False
    return limit is None or remaining <= limit


def _sane_reset(value: Any) -> float | None:
    if isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= _MAX_RESET:
        return float(value)
    return None
