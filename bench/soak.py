"""Fault soak: thousands of requests through a server that fails in every way it can.

FakeLLMServer (a child process) injects, at random: 5xx and 529 replies, 429s
with Retry-After, dropped connections, replies slower than the client's
timeout, and malformed bodies. 16 threads send 5,000 requests through one
LLMClient over 4 keys. Checked:

* every request either succeeds or ends in a typed LLMError after its retry budget;
* none is sent more than max_retries + 1 times (counted in the server's log,
  by a unique id in each prompt);
* the process ends with as many threads and open file descriptors as it began;
* resident memory grows less than 20 MB between warm-up and the end.

    python bench/soak.py                        # 5,000 requests, the issue's fault mix
    python bench/soak.py --requests 1000        # shorter
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from llmkit import LLMClient, LLMError
from llmkit.testing import FakeLLMServer

KEYS = [f"sk-soak-key-{i}-0000000000" for i in range(4)]
FAULTS = {500: 0.05, 503: 0.03, 529: 0.02, 429: 0.05, "drop": 0.02, "slow": 0.01, "malformed": 0.01}
MAX_RETRIES = 3


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def soak(server, requests: int, threads: int) -> tuple[collections.Counter[str], float]:
    outcomes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    client = LLMClient(
        "openai",
        api_keys=KEYS,
        base_url=server.openai_base_url,
        timeout=0.5,
        max_retries=MAX_RETRIES,
        retry_delay=0.01,
        acquire_timeout=60,
    )

    def one(i: int) -> None:
        try:
            client.complete(f"soak request #{i}#", max_tokens=16)
            outcome = "ok"
        except LLMError as exc:
            outcome = type(exc).__name__
        except Exception as exc:  # anything untyped is a failure of the soak
            outcome = "UNTYPED " + type(exc).__name__
        with lock:
            outcomes[outcome] += 1

    for i in range(50):  # warm-up, then measure memory from here
        one(-1 - i)
    gc.collect()
    baseline = rss_mb()
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(requests)))
    elapsed = time.perf_counter() - started
    client.close()
    gc.collect()
    print(f"{requests} requests in {elapsed:.1f} s ({requests / elapsed:.0f}/s)", file=sys.stderr)
    return outcomes, rss_mb() - baseline


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()

    with FakeLLMServer.spawn(fault_rates=FAULTS, seed=1, slow_seconds=1.0, fault_retry_after=0.1) as server:
        threads_before, fds_before = threading.active_count(), open_fds()
        outcomes, growth = soak(server, args.requests, args.threads)
        time.sleep(0.5)  # let closed sockets and finished threads go
        threads_after, fds_after = threading.active_count(), open_fds()
        log = server.requests
    sends = collections.Counter()
    for record in log:
        match = re.search(r"soak request #(\d+)#", str(record.get("body")))
        if match:
            sends[int(match.group(1))] += 1
    faults = collections.Counter(str(r.get("fault") or r.get("status")) for r in log)

    most_sends = max(sends.values())
    untyped = sum(n for name, n in outcomes.items() if name.startswith("UNTYPED"))
    accounted = sum(outcomes.values()) == args.requests + 50
    print(f"\noutcomes: {dict(outcomes)}")
    print(f"server saw {len(log)} requests; replies/faults: {dict(faults)}")
    print(f"most sends of one request: {most_sends} (limit {MAX_RETRIES + 1})")
    print(f"threads: {threads_before} -> {threads_after}; open fds: {fds_before} -> {fds_after}")
    print(f"resident memory growth after warm-up: {growth:.1f} MB (limit 20)")
    checks = {
        "every request accounted for": accounted,
        "no untyped errors": untyped == 0,
        "no request sent more than max_retries + 1 times": most_sends <= MAX_RETRIES + 1,
        "threads back to where they began": threads_after <= threads_before,
        "file descriptors back to where they began": fds_after <= fds_before,
        "memory growth under 20 MB": growth < 20,
    }
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
