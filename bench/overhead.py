"""What a plain call costs: per-call time and 16-thread throughput, from bare HTTP to the raw SDKs to llmkit.

Contenders, all against one FakeLLMServer in a child process (so the server
does not share the benchmark's GIL), all building the JSON body and reading
the JSON reply of every call:

* ``http.client``, ``httpcore2``, ``httpx``: the floor (a bare POST, ``json.loads`` of the
  reply); httpcore2 is what llmkit sends through, httpx (httpx2 alike) what the SDKs do;
* ``openai sdk``, ``anthropic sdk``: the raw SDKs (retries off);
* ``llmkit openai`` / ``groq`` / ``local`` / ``anthropic``: LLMClient on its
  default path, the lean one (llmkit's own HTTP, no SDK request or reply models);
  ``llmkit openai+limits`` with a RateLimit configured;
* ``llmkit openai (sdk)``, ``llmkit anthropic (sdk)``: llmkit over the SDK.
  llmkit has no switch for that path (the lean path is the only one a user
  gets); this bench routes the adapter's ``call`` to its SDK-based
  ``complete`` (:func:`sdk_path`), to show what the lean path saves.

Contenders are interleaved call by call, in a shuffled order each turn, for the
per-call time (the median of each round), and run in a rotating order for
throughput; ratios are medians of the per-round ratios.

    python bench/overhead.py                    # defaults: 5 rounds
    python bench/overhead.py --rounds 9 --calls 1000 --threaded-calls 4000

Targets (issue 16): llmkit per call <= 0.5x the raw SDK's time; 16-thread
throughput >= 1.3x the raw SDK's (openai, groq, local against the openai SDK;
anthropic against the anthropic SDK).
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from _common import Target, command, median_ratio, print_targets

from llmkit import LLMClient, RateLimit
from llmkit.config import load_settings
from llmkit.testing import FakeLLMServer

MESSAGES = [{"role": "user", "content": "Say something short about benchmarks."}]
KEY = "sk-bench-0000000000"
OPENAI_BODY = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 64}
ANTHROPIC_BODY = {"model": "claude-3-5-haiku-latest", "messages": MESSAGES, "max_tokens": 64}
Call = Callable[[], object]


def bare_http_client(server: Any) -> Call:
    """http.client, one keep-alive connection per thread: the floor."""
    parts = urlsplit(server.openai_base_url)
    local = threading.local()
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}

    def call() -> object:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPConnection(parts.hostname, parts.port)
        connection.request("POST", parts.path + "/chat/completions", body=json.dumps(OPENAI_BODY).encode(),
                           headers=headers)  # fmt: skip
        reply = json.loads(connection.getresponse().read())
        return reply["choices"][0]["message"]["content"]

    return call


def bare_httpx(server: Any) -> Call:
    """httpx (what the SDKs are built on), one client: a bare POST and json.loads."""
    import httpx

    client = httpx.Client(base_url=server.openai_base_url, trust_env=False,
                          headers={"authorization": f"Bearer {KEY}"})  # fmt: skip

    def call() -> object:
        reply = client.post("/chat/completions", content=json.dumps(OPENAI_BODY).encode(),
                            headers={"content-type": "application/json"})  # fmt: skip
        return json.loads(reply.content)["choices"][0]["message"]["content"]

    return call


def bare_httpcore2(server: Any) -> Call:
    """httpcore2's connection pool (what llmkit's lean path sends through), a bare POST and json.loads."""
    import httpcore2

    pool = httpcore2.ConnectionPool(max_connections=100)
    url = server.openai_base_url + "/chat/completions"
    headers = [(b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json")]

    def call() -> object:
        reply = pool.request("POST", url, headers=headers, content=json.dumps(OPENAI_BODY).encode())
        return json.loads(reply.content)["choices"][0]["message"]["content"]

    return call


def raw_openai(server: Any) -> Call:
    import openai

    client = openai.OpenAI(api_key=KEY, base_url=server.openai_base_url, max_retries=0)
    return lambda: client.chat.completions.create(**OPENAI_BODY)  # type: ignore[call-overload]


def raw_anthropic(server: Any) -> Call:
    import anthropic

    client = anthropic.Anthropic(api_key=KEY, base_url=server.anthropic_base_url, max_retries=0)
    return lambda: client.messages.create(**ANTHROPIC_BODY)  # type: ignore[call-overload]


def llmkit_client(provider: str, base_url: str, rate_limit: RateLimit | None = None,
                  sdk: bool = False) -> Call:  # fmt: skip
    client = LLMClient(provider, api_keys=[KEY], base_url=base_url, rate_limit=rate_limit, max_tokens=64,
                       settings=load_settings(environ={}))  # fmt: skip
    if sdk:
        sdk_path(client)
    return lambda: client.complete(MESSAGES)


def sdk_path(client: LLMClient) -> None:
    """Send this client's calls through the SDK (the adapter's ``complete`` over each key's SDK
    client) instead of llmkit's own HTTP. Bench-only: llmkit has no user switch for it."""
    from llmkit.providers.base import Provider

    provider = client._pool.provider
    provider.call = functools.partial(Provider.call, provider)  # type: ignore[method-assign]
    provider.lean = False  # type: ignore[misc]  # the pool then builds every key's SDK client first


