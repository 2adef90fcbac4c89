"""``LLMClient``: the blocking facade users call.

Defaults flow: library defaults < settings (YAML, then environment) <
constructor arguments < arguments of one call. A plain ``complete()`` runs in
the caller's thread (no executor hop); ``submit``/``map`` use the pool's
worker threads.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any

from llmkit.engine.finished import Finished
from llmkit.engine.loop import RetryLoop
from llmkit.engine.pool import KeyPool
from llmkit.fallback import Fallbacks
from llmkit.middleware import Middleware, build_async_chain, build_chain
from llmkit.providers import provider_class
from llmkit.request import Request, build_request
from llmkit.stream_hooks import observer_for, settled
from llmkit.types import MessagesInput, Response

if TYPE_CHECKING:
    import os

    from llmkit.batch import BatchResult
    from llmkit.config import LLMConfig, PoolConfig, RateLimit, RetryPolicy, Settings
    from llmkit.costs import PriceTable
    from llmkit.costs.budget import StreamBudget
    from llmkit.engine.clock import Clock
    from llmkit.engine.shared import SharedLimits
    from llmkit.streaming import TextStream

__all__ = ["LLMClient"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())


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
        middleware: Sequence[Middleware] = (),
        log_level: int | str | None = None,
        metrics: bool | None = None,
        prices: PriceTable | Mapping[str, Any] | None = None,
        max_cost: float | None = None,
        cache: Any = None,
        shared_limits: SharedLimits | str | None = None,
        clock: Clock | None = None,
        fallbacks: Sequence[Any] | None = None,
    ) -> None:
        from llmkit import assembly
        from llmkit.config import load_settings
        from llmkit.config.checks import check_base_url

        base_url = check_base_url(base_url)  # as the YAML's is checked: before anything is sent
        settings = settings if settings is not None else load_settings(config_path)
        name = assembly.choose_provider(provider, settings)
        adapter_cls = provider_class(name)
        provider_settings = settings.provider(name)
        defaults = assembly.call_defaults(
            provider_settings, temperature=temperature, max_tokens=max_tokens, max_retries=max_retries,
            retry_delay=retry_delay, timeout=timeout, system_prompt=system_prompt,
        )  # fmt: skip
        keys = assembly.resolve_keys(name, api_keys, settings, adapter_cls.requires_key)
        limits = assembly.resolve_rate_limits(rate_limit, len(keys), settings, name)
        config = assembly.pool_config(pool, settings, acquire_timeout)
        endpoint = base_url or provider_settings.base_url

        self.provider = name
        self.model = model or provider_settings.default_model or adapter_cls.default_model
        self.defaults: LLMConfig = defaults
        self._config_file = settings.source
        self._adapter = adapter_cls(base_url=endpoint, timeout=defaults.timeout)
        self._pool = KeyPool(self._adapter, keys, rate_limits=limits, pool_config=config, clock=clock,
                             shared_limits=assembly.shared_backend(shared_limits))  # fmt: skip
        self._loop = RetryLoop(
            self._pool, assembly.retry_policy(retry, defaults), acquire_timeout=config.acquire_timeout,
            default_output_tokens=next((lim.expected_output_tokens for lim in limits if lim), None)
            or defaults.max_tokens, on_retry=on_retry, on_giveup=on_giveup,
        )  # fmt: skip
        builtins = assembly.builtin_chain(name, settings, log_level=log_level, metrics=metrics, prices=prices,
                                          max_cost=max_cost, cache=cache, endpoint=endpoint)  # fmt: skip
        self._metrics, self._cost, self._cache = builtins.metrics, builtins.cost, builtins.cache
        self._middleware = [*middleware, *builtins.chain]  # the user's first (see llmkit.middleware)
        self._fallbacks = Fallbacks.build(
            fallbacks, functools.partial(LLMClient, settings=settings, clock=clock), LLMClient
        )
        self._build_chains()

    def _build_chains(self) -> None:
        """The middleware chain around the fallbacks (llmkit.fallback) around ``_send``, and its
        async twin (None when some middleware is sync-only: async calls then run it in a thread)."""
        self._handler = build_chain(self._middleware, self._fallbacks.wrap(self._send))
        self._ahandler = build_async_chain(self._middleware, self._fallbacks.wrap_async(self._asend))

    def __repr__(self) -> str:
        return f"LLMClient(provider={self.provider!r}, model={self.model!r}, keys={len(self._pool.slots)})"

    # -- requests ------------------------------------------------------------------

    def _request(self, messages: MessagesInput, kwargs: dict[str, Any], stream: bool = False) -> Request:
        d = self.defaults
        get = kwargs.pop
        cancel = get("_cancel", None)  # the async layer's: stops this call's waits once set
        request = build_request(
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
            tools=get("tools", None),
            tool_choice=get("tool_choice", None),
            json_mode=get("json_mode", False),
            first_token_timeout=get("first_token_timeout", None),
            chunk_timeout=get("chunk_timeout", None),
            extra=kwargs,
            cancel=cancel,
        )
        self._adapter.check_request(request)
        return request

    def complete(self, messages: MessagesInput, **kwargs: Any) -> Any:
        """Complete a prompt or conversation, blocking until the answer is in.

        Keyword arguments: ``model``, ``temperature``, ``max_tokens``,
        ``system_prompt``, ``stop``, ``timeout``, ``max_retries``,
        ``retry_delay`` (so ``**LLMConfig(...).to_dict()`` works);
        ``response_model=`` a pydantic model for a validated structured answer
        (``include_response=True`` returns ``(model, Response)``); anything
        else is passed to the provider as it is. ``tools=`` functions, pydantic
        models or JSON schemas the model may call, ``tool_choice=`` ("auto",
        "none", "required" or a tool), see :mod:`llmkit.tools`; the calls come
        back in ``Response.tool_calls``. ``json_mode=True`` asks for a JSON
        object (exact on OpenAI-compatible APIs, best-effort on Anthropic).

        Returns a :class:`Response`, or the validated model for ``response_model``.
        """
        include_response = kwargs.pop("include_response", False)
        request = self._request(messages, kwargs)
        return self._result(request, self._handler(request), include_response)

    @staticmethod
    def _result(request: Request, response: Response, include_response: bool) -> Any:
        """What ``complete`` returns: the Response, or the validated model (with the Response)."""
        if request.response_model is None:
            return response
        return (response.parsed, response) if include_response else response.parsed

    def _check(self, request: Request) -> None:
        """InvalidRequestError when this client's provider cannot take ``request`` (for fallbacks)."""
        self._adapter.check_request(request)

    def _send(self, request: Request) -> Response:
        """The end of the middleware chain: the pool (structured calls via instructor)."""
        if request.response_model is not None:
            from llmkit.structured import run_structured

            return run_structured(self._loop, request)
        return self._loop.execute(request, cancel=request.cancel)

    async def _asend(self, request: Request) -> Response:
        """:meth:`_send` in asyncio: on the event loop (structured calls: instructor's, in a thread)."""
        if request.response_model is not None:
            from llmkit.engine.aloop import run_in_thread

            return await run_in_thread(self._pool, self._send, request)
        return await self._loop.execute_async(request)

    def stream(self, messages: MessagesInput, **kwargs: Any) -> TextStream:
        """Stream the answer: iterate for text; ``usage`` is set once it ends."""
        request, budget = self._stream_request(messages, kwargs)
        deltas = self._loop.stream(request, request.cancel)
        deltas = settled(deltas, budget, lambda cost: _set_cost(ref, cost))
        from llmkit.streaming import TextStream  # here: a plain call never loads the stream types

        stream = TextStream(deltas, provider=self.provider, model=request.model,
                            on_end=observer_for(request, self._middleware))  # fmt: skip
        ref = weakref.ref(stream)  # no cycle: an abandoned stream releases its key at once
        return stream

    def _stream_request(self, messages: MessagesInput,
                        kwargs: dict[str, Any]) -> tuple[Request, StreamBudget]:  # fmt: skip
        """A stream's request and budget, checked now (BudgetExceededError before anything is sent)."""
        kwargs.pop("cache", None)  # streams are never cached
        request = self._request(messages, kwargs, stream=True)
        return request, self._cost.budget_stream(request, self.provider)

    def stream_complete(self, messages: MessagesInput, **kwargs: Any) -> TextStream:
        """The spec's name for :meth:`stream`."""
        return self.stream(messages, **kwargs)

    def submit(self, messages: MessagesInput, **kwargs: Any) -> Future[Response]:
        """Start ``complete`` on the pool's threads; returns a Future.

        Bad input raises here, at once, rather than inside the Future.
        """
        check = dict(kwargs)
        check.pop("include_response", None)
        self._request(messages, check)  # validate now, in the caller's thread
        return self._pool.executor().submit(self.complete, messages, **kwargs)

    def map(self, prompts: Iterable[MessagesInput], **kwargs: Any) -> list[Response]:
        """Complete many prompts concurrently; results in input order.

        The first error raises, and the calls not finished yet stop: those
        not sent are never sent, those waiting for a key or a retry stop
        waiting (calls already on the wire finish; their usage is counted).
        A Ctrl-C stops them the same way.
        """
        prompts = list(prompts)
        cancel = threading.Event()
        futures = [self.submit(p, _cancel=cancel, **dict(kwargs)) for p in prompts]
        finished = Finished(futures)
        try:
            while finished.pending:
                future = finished.next()
                if future is not None and not future.cancelled() and future.exception() is not None:
                    raise future.exception()  # type: ignore[misc]
        except BaseException:
            self._stop(futures, cancel)
            raise
        return [f.result() for f in futures]

    def _stop(self, futures: list[Future[Response]], cancel: threading.Event) -> None:
        cancel.set()
        self._pool.interrupt()
        for future in futures:
            future.cancel()

    def batch(
        self,
        items: Iterable[Any],
        *,
        response_model: Any = None,
        progress: bool = True,
        checkpoint: str | os.PathLike[str] | None = None,
        on_error: str = "record",
        concurrency: int | None = None,
        shard: tuple[int, int] | None = None,
        retry_failed: bool = True,
        fsync: str = "line",
        **kwargs: Any,
    ) -> BatchResult:
        """Run many items, resumably; results in input order (see :mod:`llmkit.batch`).

        ``items``: prompts, message lists, or dicts ``{"id", "messages" or
        "prompt", ...per-item keyword arguments}`` (id: given, else the index).
        At most ``concurrency`` (default: the pool's worker count) run at once.
        ``checkpoint="run.jsonl"`` records every finished item; a rerun skips
        those that succeeded and retries failed ones (``retry_failed=False``
        keeps them). ``on_error="record"`` puts an :class:`~llmkit.batch.ItemError`
        in a failed item's slot; ``"raise"`` stops at the first error.
        ``shard=(index, count)`` runs only this shard's items, with its own
        checkpoint file. Ctrl-C raises :class:`~llmkit.batch.BatchInterrupted`
        (a KeyboardInterrupt carrying the partial result). Other keyword
        arguments go to :meth:`complete` for every item. ``via="provider"``
        sends the items through the provider's batch API at batch prices
        (with ``poll_interval=``, ``batch_size=``, ``retry_failed_live=``,
        ``on_interrupt=``: see :mod:`llmkit.batch.provider`).
        """
        from llmkit.batch import run_batch, run_provider_batch

        if (via := kwargs.pop("via", "live")) != "live":  # the provider's batch API (llmkit.batch.provider)
            return run_provider_batch(
                self, items, via=via, response_model=response_model, progress=progress,
                checkpoint=checkpoint, on_error=on_error, concurrency=concurrency, shard=shard,
                retry_failed=retry_failed, fsync=fsync, **kwargs,
            )  # fmt: skip

        if concurrency is None:
            concurrency = self._pool.workers()
        return run_batch(
            self.submit, items, response_model=response_model, progress=progress, checkpoint=checkpoint,
            on_error=on_error, concurrency=concurrency, shard=shard, retry_failed=retry_failed,
            fsync=fsync, client_defaults=self._batch_defaults(), **kwargs,
        )  # fmt: skip

    def _batch_defaults(self) -> dict[str, Any]:
        """What this client adds to every item (part of a checkpoint's record of the inputs)."""
        d = self.defaults
        return {"provider": self.provider, "model": self.model, "system_prompt": d.system_prompt,
                "temperature": d.temperature, "max_tokens": d.max_tokens}  # fmt: skip

    # -- pool ----------------------------------------------------------------------

    def usage(self) -> dict[str, Any]:
        """Requests, tokens and dollars so far: totals, ``by_provider``, ``by_model``, ``by_key``.

        Cache hits count in ``requests`` and ``cache_hits`` with no tokens and no
        cost; ``unpriced_requests`` counts calls whose model has no known price.
        """
        return self._cost.tracker.snapshot()

    def metrics(self, reset: bool = False) -> dict[str, Any]:
        """Counters of this client's calls (see :mod:`llmkit.metrics`); ``{}`` with ``metrics=False``.

        ``reset=True`` zeroes them in the same step (for periodic export).
        """
        return self._metrics.snapshot(reset) if self._metrics is not None else {}

    def status(self) -> dict[str, Any]:
        """Pool health: total/available/in-use keys and per-key detail (no key is shown).

        ``config_file`` names the YAML file the client's settings came from (None: none).
        """
        return {**self._pool.status(), "config_file": self._config_file}

    def enable_key(self, key_id: str) -> None:
        """Put a disabled key (by its ``client_id`` fingerprint) back in service."""
        self._pool.enable_key(key_id)

    @property
    def closed(self) -> bool:
        return self._pool.closed

    def close(self, timeout: float | None = 30.0) -> None:
        """Release keys, threads and connections. Idempotent.

        Requests waiting for a key end with PoolClosedError at once; calls on
        the wire get up to ``timeout`` seconds to finish before their
        connections are closed. A closed client refuses new work.
        """
        self._pool.close(timeout)
        self._cache.close()
        self._fallbacks.close(timeout)

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _set_cost(ref: weakref.ref[Any], cost: float | None) -> None:
    """Put a stream's cost on it, if the stream still exists."""
    stream = ref()
    if stream is not None:
        stream.cost = cost
