"""asyncio code: ``AsyncLLMClient`` runs on the same pool, limits and retries as LLMClient.

    python examples/asyncio_program.py

Server choice as in ``script.py``: ``LLMKIT_EXAMPLE_BASE_URL``, else your
configured provider, else a FakeLLMServer started here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from llmkit import AsyncLLMClient, load_settings


@contextlib.asynccontextmanager
async def example_client() -> AsyncIterator[AsyncLLMClient]:
    url = os.environ.get("LLMKIT_EXAMPLE_BASE_URL")
    if url:
        key = os.environ.get("OPENAI_API_KEY", "sk-example-key")
        async with AsyncLLMClient("openai", api_keys=[key], base_url=url) as client:
            yield client
    elif load_settings().default_provider():
        async with AsyncLLMClient() as client:
            yield client
    else:
        from llmkit.testing import FakeLLMServer

        with FakeLLMServer() as server:
            keys = ["sk-fake-key-1", "sk-fake-key-2"]
            async with AsyncLLMClient("openai", api_keys=keys, base_url=server.openai_base_url) as client:
                yield client


async def main() -> None:
    async with example_client() as client:
        response = await client.complete("Hello from asyncio")
        print("answer:", response.content)

        # Many calls at once: the pool spreads them over the keys within their limits.
        answers = await asyncio.gather(*(client.complete(f"Question {i}") for i in range(5)))
        print("gathered:", [a.content for a in answers])

        print("streamed: ", end="")
        async with client.stream("Streaming works in asyncio too") as stream:
            async for text in stream:
                print(text, end="", flush=True)
        print()

        # A call that takes too long can be cancelled; its key is released.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(client.complete("A quick one"), timeout=30)

        print("requests so far:", client.usage()["requests"])


if __name__ == "__main__":
    asyncio.run(main())
