"""A token bucket with continuous refill, whose level may go into debt. Not locked.

The bucket refills at ``rate`` per second up to ``capacity``. An amount is
admitted once the level holds ``min(amount, capacity)``: a request larger than
the whole bucket waits for a full bucket and then leaves it in debt, which the
refill pays back before anything else is admitted. So the long-run rate holds
for any mix of sizes, and nothing is ever too large to pace.

Every method takes the time (``now``) from its caller and the caller holds the
lock that guards the bucket (the pool's): buckets do no locking of their own.
"""

from __future__ import annotations

__all__ = ["Bucket"]


class Bucket:
    """Level, rate and capacity of one paced limit (see the module docstring)."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, rate: float, capacity: float, now: float, level: float | None = None) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"rate and capacity must be positive, got {rate}, {capacity}")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.level = self.capacity if level is None else min(float(level), self.capacity)
        self.stamp = now

    def __repr__(self) -> str:
        return f"Bucket(level={self.level:.2f}, capacity={self.capacity:g}, rate={self.rate:g}/s)"

    def refill(self, now: float) -> None:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.level = min(self.capacity, self.level + elapsed * self.rate)
            self.stamp = now

    def wait(self, amount: float, now: float, already: float = 0.0) -> float:
        """Seconds until ``amount`` is admitted (0 if now), as if ``already`` had been taken first."""
        self.refill(now)
        needed = min(amount, self.capacity) - (self.level - already)
        return 0.0 if needed <= 1e-9 else needed / self.rate

    def take(self, amount: float, now: float) -> None:
        """Take ``amount`` (the level may go negative: debt)."""
        self.refill(now)
        self.level -= amount

    def give(self, amount: float, now: float) -> None:
        """Give ``amount`` back (negative takes more), never above capacity."""
        self.refill(now)
        self.level = min(self.capacity, self.level + amount)

    def resize(self, rate: float, capacity: float, now: float) -> None:
        """New rate and capacity from now on; the level keeps its value (at most the capacity)."""
        self.refill(now)
        self.rate, self.capacity = float(rate), float(capacity)
        self.level = min(self.level, self.capacity)

    def empty(self, now: float) -> None:
        """Down to zero (debt is kept): the server said there was nothing left."""
        self.refill(now)
        self.level = min(self.level, 0.0)
