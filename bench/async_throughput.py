"""Throughput of AsyncLLMClient against the sync pool, at the same concurrency, on the same server.

``--requests`` completions at ``--concurrency`` at a time, against a
FakeLLMServer in a child process that answers after ``--latency`` seconds (a
stand-in for the provider's think time), through:

* ``sync pool``: ``LLMClient.map`` (the pool's worker threads);
* ``async``: ``AsyncLLMClient.complete`` from asyncio tasks, at most
  ``--concurrency`` at once (an ``asyncio.Semaphore``); the calls run on the
  same worker threads;
* ``openai AsyncOpenAI`` (reference only): the raw SDK's own async client.

Both llmkit contenders share one client (4 keys, ``max_workers`` =
concurrency), interleaved round by round; the median of the per-round
ratios is reported.

    python bench/async_throughput.py                    # defaults: 5 rounds
    python bench/async_throughput.py --rounds 9 --latency 0.05

Target (issue 4): async throughput at least 0.9x the sync pool's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable

from llmkit import AsyncLLMClient, LLMClient, PoolConfig
from llmkit.config import load_settings
from llmkit.testing import FakeLLMServer

KEYS = [f"sk-bench-async-{i}" for i in range(4)]


def prompts(count: int) -> list[str]:
    return [f"Request number {i}: say something short." for i in range(count)]


def sync_pool(client: LLMClient, count: int) -> float:
    started = time.perf_counter()
    client.map(prompts(count), max_tokens=32)
    return count / (time.perf_counter() - started)


async def _async_run(aclient: AsyncLLMClient, count: int, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> None:
        async with gate:
            await aclient.complete(prompt, max_tokens=32)

    await asyncio.gather(*(one(p) for p in prompts(count)))


def async_client(aclient: AsyncLLMClient, loop: asyncio.AbstractEventLoop) -> Callable[[int, int], float]:
    def measure(count: int, concurrency: int) -> float:
        started = time.perf_counter()
        loop.run_until_complete(_async_run(aclient, count, concurrency))
        return count / (time.perf_counter() - started)

    return measure


def raw_async_openai(server, loop: asyncio.AbstractEventLoop) -> Callable[[int, int], float]:
    import openai

    client = openai.AsyncOpenAI(api_key=KEYS[0], base_url=server.openai_base_url, max_retries=0)

    async def run(count: int, concurrency: int) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(prompt: str) -> None:
            async with gate:
                await client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], max_tokens=32
                )

        await asyncio.gather(*(one(p) for p in prompts(count)))

    def measure(count: int, concurrency: int) -> float:
        started = time.perf_counter()
        loop.run_until_complete(run(count, concurrency))
        return count / (time.perf_counter() - started)

    return measure


def run(args: argparse.Namespace) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    loop = asyncio.new_event_loop()
    with FakeLLMServer.spawn(latency=args.latency) as server:
        client = LLMClient(
            "openai", api_keys=KEYS, base_url=server.openai_base_url, settings=load_settings(environ={}),
            pool=PoolConfig(max_workers=args.concurrency),
        )  # fmt: skip
        contenders: dict[str, Callable[[int, int], float]] = {
            "sync pool (map)": lambda count, _: sync_pool(client, count),
            "async": async_client(AsyncLLMClient.wrap(client), loop),
        }
        if args.raw:
            contenders["openai AsyncOpenAI"] = raw_async_openai(server, loop)
        for measure in contenders.values():  # warm up: imports, threads, connections
            measure(args.concurrency * 2, args.concurrency)
        for round_no in range(args.rounds):
            for name, measure in contenders.items():
                results.setdefault(name, []).append(measure(args.requests, args.concurrency))
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
        client.close()
    loop.close()
    return results


def report(results: dict[str, list[float]], args: argparse.Namespace) -> bool:
    print(
        f"\n{args.requests} requests at concurrency {args.concurrency}, server latency "
        f"{args.latency * 1000:.0f} ms; medians over {args.rounds} rounds"
    )
    for name, values in results.items():
        spread = f"{min(values):.0f}-{max(values):.0f}"
        print(f"  {name:22} {statistics.median(values):8.0f} req/s   (range {spread})")
    sync, mine = results["sync pool (map)"], results["async"]
    ratio = statistics.median(m / s for m, s in zip(mine, sync))
    ok = ratio >= 0.9
    print(f"\n  async / sync pool: {ratio:.3f}x  {'ok' if ok else 'MISSED'}   (target >= 0.90)")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.02, help="server seconds before each reply")
    parser.add_argument("--no-raw", dest="raw", action="store_false", help="skip the AsyncOpenAI reference")
    args = parser.parse_args()
    return 0 if report(run(args), args) else 1


if __name__ == "__main__":
    sys.exit(main())
