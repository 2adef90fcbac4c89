"""What is worth retrying and how long to wait (Retry-After is read in ``providers._headers``).

The delays come from ``backoff``'s wait generators (exponential, capped) and
its full jitter. A server's Retry-After is a floor, never shortened by jitter:
:func:`retry_after_wait` only ever adds to it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from llmkit.errors import LLMError, MalformedResponseError

if TYPE_CHECKING:
    from llmkit.config import RetryPolicy

__all__ = [
    "backoff_delays",
    "is_retryable",
    "rate_limit_cooldown",
    "retry_after_wait",
]

# Jitter added on top of a server's Retry-After: at most this fraction of it,
# and never more than RETRY_AFTER_JITTER_CAP seconds.
RETRY_AFTER_JITTER = 0.1
RETRY_AFTER_JITTER_CAP = 1.0


def retry_after_wait(retry_after: float, rng: random.Random | None = None) -> float:
    """The wait for a server's Retry-After: the value itself plus a little jitter, never less."""
    spread = min(retry_after * RETRY_AFTER_JITTER, RETRY_AFTER_JITTER_CAP)
    return retry_after + (rng or random).uniform(0.0, spread)


def rate_limit_cooldown(error: LLMError, rng: random.Random | None, fallback: float) -> float:
    """How long a 429 rests its key: the server's Retry-After plus jitter (never less).

    A whole-second Retry-After (Anthropic sends integers) is replaced by the
    429's own reset headers when they say, to the millisecond, that the
    exhausted limit comes back sooner. With neither, ``fallback`` (a backoff delay).
    """
    retry_after = error.retry_after
    precise = _exhausted_reset(getattr(error, "limits", None))
    if retry_after is None:
        base = fallback if precise is None else precise
    elif precise is not None and precise < retry_after and retry_after >= 1 and retry_after.is_integer():
        base = precise
    else:
        base = retry_after
    return retry_after_wait(base, rng)


def _exhausted_reset(limits: Any) -> float | None:
    """The latest reset among the limits a 429's headers show as used up (remaining < 1)."""
    if limits is None:
        return None
    resets = []
    for name in ("requests", "input_tokens", "output_tokens", "tokens"):
        remaining, reset = getattr(limits, f"remaining_{name}", None), getattr(limits, f"reset_{name}", None)
        if remaining is not None and reset is not None and remaining < 1 and 0 <= reset <= 600:
            resets.append(float(reset))
    return max(resets) if resets else None


def is_retryable(error: BaseException, policy: RetryPolicy) -> bool:
    """True for errors worth another attempt: 408, 409, 429, 5xx, 529, network, timeouts.

    A malformed 2xx reply (billed) only with ``policy.retry_malformed``.
    """
    if not isinstance(error, LLMError):
        return False
    if isinstance(error, MalformedResponseError):
        return policy.retry_malformed
    if error.status_code is not None:
        return error.status_code in policy.retry_statuses or error.status_code >= 500
    return error.retryable


def backoff_delays(policy: RetryPolicy, rng: random.Random | None = None) -> Iterator[float]:
    """Exponential delays with full jitter, from ``backoff``'s own generators.

    The first value is ``base_delay`` (jittered), each next one ``multiplier``
    times larger, capped at ``max_delay``.
    """
    import backoff

    generator = backoff.expo(base=policy.multiplier, factor=policy.base_delay, max_value=policy.max_delay)
    next(generator)  # backoff's generators are primed with one None send
    jitter: Callable[[float], float]
    if policy.jitter:
        uniform = (rng or random).uniform
        jitter = lambda value: uniform(0.0, value)  # noqa: E731 - backoff.full_jitter, seeded
    else:
        jitter = lambda value: value  # noqa: E731
    for value in generator:
        yield jitter(float(value))


def retry_details(
    *, tries: int, elapsed: float, wait: float, exception: BaseException, key_id: str | None
) -> dict[str, Any]:
    """The dict handed to ``on_retry`` / ``on_giveup`` hooks (backoff's shape, plus key_id)."""
    return {"tries": tries, "elapsed": elapsed, "wait": wait, "exception": exception, "key_id": key_id}
