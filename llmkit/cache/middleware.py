"""``CacheMiddleware``: answers repeated requests from a cache backend.

A hit never reaches the pool: it takes no key and no rate-limit capacity,
costs nothing, and comes back with ``cached=True``, ``cost=0.0`` and
``attempts=0``. Only successful responses are stored. Per call,
``cache=False`` bypasses the cache and ``cache=True`` uses it (the client's
backend, else the default SQLite file); the flag is removed from the
request before it goes on. A failing backend (Redis down, disk full) never
fails the call: it is logged and the call goes to the provider.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmkit.cache.base import CacheBackend, UncacheableError, cache_key, decode_response, encode_response
from llmkit.cache.memory import MemoryCache
from llmkit.errors import InvalidRequestError

if TYPE_CHECKING:
    from llmkit.middleware import AsyncHandler, Handler
    from llmkit.request import Request
    from llmkit.types import Response

__all__ = ["CACHE_FLAG", "CacheMiddleware"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

CACHE_FLAG = "cache"


def _default_backend() -> CacheBackend:
    from llmkit.cache.sqlite import SQLiteCache

    return SQLiteCache()


class CacheMiddleware:
    """Serves repeated requests from ``backend``.

    Args:
        backend: the cache; None: only calls with ``cache=True`` are cached
            (in ``default_factory()``'s backend, made on first need).
        provider: the provider's name, part of the key.
        endpoint: the base URL calls go to (None: the provider's default), part of the key.
        default_factory: makes the backend for ``cache=True`` calls when
            ``backend`` is None (default: :class:`SQLiteCache` at the default path).
        owns_backend: True if :meth:`close` should close ``backend`` too.
    """

    def __init__(
        self,
        backend: CacheBackend | None,
        provider: str,
        *,
        endpoint: str | None = None,
        default_factory: Callable[[], CacheBackend] = _default_backend,
        owns_backend: bool = False,
    ) -> None:
        self.backend = backend
        self._owns_backend = owns_backend
        self.provider = provider
        self.endpoint = endpoint
        self._default_factory = default_factory
        self._default: CacheBackend | None = None
        self._lock = threading.Lock()
        self._warned = False

    def __repr__(self) -> str:
        # No endpoint: a base URL may hold credentials (https://user:token@host).
        return f"CacheMiddleware(backend={self.backend!r}, provider={self.provider!r})"

    def __call__(self, request: Request, call_next: Handler) -> Response:
        backend, request = self._choose(request)
        if backend is None:
            return call_next(request)
        key = self._key(request)
        if key is None:
            return call_next(request)
        hit = self._get(backend, key, request)
        if hit is not None:
            return hit
        response = call_next(request)
        self._put(backend, key, request, response)
        return response

    async def acall(self, request: Request, call_next: AsyncHandler) -> Response:
        """:meth:`__call__` in asyncio: a backend that does I/O (SQLite, Redis) is read and
        written in a worker thread, never on the event loop; the in-memory one in place."""
        import asyncio  # here: the sync path never imports asyncio

        backend, request = self._choose(request)
        key = self._key(request) if backend is not None else None
        if backend is None or key is None:
            return await call_next(request)
        in_memory = isinstance(backend, MemoryCache)
        get, put = self._get, self._put
        hit = get(backend, key, request) if in_memory else await asyncio.to_thread(get, backend, key, request)
        if hit is not None:
            return hit
        response = await call_next(request)
        if in_memory:
            put(backend, key, request, response)
        else:
            await asyncio.to_thread(put, backend, key, request, response)
        return response

    def lookup(self, request: Request) -> Response | None:
        """The cached answer to ``request`` if there is one (nothing is sent)."""
        backend, request = self._choose(request)
        key = self._key(request) if backend is not None else None
        return None if backend is None or key is None else self._get(backend, key, request)

    @classmethod
    def for_client(cls, cache: Any, provider: str, endpoint: str | None = None) -> CacheMiddleware:
        """The middleware for a client's ``cache=`` argument (see :func:`llmkit.cache.make_cache`).

        ``endpoint``: the client's base URL when it is not the provider's default.

        A backend the client made from True, a path or a URL is closed with
        the client; a backend instance passed in stays open (its owner closes it).
        """
        from llmkit.cache import make_cache

        backend = make_cache(cache)
        owns = backend is not None and backend is not cache
        return cls(backend, provider, endpoint=endpoint, owns_backend=owns)

    def close(self) -> None:
        """Close the backends this middleware made or owns (never one it was only given). Idempotent."""
        with self._lock:
            default, self._default = self._default, None
        if default is not None:
            default.close()
        if self._owns_backend and self.backend is not None:
            self.backend.close()

    def _choose(self, request: Request) -> tuple[CacheBackend | None, Request]:
        """The backend for this call, and the request without the ``cache`` flag."""
        extra = request.extra
        if CACHE_FLAG not in extra:
            return self.backend, request
        flag = extra[CACHE_FLAG]
        request = request.with_changes(extra={k: v for k, v in extra.items() if k != CACHE_FLAG})
        if flag is None:
            return self.backend, request
        if not isinstance(flag, bool):
            raise InvalidRequestError(f"cache= must be True or False, got {flag!r}.")
        if not flag:
            return None, request
        return self.backend if self.backend is not None else self._default_backend(), request

    def _default_backend(self) -> CacheBackend:
        with self._lock:
            if self._default is None:
                self._default = self._default_factory()
            return self._default

    def _key(self, request: Request) -> str | None:
        try:
            return cache_key(self.provider, request, self.endpoint)
        except UncacheableError as exc:
            logger.debug("not caching a call to %r: %s", request.model, exc)
            return None

    def _get(self, backend: CacheBackend, key: str, request: Request) -> Response | None:
        started = time.perf_counter()
        try:
            text = backend.get(key)
        except Exception as exc:
            self._backend_failed("read", exc)
            return None
        if text is None:
            return None
        try:
            response = decode_response(text, request.response_model, time.perf_counter() - started)
        except Exception as exc:  # corrupt, from another version, or no longer valid for the model
            logger.debug("ignoring an unusable cache entry %s…: %s", key[:12], exc)
            return None
        logger.debug("cache hit %s… for %r", key[:12], request.model)
        return response

    def _put(self, backend: CacheBackend, key: str, request: Request, response: Response) -> None:
        try:
            text = encode_response(response, request.response_model)
        except UncacheableError as exc:
            logger.debug("not caching the answer from %r: %s", request.model, exc)
            return
        try:
            backend.set(key, text)
        except Exception as exc:
            self._backend_failed("write", exc)

    def _backend_failed(self, action: str, exc: Exception) -> None:
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        logger.log(
            level, "response cache %s failed (%s: %s); calling the provider", action, type(exc).__name__, exc
        )
