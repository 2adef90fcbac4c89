"""``ConnectionPool``: the spec's name for a client over a pool of API keys, with its parameters.

>>> pool = ConnectionPool(api_keys=["key1", "key2"], max_connections_per_key=5,
...                       health_check_interval=60, provider="anthropic")   # doctest: +SKIP
>>> pool.complete("Hi").content                                              # doctest: +SKIP

It is an :class:`~llmkit.LLMClient` (every method, ``status()``, ``close()``,
``with``), built through its public constructor and config objects only:

* ``max_connections_per_key``: requests in flight at once on each key
  (``RateLimit.max_concurrent`` of every key, added to the key's other limits
  from ``rate_limit=`` or the settings);
* ``health_check_interval``: seconds a failed key rests before one probe
  request tries it again (``PoolConfig.circuit_cooldown``); a key fails after
  ``PoolConfig.failure_threshold`` consecutive errors (default 5), and traffic
  moves to the healthy keys meanwhile (the spec's automatic failover).

Keys are not taken strictly in turn: each request goes to the healthy key that
can take it soonest under its limits, which spreads load evenly as round robin
would, and never sends to a key that is resting or full.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmkit.client import LLMClient
from llmkit.errors import ConfigurationError

if TYPE_CHECKING:
    from llmkit.config import PoolConfig, RateLimit, Settings

__all__ = ["ConnectionPool"]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a whole number >= 1 (requests at once), got {value!r}.")
    return value


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ConfigurationError(f"{name} must be a number of seconds >= 0, got {value!r}.")
    return float(value)


class ConnectionPool(LLMClient):
    """An LLMClient over ``api_keys`` with the spec's pool parameters (see the module doc)."""

    def __init__(
        self,
        api_keys: Sequence[str] | str | None = None,
        max_connections_per_key: int = 5,
        health_check_interval: float = 60.0,
        *,
        provider: str | None = None,
        rate_limit: RateLimit | Sequence[RateLimit | None] | None = None,
        pool: PoolConfig | None = None,
        settings: Settings | None = None,
        config_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        from llmkit.config import load_settings

        self.max_connections_per_key = _positive_int("max_connections_per_key", max_connections_per_key)
        self.health_check_interval = _seconds("health_check_interval", health_check_interval)
        settings = settings if settings is not None else load_settings(config_path)
        pool_config = (pool or settings.pool).new(circuit_cooldown=self.health_check_interval)
        limits = _per_key_limits(rate_limit, provider, api_keys, settings, self.max_connections_per_key)
        super().__init__(provider, api_keys=api_keys, rate_limit=limits, pool=pool_config, settings=settings,
                         **kwargs)  # fmt: skip

    def __repr__(self) -> str:
        return (f"ConnectionPool(provider={self.provider!r}, keys={self.status()['total_clients']}, "
                f"max_connections_per_key={self.max_connections_per_key}, "
                f"health_check_interval={self.health_check_interval:g})")  # fmt: skip


def _per_key_limits(
    rate_limit: RateLimit | Sequence[RateLimit | None] | None, provider: str | None,
    api_keys: Sequence[str] | str | None, settings: Settings, per_key: int,
) -> list[RateLimit]:  # fmt: skip
    """Each key's RateLimit (given, else from the settings) with ``max_concurrent=per_key``."""
    from llmkit.config import RateLimit
    from llmkit.providers import canonical_name

    if rate_limit is None or isinstance(rate_limit, RateLimit):
        name = canonical_name(provider or settings.default_provider() or "openai")
        count = 1 if isinstance(api_keys, str) else len(api_keys or settings.api_keys(name)) or 1
        limits: list[RateLimit | None] = (
            [rate_limit] * count if rate_limit is not None
            else [settings.provider(name).rate_limit_for(i) for i in range(count)]
        )  # fmt: skip
    else:
        limits = list(rate_limit)
    return [(limit or RateLimit()).new(max_concurrent=per_key) for limit in limits]
