"""Rate-limit headers as the providers document them, read into a :class:`ServerLimitState`.

* OpenAI (and OpenAI-compatible servers): ``x-ratelimit-limit-requests`` /
  ``-tokens`` (per minute), ``x-ratelimit-remaining-*``, ``x-ratelimit-reset-*``
  as Go-style durations ("1s", "6m0s", "20ms"); tokens are input and output combined.
* Anthropic: ``anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining,reset}``,
  the reset an RFC 3339 timestamp. Its ``anthropic-ratelimit-tokens-*`` headers are
  documented as the values of whichever of the input and output limits is most
  restrictive right now: a copy of one of them, not a third, combined limit. They are
  read as the combined lane only when neither the input nor the output headers come
  (a proxy that forwards just those), where that is the cautious reading.

Values that are not numbers, or not finite, are left out (None); what is
believable is the engine's to decide (:mod:`llmkit.engine.limiter`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime

from llmkit.providers._headers import header_number, parse_duration
from llmkit.providers.base import ServerLimitState

__all__ = ["anthropic_limits", "openai_limits"]


def openai_limits(headers: Mapping[str, str]) -> ServerLimitState | None:
    """OpenAI's ``x-ratelimit-*`` headers, or None when the reply has none."""
    remaining_requests = header_number(headers, "x-ratelimit-remaining-requests")
    remaining_tokens = header_number(headers, "x-ratelimit-remaining-tokens")
    if remaining_requests is None and remaining_tokens is None:
        return None
    return ServerLimitState(
        remaining_requests=remaining_requests,
        remaining_tokens=remaining_tokens,
        limit_requests=header_number(headers, "x-ratelimit-limit-requests"),
        limit_tokens=header_number(headers, "x-ratelimit-limit-tokens"),
        reset_requests=parse_duration(headers.get("x-ratelimit-reset-requests")),
        reset_tokens=parse_duration(headers.get("x-ratelimit-reset-tokens")),
    )


_ANTHROPIC_KINDS = {
    "requests": "requests",
    "input_tokens": "input-tokens",
    "output_tokens": "output-tokens",
    "tokens": "tokens",
}
_ANTHROPIC_HEADERS = tuple((field, f"anthropic-ratelimit-{kind}-")
                           for field, kind in _ANTHROPIC_KINDS.items())  # fmt: skip


def anthropic_limits(headers: Mapping[str, str], now: float | None = None) -> ServerLimitState | None:
    """Anthropic's ``anthropic-ratelimit-*`` headers, or None when the reply has none.

    ``now`` is the wall-clock time (``time.time()``) the reset timestamps are measured from.
    """
    remaining = {field: header_number(headers, prefix + "remaining") for field, prefix in _ANTHROPIC_HEADERS}
    if all(value is None for value in remaining.values()):
        return None  # most replies without limits: four lookups, not twelve
    values: dict[str, float | None] = {}
    wall = time.time() if now is None else now
    for field, prefix in _ANTHROPIC_HEADERS:
        values[f"limit_{field}"] = header_number(headers, prefix + "limit")
        values[f"remaining_{field}"] = remaining[field]
        values[f"reset_{field}"] = _seconds_until(headers.get(prefix + "reset"), wall)
    if values["limit_input_tokens"] is not None or values["limit_output_tokens"] is not None:
        for part in ("limit", "remaining", "reset"):  # the tightest of the two, not a limit of its own
            values[f"{part}_tokens"] = None
    return ServerLimitState(**values, resets_from_reply=True)


def _seconds_until(stamp: str | None, now: float) -> float | None:
    """Seconds from ``now`` to an RFC 3339 timestamp (0 once it has passed); None if unreadable."""
    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)
