"""Server-side per-key rate limits: which style, and all-or-nothing admission across dimensions.

:class:`ServerLimits` names a key's per-minute limits and how they are enforced
(``style``, one of :data:`~llmkit.testing._fake.enforcement.STYLES`; the strict
``"per_second"`` by default). :class:`RateLimiter` keeps one enforcer
(:mod:`.enforcement`) per limited dimension of each key. A chat request is
admitted when, at once, the request dimension admits 1, the input dimension the
request's input tokens, the output dimension the output reservation
(``max_tokens``, or ``default_max_tokens`` when the request has none, capped to
what the dimension can ever admit at once) and the combined dimension input +
reservation (capped likewise); else nothing is taken. When the reply is done,
the unused part of the output reservation is given back (Anthropic style): to
a fixed window only while the window of admission is still current.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .enforcement import BUCKET, STYLES, Enforcer, make_enforcer

__all__ = ["Admission", "BucketState", "RateLimiter", "ServerLimits"]

REQUESTS, INPUT, OUTPUT, TOKENS = "requests", "input_tokens", "output_tokens", "tokens"
_BUCKET_STYLES = {60.0: "minute_bucket", 1.0: "second_bucket"}


@dataclass(frozen=True)
class ServerLimits:
    """Per-key limits the fake server enforces (each ``None`` = unlimited, no headers).

    ``requests_per_minute``, ``input_tokens_per_minute``,
    ``output_tokens_per_minute``: Anthropic-style separate limits.
    ``tokens_per_minute``: a combined input + output limit (OpenAI's TPM).
    ``style``: how every one of them is enforced (see :mod:`.enforcement`):
    ``"per_second"`` (the default: ``max(1, L / 60)`` per whole second),
    ``"minute_bucket"``, ``"second_bucket"``, ``"leaky"`` (nginx ``limit_req``),
    ``"fixed_minute"`` or ``"sliding_minute"``.
    ``burst_seconds`` (older callers): a continuous bucket holding that many
    seconds of the rate (60 is ``"minute_bucket"``, 1 ``"second_bucket"``);
    give it or ``style``, not both. Must be > 0.
    ``leaky_burst``: nginx's ``burst`` for the request limit of the ``"leaky"``
    style (default 1). ``leaky_token_burst``: the same for token limits, in
    tokens (default ``None``: one second of the limit, ``max(1, L / 60)``).
    ``default_max_tokens``: the output reservation of a request without
    ``max_tokens``.
    """

    requests_per_minute: float | None = None
    input_tokens_per_minute: float | None = None
    output_tokens_per_minute: float | None = None
    tokens_per_minute: float | None = None
    burst_seconds: float | None = None
    default_max_tokens: int = 4096
    style: str | None = None
    leaky_burst: float = 1
    leaky_token_burst: float | None = None

    def __post_init__(self) -> None:
        for name, value in self.per_minute().items():
            if value is not None and value <= 0:
                raise ValueError(f"ServerLimits: the {name} limit must be > 0 or None")
        if self.leaky_burst < 0 or (self.leaky_token_burst is not None and self.leaky_token_burst < 0):
            raise ValueError("ServerLimits: leaky_burst and leaky_token_burst must be >= 0")
        style, seconds = _resolve_style(self.style, self.burst_seconds)
        object.__setattr__(self, "style", style)
        object.__setattr__(self, "burst_seconds", seconds)
        if style == "leaky":
            for name, value in self.per_minute().items():
                if value is not None and value < 0.06:
                    raise ValueError(f"ServerLimits: the leaky style needs {name} >= 0.06/min")

    def per_minute(self) -> dict[str, float | None]:
        """The four limits by dimension name."""
        return {
            REQUESTS: self.requests_per_minute,
            INPUT: self.input_tokens_per_minute,
            OUTPUT: self.output_tokens_per_minute,
            TOKENS: self.tokens_per_minute,
        }

    @property
    def enforcement(self) -> str:
        """The resolved style name (``"bucket"`` for a ``burst_seconds`` other than 1 or 60)."""
        return self.style or STYLES[0]

    def enforcer(self, dimension: str, per_minute: float, origin: float = 0.0) -> Enforcer:
        """A fresh enforcer for ``per_minute`` of ``dimension`` in this style (``origin``: see
        :func:`~.enforcement.make_enforcer`)."""
        burst = self.leaky_burst
        if dimension != REQUESTS:
            burst = self.leaky_token_burst if self.leaky_token_burst is not None else max(
                1.0, per_minute / 60.0)
        return make_enforcer(self.enforcement, per_minute, burst=burst, seconds=self.burst_seconds,
                             origin=origin)  # fmt: skip


def _resolve_style(style: str | None, seconds: float | None) -> tuple[str, float | None]:
    """``(style, burst_seconds)`` from what was given; raise ``ValueError`` on a conflict."""
    if seconds is not None and not seconds > 0:
        raise ValueError(f"ServerLimits.burst_seconds must be > 0, not {seconds!r}")
    if style is not None and style not in STYLES and style != BUCKET:
        raise ValueError(f"ServerLimits: unknown style {style!r}; choose one of {', '.join(STYLES)}")
    implied = {"minute_bucket": 60.0, "second_bucket": 1.0}.get(style or "")
    if seconds is None:
        if style == BUCKET:
            raise ValueError("ServerLimits: style 'bucket' needs burst_seconds=")
        return style or STYLES[0], implied
    named = _BUCKET_STYLES.get(float(seconds), BUCKET)
    if style is not None and style != BUCKET and (implied is None or implied != seconds):
        raise ValueError(
            f"ServerLimits: burst_seconds={seconds:g} is a bucket holding {seconds:g} s, which "
            f"contradicts style={style!r}; give one of them")
    return named, float(seconds)


@dataclass(frozen=True)
class BucketState:
    """One limited dimension as the rate-limit headers show it.

    ``limit``: per minute; ``remaining``: what is admissible now, floored,
    within ``[0, limit]``; ``reset_seconds``: until fully replenished;
    ``reset_at``: the same instant on the server clock.
    """

    limit: float
    remaining: int
    reset_seconds: float
    reset_at: float = 0.0


@dataclass
class Admission:
    """The outcome of :meth:`RateLimiter.admit`.

    On a refusal: ``retry_after`` (seconds until everything fits; for a request
    too large to ever fit, until the refusing dimension is full again),
    ``exceeded`` (the dimension that refused last), ``too_large``, and
    ``requested``/``capacity`` of the exceeded dimension.
    """

    ok: bool
    key: str
    charges: dict[str, float] = field(default_factory=dict)
    input_tokens: int = 0
    retry_after: float = 0.0
    exceeded: str = ""  # the name of the dimension that refused
    too_large: bool = False  # the request can never fit in that dimension
    state: dict[str, BucketState] = field(default_factory=dict)
    at: float = 0.0  # the server clock at admission
    style: str = ""
    requested: float = 0.0
    capacity: float = 0.0


class RateLimiter:
    """Thread-safe enforcers for every key, created on first use; counts per style."""

    def __init__(
        self,
        limits: ServerLimits | None,
        key_limits: Mapping[str, ServerLimits] | None,
        clock: Callable[[], float],
        origin: float = 0.0,
    ) -> None:
        self._default = limits
        self._per_key = dict(key_limits or {})
        self._clock = clock
        self._origin = origin  # the clock's offset to Unix time: windows on the wall's seconds
        self._lock = threading.Lock()
        self._enforcers: dict[str, dict[str, Enforcer]] = {}
        self._admitted: Counter[str] = Counter()
        self._refused: Counter[str] = Counter()

    def limits_for(self, key: str) -> ServerLimits | None:
        return self._per_key.get(key, self._default)

    def _for(self, key: str) -> dict[str, Enforcer]:
        enforcers = self._enforcers.get(key)
        if enforcers is None:
            limits = self.limits_for(key)
            enforcers = {}
            if limits is not None:
                for name, value in limits.per_minute().items():
                    if value is not None:
                        enforcers[name] = limits.enforcer(name, value, self._origin)
            self._enforcers[key] = enforcers
        return enforcers

    def admit(self, key: str, input_tokens: int, max_tokens: int | None) -> Admission:
        """Take one request and its tokens from every dimension of the key, or nothing."""
        limits = self.limits_for(key)
        with self._lock:
            enforcers, now = self._for(key), self._clock()
            if not enforcers or limits is None:
                return Admission(True, key, at=now)
            charges = _charges(enforcers, limits, input_tokens, max_tokens)
            waits = {name: enforcers[name].wait(now, amount) for name, amount in charges.items()}
            if any(waits.values()):
                self._refused[limits.enforcement] += 1
                return self._refusal(key, limits, enforcers, charges, waits, now)
            for name, amount in charges.items():
                enforcers[name].take(now, amount)
            self._admitted[limits.enforcement] += 1
            return Admission(True, key, charges, input_tokens, state=_states(enforcers, now),
                             at=now, style=limits.enforcement)

    @staticmethod
    def _refusal(key: str, limits: ServerLimits, enforcers: dict[str, Enforcer],
                 charges: dict[str, float], waits: dict[str, float], now: float) -> Admission:
        wait, exceeded, too_large = 0.0, "", False
        for name, need in waits.items():
            if not need:
                continue
            if math.isinf(need):
                too_large, need = True, enforcers[name].reset_in(now)
            if need >= wait:
                wait, exceeded = need, name
        return Admission(False, key, {}, 0, wait, exceeded, too_large, _states(enforcers, now),
                         now, limits.enforcement, charges[exceeded], enforcers[exceeded].capacity)

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
            enforcers, now = self._for(admission.key), self._clock()
            for name, amount in amounts.items():
                enforcer = enforcers.get(name)
                if enforcer is not None and amount:  # negative: output beyond the reservation
                    enforcer.give_back(now, amount, admission.at)

    def state(self, key: str) -> dict[str, BucketState]:
        """The key's dimensions as rate-limit headers show them (empty: no limits)."""
        with self._lock:
            return _states(self._for(key), self._clock())

    def counts(self) -> dict[str, dict[str, int]]:
        """``{style: {"admitted": n, "refused": n}}`` since the last reset."""
        with self._lock:
            styles = sorted(set(self._admitted) | set(self._refused))
            return {s: {"admitted": self._admitted[s], "refused": self._refused[s]} for s in styles}

    def reset(self) -> None:
        """Forget all limit state and counts: every key starts afresh."""
        with self._lock:
            self._enforcers.clear()
            self._admitted.clear()
            self._refused.clear()


def _charges(enforcers: Mapping[str, Enforcer], limits: ServerLimits, input_tokens: int,
             max_tokens: int | None) -> dict[str, float]:
    """What the request takes from each limited dimension."""
    reserve = limits.default_max_tokens if max_tokens is None else max_tokens
    demand = {REQUESTS: 1.0, INPUT: float(input_tokens), OUTPUT: float(reserve)}
    demand[TOKENS] = demand[INPUT] + demand[OUTPUT]
    charges: dict[str, float] = {}
    for name, enforcer in enforcers.items():
        amount = demand[name]
        if name in (OUTPUT, TOKENS):  # the output reservation is capped to what can ever fit
            fixed = demand[INPUT] if name == TOKENS else 0.0
            amount = max(fixed, min(amount, enforcer.capacity))
        charges[name] = amount
    return charges


def _states(enforcers: Mapping[str, Enforcer], now: float) -> dict[str, BucketState]:
    return {name: _state(enforcer, now) for name, enforcer in enforcers.items()}


def _state(enforcer: Enforcer, now: float) -> BucketState:
    remaining = min(enforcer.limit, max(0.0, math.floor(enforcer.remaining(now) + 1e-9)))
    reset = enforcer.reset_in(now)
    return BucketState(enforcer.limit, int(remaining), reset, now + reset)
