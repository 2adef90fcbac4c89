"""Runs one batch in a child process, for tests/test_batch.py to kill with SIGKILL.

It imports everything first and prints ``READY``, then reads one JSON line
``{"base_url", "checkpoint", "items", "concurrency"}`` from stdin and runs
the batch, so the test can start it early and time only the batch.
"""

from __future__ import annotations

import json
import sys

import openai  # noqa: F401 - the SDK loads lazily; load it before READY

from llmkit import LLMClient


def main() -> None:
    print("READY", flush=True)
    args = json.loads(sys.stdin.readline())
    with LLMClient(
        provider="openai", api_keys=["sk-test-1", "sk-test-2"], base_url=args["base_url"], model="gpt-4o-mini"
    ) as client:
        prompts = [f"item {i}" for i in range(args["items"])]
        client.batch(prompts, checkpoint=args["checkpoint"], concurrency=args["concurrency"], progress=False)


if __name__ == "__main__":
    main()
