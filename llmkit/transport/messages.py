"""The two halves of one HTTP exchange, as adapters see them: what to send and what came back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HttpCall", "HttpReply"]


@dataclass(frozen=True, slots=True)
class HttpCall:
    """A POST to ``path`` (relative to the endpoint's base URL) with a JSON ``body``."""

    path: str
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # seconds for the complete reply (None: the endpoint's default)


@dataclass(frozen=True, slots=True)
class HttpReply:
    """The status, headers and (unless streamed) body of a reply."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""
