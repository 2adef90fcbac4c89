"""How an :class:`~llmkit.LLMClient` is put together from its arguments.

Defaults flow: library defaults < settings (YAML, then environment) <
constructor arguments < arguments of one call. Each step here resolves one
part and checks it, so that bad input fails while the client is built,
before anything is sent or spent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmkit.errors import ConfigurationError

if TYPE_CHECKING:
    from llmkit.cache import CacheMiddleware
    from llmkit.config import LLMConfig, PoolConfig, RateLimit, RetryPolicy, Settings
    from llmkit.config.settings import ProviderSettings
    from llmkit.costs import CostMiddleware, PriceTable
    from llmkit.engine.shared import SharedLimits
    from llmkit.metrics import MetricsMiddleware
    from llmkit.middleware import Middleware

__all__ = [
    "Builtins", "builtin_chain", "call_defaults", "choose_provider", "pool_config", "resolve_keys",
    "resolve_rate_limits", "retry_policy", "shared_backend",
]  # fmt: skip


def choose_provider(provider: str | None, settings: Settings) -> str:
    """The provider's canonical name: the one given, else the settings' default."""
    from llmkit.providers import canonical_name

    chosen = provider or settings.default_provider()
    if chosen is None:
        from llmkit.config import missing_key_message

        raise ConfigurationError(
            "No provider given and none configured: pass provider='openai' (or another), "
            "set LLM_DEFAULT_PROVIDER, or set a key. " + missing_key_message("openai")
        )
    return canonical_name(chosen)


def call_defaults(provider_settings: ProviderSettings, **given: Any) -> LLMConfig:
    """The defaults of every call: the settings' own, overridden by those given (None: not given)."""
    from llmkit.config import LLMConfig

    return provider_settings.settings.merged(LLMConfig(**given))


def resolve_keys(
    name: str, api_keys: Sequence[str] | str | None, settings: Settings, requires_key: bool
) -> list[str]:
    """The keys to pool, checked, without duplicates (``["no-key"]`` for a server that needs none)."""
    from llmkit.config import missing_key_message

    if isinstance(api_keys, str):
        api_keys = [api_keys]
    keys = list(api_keys) if api_keys is not None else settings.api_keys(name)
    for i, key in enumerate(keys):
        if not isinstance(key, str) or not key.strip():
            raise ConfigurationError(
                f"api_keys[{i}] is empty or not a string: pass each key as a non-empty string."
            )
    keys = list(dict.fromkeys(k.strip() for k in keys))  # drop duplicates, keep order
    if not keys:
        if requires_key:
            raise ConfigurationError(missing_key_message(name))
        keys = ["no-key"]
    return keys


def resolve_rate_limits(
    rate_limit: RateLimit | Sequence[RateLimit | None] | None, count: int, settings: Settings, name: str
) -> list[RateLimit | None]:
    """One limit (or None) per key: one for all, one each, or the settings'."""
    if rate_limit is None:
        provider_settings = settings.provider(name)
        return [provider_settings.rate_limit_for(i) for i in range(count)]
    if isinstance(rate_limit, Sequence):
        limits = list(rate_limit)
        if len(limits) == 1:
            return limits * count
        if len(limits) != count:
            from llmkit.wording import plural

            raise ConfigurationError(
                f"rate_limit has {plural(len(limits), 'entry', 'entries')} for {plural(count, 'key')}: "
                "give one for all keys or one per key."
            )
        return limits
    return [rate_limit] * count


def pool_config(pool: PoolConfig | None, settings: Settings, acquire_timeout: float | None) -> PoolConfig:
    """The pool's configuration: the one given, else the settings'; ``acquire_timeout`` wins."""
    from llmkit.config import PoolConfig

    config = pool or settings.pool
    if not isinstance(config, PoolConfig):
        raise ConfigurationError("pool must be a llmkit.PoolConfig.")
    return config.new(acquire_timeout=acquire_timeout) if acquire_timeout is not None else config


def retry_policy(retry: RetryPolicy | None, defaults: LLMConfig) -> RetryPolicy:
    """The retry policy given (else the default one), with the call defaults' retries and delay."""
    from llmkit.config import RetryPolicy

    policy = retry or RetryPolicy()
    if defaults.max_retries is not None:
        policy = policy.new(max_retries=defaults.max_retries)
    if defaults.retry_delay is not None:
        policy = policy.new(base_delay=defaults.retry_delay)
    return policy


def shared_backend(shared_limits: SharedLimits | str | None) -> SharedLimits | None:
    """The limits shared with other processes: a backend given, or a Redis URL."""
    if isinstance(shared_limits, str):
        from llmkit.backends.redis import RedisLimits

        return RedisLimits(shared_limits)
    return shared_limits


@dataclass
class Builtins:
    """The middleware a client adds after the user's, in chain order (see :mod:`llmkit.middleware`)."""

    outer: list[Middleware]  # logging, then metrics
    metrics: MetricsMiddleware | None
    cost: CostMiddleware
    cache: CacheMiddleware

    @property
    def chain(self) -> list[Middleware]:
        return [*self.outer, self.cost, self.cache]


def builtin_chain(
    name: str,
    settings: Settings,
    *,
    log_level: int | str | None,
    metrics: bool | None,
    prices: PriceTable | Mapping[str, Any] | None,
    max_cost: float | None,
    cache: Any,
    endpoint: str | None,
) -> Builtins:
    """Logging and metrics (outermost), then cost/budget, then the cache (innermost, so that a
    hit is still logged and counted, as ``cached``)."""
    from llmkit.cache import CacheMiddleware
    from llmkit.config.logging_setup import apply_logging_settings
    from llmkit.costs import CostMiddleware, resolve_prices
    from llmkit.middleware import builtin_middleware

    outer, recorder = builtin_middleware(
        name,
        log_level=log_level if log_level is not None else apply_logging_settings(settings.global_),
        metrics=settings.global_.metrics_enabled if metrics is None else metrics,
    )
    cache_step = CacheMiddleware.for_client(cache, name, endpoint)
    cost_step = CostMiddleware(
        resolve_prices(prices, getattr(settings, "prices", None)),  # hook: settings' price overrides
        max_cost=max_cost,
        cache_lookup=cache_step.lookup,
    )
    return Builtins(outer, recorder, cost_step, cache_step)
