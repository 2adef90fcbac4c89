"""Checks and wording shared by the config objects and the client: base URLs, counted nouns."""

from __future__ import annotations

from typing import Any

from llmkit.config.models import safe_repr
from llmkit.errors import ConfigurationError

__all__ = ["base_url_problem", "check_base_url", "count_of"]


def base_url_problem(url: Any) -> str | None:
    """What is wrong with ``url`` as a base URL (an http(s) URL with a host), or None."""
    from urllib.parse import urlsplit

    if not isinstance(url, str):
        return f"must be a string such as 'http://localhost:8000/v1', not a {type(url).__name__}"
    shown = safe_repr(url)
    if not url.strip().lower().startswith(("http://", "https://")):
        return f"{shown} must start with http:// or https:// (e.g. 'http://localhost:8000/v1')"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        return f"{shown} is not a valid URL ({exc})"
    if not parts.hostname:
        return f"{shown} names no host (e.g. 'http://localhost:8000/v1')"
    return None


def check_base_url(url: str | None, name: str = "base_url") -> str | None:
    """``url`` stripped, or ConfigurationError saying what is wrong; None stays None."""
    if url is None:
        return None
    problem = base_url_problem(url)
    if problem is not None:
        raise ConfigurationError(f"{name} {problem}.")
    return url.strip()


def count_of(count: int, noun: str, plural: str | None = None) -> str:
    """``1 key``, ``2 keys``, ``1 entry``, ``3 entries`` (``plural`` when not ``noun + "s"``)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
