"""What llmkit costs on top of the raw SDKs: per-call time and 16-thread throughput.

Runs LLMClient and the raw openai / anthropic SDKs side by side against the
same FakeLLMServer (in a child process, so the server does not share the
benchmark's GIL), interleaving the contenders round by round so machine noise
hits them alike, and reports medians and ratios.

    python bench/overhead.py                    # defaults: 5 rounds
    python bench/overhead.py --rounds 9 --calls 1000 --threaded-calls 4000

Targets (issue 2): per call at most 1.05x the raw SDK's time; 16-thread
throughput at least 0.9x the raw SDK's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from llmkit import LLMClient, RateLimit
from llmkit.testing import FakeLLMServer

MESSAGES = [{"role": "user", "content": "Say something short about benchmarks."}]
KEY = "sk-bench-0000000000"


def raw_openai(server) -> Callable[[], object]:
    import openai

    client = openai.OpenAI(api_key=KEY, base_url=server.openai_base_url, max_retries=0)
    return lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=64)


def raw_anthropic(server) -> Callable[[], object]:
    import anthropic

    client = anthropic.Anthropic(api_key=KEY, base_url=server.anthropic_base_url, max_retries=0)
    return lambda: client.messages.create(model="claude-3-5-haiku-latest", messages=MESSAGES, max_tokens=64)


def llmkit_client(provider: str, base_url: str, rate_limit: RateLimit | None = None) -> Callable[[], object]:
    client = LLMClient(provider, api_keys=[KEY], base_url=base_url, rate_limit=rate_limit, max_tokens=64)
    return lambda: client.complete(MESSAGES)


def sequential(calls: dict[str, Callable[[], object]], count: int) -> dict[str, float]:
    """Median seconds per call of each contender, calling them in turn, call by call.

    Interleaving call by call puts every contender under the same machine noise
    at the same moments; the median drops the odd garbage collection or hiccup.
    """
    times: dict[str, list[float]] = {name: [] for name in calls}
    clock = time.perf_counter
    for _ in range(count):
        for name, call in calls.items():
            started = clock()
            call()
            times[name].append(clock() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def threaded(call: Callable[[], object], calls: int, threads: int) -> float:
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


def contenders(server) -> dict[str, Callable[[], object]]:
    generous = RateLimit(requests_per_minute=10_000_000, input_tokens_per_minute=10**9, max_concurrent=64)
    return {
        "openai sdk": raw_openai(server),
        "llmkit openai": llmkit_client("openai", server.openai_base_url),
        "llmkit openai+limits": llmkit_client("openai", server.openai_base_url, generous),
        "anthropic sdk": raw_anthropic(server),
        "llmkit anthropic": llmkit_client("anthropic", server.anthropic_base_url),
    }


PAIRS = [
    ("llmkit openai", "openai sdk"),
    ("llmkit openai+limits", "openai sdk"),
    ("llmkit anthropic", "anthropic sdk"),
]


def run(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {}
    with FakeLLMServer.spawn() as server:
        calls = contenders(server)
        for call in calls.values():  # warm up: imports, connections
            for _ in range(50):
                call()
        names = list(calls)
        for round_no in range(args.rounds):
            per_call = sequential(calls, args.calls)
            order = names[round_no % len(names) :] + names[: round_no % len(names)]  # rotate
            for name in order:
                entry = results.setdefault(name, {"per_call": [], "throughput": []})
                entry["per_call"].append(per_call[name])
                entry["throughput"].append(threaded(calls[name], args.threaded_calls, args.threads))
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    return results


def report(results: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> bool:
    print(
        f"\nmedians over {args.rounds} rounds ({args.calls} interleaved sequential calls, "
        f"{args.threaded_calls} calls on {args.threads} threads per round)"
    )
    print(f"{'contender':24} {'per call':>10} {'throughput':>14}")
    for name, entry in results.items():
        per_call = statistics.median(entry["per_call"]) * 1e6
        throughput = statistics.median(entry["throughput"])
        print(f"{name:24} {per_call:8.0f} µs {throughput:10.0f} /s")
    ok = True
    print(f"\n{'llmkit vs raw SDK':44} {'per-call ratio':>15} {'throughput ratio':>17}")
    for mine, raw in PAIRS:
        ratios = [m / r for m, r in zip(results[mine]["per_call"], results[raw]["per_call"])]
        t_ratios = [m / r for m, r in zip(results[mine]["throughput"], results[raw]["throughput"])]
        per_call, throughput = statistics.median(ratios), statistics.median(t_ratios)
        verdict = "ok" if per_call <= 1.05 and throughput >= 0.9 else "MISSED"
        ok = ok and verdict == "ok"
        print(f"{mine + ' / ' + raw:44} {per_call:14.3f}x {throughput:16.3f}x  {verdict}")
    print("\ntargets: per-call ratio <= 1.05, throughput ratio >= 0.90 (medians of per-round ratios)")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=500, help="sequential calls per contender per round")
    parser.add_argument("--threaded-calls", type=int, default=2000, help="calls per round on the threads")
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    return 0 if report(run(args), args) else 1


if __name__ == "__main__":
    sys.exit(main())
