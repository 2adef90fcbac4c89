"""How many small chat requests per second the fake server sustains.

The server runs in its own process (``FakeLLMServer.spawn``) so that it does not
share a GIL with the load, which comes from 16 threads, each with its own
keep-alive connection (httpx, or the raw openai SDK with ``--client openai``),
spread over ``--processes`` load processes (default 2: one Python process of
httpx tops out near 700-800 requests/s on its own GIL, below what the server
serves). It also reports the server process's CPU use, so the server's own
ceiling is visible: requests/s divided by the fraction of a core it used.

    python bench/fake_server_speed.py                      # 16 threads in 2 processes, 5 s
    python bench/fake_server_speed.py --processes 1        # 16 threads in this process
    python bench/fake_server_speed.py --client openai --seconds 10
    python bench/fake_server_speed.py --rpm 1000000000     # with per-key limits on

Target: >= 1,000 requests/s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from llmkit.testing import FakeLLMServer, ServerLimits

BODY = {"model": "gpt-4o-mini", "max_tokens": 16,
        "messages": [{"role": "user", "content": "Say hello in five words."}]}


def httpx_sender(base_url: str, key: str) -> Callable[[], None]:
    import httpx

    client = httpx.Client(base_url=base_url, trust_env=False,
                          headers={"authorization": f"Bearer {key}",
                                   "content-type": "application/json"})
    body = json.dumps(BODY).encode()

    def send() -> None:
        response = client.post("/chat/completions", content=body)
        if response.status_code != 200 or not response.content.startswith(b"{"):
            raise RuntimeError(f"status {response.status_code}")

    return send


def openai_sender(base_url: str, key: str) -> Callable[[], None]:
    import openai

    client = openai.OpenAI(api_key=key, base_url=base_url, max_retries=0)

    def send() -> None:
        client.chat.completions.create(**BODY)  # type: ignore[call-overload]

    return send


def run(base_url: str, threads: int, seconds: float, client: str,
        gate: Any = None) -> list[float]:
    """Load the server from ``threads`` threads for ``seconds``; return the latencies."""
    make = httpx_sender if client == "httpx" else openai_sender
    senders = [make(base_url, f"sk-bench-{i % 4}") for i in range(threads)]
    for send in senders:  # open the connections before timing
        send()
    if gate is not None:  # all load processes start together
        gate.wait()
    latencies: list[list[float]] = [[] for _ in range(threads)]
    deadline = time.perf_counter() + seconds

    def work(index: int) -> None:
        send, record = senders[index], latencies[index].append
        while (began := time.perf_counter()) < deadline:
            send()
            record(time.perf_counter() - began)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sorted(x for per_thread in latencies for x in per_thread)


def _child(base_url: str, threads: int, seconds: float, client: str, gate: Any,
           out: Any) -> None:
    out.put(run(base_url, threads, seconds, client, gate))


def load(base_url: str, threads: int, processes: int, seconds: float,
         client: str) -> list[float]:
    if processes <= 1:
        return run(base_url, threads, seconds, client)
    context = multiprocessing.get_context("spawn")
    gate, out = context.Barrier(processes), context.Queue()
    shares = [threads // processes + (i < threads % processes) for i in range(processes)]
    children = [context.Process(target=_child, args=(base_url, n, seconds, client, gate, out))
                for n in shares]
    for child in children:
        child.start()
    merged = sorted(x for _ in children for x in out.get())
    for child in children:
        child.join()
    return merged


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--client", choices=("httpx", "openai"), default="httpx")
    parser.add_argument("--rpm", type=float, default=None,
                        help="per-key requests/minute limit on the server (exercises buckets)")
    args = parser.parse_args()
    limits = None if args.rpm is None else ServerLimits(requests_per_minute=args.rpm,
                                                         tokens_per_minute=args.rpm * 100,
                                                         style="minute_bucket")
    with FakeLLMServer.spawn(limits=limits) as server:
        cpu_before, wall_before = cpu_seconds(server.pid), time.perf_counter()
        latencies = load(server.openai_base_url, args.threads, args.processes, args.seconds,
                         args.client)
        cpu = (cpu_seconds(server.pid) - cpu_before) / (time.perf_counter() - wall_before)
        stats = server.stats()
    count = len(latencies)
    rate = count / args.seconds
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(f"{count} requests in {args.seconds:.1f}s from {args.threads} threads in "
          f"{args.processes} process(es) ({args.client}): {rate:,.0f} requests/s; "
          f"latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    if cpu > 0:
        print(f"server process CPU: {cpu:.0%} of one core -> about {rate / cpu:,.0f} "
              f"requests/s per core of server")
    print(f"server saw {stats['total']} requests: {stats['by_status']}")


if __name__ == "__main__":
    main()
