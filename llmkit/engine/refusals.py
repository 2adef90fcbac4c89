"""The errors a pool raises when it cannot hand out a key, each saying why and what to do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from llmkit.errors import (
    AuthenticationError,
    LLMError,
    PoolExhaustedError,
    QuotaExceededError,
    RateLimitError,
    RequestTooLargeError,
)

if TYPE_CHECKING:
    from llmkit.engine.slot import KeySlot
    from llmkit.engine.waiters import Waiter

__all__ = ["all_disabled_error", "exhausted_error", "key_states", "too_large_error"]


def _keys(count: int) -> str:
    return "1 key" if count == 1 else f"{count} keys"


def too_large_error(provider: str, reasons: Sequence[str | None]) -> RequestTooLargeError:
    reason = next(r for r in reasons if r)
    return RequestTooLargeError(
        f"This request needs {reason} ({_keys(len(reasons))} of {provider}, none larger): it could "
        "never be sent. Shorten the prompt, split the work, or raise the limit in RateLimit.",
        provider=provider,
    )


def all_disabled_error(provider: str, slots: Sequence[KeySlot]) -> LLMError:
    reasons = "; ".join(f"{s.key_id}: {s.health.disabled_reason}" for s in slots)
    quota = all(s.health.disabled_reason and "QuotaExceeded" in s.health.disabled_reason for s in slots)
    cls: type[LLMError] = QuotaExceededError if quota else AuthenticationError
    fix = "Add credit or quota to the account" if quota else "Check the keys"
    return cls(
        f"All {_keys(len(slots))} for {provider} are disabled ({reasons}). "
        f"{fix}, then build a new client or call enable_key().",
        provider=provider,
    )


def key_states(slots: Sequence[KeySlot], now: float) -> str:
    """Each key's state in a few words: ``key-1a2b3c4d cooling 2.0 s``, ``... at its limit``."""
    parts = []
    for slot in slots:
        health = slot.health
        state = health.state(now)
        if state == "cooling":
            state = f"cooling {health.cooldown_until - now:.1f} s"
        elif state == "disabled":
            state = f"disabled ({health.disabled_reason})"
        elif state == "healthy":
            state = "at its rate or concurrency limit"
        parts.append(f"{slot.key_id} {state}")
    return "; ".join(parts)


def exhausted_error(provider: str, slots: Sequence[KeySlot], waiter: Waiter, now: float,
                    needed: float | None = None) -> LLMError:  # fmt: skip
    """Why ``waiter`` gets no key in time: RateLimitError when the servers' own waits are longer
    than its time left, else PoolExhaustedError; both name each key's state."""
    note = f" ({waiter.note})" if waiter.note else ""
    states = key_states(slots, now)
    in_service = [s for s in slots if not s.health.disabled]
    cooling = [s.health.cooldown_until - now for s in in_service if s.health.state(now) == "cooling"]
    if needed is not None and cooling and len(cooling) == len(in_service):
        retry_after = min(cooling)
        return RateLimitError(
            f"Every key of {provider} was rate limited by the server for {retry_after:.1f} s or more, "
            f"longer than this call's {max(0.0, waiter.deadline - now):.1f} s left{note}: {states}. "
            "Raise acquire_timeout, add keys, or send fewer requests.",
            provider=provider, retry_after=retry_after,
        )  # fmt: skip
    if needed is not None:
        left = waiter.deadline - now
        why = f"needs {needed:.1f} s more of the keys' limits, more than its {left:.1f} s left"
    else:
        why = "ran out of time waiting"
    return PoolExhaustedError(
        f"No key of {provider} could take this call: it {why}{note}. {_keys(len(slots))}: {states}. "
        "Raise acquire_timeout, add keys, or send fewer requests at once.",
        provider=provider,
    )
