"""One call's attempts and deadlines, and what comes after each failure: decisions only, no I/O.

The retry loops (:mod:`llmkit.engine.loop`, sync and async alike) ask a
:class:`CallState` what to do after an attempt fails:

* a **429** is a wait, not a failure: it spends no retry; the key rests for
  the server's Retry-After and the call goes back to the pool, which hands it
  another key or waits, until the call's deadline;
* a key taken **out of service** (401, 403, out of credit) spends no retry either:
  the call moves to another key (the pool says when none is left);
* a **5xx, a network error or a timeout** spends one retry and backs off
  exponentially with full jitter, the wait capped at the time left;
* anything else is raised at once.

Deadlines: waiting for keys may last ``acquire_timeout`` in all (its waits add
up over the attempts); ``RetryPolicy.max_time`` bounds the whole call, waits
and attempts together. Both cap every sleep.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmkit.engine.backoff import backoff_delays, is_retryable, rate_limit_cooldown, retry_after_wait
from llmkit.engine.outcomes import disables_key
from llmkit.errors import LLMError, RateLimitError

if TYPE_CHECKING:
    from llmkit.config import RetryPolicy

__all__ = ["CallState", "Decision"]


@dataclass(frozen=True, slots=True)
class Decision:
    """After a failed attempt: give up, or sleep ``sleep`` s first; ``cooldown``: how long its key rests."""

    give_up: bool
    sleep: float = 0.0
    cooldown: float = 0.0


class CallState:
    """Counts one call's attempts, retries, 429s and waits; decides what comes next."""

    def __init__(self, policy: RetryPolicy, acquire_timeout: float | None, now: float,
                 rng: random.Random | None = None) -> None:  # fmt: skip
        self.policy = policy
        self.started = now
        self.rng = rng
        self.tries = 0  # attempts that were sent
        self.retries = 0  # retries spent (5xx, network, timeouts)
        self.rate_limited = 0  # 429s met (they spend no retry)
        self.waited = 0.0  # seconds spent waiting for keys and backing off
        self.wait_budget = math.inf if acquire_timeout is None else acquire_timeout
        self.deadline = math.inf if policy.max_time is None else now + policy.max_time
        self.avoid: int | None = None
        self._delays: Iterator[float] | None = None

    # -- deadlines ----------------------------------------------------------------------

    def acquire_deadline(self, now: float) -> float | None:
        """Until when the next wait for a key may last (None: for ever)."""
        deadline = min(now + max(0.0, self.wait_budget - self.waited), self.deadline)
        return None if deadline == math.inf else deadline

    def time_left(self, now: float) -> float:
        return self.deadline - now

    def wall_deadline(self, now: float) -> float | None:
        """The call's deadline (RetryPolicy.max_time) as ``time.monotonic()``, for the wire; None: none."""
        if self.deadline == math.inf:
            return None
        return time.monotonic() + (self.deadline - now)

    def note(self) -> str:
        """What this call went through, for an error message."""
        parts = [f"waited {self.waited:.1f} s in all"]
        if self.rate_limited:
            parts.append(f"met {self.rate_limited} 429{'s' if self.rate_limited != 1 else ''}")
        if self.retries:
            parts.append(f"retried {self.retries} time{'s' if self.retries != 1 else ''}")
        return ", ".join(parts)

    # -- decisions ------------------------------------------------------------------------

    def after_failure(self, error: LLMError, now: float) -> Decision:
        """What follows a failed attempt (see the module docstring)."""
        if isinstance(error, RateLimitError):
            self.rate_limited += 1
            cooldown = rate_limit_cooldown(error, self.rng, self._next_delay())
            return Decision(give_up=now >= self.deadline, cooldown=cooldown)
        if disables_key(error):
            return Decision(give_up=now >= self.deadline)
        if not is_retryable(error, self.policy) or self.retries >= self.policy.max_retries:
            return Decision(give_up=True)
        left = self.deadline - now
        if left <= 0:
            return Decision(give_up=True)
        self.retries += 1
        wait = self._next_delay()
        if error.retry_after is not None:
            wait = max(wait, retry_after_wait(error.retry_after, self.rng))
        return Decision(give_up=False, sleep=min(wait, left))

    def _next_delay(self) -> float:
        if self._delays is None:
            self._delays = backoff_delays(self.policy, self.rng)
        return next(self._delays)
