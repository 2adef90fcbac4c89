"""``AsyncLLMClient``: the asyncio face of :class:`~llmkit.LLMClient`, over the same pool.

See :mod:`llmkit.aio` for how an async call runs (on the event loop, holding
no thread) and how cancellation ends it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from llmkit.client import LLMClient, _set_cost
from llmkit.engine.aloop import run_in_thread
from llmkit.stream_hooks import observer_for, settled_async
from llmkit.streaming import AsyncTextStream

if TYPE_CHECKING:
    from llmkit.batch import BatchResult
    from llmkit.engine.pool import KeyPool
    from llmkit.request import Request
    from llmkit.types import MessagesInput, Response

__all__ = ["AsyncLLMClient"]


class AsyncLLMClient:
    """The asyncio face of :class:`~llmkit.LLMClient`: same arguments, same pool, awaitable calls.

    ``AsyncLLMClient(provider, **kwargs)`` builds an LLMClient with those
    arguments; ``AsyncLLMClient.wrap(client)`` puts this face on an existing
    one (both then share one pool; closing either closes it). ``status()``,
    ``usage()``, ``metrics()`` and ``enable_key()`` stay plain calls: they
    only read or flip in-memory state.
    """

    def __init__(self, provider: str | None = None, **kwargs: Any) -> None:
        self._bind(LLMClient(provider, **kwargs))

    @classmethod
    def wrap(cls, client: LLMClient) -> AsyncLLMClient:
        """An async face on ``client`` (no copy: the same keys, limits and threads)."""
        self = cls.__new__(cls)
        self._bind(client)
        return self

    def _bind(self, client: LLMClient) -> None:
        self.sync_client = client
        self.provider = client.provider
        self.model = client.model
        self.defaults = client.defaults
        self._pool: KeyPool = client._pool

    def __repr__(self) -> str:
        return f"AsyncLLMClient(provider={self.provider!r}, model={self.model!r})"

    # -- requests ------------------------------------------------------------------

    async def complete(self, messages: MessagesInput, **kwargs: Any) -> Any:
        """Await :meth:`LLMClient.complete <llmkit.LLMClient.complete>` (same arguments, same result)."""
        client = self.sync_client
        include_response = kwargs.pop("include_response", False)
        request = client._request(messages, kwargs)
        response = await self._handle(request)
        return client._result(request, response, include_response)

    async def _handle(self, request: Request) -> Response:
        handler = self.sync_client._ahandler
        if handler is None:  # a middleware without acall: the whole chain in a worker thread
            return await run_in_thread(self._pool, self.sync_client._handler, request)
        return await handler(request)

    def stream(self, messages: MessagesInput, **kwargs: Any) -> AsyncTextStream:
        """Stream the answer: ``async for text in client.stream(...)``. Nothing is sent until iterated."""
        client = self.sync_client
        request, budget = client._stream_request(messages, kwargs)
        deltas = settled_async(client._loop.stream_async(request), budget, lambda cost: _set_cost(ref, cost))
        stream = AsyncTextStream(deltas, provider=client.provider, model=request.model,
                                 on_end=observer_for(request, client._middleware))  # fmt: skip
        ref = weakref.ref(stream)
        return stream

    def stream_complete(self, messages: MessagesInput, **kwargs: Any) -> AsyncTextStream:
        """The spec's name for :meth:`stream`."""
        return self.stream(messages, **kwargs)

    def submit(self, messages: MessagesInput, **kwargs: Any) -> asyncio.Task[Any]:
        """Start :meth:`complete` as a Task (needs a running loop); bad input raises here, at once."""
        loop = asyncio.get_running_loop()  # outside a loop: RuntimeError, before anything is made
        check = dict(kwargs)
        check.pop("include_response", None)
        self.sync_client._request(messages, check)
        return loop.create_task(self.complete(messages, **kwargs))

    async def map(self, prompts: Iterable[MessagesInput], **kwargs: Any) -> list[Any]:
        """Complete many prompts concurrently; results in input order.

        The first error raises, and the calls not finished yet are cancelled.
        """
        return await self.gather(*prompts, **kwargs)

    async def gather(
        self, *prompts: MessagesInput, return_exceptions: bool = False, **kwargs: Any
    ) -> list[Any]:
        """Like :meth:`map`; ``return_exceptions=True`` puts each error in its prompt's place."""
        tasks = [self.submit(p, **dict(kwargs)) for p in prompts]
        return await _gather(tasks, return_exceptions)

    async def batch(self, items: Iterable[Any], **kwargs: Any) -> BatchResult:
        """Await :meth:`LLMClient.batch <llmkit.LLMClient.batch>` (same arguments).

        It runs in a thread of its own (its items on the pool's threads).
        Cancelling the await does not stop a batch already started: use
        ``checkpoint=`` and close the client to stop one for good.
        """
        items = list(items)
        return await asyncio.to_thread(self.sync_client.batch, items, **kwargs)

    # -- pool ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Pool health: total/available/in-use keys, waiting requests, per-key detail."""
        return self.sync_client.status()

    def usage(self) -> dict[str, Any]:
        """Requests, tokens and dollars so far (see :meth:`LLMClient.usage <llmkit.LLMClient.usage>`)."""
        return self.sync_client.usage()

    def metrics(self, reset: bool = False) -> dict[str, Any]:
        """Counters of this client's calls (see :mod:`llmkit.metrics`)."""
        return self.sync_client.metrics(reset)

    def enable_key(self, key_id: str) -> None:
        """Put a disabled key back in service."""
        self.sync_client.enable_key(key_id)

    @property
    def closed(self) -> bool:
        return self.sync_client.closed

    async def aclose(self, timeout: float | None = 30.0) -> None:
        """Close the client (waiting for running calls in a thread, not in the loop). Idempotent.

        ``timeout``: as for :meth:`LLMClient.close <llmkit.LLMClient.close>` (the same 30 s default).
        """
        await asyncio.to_thread(self.sync_client.close, timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Close, blocking (for code outside the loop)."""
        self.sync_client.close(timeout)

    async def __aenter__(self) -> AsyncLLMClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


async def _gather(tasks: list[asyncio.Task[Any]], return_exceptions: bool) -> list[Any]:
    try:
        return list(await asyncio.gather(*tasks, return_exceptions=return_exceptions))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
