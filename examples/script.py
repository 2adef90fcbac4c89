"""A plain script: one completion, a short conversation, a few concurrent calls, usage and status.

    python examples/script.py

Which server it talks to:

* ``LLMKIT_EXAMPLE_BASE_URL`` set (e.g. to what ``llmkit serve-fake`` prints
  as its OpenAI base URL): that server, with ``OPENAI_API_KEY`` or a made-up key;
* else, a key configured (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, a YAML
  file in ``LLM_CONFIG_PATH``...): your provider, for real;
* else a FakeLLMServer started here, which echoes prompts back.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from llmkit import LLMClient, Message, MessageRole, load_settings


@contextlib.contextmanager
def example_client() -> Iterator[LLMClient]:
    url = os.environ.get("LLMKIT_EXAMPLE_BASE_URL")
    if url:
        key = os.environ.get("OPENAI_API_KEY", "sk-example-key")
        with LLMClient("openai", api_keys=[key], base_url=url) as client:
            yield client
    elif load_settings().default_provider():
        with LLMClient() as client:  # keys and settings from the environment / YAML
            yield client
    else:
        from llmkit.testing import FakeLLMServer

        with (
            FakeLLMServer() as server,
            LLMClient(
                "openai", api_keys=["sk-fake-key-1", "sk-fake-key-2"], base_url=server.openai_base_url
            ) as client,
        ):
            yield client


def main() -> None:
    with example_client() as client:
        response = client.complete("What is the capital of France?", max_tokens=50)
        print("answer:", response.content)
        print(
            f"  {response.usage.input_tokens} tokens in, {response.usage.output_tokens} out, "
            f"key {response.key_id}, cost {response.cost}"
        )

        conversation = [
            Message(MessageRole.SYSTEM, "Be brief."),
            Message(MessageRole.USER, "Name a prime number."),
        ]
        print("conversation:", client.complete(conversation, temperature=0.2).content)

        futures = [client.submit(f"Give me fact number {i}") for i in range(5)]
        print("concurrent:", [f.result().content for f in futures])

        usage = client.usage()
        print(f"usage: {usage['requests']} requests, ${usage['cost']:.6f}")
        status = client.status()
        print(f"pool: {status['total_clients']} keys, {status['available_clients']} available")


if __name__ == "__main__":
    main()
