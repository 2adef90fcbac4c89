"""Throughput at a provider's pace: AsyncLLMClient against the raw AsyncOpenAI, and submit/map, no pool sized.

``--requests`` completions against a FakeLLMServer in a child process that
answers each after ``--latency`` seconds (the provider's think time), through:

* ``AsyncOpenAI``: the raw SDK's async client, ``--concurrency`` calls at a time
  (an ``asyncio.Semaphore``), the reference;
* ``async, 1 key`` / ``async, 4 keys``: ``AsyncLLMClient.complete`` the same way;
* ``map, 1 key`` / ``map, 4 keys``: ``LLMClient.map`` of all the requests with
  the default ``PoolConfig`` (no ``max_workers``): the pool's threads are what
  the keys allow in flight. ``1 key`` has no limits (64 threads); ``4 keys``
  each take ``max_concurrent`` = concurrency / 4, so the keys' capacity is the
  same ``--concurrency`` calls in flight.

No contender is given a thread pool size. Contenders run one after another in
a rotating order, round by round; ratios are medians of per-round ratios
against AsyncOpenAI. ``ideal`` is concurrency / latency.

    python bench/async_throughput.py                     # defaults: 5 rounds, 64 at a time, 100 ms
    python bench/async_throughput.py --rounds 9 --latency 0.05 --requests 2000

Targets (issue 16): async at concurrency 64 with 100 ms latency >= 1.0x the raw
async SDK's throughput, with 1 key and with 4; submit/map reach the keys'
capacity without the user sizing a thread pool (>= 0.9x the raw async SDK's
throughput at the same calls in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from _common import Target, command, median_ratio, print_targets

from llmkit import AsyncLLMClient, LLMClient, RateLimit
from llmkit.config import load_settings
from llmkit.testing import FakeLLMServer

KEYS = [f"sk-bench-async-{i}" for i in range(4)]
Measure = Callable[[int], float]  # requests -> requests per second


def prompts(count: int) -> list[str]:
    return [f"Request number {i}: say something short." for i in range(count)]


def gated(loop: asyncio.AbstractEventLoop, concurrency: int, one: Callable[[str], Any]) -> Measure:
    """``one(prompt)`` for every prompt, ``concurrency`` at a time, on ``loop``."""

    async def run(count: int) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def call(prompt: str) -> None:
            async with gate:
                await one(prompt)

        await asyncio.gather(*(call(p) for p in prompts(count)))

    def measure(count: int) -> float:
        started = time.perf_counter()
        loop.run_until_complete(run(count))
        return count / (time.perf_counter() - started)

    return measure


def raw_async_openai(server: Any, loop: asyncio.AbstractEventLoop, concurrency: int) -> Measure:
    import openai

    client = openai.AsyncOpenAI(api_key=KEYS[0], base_url=server.openai_base_url, max_retries=0)

    async def one(prompt: str) -> None:
        await client.chat.completions.create(model="gpt-4o-mini", max_tokens=32,
                                             messages=[{"role": "user", "content": prompt}])  # fmt: skip

    return gated(loop, concurrency, one)


def llmkit_client(server: Any, keys: list[str], rate_limit: RateLimit | None = None) -> LLMClient:
    return LLMClient("openai", api_keys=keys, base_url=server.openai_base_url, rate_limit=rate_limit,
                     settings=load_settings(environ={}), max_tokens=32)  # fmt: skip


def llmkit_async(client: LLMClient, loop: asyncio.AbstractEventLoop, concurrency: int) -> Measure:
    aclient = AsyncLLMClient.wrap(client)
    return gated(loop, concurrency, aclient.complete)


def llmkit_map(client: LLMClient) -> Measure:
    def measure(count: int) -> float:
        started = time.perf_counter()
        client.map(prompts(count))
        return count / (time.perf_counter() - started)

    return measure


def run(args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, int]]:
    results: dict[str, list[float]] = {}
    loop = asyncio.new_event_loop()
    per_key = RateLimit(max_concurrent=max(1, args.concurrency // len(KEYS)))
    with FakeLLMServer.spawn(latency=args.latency) as server:
        clients = {
            "async, 1 key": llmkit_client(server, KEYS[:1]),
            "async, 4 keys": llmkit_client(server, KEYS),
            "map, 1 key": llmkit_client(server, KEYS[:1]),
            "map, 4 keys": llmkit_client(server, KEYS, per_key),
        }
        contenders: dict[str, Measure] = {
            "AsyncOpenAI": raw_async_openai(server, loop, args.concurrency),
            "async, 1 key": llmkit_async(clients["async, 1 key"], loop, args.concurrency),
            "async, 4 keys": llmkit_async(clients["async, 4 keys"], loop, args.concurrency),
            "map, 1 key": llmkit_map(clients["map, 1 key"]),
            "map, 4 keys": llmkit_map(clients["map, 4 keys"]),
        }
        workers = {name: client._pool.workers() for name, client in clients.items() if name.startswith("map")}
        for measure in contenders.values():  # warm up: imports, threads, connections
            measure(args.concurrency * 2)
        names = list(contenders)
        for round_no in range(args.rounds):
            for name in names[round_no % len(names) :] + names[: round_no % len(names)]:
                results.setdefault(name, []).append(contenders[name](args.requests))
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
        for client in clients.values():
            client.close()
    loop.close()
    return results, workers


def report(results: dict[str, list[float]], workers: dict[str, int], args: argparse.Namespace) -> bool:
    print(f"$ {command()}")
    ideal = args.concurrency / args.latency
    print(f"{args.requests} requests per contender per round, server latency {args.latency * 1000:.0f} ms, "
          f"{args.concurrency} at a time (ideal {ideal:.0f}/s); medians over {args.rounds} rounds\n")
    print(f"{'contender':16} {'req/s':>8} {'range':>11} {'vs AsyncOpenAI':>15}   threads")
    raw = results["AsyncOpenAI"]
    for name, values in results.items():
        ratio = "" if name == "AsyncOpenAI" else f"{median_ratio(values, raw):14.3f}x"
        threads = f"   {workers[name]} (default PoolConfig)" if name in workers else ""
        print(f"{name:16} {statistics.median(values):8.0f} {min(values):5.0f}-{max(values):<5.0f} {ratio:>15}"
              f"{threads}")  # fmt: skip
    print(f"(threads alive at the end: {threading.active_count()})")
    targets = [
        Target("async 1 key", median_ratio(results["async, 1 key"], raw), 1.0, at_most=False),
        Target("async 4 keys", median_ratio(results["async, 4 keys"], raw), 1.0, at_most=False),
        Target("map 1 key", median_ratio(results["map, 1 key"], raw), 0.9, at_most=False),
        Target("map 4 keys", median_ratio(results["map, 4 keys"], raw), 0.9, at_most=False),
    ]
    return print_targets(targets)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1280)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1, help="server seconds before each reply")
    args = parser.parse_args()
    return 0 if report(*run(args), args) else 1


if __name__ == "__main__":
    sys.exit(main())
