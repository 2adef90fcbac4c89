"""``LLMClient``: the blocking facade users call.

Defaults flow: library defaults < settings (YAML, then environment) <
constructor arguments < arguments of one call. A plain ``complete()`` runs in
the caller's thread (no executor hop); ``submit``/``map`` use the pool's
worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any

from llmkit.dispatch import Dispatcher
from llmkit.errors import ConfigurationError
from llmkit.pool import KeyPool
from llmkit.providers import canonical_name, provider_class
from llmkit.request import Request, build_request
from llmkit.streaming import TextStream
from llmkit.types import MessagesInput, Response

if TYPE_CHECKING:
    from llmkit.clock import Clock
    from llmkit.config import LLMConfig, PoolConfig, RateLimit, RetryPolicy, Settings

__all__ = ["LLMClient"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())


def _resolve_keys(
    name: str, api_keys: Sequence[str] | str | None, settings: Settings, requires_key: bool
) -> list[str]:
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


def _resolve_rate_limits(
    rate_limit: RateLimit | Sequence[RateLimit | None] | None, count: int, settings: Settings, name: str
) -> list[RateLimit | None]:
    if rate_limit is None:
        provider_settings = settings.provider(name)
        return [provider_settings.rate_limit_for(i) for i in range(count)]
    if isinstance(rate_limit, Sequence):
        limits = list(rate_limit)
        if len(limits) == 1:
            return limits * count
        if len(limits) != count:
            raise ConfigurationError(
                f"rate_limit has {len(limits)} entries for {count} keys: "
                "give one for all keys or one per key."
            )
        return limits
    return [rate_limit] * count


class LLMClient:
    """A pooled, rate-limited, retrying client for one provider.

    >>> client = LLMClient(provider="openai", api_keys=["sk-..."])  # doctest: +SKIP
    >>> client.complete("What is the capital of France?").content  # doctest: +SKIP
    """

    def __init__(
        self,
        provider: str | None = None,
        *,
        api_keys: Sequence[str] | str | None = None,
        model: str | None = None,
        base_url: str | None = None,
        rate_limit: RateLimit | Sequence[RateLimit | None] | None = None,
        retry: RetryPolicy | None = None,
        pool: PoolConfig | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry_delay: float | None = None,
        system_prompt: str | None = None,
        acquire_timeout: float | None = None,
        settings: Settings | None = None,
        config_path: str | None = None,
        on_retry: Callable[[dict[str, Any]], None] | None = None,
        on_giveup: Callable[[dict[str, Any]], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        from llmkit.config import LLMConfig, PoolConfig, RetryPolicy, load_settings

        settings = settings if settings is not None else load_settings(config_path)
        chosen = provider or settings.default_provider()
        if chosen is None:
            from llmkit.config import missing_key_message

            raise ConfigurationError(
                "No provider given and none configured: pass provider='openai' (or another), "
                "set LLM_DEFAULT_PROVIDER, or set a key. " + missing_key_message("openai")
            )
        name = canonical_name(chosen)
        adapter_cls = provider_class(name)
        provider_settings = settings.provider(name)
        defaults = provider_settings.settings.merged(
            LLMConfig(
                temperature=temperature,
                max_tokens=max_tokens,
                max_retries=max_retries,
                retry_delay=retry_delay,
                timeout=timeout,
                system_prompt=system_prompt,
            )
        )
        keys = _resolve_keys(name, api_keys, settings, adapter_cls.requires_key)
        limits = _resolve_rate_limits(rate_limit, len(keys), settings, name)
        pool_config = pool or settings.pool
        if acquire_timeout is not None:
            pool_config = pool_config.new(acquire_timeout=acquire_timeout)
        retry = retry or RetryPolicy()
        if defaults.max_retries is not None:
            retry = retry.new(max_retries=defaults.max_retries)
        if defaults.retry_delay is not None:
            retry = retry.new(base_delay=defaults.retry_delay)
        if not isinstance(pool_config, PoolConfig):
            raise ConfigurationError("pool must be a llmkit.PoolConfig.")

        self.provider = name
        self.model = model or provider_settings.default_model or adapter_cls.default_model
        self.defaults: LLMConfig = defaults
        self._adapter = adapter_cls(base_url=base_url or provider_settings.base_url, timeout=defaults.timeout)
        self._pool = KeyPool(self._adapter, keys, rate_limits=limits, pool_config=pool_config, clock=clock)
        self._dispatch = Dispatcher(
            self._pool,
            retry,
            acquire_timeout=pool_config.acquire_timeout,
            default_output_tokens=next((lim.expected_output_tokens for lim in limits if lim), None)
            or defaults.max_tokens,
            on_retry=on_retry,
            on_giveup=on_giveup,
        )

    def __repr__(self) -> str:
        return f"LLMClient(provider={self.provider!r}, model={self.model!r}, keys={len(self._pool.slots)})"

    # -- requests ------------------------------------------------------------------

    def _request(self, messages: MessagesInput, kwargs: dict[str, Any], stream: bool = False) -> Request:
        d = self.defaults
        get = kwargs.pop
        return build_request(
            messages,
            model=get("model", None) or self.model,
            system_prompt=_pick(get("system_prompt", None), d.system_prompt),
            temperature=_pick(get("temperature", None), d.temperature),
            max_tokens=_pick(get("max_tokens", None), d.max_tokens),
            stop=get("stop", None),
            timeout=get("timeout", None),
            max_retries=get("max_retries", None),
            retry_delay=get("retry_delay", None),
            stream=stream,
            response_model=get("response_model", None),
            extra=kwargs,
        )

    def complete(self, messages: MessagesInput, **kwargs: Any) -> Response:
        """Complete a prompt or conversation, blocking until the answer is in.

        Keyword arguments: ``model``, ``temperature``, ``max_tokens``,
        ``system_prompt``, ``stop``, ``timeout``, ``max_retries``,
        ``retry_delay`` (so ``**LLMConfig(...).to_dict()`` works); anything
        else is passed to the provider as it is.
        """
        request = self._request(messages, kwargs)
        return self._dispatch.execute(request)

    def stream(self, messages: MessagesInput, **kwargs: Any) -> TextStream:
        """Stream the answer: iterate for text; ``usage`` is set once it ends."""
        request = self._request(messages, kwargs, stream=True)
        return TextStream(self._dispatch.stream(request), provider=self.provider, model=request.model)

    def stream_complete(self, messages: MessagesInput, **kwargs: Any) -> TextStream:
        """The spec's name for :meth:`stream`."""
        return self.stream(messages, **kwargs)

    def submit(self, messages: MessagesInput, **kwargs: Any) -> Future[Response]:
        """Start ``complete`` on the pool's threads; returns a Future.

        Bad input raises here, at once, rather than inside the Future.
        """
        request = self._request(messages, kwargs)
        return self._pool.executor().submit(self._dispatch.execute, request)

    def map(self, prompts: Iterable[MessagesInput], **kwargs: Any) -> list[Response]:
        """Complete many prompts concurrently; results in input order. The first error raises."""
        futures = [self.submit(p, **dict(kwargs)) for p in prompts]
        return [f.result() for f in futures]

    # -- pool ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Pool health: total/available/in-use keys and per-key detail (no key is shown)."""
        return self._pool.status()

    def enable_key(self, key_id: str) -> None:
        """Put a disabled key (by its ``client_id`` fingerprint) back in service."""
        self._pool.enable_key(key_id)

    @property
    def closed(self) -> bool:
        return self._pool.closed

    def close(self, timeout: float | None = None) -> None:
        """Release keys, threads and connections. Idempotent."""
        self._pool.close(timeout)

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value
