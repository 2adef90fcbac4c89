"""``MemoryCache``: an in-process LRU cache with an optional TTL."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from llmkit.cache.base import check_ttl, time_source

__all__ = ["MemoryCache"]


class MemoryCache:
    """Thread-safe LRU of at most ``max_entries`` responses, each kept ``ttl`` seconds (None: forever).

    ``clock``: a callable returning seconds, or an object with ``now()``; for tests.
    """

    def __init__(self, max_entries: int = 1024, ttl: float | None = None, *, clock: Any = None) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            from llmkit.errors import ConfigurationError

            raise ConfigurationError(f"max_entries must be a whole number >= 1, got {max_entries!r}.")
        self.max_entries = max_entries
        self.ttl = check_ttl(ttl)
        self._now = time_source(clock)
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[str, float | None]] = OrderedDict()

    def __repr__(self) -> str:
        return f"MemoryCache(entries={len(self)}, max_entries={self.max_entries}, ttl={self.ttl})"

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            value, expires_at = entry
            if expires_at is not None and self._now() >= expires_at:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def set(self, key: str, value: str) -> None:
        expires_at = None if self.ttl is None else self._now() + self.ttl
        with self._lock:
            self._entries[key] = (value, expires_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def close(self) -> None:
        """Nothing to release; the entries stay."""
