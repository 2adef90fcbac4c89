"""``AsyncLLMClient``: a thin asyncio layer over the same pool as :class:`~llmkit.LLMClient`.

>>> async with AsyncLLMClient(provider="openai") as client:   # doctest: +SKIP
...     r = await client.complete("Hi")
...     async for text in client.stream("Write a haiku"):
...         print(text, end="")

Nothing here is a second implementation: every call runs the blocking client's
code on the pool's worker threads (``pool.executor()``), so limits, retries,
middleware, costs and the cache behave exactly as they do for sync callers.
The spec's manager API has its twin here too (``await`` the root
``llmkit.get_llm_manager()``, or use this module's)::

    manager = await get_llm_manager()
    client = manager.get_client(LLMProvider.ANTHROPIC)
    response = await client.complete(messages)
    await manager.close()

Cancellation (``task.cancel()``, ``asyncio.wait_for``, ``asyncio.timeout``):

* a request still waiting for a key stops waiting at once: the worker's
  ``threading.Event`` is set and the pool's waiters are woken, the worker
  raises ``concurrent.futures.CancelledError`` out of ``KeyPool.acquire`` and
  leaves the queue; a request still queued for a worker thread never runs;
* a request whose HTTP call is in flight cannot be torn out of the blocking
  SDK: its key is released when that call returns (the answer is dropped, and
  it is not retried);
* a stream releases its key when closed: at once with ``await stream.aclose()``
  (or ``async with``, or dropping it), or, if a chunk read is in flight when
  its task is cancelled, as soon as that read returns.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from llmkit.client import LLMClient
from llmkit.manager import LLMManager, LLMProvider
from llmkit.manager import get_llm_manager as _get_sync_manager

if TYPE_CHECKING:
    from llmkit.batch import BatchResult
    from llmkit.config import RateLimit
    from llmkit.engine.pool import KeyPool
    from llmkit.streaming import TextStream
    from llmkit.types import MessagesInput, Response, ToolCall, Usage

__all__ = ["AsyncLLMClient", "AsyncLLMManager", "AsyncTextStream", "get_llm_manager"]

_T = TypeVar("_T")
_END = object()  # a finished stream (StopIteration cannot cross a Future)


def _read(stream_ref: weakref.ref[TextStream]) -> Any:
    """One chunk of a blocking stream, in a worker thread (``_END`` once it is over)."""
    stream = stream_ref()
    if stream is None:
        return _END
    return next(stream, _END)


async def _run_cancellable(pool: KeyPool, fn: Callable[..., _T], *args: Any, **kw: Any) -> _T:
    """Await ``fn(*args, **kw)`` on the pool's threads; cancelling stops its wait for a key."""
    cancel = threading.Event()
    future = pool.executor().submit(fn, *args, _cancel=cancel, **kw)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        cancel.set()
        pool.interrupt()
        raise


