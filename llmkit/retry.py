"""What is worth retrying, how long to wait, and what the server asked us to wait.

The delays come from ``backoff``'s wait generators (exponential, capped) and
its full jitter. A server's Retry-After is a floor, never shortened by jitter:
:func:`retry_after_wait` only ever adds to it.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from llmkit.errors import LLMError

if TYPE_CHECKING:
    from llmkit.config import RetryPolicy

__all__ = [
    "backoff_delays",
    "is_retryable",
    "parse_retry_after",
    "retry_after_wait",
]

# Retry-After values beyond this are treated as this: a key is cooled down,
# not abandoned for a day because of a confused proxy.
MAX_RETRY_AFTER = 600.0
# Jitter added on top of a server's Retry-After: at most this fraction of it,
# and never more than RETRY_AFTER_JITTER_CAP seconds.
RETRY_AFTER_JITTER = 0.1
RETRY_AFTER_JITTER_CAP = 1.0


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, or None if it did not say (or said garbage).

    Reads ``retry-after-ms`` (milliseconds, OpenAI) first, then ``retry-after``
    as seconds or as an HTTP date (RFC 9110). ``now`` is the wall-clock time
    (``time.time()``) used for dates. The result is clamped to 0..600 s.
    """
    if not headers:
        return None
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms is not None:
        seconds = _parse_seconds(raw_ms)
        if seconds is not None:
            return _clamp(seconds / 1000.0)
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    seconds = _parse_seconds(raw)
    if seconds is None:
        seconds = _parse_http_date(raw, time.time() if now is None else now)
    return None if seconds is None else _clamp(seconds)


def _parse_seconds(raw: str) -> float | None:
    try:
        value = float(raw.strip())
    except (ValueError, AttributeError):
        return None
    return value if math.isfinite(value) else None


def _parse_http_date(raw: str, now: float) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return parsed.timestamp() - now


def _clamp(seconds: float) -> float:
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def retry_after_wait(retry_after: float, rng: random.Random | None = None) -> float:
    """The wait for a server's Retry-After: the value itself plus a little jitter, never less."""
    spread = min(retry_after * RETRY_AFTER_JITTER, RETRY_AFTER_JITTER_CAP)
    return retry_after + (rng or random).uniform(0.0, spread)


def is_retryable(error: BaseException, policy: RetryPolicy) -> bool:
    """True for errors worth another attempt: 408, 409, 429, 5xx, 529, network, timeouts."""
    if not isinstance(error, LLMError):
        return False
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
