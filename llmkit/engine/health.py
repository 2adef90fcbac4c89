"""The health of one API key: cooldowns, a circuit breaker, and disabling.

States::

    healthy --429--> cooling (until Retry-After) --time--> healthy
    healthy --N consecutive failures--> open (circuit_cooldown) --time--> half-open
    half-open: one probe request; success -> healthy, failure -> open again
    any --401/403--> disabled (stays so; the reason shows in status)

Not locked on its own: the key pool calls it under the pool's lock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["KeyHealth"]


@dataclass
class KeyHealth:
    """Health bookkeeping of one key. Times are the pool clock's monotonic seconds."""

    failure_threshold: int = 5
    circuit_cooldown: float = 30.0
    error_count: int = 0
    success_count: int = 0
    consecutive_failures: int = 0
    cooldown_until: float = 0.0
    circuit_open_until: float | None = None
    probe_in_flight: bool = False
    disabled_reason: str | None = None
    last_error: str | None = None

    @property
    def disabled(self) -> bool:
        return self.disabled_reason is not None

    def ready_at(self, now: float) -> float:
        """When this key may take a request: ``now`` or later, ``inf`` if not foreseeably."""
        if self.disabled_reason is not None:
            return math.inf
        ready = max(now, self.cooldown_until)
        if self.circuit_open_until is not None:
            if self.probe_in_flight:
                return math.inf  # half-open: wait for the probe's verdict
            ready = max(ready, self.circuit_open_until)
        return ready

    def on_acquire(self, now: float) -> None:
        """A request was given this key; past an open circuit's cooldown it is the probe."""
        if self.circuit_open_until is not None and now >= self.circuit_open_until:
            self.probe_in_flight = True

    def on_success(self) -> None:
        self.success_count += 1
        self.consecutive_failures = 0
        self.circuit_open_until = None
        self.probe_in_flight = False

    def on_failure(self, now: float, description: str) -> None:
        """A transient failure (5xx, network). Enough in a row open the circuit."""
        self.error_count += 1
        self.consecutive_failures += 1
        self.last_error = description
        if self.probe_in_flight or self.consecutive_failures >= self.failure_threshold:
            self.circuit_open_until = now + self.circuit_cooldown
        self.probe_in_flight = False

    def on_rate_limited(self, now: float, wait: float, description: str) -> None:
        """A 429: cool down until the server's Retry-After (plus jitter) has passed."""
        self.error_count += 1
        self.last_error = description
        self.cooldown_until = max(self.cooldown_until, now + wait)
        self.probe_in_flight = False

    def on_released_unjudged(self) -> None:
        """A request ended without a verdict on the key (e.g. a bad request)."""
        self.probe_in_flight = False

    def disable(self, reason: str) -> None:
        self.error_count += 1
        self.last_error = reason
        self.disabled_reason = reason
        self.probe_in_flight = False

    def enable(self) -> None:
        """Put a disabled key back in service (after the user fixed it)."""
        self.disabled_reason = None
        self.consecutive_failures = 0
        self.circuit_open_until = None

    def state(self, now: float) -> str:
        if self.disabled_reason is not None:
            return "disabled"
        if self.circuit_open_until is not None:
            return "half-open" if now >= self.circuit_open_until else "open"
        if self.cooldown_until > now:
            return "cooling"
        return "healthy"

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "state": self.state(now),
            "error_count": self.error_count,
            "success_count": self.success_count,
            "consecutive_failures": self.consecutive_failures,
            "cooldown_remaining": round(max(0.0, self.cooldown_until - now), 3),
            "disabled_reason": self.disabled_reason,
            "last_error": self.last_error,
        }
