"""``RedisCache``: responses in Redis, shared by processes and machines.

Each entry is one string ``<prefix><key>``; with a ``ttl`` Redis expires it
itself, and the expiry time is also written in the entry so that an injected
clock (tests) sees it expire too.

**Redis down never slows a call.** A cache made from a URL bounds each Redis
operation, connecting included, by ``timeout`` (0.5 s by default; redis-py's
own default is 5 s for each read and each write) and does not retry it. When
an operation fails (Redis frozen, dead, unreachable, read-only), ``get``
answers a miss and ``set`` does nothing, without Redis, for the next
``recheck_interval`` seconds: the calls go straight to the provider. One call
then tries Redis again (the others keep skipping it meanwhile). The outage is
logged once as a warning, its end at INFO. A ``redis.Redis`` client passed in
keeps its own timeouts; the recheck interval applies to it as well.
``delete`` and ``clear`` are asked for on purpose: they raise Redis's errors.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from llmkit.cache.base import check_ttl, time_source

__all__ = ["RedisCache"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_SKIPPED = object()  # what an operation returns when Redis was skipped or failed


class RedisCache:
    """Responses in Redis under ``prefix``, kept ``ttl`` seconds (None: forever).

    Args:
        url_or_client: a ``redis://`` URL, or a ``redis.Redis`` client (not closed by :meth:`close`).
        ttl: seconds an entry lives; None: forever.
        prefix: the namespace of the keys.
        clock: seconds (a callable or an object with ``now()``) for the entries'
            expiry and the recheck interval; for tests. Default: wall-clock time
            for expiry, monotonic time for the recheck.
        timeout: seconds each Redis operation may take, connecting included, for
            a cache made from a URL (a ``socket_timeout`` in the URL wins).
            None: no limit of llmkit's (redis-py's own defaults).
        recheck_interval: seconds Redis is skipped after an operation failed.
            0: every call tries Redis (each still bounded by ``timeout``).
    """

    def __init__(
        self,
        url_or_client: Any = "redis://localhost:6379/0",
        ttl: float | None = None,
        *,
        prefix: str = "llmkit:cache:",
        clock: Any = None,
        timeout: float | None = 0.5,
        recheck_interval: float = 5.0,
    ) -> None:
        self.timeout = _check_seconds("timeout", timeout, zero_ok=False, none_ok=True)
        self.recheck_interval = _check_seconds("recheck_interval", recheck_interval, zero_ok=True)
        self.ttl = check_ttl(ttl)
        if isinstance(url_or_client, str):
            self._client = _client_for(url_or_client, self.timeout)
            self._owns_client = True
        else:
            self._client = url_or_client
            self._owns_client = False
        self.prefix = prefix
        self._now = time_source(clock)
        self._monotonic: Callable[[], float] = time.monotonic if clock is None else self._now
        self._lock = threading.Lock()
        self._skip_until: float | None = None  # None: Redis is up; else when to try it again

    def __repr__(self) -> str:
        return f"RedisCache(prefix={self.prefix!r}, ttl={self.ttl})"

    def get(self, key: str) -> str | None:
        raw = self._run(self._client.get, self.prefix + key)
        if raw is None or raw is _SKIPPED:
            return None
        text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        expires, _, value = text.partition("\n")
        if expires and self._now() >= float(expires):
            return None
        return value

    def set(self, key: str, value: str) -> None:
        if self.ttl is None:
            self._run(self._client.set, self.prefix + key, "\n" + value)
            return
        expires_at = self._now() + self.ttl
        entry = f"{expires_at!r}\n{value}"
        self._run(self._client.set, self.prefix + key, entry, px=math.ceil(self.ttl * 1000))

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

    # -- skipping Redis while it is down ---------------------------------------------------

    def _run(self, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``operation(*args)``, or _SKIPPED when Redis is being skipped or the operation failed."""
        if self._skip_until is not None and not self._may_recheck():
            return _SKIPPED
        try:
            result = operation(*args, **kwargs)
        except Exception as exc:  # any failure of the cache's store: the call goes on without it
            self._failed(exc)
            return _SKIPPED
        if self._skip_until is not None:
            self._recovered()
        return result

    def _may_recheck(self) -> bool:
        """Whether this call is the one to try Redis again (the others go on skipping it)."""
        with self._lock:
            now = self._monotonic()
            if self._skip_until is None:
                return True
            if now < self._skip_until:
                return False
            self._skip_until = now + self.recheck_interval
            return True

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            first = self._skip_until is None
            self._skip_until = self._monotonic() + self.recheck_interval
        logger.log(
            logging.WARNING if first else logging.DEBUG,
            "the Redis response cache (prefix %r) failed (%s: %s): calls go to the provider without it; "
            "Redis is tried again in %g s",
            self.prefix, type(exc).__name__, exc, self.recheck_interval,
        )  # fmt: skip

    def _recovered(self) -> None:
        with self._lock:
            was_down, self._skip_until = self._skip_until is not None, None
        if was_down:
            logger.info("the Redis response cache (prefix %r) answers again", self.prefix)


def _client_for(url: str, timeout: float | None) -> Any:
    """A redis client for ``url`` whose operations take at most ``timeout`` seconds and are not retried."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = {"retry": Retry(NoBackoff(), 0)}
    if timeout is not None:
        options.update(socket_timeout=timeout, socket_connect_timeout=timeout)
    return redis.Redis.from_url(url, **options)


def _check_seconds(name: str, value: Any, *, zero_ok: bool, none_ok: bool = False) -> Any:
    if value is None and none_ok:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        from llmkit.errors import ConfigurationError

        least = "0 or more" if zero_ok else "more than 0"
        raise ConfigurationError(f"RedisCache {name} must be a number of seconds, {least}, got {value!r}.")
    return float(value)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
