"""Several processes sharing the same keys: with Redis-shared limits, and without.

3 processes x 8 threads send requests through 4 keys to one FakeLLMServer that
enforces per-key limits. With ``shared_limits=`` pointing at one Redis, the
processes share one set of buckets per key; without it, each process believes
it has the whole limit to itself and the server answers with 429s.

    python bench/shared_limits.py                 # both runs, 300 requests each
    python bench/shared_limits.py --requests 600 --rps 10

Needs ``redis-server`` on the PATH (``apt-get install redis-server``).
Targets (issue 6): with Redis, at least 90% of the capacity used and 429s at
most 1% of requests.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

KEYS = [f"sk-bench-shared-{i}-000000000" for i in range(4)]


def worker(args: argparse.Namespace) -> None:
    from llmkit import LLMClient, RateLimit

    client = LLMClient(
        "openai",
        api_keys=KEYS,
        base_url=args.url,
        rate_limit=RateLimit(requests_per_minute=args.rps * 60, burst_seconds=1),
        shared_limits=args.redis or None,
        acquire_timeout=300,
        max_retries=5,
    )
    client.complete("warm up")  # imports and connections before the clock starts
    time.sleep(max(0.0, args.start_at - time.time()))
    started = time.time()
    failures = 0

    def one(i: int) -> bool:
        try:
            client.complete(f"request {i} from process {args.index}")
            return True
        except Exception:
            return False

    with ThreadPoolExecutor(args.threads) as pool:
        failures = sum(1 for ok in pool.map(one, range(args.count)) if not ok)
    print(json.dumps({"started": started, "ended": time.time(), "failures": failures}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


def run(args: argparse.Namespace, redis_url: str | None) -> dict[str, float]:
    from llmkit.testing import FakeLLMServer, ServerLimits

    limits = ServerLimits(requests_per_minute=args.rps * 60, burst_seconds=1)
    per_process = args.requests // args.processes
    with FakeLLMServer.spawn(limits=limits, latency=args.latency) as server:
        start_at = time.time() + 8.0  # time for every process to import and warm up
        command = [sys.executable, __file__, "--worker", "--url", server.openai_base_url,
                   "--redis", redis_url or "", "--start-at", str(start_at), "--count", str(per_process),
                   "--threads", str(args.threads), "--rps", str(args.rps)]  # fmt: skip
        procs = [
            subprocess.Popen([*command, "--index", str(i)], stdout=subprocess.PIPE, text=True)
            for i in range(args.processes)
        ]
        time.sleep(max(0.0, start_at - time.time()) + 0.05)
        server.reset()  # forget the warm-up requests; full buckets again
        reports = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
        stats = server.stats()
    total = per_process * args.processes
    wall = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    rate, burst = len(KEYS) * args.rps, len(KEYS) * args.rps * 1.0
    ideal = max(0.0, stats["by_status"].get(200, 0) - burst) / rate
    return {
        "requests": total,
        "ok": total - sum(r["failures"] for r in reports),
        "wall": wall,
        "capacity": ideal / wall,
        "429s": stats["by_status"].get(429, 0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rps", type=float, default=10.0, help="requests per second per key")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--url", "--redis", "--start-at", "--count", "--index"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.start_at, args.count, args.index = float(args.start_at), int(args.count), int(args.index)
        args.rps = float(args.rps)
        worker(args)
        return 0
    with tempfile.TemporaryDirectory() as directory:
        redis_process, redis_url = start_redis(directory)
        try:
            shared = run(args, redis_url)
        finally:
            redis_process.kill()
            redis_process.wait()
    alone = run(args, None)
    print(f"\n{args.processes} processes x {args.threads} threads, 4 keys x {args.rps:g} requests/s "
          f"(burst 1 s), {args.requests} requests")  # fmt: skip
    print(f"{'limits':28} {'ok':>5} {'wall s':>7} {'capacity':>9} {'429s':>6} {'429 %':>6}")
    for name, r in (("shared in Redis", shared), ("per process (no Redis)", alone)):
        share = 100.0 * r["429s"] / r["requests"]
        print(
            f"{name:28} {r['ok']:5d} {r['wall']:7.2f} {100 * r['capacity']:8.1f}% "
            f"{r['429s']:6d} {share:5.1f}%"
        )
    met = (
        shared["ok"] == shared["requests"]
        and shared["capacity"] >= 0.9
        and shared["429s"] <= 0.01 * args.requests
    )
    print(f"targets with Redis (>= 90% capacity, <= 1% 429s): {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
