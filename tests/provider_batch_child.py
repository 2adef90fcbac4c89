"""Runs one provider batch in a child process, for tests/test_provider_batch_resume.py to kill with SIGKILL.

It imports everything first and prints ``READY``, then reads one JSON line
``{"provider", "base_url", "model", "checkpoint", "items", "batch_size"}``
from stdin and runs the batch (polling every 20 ms) until it is killed.
"""

from __future__ import annotations

import json
import sys

import anthropic  # noqa: F401 - the SDKs load lazily; load them before READY
import openai  # noqa: F401
import requests  # noqa: F401

from llmkit import LLMClient


def main() -> None:
    print("READY", flush=True)
    args = json.loads(sys.stdin.readline())
    with LLMClient(
        provider=args["provider"],
        api_keys=["sk-test-batch-1"],
        base_url=args["base_url"],
        model=args["model"],
    ) as client:
        prompts = [f"item {i}" for i in range(args["items"])]
        client.batch(prompts, via="provider", checkpoint=args["checkpoint"], batch_size=args["batch_size"],
                     poll_interval=0.02, progress=False)  # fmt: skip


if __name__ == "__main__":
    main()
