"""Time to first token: llmkit's streams (sync and async) against the raw SDKs' streams.

The same FakeLLMServer, in a child process, streams every reply with
``--interval`` seconds before each content delta (and ``--latency`` before the
reply), so the time to the first token is a few milliseconds the clients can
only add to. Contenders run interleaved, round by round, each reading whole
streams (connections are reused as in real use); each round's median TTFT is
compared with the raw SDK's of the same round, and the medians of those ratios
are reported. Streams are interleaved one by one, in a shuffled order, so load
bursts from other processes hit every contender alike.

Two ways of turning the blocking TextStream into an async iterator are measured:
``next hop`` (llmkit.aio: one ``next()`` per chunk on a pool thread, nothing
pinned between chunks, so an idle stream closes at once) and ``queue pump``
(here only, for comparison: one worker thread reads the whole stream into an
``asyncio.Queue``).

    python bench/streaming.py                   # defaults: 5 rounds of 30 streams
    python bench/streaming.py --rounds 9 --streams 40 --interval 0.01

Target (issue 4): llmkit's TTFT at most 1.05x the raw SDK's.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable

from llmkit import AsyncLLMClient, LLMClient
from llmkit.config import load_settings
from llmkit.testing import FakeLLMServer

MESSAGES = [{"role": "user", "content": "Stream these words back."}]
KEY = "sk-bench-stream-000000"
Measure = Callable[[], float]  # one whole stream; returns its time to first token


def raw_openai(server) -> Measure:
    import openai

    client = openai.OpenAI(api_key=KEY, base_url=server.openai_base_url, max_retries=0)

    def measure() -> float:
        started, first = time.perf_counter(), 0.0
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=64, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        for chunk in stream:
            if not first and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - started
        return first

    return measure


def raw_anthropic(server) -> Measure:
    import anthropic

    client = anthropic.Anthropic(api_key=KEY, base_url=server.anthropic_base_url, max_retries=0)

    def measure() -> float:
        started, first = time.perf_counter(), 0.0
        stream = client.messages.create(
            model="claude-3-5-haiku-latest", messages=MESSAGES, max_tokens=64, stream=True
        )
        for event in stream:
            if not first and event.type == "content_block_delta":
                first = time.perf_counter() - started
        return first

    return measure


def llmkit_sync(client: LLMClient) -> Measure:
    def measure() -> float:
        started, first = time.perf_counter(), 0.0
        for text in client.stream(MESSAGES, max_tokens=64):
            if not first and text:
                first = time.perf_counter() - started
        return first

    return measure


def llmkit_async(client: LLMClient, loop: asyncio.AbstractEventLoop) -> Measure:
    aclient = AsyncLLMClient.wrap(client)

    async def one() -> float:
        started, first = time.perf_counter(), 0.0
        async for text in aclient.stream(MESSAGES, max_tokens=64):
            if not first and text:
                first = time.perf_counter() - started
        return first

    return lambda: loop.run_until_complete(one())


_END = object()


def llmkit_queue_pump(client: LLMClient, loop: asyncio.AbstractEventLoop) -> Measure:
    """The alternative design: a worker thread reads the whole stream into an asyncio.Queue."""

    async def one() -> float:
        started, first = time.perf_counter(), 0.0
        queue: asyncio.Queue[object] = asyncio.Queue()
        stream = client.stream(MESSAGES, max_tokens=64)

        def pump() -> None:
            for text in stream:
                loop.call_soon_threadsafe(queue.put_nowait, text)
            loop.call_soon_threadsafe(queue.put_nowait, _END)

        client._pool.executor().submit(pump)
        while (text := await queue.get()) is not _END:
            if not first and text:
                first = time.perf_counter() - started
        return first

    return lambda: loop.run_until_complete(one())


def contenders(server, loop: asyncio.AbstractEventLoop) -> dict[str, Measure]:
    settings = load_settings(environ={})
    oa = LLMClient("openai", api_keys=[KEY], base_url=server.openai_base_url, settings=settings)
    an = LLMClient("anthropic", api_keys=[KEY], base_url=server.anthropic_base_url, settings=settings)
    return {
        "openai sdk": raw_openai(server),
        "llmkit openai sync": llmkit_sync(oa),
        "llmkit openai async": llmkit_async(oa, loop),
        "openai queue pump": llmkit_queue_pump(oa, loop),
        "anthropic sdk": raw_anthropic(server),
        "llmkit anthropic sync": llmkit_sync(an),
        "llmkit anthropic async": llmkit_async(an, loop),
        "anthropic queue pump": llmkit_queue_pump(an, loop),
    }


PAIRS = [
    ("llmkit openai sync", "openai sdk"),
    ("llmkit openai async", "openai sdk"),
    ("openai queue pump", "openai sdk"),
    ("llmkit anthropic sync", "anthropic sdk"),
    ("llmkit anthropic async", "anthropic sdk"),
    ("anthropic queue pump", "anthropic sdk"),
]
TARGETED = {"llmkit openai sync", "llmkit openai async", "llmkit anthropic sync", "llmkit anthropic async"}


def run(args: argparse.Namespace) -> dict[str, list[float]]:
    """Per contender, the median TTFT of each round (seconds)."""
    medians: dict[str, list[float]] = {}
    loop = asyncio.new_event_loop()
    rng = random.Random(args.seed)
    try:
        with FakeLLMServer.spawn(stream_interval=args.interval, latency=args.latency) as server:
            measures = contenders(server, loop)
            for measure in measures.values():  # warm up: imports, connections, threads
                for _ in range(5):
                    measure()
            for round_no in range(args.rounds):
                ttfts: dict[str, list[float]] = {name: [] for name in measures}
                for _ in range(args.streams):  # interleaved stream by stream, in a new order each time
                    order = list(measures.items())
                    rng.shuffle(order)
                    for name, measure in order:
                        ttfts[name].append(measure())
                for name, values in ttfts.items():
                    medians.setdefault(name, []).append(statistics.median(values))
                print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        loop.close()
    return medians


def report(medians: dict[str, list[float]], args: argparse.Namespace) -> bool:
    print(
        f"\nTTFT, medians over {args.rounds} rounds of {args.streams} streams "
        f"(server: {args.latency * 1000:.0f} ms latency, {args.interval * 1000:.0f} ms before each delta)"
    )
    for name, values in medians.items():
        print(f"  {name:24} {statistics.median(values) * 1000:8.2f} ms")
    ok = True
    print(f"\n  {'vs the raw SDK':46} {'TTFT ratio':>10} {'added':>10}")
    for mine, raw in PAIRS:
        ratio = statistics.median(m / r for m, r in zip(medians[mine], medians[raw]))
        added = statistics.median(m - r for m, r in zip(medians[mine], medians[raw])) * 1e6
        verdict = ("ok" if ratio <= 1.05 else "MISSED") if mine in TARGETED else "(reference)"
        ok = ok and verdict != "MISSED"
        print(f"  {mine + ' / ' + raw:46} {ratio:9.3f}x {added:7.0f} µs  {verdict}")
    print(f"\n  target: TTFT ratio <= 1.05 (median of per-round ratios); threads: {threading.active_count()}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--streams", type=int, default=30, help="streams per contender per round")
    parser.add_argument("--interval", type=float, default=0.01, help="server seconds before each delta")
    parser.add_argument("--latency", type=float, default=0.0, help="server seconds before each reply")
    parser.add_argument("--seed", type=int, default=4, help="seed of the contenders' order")
    args = parser.parse_args()
    return 0 if report(run(args), args) else 1


if __name__ == "__main__":
    sys.exit(main())