class AsyncTextStream:
    """``async for text in stream``; ``usage``, ``finish_reason``, ``tool_calls``, ``response`` once it ends.

    Each chunk is read by one hop to a worker thread (``next`` on the blocking
    :class:`~llmkit.TextStream`), so no thread is pinned between chunks and
    closing an idle stream releases its key at once.
    """

    def __init__(self, stream: TextStream, pool: KeyPool, cancel: threading.Event) -> None:
        self._stream = stream
        self._pool = pool
        self._cancel = cancel
        self._reading: Future[Any] | None = None
        self._finished = False

    def __repr__(self) -> str:
        return f"AsyncTextStream(provider={self.provider!r}, model={self.model!r}, done={self.done})"

    def __aiter__(self) -> AsyncTextStream:
        return self

    async def __anext__(self) -> str:
        if self._finished:
            raise StopAsyncIteration
        # The worker gets a weak reference: a stream dropped by its reader is closed at once,
        # not whenever the worker thread lets go of its finished work item.
        read = self._reading = self._pool.executor().submit(_read, weakref.ref(self._stream))
        try:
            item = await asyncio.wrap_future(read)
        except asyncio.CancelledError:
            self._abandon(read)
            raise
        except BaseException:
            self._finished = True
            raise
        if item is _END:
            self._finished = True
            raise StopAsyncIteration
        return item

    def _abandon(self, read: Future[Any]) -> None:
        """Stop: wake a wait for a key, and close the stream once the read in flight is over."""
        self._finished = True
        self._cancel.set()
        self._pool.interrupt()
        read.add_done_callback(lambda _: self._stream.close())

    async def aclose(self) -> None:
        """Stop early and release the key (at once, unless a chunk read is in flight). Idempotent."""
        self.close()

    def close(self) -> None:
        """The same as :meth:`aclose`, callable without awaiting."""
        read = self._reading
        if read is not None and not read.done():
            self._abandon(read)
        else:
            self._finished = True
            self._stream.close()

    async def __aenter__(self) -> AsyncTextStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- what the blocking stream knows ----------------------------------------------

    @property
    def provider(self) -> str:
        return self._stream.provider

    @property
    def model(self) -> str:
        return self._stream.model

    @property
    def usage(self) -> Usage | None:
        return self._stream.usage

    @property
    def finish_reason(self) -> str | None:
        return self._stream.finish_reason

    @property
    def request_id(self) -> str | None:
        return self._stream.request_id

    @property
    def key_id(self) -> str | None:
        """The fingerprint of the key serving the stream."""
        return self._stream.key_id

    @property
    def attempts(self) -> int:
        return self._stream.attempts

    @property
    def cost(self) -> float | None:
        """US dollars, once the stream has ended (None: unpriced model)."""
        return self._stream.cost

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls of the turn (set when it ends)."""
        return self._stream.tool_calls

    @property
    def refusal(self) -> str | None:
        """The refusal message, when the model refused (``finish_reason`` is then ``"refusal"``)."""
        return self._stream.refusal

    @property
    def thinking(self) -> str:
        """The thinking text received so far."""
        return self._stream.thinking

    @property
    def server_tool_calls(self) -> tuple[Any, ...]:
        """The calls of tools the provider ran itself (never in ``tool_calls``)."""
        return self._stream.server_tool_calls

    @property
    def parts(self) -> tuple[Any, ...]:
        """The turn's blocks in order, when it held more than text (as ``Response.parts``)."""
        return self._stream.parts

    @property
    def done(self) -> bool:
        return self._stream.done

    @property
    def text(self) -> str:
        """The text received so far."""
        return self._stream.text

    @property
    def response(self) -> Response:
        """The stream so far as a Response (complete once ``done``)."""
        return self._stream.response


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
        return await _run_cancellable(self._pool, self.sync_client.complete, messages, **kwargs)

    def stream(self, messages: MessagesInput, **kwargs: Any) -> AsyncTextStream:
        """Stream the answer: ``async for text in client.stream(...)``. Nothing is sent until iterated."""
        cancel = threading.Event()
        stream = self.sync_client.stream(messages, _cancel=cancel, **kwargs)
        return AsyncTextStream(stream, self._pool, cancel)

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


class AsyncLLMManager:
    """The async twin of :class:`~llmkit.LLMManager`, sharing its pooled clients.

    ``get_client`` and ``get_status`` stay plain calls, as the spec writes them
    (``client = manager.get_client(...)``); they build or read objects in memory.
    """

    def __init__(self, manager: LLMManager) -> None:
        self.sync_manager = manager

    def __repr__(self) -> str:
        return f"AsyncLLMManager({self.sync_manager!r})"

    def get_client(self, provider: LLMProvider | str | None = None, **overrides: Any) -> AsyncLLMClient:
        """The provider's pooled client (the sync manager's own), with an async face."""
        return AsyncLLMClient.wrap(self.sync_manager.get_client(provider, **overrides))

    async def get_or_create_client(
        self,
        provider: LLMProvider | str | None = None,
        *,
        rate_limit_config: RateLimit | None = None,
        **kw: Any,
    ) -> AsyncLLMClient:
        """The spec's spelling: ``await manager.get_or_create_client(provider, rate_limit_config=...)``."""
        client = self.sync_manager.get_or_create_client(provider, rate_limit_config=rate_limit_config, **kw)
        return AsyncLLMClient.wrap(client)

    def get_status(self, provider: LLMProvider | str | None = None) -> dict[str, Any]:
        """Pool status of a provider's client; creates no client (see :meth:`LLMManager.get_status`)."""
        return self.sync_manager.get_status(provider)

    async def close_client(self, provider: LLMProvider | str) -> None:
        await asyncio.to_thread(self.sync_manager.close_client, provider)

    async def close(self) -> None:
        """Close every client. Idempotent."""
        await asyncio.to_thread(self.sync_manager.close)

    async def __aenter__(self) -> AsyncLLMManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def get_llm_manager(**kwargs: Any) -> AsyncLLMManager:
    """``manager = await get_llm_manager()``: the process-wide manager, with an async face."""
    return AsyncLLMManager(_get_sync_manager(**kwargs))
