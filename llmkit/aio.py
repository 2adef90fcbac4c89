"""``AsyncLLMClient``: the asyncio face of :class:`~llmkit.LLMClient`, over the same pool.

>>> async with AsyncLLMClient(provider="openai") as client:   # doctest: +SKIP
...     r = await client.complete("Hi")
...     async for text in client.stream("Write a haiku"):
...         print(text, end="")

An async call is a task on the event loop, not a job on a thread: it waits
for its key in the pool's one queue (the same queue, limits and books as the
sync callers), sends over the endpoint's async HTTP client, backs off with
``asyncio.sleep`` and runs the same middleware (their ``acall``), so one
event loop can keep hundreds of calls in flight. Three things still use a
worker thread, each for that call alone: a middleware of yours without an
``acall`` (the call's whole chain then runs in a thread), structured outputs
(instructor's blocking path), and the Redis round trips of shared limits.

The spec's manager API has its twin here too (``await`` the root
``llmkit.get_llm_manager()``, or use this module's)::

    manager = await get_llm_manager()
    client = manager.get_client(LLMProvider.ANTHROPIC)
    response = await client.complete(messages)
    await manager.close()

Cancellation (``task.cancel()``, ``asyncio.wait_for``, ``asyncio.timeout``)
ends a call at once wherever it is: waiting for a key (it leaves the queue),
on the wire (the HTTP request is abandoned and the key given back, the answer
unread), or in a backoff sleep. A stream releases its key when it ends, is
closed (``await stream.aclose()``, ``async with``) or its task is cancelled.
"""

from __future__ import annotations

from typing import Any

from llmkit.aclient import AsyncLLMClient
from llmkit.amanager import AsyncLLMManager
from llmkit.manager import get_llm_manager as _get_sync_manager
from llmkit.streaming import AsyncTextStream

__all__ = ["AsyncLLMClient", "AsyncLLMManager", "AsyncTextStream", "get_llm_manager"]


async def get_llm_manager(**kwargs: Any) -> AsyncLLMManager:
    """``manager = await get_llm_manager()``: the process-wide manager, with an async face."""
    return AsyncLLMManager(_get_sync_manager(**kwargs))
