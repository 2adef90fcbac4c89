"""The response cache: identical requests answered without calling the provider.

Opt in per client, and choose per call::

    client = LLMClient(cache=True)                       # SQLite at the default path
    client = LLMClient(cache=MemoryCache(ttl=3600))      # or any backend
    client = LLMClient(cache=RedisCache("redis://localhost:6379/0", ttl=86400))
    client.complete("Hi", cache=False)                   # bypass for this call
    LLMClient().complete("Hi", cache=True)               # this call only, default SQLite

Backends: :class:`MemoryCache` (in-process LRU + TTL), :class:`SQLiteCache`
(a file shared by threads and processes, at :func:`default_cache_path`:
``$LLMKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/llmkit``, else
``~/.cache/llmkit``), :class:`RedisCache` (shared by machines). Any object
with ``get``/``set``/``delete``/``clear``/``close`` works (:class:`CacheBackend`).

In the client's middleware chain the cache sits just outside the pool and
inside cost/budget: a hit is counted by the usage tracker at ``cost=0.0``.
See :mod:`llmkit.cache.base` for what the key covers and what is stored.
sqlite3 and redis are imported only when such a backend is first used.
"""

from __future__ import annotations

import os
from typing import Any

from llmkit.cache.base import (
    CacheBackend,
    cache_key,
    decode_response,
    default_cache_path,
    encode_response,
)
from llmkit.cache.memory import MemoryCache
from llmkit.cache.middleware import CacheMiddleware
from llmkit.cache.redis import RedisCache
from llmkit.cache.sqlite import SQLiteCache
from llmkit.errors import ConfigurationError

__all__ = [
    "CacheBackend",
    "CacheMiddleware",
    "MemoryCache",
    "RedisCache",
    "SQLiteCache",
    "cache_key",
    "decode_response",
    "default_cache_path",
    "encode_response",
    "make_cache",
]


def make_cache(cache: Any) -> CacheBackend | None:
    """The backend for the client's ``cache=`` argument.

    None or False: no cache. True: :class:`SQLiteCache` at the default path.
    A ``redis://``/``rediss://``/``unix://`` URL: :class:`RedisCache`. Another
    string or path: :class:`SQLiteCache` at that file. A backend: itself.
    """
    if cache is None or cache is False:
        return None
    if cache is True:
        return SQLiteCache()
    if isinstance(cache, str) and cache.startswith(("redis://", "rediss://", "unix://")):
        return RedisCache(cache)
    if isinstance(cache, (str, os.PathLike)):
        return SQLiteCache(cache)
    if all(callable(getattr(cache, name, None)) for name in ("get", "set")):
        return cache
    raise ConfigurationError(
        f"cache must be True, False, a path, a redis:// URL or a cache backend "
        f"(MemoryCache, SQLiteCache, RedisCache), got {cache!r}."
    )
