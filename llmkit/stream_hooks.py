"""What a client wraps around a stream's deltas: its budget, and the middleware that watch streams.

Streams do not pass through the middleware chain (see :mod:`llmkit.middleware`):
their budget is reserved when the stream starts (an unstarted stream holds
nothing) and charged with its real usage however it ends; the middleware with
an ``observe_stream`` hook (logging, metrics) are told once how it ended.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmkit.costs.budget import StreamBudget
    from llmkit.middleware import Middleware
    from llmkit.providers.base import StreamDelta
    from llmkit.request import Request
    from llmkit.streaming import StreamObserver
    from llmkit.types import Response, Usage

__all__ = ["CostSink", "observer_for", "settled", "settled_async"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

CostSink = Callable[["float | None"], None]  # receives the stream's cost once it is charged


def observer_for(request: Request, middlewares: Sequence[Middleware]) -> StreamObserver | None:
    """What tells the middleware that watch streams (logging, metrics) how one ended."""
    from llmkit.middleware import stream_observers

    hooks = stream_observers(middlewares)
    if not hooks:
        return None

    def observe(response: Response, error: BaseException | None) -> None:
        for hook in hooks:
            try:
                hook(request, response, error)
            except Exception:  # one observer's bug must not hide the stream from the others
                logger.exception("A stream observer failed: %r (the stream itself is unaffected)", hook)

    return observe


def settled(deltas: Iterator[StreamDelta], budget: StreamBudget, cost: CostSink) -> Iterator[StreamDelta]:
    """Pass a stream through: reserved once it starts, charged for its usage however it ends."""
    budget.start()
    usage: Usage | None = None
    try:
        for delta in deltas:
            if delta.usage is not None:
                usage = delta.usage
            yield delta
    finally:
        close = getattr(deltas, "close", None)
        if close is not None:
            close()  # closed early: the key goes back now, not when the generator is collected
        cost(budget.settle(usage))


async def settled_async(
    deltas: AsyncIterator[StreamDelta], budget: StreamBudget, cost: CostSink
) -> AsyncIterator[StreamDelta]:
    """:func:`settled` for an async stream."""
    budget.start()
    usage: Usage | None = None
    try:
        async for delta in deltas:
            if delta.usage is not None:
                usage = delta.usage
            yield delta
    finally:
        aclose = getattr(deltas, "aclose", None)
        try:
            if aclose is not None:
                await aclose()
        finally:
            cost(budget.settle(usage))