def contenders(server: Any) -> dict[str, Call]:
    generous = RateLimit(requests_per_minute=10_000_000, input_tokens_per_minute=10**9, max_concurrent=64)
    openai_url, anthropic_url = server.openai_base_url, server.anthropic_base_url
    return {
        "http.client": bare_http_client(server),
        "httpcore2": bare_httpcore2(server),
        "httpx": bare_httpx(server),
        "openai sdk": raw_openai(server),
        "llmkit openai": llmkit_client("openai", openai_url),
        "llmkit openai+limits": llmkit_client("openai", openai_url, generous),
        "llmkit groq": llmkit_client("groq", openai_url),
        "llmkit local": llmkit_client("local", openai_url),
        "llmkit openai (sdk)": llmkit_client("openai", openai_url, sdk=True),
        "anthropic sdk": raw_anthropic(server),
        "llmkit anthropic": llmkit_client("anthropic", anthropic_url),
        "llmkit anthropic (sdk)": llmkit_client("anthropic", anthropic_url, sdk=True),
    }


RAW_OF = {  # each llmkit contender's raw SDK
    "llmkit openai": "openai sdk",
    "llmkit openai+limits": "openai sdk",
    "llmkit groq": "openai sdk",
    "llmkit local": "openai sdk",
    "llmkit openai (sdk)": "openai sdk",
    "httpx": "openai sdk",
    "httpcore2": "openai sdk",
    "http.client": "openai sdk",
    "llmkit anthropic": "anthropic sdk",
    "llmkit anthropic (sdk)": "anthropic sdk",
}
TARGETED = ("llmkit openai", "llmkit openai+limits", "llmkit groq", "llmkit local", "llmkit anthropic")


def sequential(calls: dict[str, Call], count: int, rng: random.Random) -> dict[str, float]:
    """Median seconds per call of each contender, calling them in turn, call by call, in a new
    order each turn (in a fixed one, the contender after an SDK always ran with cold caches:
    llmkit openai, right after the openai SDK, measured 690 us where llmkit local measured 575)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    clock = time.perf_counter
    order = list(calls.items())
    for _ in range(count):
        rng.shuffle(order)
        for name, call in order:
            started = clock()
            call()
            times[name].append(clock() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def threaded(call: Call, calls: int, threads: int) -> float:
    """Calls per second with ``threads`` threads sharing ``calls`` calls."""
    per_thread = calls // threads
    barrier = threading.Barrier(threads + 1)

    def worker() -> None:
        barrier.wait()
        for _ in range(per_thread):
            call()

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
        barrier.wait()
        started = time.perf_counter()
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - started
    return per_thread * threads / elapsed


def run(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {}
    with FakeLLMServer.spawn() as server:
        calls = contenders(server)
        for call in calls.values():  # warm up: imports, connections, one per thread
            threaded(call, args.threads * 4, args.threads)
        names = list(calls)
        rng = random.Random(args.seed)
        for round_no in range(args.rounds):
            per_call = sequential(calls, args.calls, rng)
            order = names[round_no % len(names) :] + names[: round_no % len(names)]  # rotate
            for name in order:
                entry = results.setdefault(name, {"per_call": [], "throughput": []})
                entry["per_call"].append(per_call[name])
                entry["throughput"].append(threaded(calls[name], args.threaded_calls, args.threads))
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    return results


def report(results: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> bool:
    print(f"$ {command()}")
    print(
        f"medians over {args.rounds} rounds ({args.calls} interleaved sequential calls and "
        f"{args.threaded_calls} calls on {args.threads} threads per contender per round)\n"
    )
    print(f"{'contender':24} {'per call':>10} {f'{args.threads} threads':>12}   "
          f"{'vs raw SDK: time':>17} {'throughput':>11}")  # fmt: skip
    for name, entry in results.items():
        per_call = statistics.median(entry["per_call"]) * 1e6
        throughput = statistics.median(entry["throughput"])
        line = f"{name:24} {per_call:7.0f} µs {throughput:9.0f} /s"
        raw = RAW_OF.get(name)
        if raw is not None:
            time_ratio = median_ratio(entry["per_call"], results[raw]["per_call"])
            throughput_ratio = median_ratio(entry["throughput"], results[raw]["throughput"])
            line += f"   {time_ratio:16.3f}x {throughput_ratio:10.3f}x"
        print(line)
    print("(ratios: medians of per-round ratios against the same provider's raw SDK)")
    targets = []
    for name in TARGETED:
        raw = RAW_OF[name]
        short = name.removeprefix("llmkit ")
        per_call = median_ratio(results[name]["per_call"], results[raw]["per_call"])
        throughput = median_ratio(results[name]["throughput"], results[raw]["throughput"])
        targets.append(Target(f"{short} per call", per_call, 0.5))
        targets.append(Target(f"{short} throughput", throughput, 1.3, at_most=False))
    return print_targets(targets)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=500, help="sequential calls per contender per round")
    parser.add_argument("--threaded-calls", type=int, default=2000, help="calls per round on the threads")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1, help="seed of the per-call order")
    args = parser.parse_args()
    return 0 if report(run(args), args) else 1


if __name__ == "__main__":
    sys.exit(main())
