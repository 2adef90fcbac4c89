"""``RedisCache``: responses in Redis, shared by processes and machines.

Each entry is one string ``<prefix><key>``; with a ``ttl`` Redis expires it
itself, and the expiry time is also written in the entry so that an injected
clock (tests) sees it expire too.
"""

from __future__ import annotations

import math
from typing import Any

from llmkit.cache.base import check_ttl, time_source

__all__ = ["RedisCache"]


class RedisCache:
    """Responses in Redis under ``prefix``, kept ``ttl`` seconds (None: forever).

    Args:
        url_or_client: a ``redis://`` URL, or a ``redis.Redis`` client (not closed by :meth:`close`).
        ttl: seconds an entry lives; None: forever.
        prefix: the namespace of the keys.
        clock: wall-clock seconds (a callable or an object with ``now()``); for tests.
    """

    def __init__(
        self,
        url_or_client: Any = "redis://localhost:6379/0",
        ttl: float | None = None,
        *,
        prefix: str = "llmkit:cache:",
        clock: Any = None,
    ) -> None:
        if isinstance(url_or_client, str):
            import redis

            self._client = redis.Redis.from_url(url_or_client)
            self._owns_client = True
        else:
            self._client = url_or_client
            self._owns_client = False
        self.ttl = check_ttl(ttl)
        self.prefix = prefix
        self._now = time_source(clock)

    def __repr__(self) -> str:
        return f"RedisCache(prefix={self.prefix!r}, ttl={self.ttl})"

    def get(self, key: str) -> str | None:
        raw = self._client.get(self.prefix + key)
        if raw is None:
            return None
        text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        expires, _, value = text.partition("\n")
        if expires and self._now() >= float(expires):
            return None
        return value

    def set(self, key: str, value: str) -> None:
        if self.ttl is None:
            self._client.set(self.prefix + key, "\n" + value)
            return
        expires_at = self._now() + self.ttl
        self._client.set(self.prefix + key, f"{expires_at!r}\n{value}", px=math.ceil(self.ttl * 1000))

    def delete(self, key: str) -> None:
        self._client.delete(self.prefix + key)

    def clear(self) -> None:
        """Delete every entry under this cache's prefix."""
        batch = []
        for name in self._client.scan_iter(match=_glob_escape(self.prefix) + "*", count=500):
            batch.append(name)
            if len(batch) >= 500:
                self._client.delete(*batch)
                batch.clear()
        if batch:
            self._client.delete(*batch)

    def close(self) -> None:
        """Close the connection pool if this cache made the client. Idempotent."""
        if self._owns_client:
            self._client.close()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
