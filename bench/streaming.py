"""Streams: chunks per second of a long stream and the time to first token, llmkit against the raw SDKs.

Two cases, against one FakeLLMServer in a child process:

* **a long stream**: the server echoes ``--chunks`` words, one SSE event (and one
  HTTP chunk) each, as fast as it can. Chunks/s is the rate from the first
  text to the last, so the server's time to build the reply (before its
  headers) does not count; TTFT is printed beside it (it is mostly that time).
  ``httpx iter_lines`` + ``json.loads`` (sync) and ``aiter_lines`` (async)
  are the floor: reading the same OpenAI stream with nothing but the HTTP
  client and the JSON parser.
* **time to first token**: short streams (the echo of a short prompt) with
  ``--interval`` seconds before each delta, from the call to its first text;
  what a client adds to sending and reading the first event.

Every contender reads whole streams (connections reused, as in real use),
sync ones in this thread, async ones on one event loop; contenders are
interleaved stream by stream in a shuffled order each time, and ratios are
medians of the per-round ratios against the same provider's raw SDK (sync
against ``OpenAI``/``Anthropic``, async against ``AsyncOpenAI``/``AsyncAnthropic``).

    python bench/streaming.py                   # defaults: 5 rounds
    python bench/streaming.py --rounds 9 --chunks 20000 --streams 40

Targets (issue 16): sync and async streams >= 2x the raw SDK's chunks/s; time to
first token <= 1.0x the raw SDK's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from _common import Target, command, median_ratio, print_targets

from llmkit import AsyncLLMClient, LLMClient
from llmkit.config import load_settings
from llmkit.testing import FakeLLMServer

KEY = "sk-bench-stream-000000"
OPENAI_MODEL, ANTHROPIC_MODEL = "gpt-4o-mini", "claude-3-5-haiku-latest"
SHORT = [{"role": "user", "content": "Stream these few words back to me now please."}]


@dataclass
class Timing:
    """One stream: seconds to its first text, text pieces, seconds from the first piece to the last."""

    ttft: float
    pieces: int
    rest: float

    @property
    def rate(self) -> float:
        return (self.pieces - 1) / self.rest if self.rest > 0 else 0.0


def timed(started: float, pieces: Iterator[Any]) -> Timing:
    first = last = 0.0
    count = 0
    for piece in pieces:
        if piece:
            last = time.perf_counter()
            count += 1
            if count == 1:
                first = last
    return Timing(first - started, count, last - first)


async def atimed(started: float, pieces: AsyncIterator[Any]) -> Timing:
    first = last = 0.0
    count = 0
    async for piece in pieces:
        if piece:
            last = time.perf_counter()
            count += 1
            if count == 1:
                first = last
    return Timing(first - started, count, last - first)


Measure = Callable[[list[dict[str, str]]], Timing]  # one whole stream of these messages


# -- sync contenders --------------------------------------------------------------------------


def httpx_lines(server: Any) -> Measure:
    import httpx

    client = httpx.Client(trust_env=False, headers={"authorization": f"Bearer {KEY}"})
    url = server.openai_base_url + "/chat/completions"

    def texts(response: Any) -> Iterator[Any]:
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:])["choices"]
                yield choices[0]["delta"].get("content") if choices else None

    def measure(messages: list[dict[str, str]]) -> Timing:
        started = time.perf_counter()
        body = {"model": OPENAI_MODEL, "messages": messages, "max_tokens": 10**6, "stream": True}
        with client.stream("POST", url, json=body) as response:
            return timed(started, texts(response))

    return measure


def openai_sdk(server: Any) -> Measure:
    import openai

    client = openai.OpenAI(api_key=KEY, base_url=server.openai_base_url, max_retries=0)

    def measure(messages: list[dict[str, str]]) -> Timing:
        started = time.perf_counter()
        stream = client.chat.completions.create(model=OPENAI_MODEL, messages=messages,  # type: ignore[arg-type]
                                                max_tokens=10**6, stream=True)  # fmt: skip
        return timed(started, (c.choices[0].delta.content if c.choices else None for c in stream))

    return measure


def anthropic_sdk(server: Any) -> Measure:
    import anthropic

    client = anthropic.Anthropic(api_key=KEY, base_url=server.anthropic_base_url, max_retries=0)

    def measure(messages: list[dict[str, str]]) -> Timing:
        started = time.perf_counter()
        stream = client.messages.create(model=ANTHROPIC_MODEL, messages=messages,  # type: ignore[arg-type]
                                        max_tokens=10**6, stream=True)  # fmt: skip
        return timed(started, (e.delta.text if e.type == "content_block_delta" else None for e in stream))

    return measure


def llmkit_sync(client: LLMClient) -> Measure:
    def measure(messages: list[dict[str, str]]) -> Timing:
        started = time.perf_counter()
        return timed(started, iter(client.stream(messages, max_tokens=10**6)))

    return measure


# -- async contenders -------------------------------------------------------------------------


def httpx_alines(server: Any, loop: asyncio.AbstractEventLoop) -> Measure:
    import httpx

    client = httpx.AsyncClient(trust_env=False, headers={"authorization": f"Bearer {KEY}"})
    url = server.openai_base_url + "/chat/completions"

    async def texts(response: Any) -> AsyncIterator[Any]:
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:])["choices"]
                yield choices[0]["delta"].get("content") if choices else None

    async def one(messages: list[dict[str, str]]) -> Timing:
        started = time.perf_counter()
        body = {"model": OPENAI_MODEL, "messages": messages, "max_tokens": 10**6, "stream": True}
        async with client.stream("POST", url, json=body) as response:
            return await atimed(started, texts(response))

    return lambda messages: loop.run_until_complete(one(messages))


def async_openai_sdk(server: Any, loop: asyncio.AbstractEventLoop) -> Measure:
    import openai

    client = openai.AsyncOpenAI(api_key=KEY, base_url=server.openai_base_url, max_retries=0)

    async def texts(stream: Any) -> AsyncIterator[Any]:
        async for chunk in stream:
            yield chunk.choices[0].delta.content if chunk.choices else None

    async def one(messages: list[dict[str, str]]) -> Timing:
        started = time.perf_counter()
        stream = await client.chat.completions.create(model=OPENAI_MODEL, messages=messages,  # type: ignore[arg-type]
                                                      max_tokens=10**6, stream=True)  # fmt: skip
        return await atimed(started, texts(stream))

    return lambda messages: loop.run_until_complete(one(messages))


def async_anthropic_sdk(server: Any, loop: asyncio.AbstractEventLoop) -> Measure:
    import anthropic

    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=server.anthropic_base_url, max_retries=0)

    async def texts(stream: Any) -> AsyncIterator[Any]:
        async for event in stream:
            yield event.delta.text if event.type == "content_block_delta" else None

    async def one(messages: list[dict[str, str]]) -> Timing:
        started = time.perf_counter()
        stream = await client.messages.create(model=ANTHROPIC_MODEL, messages=messages,  # type: ignore[arg-type]
                                              max_tokens=10**6, stream=True)  # fmt: skip
        return await atimed(started, texts(stream))

    return lambda messages: loop.run_until_complete(one(messages))


def llmkit_async(client: LLMClient, loop: asyncio.AbstractEventLoop) -> Measure:
    aclient = AsyncLLMClient.wrap(client)

    async def one(messages: list[dict[str, str]]) -> Timing:
        started = time.perf_counter()
        return await atimed(started, aiter(aclient.stream(messages, max_tokens=10**6)))

    return lambda messages: loop.run_until_complete(one(messages))


def contenders(server: Any, loop: asyncio.AbstractEventLoop) -> dict[str, Measure]:
    settings = load_settings(environ={})
    oa = LLMClient("openai", api_keys=[KEY], base_url=server.openai_base_url, settings=settings)
    an = LLMClient("anthropic", api_keys=[KEY], base_url=server.anthropic_base_url, settings=settings)
    return {
        "httpx iter_lines": httpx_lines(server),
        "openai sdk": openai_sdk(server),
        "llmkit openai": llmkit_sync(oa),
        "anthropic sdk": anthropic_sdk(server),
        "llmkit anthropic": llmkit_sync(an),
        "httpx aiter_lines": httpx_alines(server, loop),
        "AsyncOpenAI": async_openai_sdk(server, loop),
        "llmkit openai async": llmkit_async(oa, loop),
        "AsyncAnthropic": async_anthropic_sdk(server, loop),
        "llmkit anthropic async": llmkit_async(an, loop),
    }


RAW_OF = {
    "httpx iter_lines": "openai sdk",
    "llmkit openai": "openai sdk",
    "llmkit anthropic": "anthropic sdk",
    "httpx aiter_lines": "AsyncOpenAI",
    "llmkit openai async": "AsyncOpenAI",
    "llmkit anthropic async": "AsyncAnthropic",
}
TARGETED = ("llmkit openai", "llmkit anthropic", "llmkit openai async", "llmkit anthropic async")


def interleaved(measures: dict[str, Measure], messages: list[dict[str, str]], streams: int,
                rng: random.Random) -> dict[str, list[Timing]]:  # fmt: skip
    """``streams`` streams of each contender, one of each at a time in a shuffled order."""
    timings: dict[str, list[Timing]] = {name: [] for name in measures}
    for _ in range(streams):
        order = list(measures.items())
        rng.shuffle(order)
        for name, measure in order:
            timings[name].append(measure(messages))
    return timings


Series = dict[str, list[float]]  # per contender, one value per round


def run(args: argparse.Namespace) -> tuple[Series, Series, Series]:
    """Per contender and round: the long stream's median chunks/s and TTFT, and the short streams' TTFT."""
    rates: dict[str, list[float]] = {}
    long_ttfts: dict[str, list[float]] = {}
    ttfts: dict[str, list[float]] = {}
    long_messages = [{"role": "user", "content": "w " * args.chunks}]
    loop = asyncio.new_event_loop()
    rng = random.Random(args.seed)
    with contextlib.ExitStack() as stack:
        stack.callback(loop.close)
        server = stack.enter_context(FakeLLMServer.spawn())  # the long stream: as fast as it goes
        long_measures = contenders(server, loop)
        short_measures = long_measures
        if args.interval:
            slow = stack.enter_context(FakeLLMServer.spawn(stream_interval=args.interval))
            short_measures = contenders(slow, loop)
        for name, measure in long_measures.items():  # warm up: imports, connections
            measure(long_messages)
            for _ in range(5):
                short_measures[name](SHORT)
        for round_no in range(args.rounds):
            long = interleaved(long_measures, long_messages, args.long_streams, rng)
            short = interleaved(short_measures, SHORT, args.streams, rng)
            for name in long_measures:
                if any(t.pieces != args.chunks for t in long[name]):
                    pieces = [t.pieces for t in long[name]]
                    raise RuntimeError(f"{name} read {pieces} pieces, not {args.chunks}")
                rates.setdefault(name, []).append(statistics.median(t.rate for t in long[name]))
                long_ttfts.setdefault(name, []).append(statistics.median(t.ttft for t in long[name]))
                ttfts.setdefault(name, []).append(statistics.median(t.ttft for t in short[name]))
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    return rates, long_ttfts, ttfts


def report(rates: Series, long_ttfts: Series, ttfts: Series, args: argparse.Namespace) -> bool:
    print(f"$ {command()}")
    print(f"medians over {args.rounds} rounds; per round {args.long_streams} streams of {args.chunks:,} "
          f"chunks and {args.streams} short streams per contender "
          f"({args.interval * 1000:.0f} ms before each delta)\n")
    print(f"{'contender':24} {'chunks/s':>10} {'long TTFT':>10} {'TTFT':>9}   "
          f"{'vs raw SDK: chunks/s':>20} {'TTFT':>7}")  # fmt: skip
    for name in rates:
        rate = statistics.median(rates[name])
        line = (f"{name:24} {rate:10,.0f} {statistics.median(long_ttfts[name]) * 1000:7.1f} ms "
                f"{statistics.median(ttfts[name]) * 1000:6.2f} ms")  # fmt: skip
        raw = RAW_OF.get(name)
        if raw is not None:
            line += (f"   {median_ratio(rates[name], rates[raw]):19.2f}x "
                     f"{median_ratio(ttfts[name], ttfts[raw]):6.2f}x")  # fmt: skip
        print(line)
    print("(chunks/s: from the first text to the last; TTFT: from the call to the first text of a short "
          "stream; long TTFT is mostly the server building the reply)")
    targets = []
    for name in TARGETED:
        raw = RAW_OF[name]
        short = name.removeprefix("llmkit ")
        targets.append(Target(f"{short} chunks/s", median_ratio(rates[name], rates[raw]), 2.0, at_most=False))
        targets.append(Target(f"{short} TTFT", median_ratio(ttfts[name], ttfts[raw]), 1.0))
    return print_targets(targets)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=20_000, help="text chunks in the long stream")
    parser.add_argument("--long-streams", type=int, default=2, help="long streams per contender per round")
    parser.add_argument("--streams", type=int, default=30, help="short streams per contender per round")
    parser.add_argument("--interval", type=float, default=0.0, help="server seconds before each delta")
    parser.add_argument("--seed", type=int, default=4, help="seed of the contenders' order")
    args = parser.parse_args()
    return 0 if report(*run(args), args) else 1


if __name__ == "__main__":
    sys.exit(main())
