"""Reading what providers put in HTTP headers: numbers, Go-style durations, Retry-After."""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping

__all__ = ["MAX_RETRY_AFTER", "header_number", "parse_duration", "parse_retry_after"]

# Retry-After values beyond this are treated as this: a key is cooled down,
# not abandoned for a day because of a confused proxy.
MAX_RETRY_AFTER = 600.0


def header_number(headers: Mapping[str, str], name: str) -> float | None:
    """A finite numeric header, or None when absent, not a number, or infinite/NaN."""
    value = headers.get(name)
    if value is None:
        return None
    return _parse_seconds(value)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str | None) -> float | None:
    """Seconds in a Go-style duration as OpenAI sends it ("1s", "6m0s", "20ms")."""
    if not text:
        return None
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


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
