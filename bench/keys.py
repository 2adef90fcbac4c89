"""What a key costs: 1, 10, 100 and 1,000 keys, from construction to the first response, memory, per call.

Each measurement is a fresh interpreter (``python bench/keys.py --child``)
that imports llmkit, then builds an ``LLMClient`` with N keys and a
``RateLimit`` against a FakeLLMServer (started once, in its own process, by
this script) and makes one call: the time from before the construction to the
first response, and the process's resident memory after it; then
``--calls`` sequential calls, whose median is the per-call time. Memory is
compared with the same measurement of one key (same imports, same process
shape), so the difference is what the keys themselves cost. Key counts are
interleaved round by round; ratios are medians of per-round ratios.

    python bench/keys.py                         # defaults: 5 rounds, 1/10/100/1000 keys
    python bench/keys.py --rounds 9 --rpm-only   # a requests-per-minute limit alone

Targets (issue 16), with 1,000 keys: the first response within 1 s of
construction; <= 50 MB more memory than one key; per-call time within 1.1x of
one key's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _common import Target, command, median_ratio, print_targets

COUNTS = (1, 10, 100, 1000)


def rss_mb() -> float:
    """This process's resident memory (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(url: str, keys: int, calls: int, rpm_only: bool) -> dict[str, float]:
    """One measurement, in this (fresh) interpreter."""
    from llmkit import LLMClient, RateLimit
    from llmkit.config import load_settings

    api_keys = [f"sk-bench-keys-{i:06d}" for i in range(keys)]
    started = time.perf_counter()
    settings = load_settings(environ={})  # what LLMClient() does when given none (this one reads no env)
    if rpm_only:
        limit = RateLimit(requests_per_minute=10_000_000)
    else:
        limit = RateLimit(requests_per_minute=10_000_000, input_tokens_per_minute=10**9, max_concurrent=64)
    client = LLMClient("openai", api_keys=api_keys, base_url=url, rate_limit=limit, settings=settings,
                       max_tokens=16)  # fmt: skip
    client.complete("hello")
    first = time.perf_counter() - started
    memory = rss_mb()
    times = []
    for _ in range(calls):
        begun = time.perf_counter()
        client.complete("hello")
        times.append(time.perf_counter() - begun)
    client.close()
    return {"first": first, "rss": memory, "per_call": statistics.median(times)}


def measure(url: str, keys: int, args: argparse.Namespace) -> dict[str, float]:
    argv = [sys.executable, __file__, "--child", url, str(keys), "--calls", str(args.calls)]
    if args.rpm_only:
        argv.append("--rpm-only")
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(args: argparse.Namespace) -> dict[int, dict[str, list[float]]]:
    from llmkit.testing import FakeLLMServer

    results: dict[int, dict[str, list[float]]] = {n: {"first": [], "rss": [], "per_call": []} for n in COUNTS}
    with FakeLLMServer.spawn() as server:
        measure(server.openai_base_url, 1, args)  # warm the disk cache
        for round_no in range(args.rounds):
            order = COUNTS[round_no % len(COUNTS) :] + COUNTS[: round_no % len(COUNTS)]
            for keys in order:
                for name, value in measure(server.openai_base_url, keys, args).items():
                    results[keys][name].append(value)
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    return results


def report(results: dict[int, dict[str, list[float]]], args: argparse.Namespace) -> bool:
    print(f"$ {command()}")
    limit = "RateLimit(requests_per_minute)" if args.rpm_only else (
        "RateLimit(requests_per_minute, input_tokens_per_minute, max_concurrent)")  # fmt: skip
    print(f"a fresh interpreter per measurement; {limit}; {args.calls} calls for the per-call median; "
          f"medians over {args.rounds} rounds\n")  # fmt: skip
    one = results[1]
    print(f"{'keys':>6} {'first response':>15} {'RSS':>9} {'vs 1 key':>9} {'per call':>10} {'vs 1 key':>9}")
    for keys, entry in results.items():
        memory = statistics.median(m - o for m, o in zip(entry["rss"], one["rss"]))
        print(f"{keys:6,} {statistics.median(entry['first']) * 1000:12.1f} ms "
              f"{statistics.median(entry['rss']):6.1f} MB {memory:+7.1f} MB "
              f"{statistics.median(entry['per_call']) * 1e6:7.0f} µs "
              f"{median_ratio(entry['per_call'], one['per_call']):8.3f}x")  # fmt: skip
    print("(first response: from before LLMClient(...) to the end of the first complete(), "
          "settings included)")
    many = results[1000]
    targets = [
        Target("1000 keys first response", statistics.median(many["first"]), 1.0, unit=" s"),
        Target("1000 keys memory over 1 key",
               statistics.median(m - o for m, o in zip(many["rss"], one["rss"])), 50.0, unit=" MB"),
        Target("1000 keys per call vs 1 key", median_ratio(many["per_call"], one["per_call"]), 1.1),
    ]  # fmt: skip
    return print_targets(targets)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400, help="sequential calls for the per-call median")
    parser.add_argument("--rpm-only", action="store_true", help="a requests-per-minute limit only")
    parser.add_argument("--child", nargs=2, metavar=("URL", "KEYS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.calls, args.rpm_only)))
        return 0
    return 0 if report(run(args), args) else 1


if __name__ == "__main__":
    sys.exit(main())
