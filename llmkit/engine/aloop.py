"""The retry loop in asyncio: the same decisions as :mod:`llmkit.engine.loop`, holding no thread.

A call waits for its key as an asyncio task in the pool's one queue
(:meth:`KeyPool.acquire_async`), sends over the endpoint's async client, backs
off with ``asyncio.sleep`` and releases its key under the pool's lock (no I/O;
with Redis-shared limits the release's Redis round trip runs in a thread, never
on the loop). Cancelling the task (``task.cancel()``, ``asyncio.wait_for``)
takes it out of the queue or out of its HTTP call at once and gives its key back.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from llmkit.engine.calls import CallState
from llmkit.engine.stream_state import StreamState, broken, usage_counts
from llmkit.errors import LLMError
from llmkit.redaction import scrub_exception

if TYPE_CHECKING:
    from llmkit.engine.calls import Decision
    from llmkit.engine.limiter import Cost
    from llmkit.engine.pool import KeyPool
    from llmkit.engine.slot import Lease
    from llmkit.providers.base import ProviderReply, StreamDelta
    from llmkit.request import Request
    from llmkit.types import Response

__all__ = ["AsyncRetry", "AsyncSend", "run_in_thread"]

AsyncSend = Callable[["Lease", "Request"], Awaitable["ProviderReply"]]
_T = TypeVar("_T")


async def run_in_thread(pool: KeyPool, fn: Callable[[Request], _T], request: Request) -> _T:
    """Await a blocking ``fn(request)`` on the pool's threads (a sync-only middleware's chain,
    instructor's structured call); cancelling stops its waits for a key or a backoff."""
    import asyncio  # here: the sync path never imports asyncio
    cancel = threading.Event()
    future = pool.executor().submit(fn, replace(request, cancel=cancel))
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        cancel.set()
        pool.interrupt()
        raise


class AsyncRetry:
    """The async half of :class:`~llmkit.engine.loop.RetryLoop` (a mixin: it uses the loop's state)."""

    pool: KeyPool

    # provided by RetryLoop
    start: Callable[[Request], CallState]
    estimate: Callable[[Request], Cost]
    _tag: Callable[[LLMError, Lease], LLMError]
    _judge: Callable[[CallState, Lease, LLMError, Cost], Decision]
    _after_success: Callable[[CallState, Lease, ProviderReply, float], Response]

    async def execute_async(self, request: Request, send: AsyncSend | None = None) -> Response:
        """:meth:`RetryLoop.execute` in asyncio (``send`` default: the provider's ``acall``)."""
        import asyncio  # here: the sync path never imports asyncio
        send = send or self._asend_plain
        call = self.start(request)
        cost = self.estimate(request)
        self.pool.check_fits(cost)
        clock = self.pool.clock
        while True:
            lease = await self._acquire_async(call, cost)
            call.tries += 1
            started = clock.now()
            lease.sending(started)
            try:
                reply = await send(lease, request)
            except LLMError as error:
                await self._after_failure_async(call, lease, self._tag(error, lease), cost)
                continue
            except BaseException as exc:  # cancelled, or a bug: the key goes back unjudged
                await self._release(self.pool.release_unjudged, lease)
                scrub_exception(exc, (lease.slot.secret,))
                raise
            if lease.slot.limiter.shared is not None:  # the books' Redis round trip: not on the loop
                return await asyncio.to_thread(self._after_success, call, lease, reply, clock.now() - started)
            return self._after_success(call, lease, reply, clock.now() - started)

    async def _asend_plain(self, lease: Lease, request: Request) -> ProviderReply:
        return await self.pool.provider.acall(lease.slot, request, lease.deadline)

    async def _acquire_async(self, call: CallState, cost: Cost) -> Lease:
        clock = self.pool.clock
        now = clock.now()
        try:
            lease = await self.pool.acquire_async(cost, deadline=call.acquire_deadline(now), avoid=call.avoid,
                                                  note=call.note())  # fmt: skip
        finally:
            call.waited += clock.now() - now
        lease.deadline = call.wall_deadline(clock.now())
        return lease

    async def _after_failure_async(self, call: CallState, lease: Lease, error: LLMError, cost: Cost) -> None:
        import asyncio  # here: the sync path never imports asyncio
        if lease.slot.limiter.shared is not None:
            decision = await asyncio.to_thread(self._judge, call, lease, error, cost)
        else:
            decision = self._judge(call, lease, error, cost)
        if decision.sleep:
            await self.pool.clock.asleep(decision.sleep)

    async def _release(self, release: Callable[..., None], lease: Lease, *args: Any) -> None:
        import asyncio  # here: the sync path never imports asyncio
        if lease.slot.limiter.shared is not None:
            await asyncio.to_thread(release, lease, *args)
        else:
            release(lease, *args)

    async def stream_async(self, request: Request) -> AsyncIterator[StreamDelta]:
        """:meth:`RetryLoop.stream` in asyncio: retried only before any output."""
        call = self.start(request)
        cost = self.estimate(request)
        self.pool.check_fits(cost)
        while True:
            lease = await self._acquire_async(call, cost)
            call.tries += 1
            state = StreamState(call.tries)
            try:
                async for delta in self._stream_once_async(lease, request, state):
                    yield delta
                return
            except LLMError as error:
                error = self._tag(error, lease)
                if state.delivered:
                    await self._release(self.pool.release_failure, lease, error, 0.0)
                    raise broken(error, state) from error
                await self._after_failure_async(call, lease, error, cost)
            except BaseException as exc:  # closed early, cancelled
                await self._release(self.pool.release_unjudged, lease)
                scrub_exception(exc, (lease.slot.secret,))
                raise

    async def _stream_once_async(self, lease: Lease, request: Request,
                                 state: StreamState) -> AsyncIterator[StreamDelta]:  # fmt: skip
        from llmkit.providers.base import StreamDelta

        usage = counted = None
        opened = False
        yield StreamDelta(key_id=lease.slot.key_id, attempts=state.attempts)
        lease.sending(self.pool.clock.now())
        async for delta in self.pool.provider.acall_stream(lease.slot, request, lease.deadline):
            if not opened or delta.limits is not None:  # the reply's headers: heard now, not at the end
                await self._release(self.pool.headers_in, lease, delta.limits)
                opened = True
                if delta.limits is not None:
                    delta = replace(delta, limits=None)
            if delta.request_id:
                state.request_id = delta.request_id
            if delta.usage is not None:
                usage, counted = delta.usage, delta.limit_input_tokens
            if delta.delivers_output():
                state.delivered = True
                state.chars += len(delta.text)
            yield delta
        tokens = (None, None) if usage is None else usage_counts(usage, counted)
        await self._release(self.pool.release_success, lease, *tokens, None)
