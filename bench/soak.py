"""Fault soak: thousands of requests through a server that fails in every way it can.

Three phases, each against FakeLLMServer in a child process:

1. faults: the server injects, at random, 5xx and 529 replies, 429s with
   Retry-After, dropped connections, replies slower than the client's timeout
   and malformed bodies; 16 threads send 5,000 requests over 4 keys.
2. redis: limits shared through a real ``redis-server`` that is killed,
   restarted and frozen (SIGSTOP) while 8 threads send for 12 s.
3. hung: a server where a fifth of the replies never come in time; every call
   has ``RetryPolicy(max_time=3)`` and streams a ``chunk_timeout``; at the
   end ``close(timeout=1)`` is called with calls still stuck on the server.

Checked:

* every request either succeeds or ends in a typed LLMError;
* none is sent more than max_retries + 1 times, not counting sends answered 429
  (a 429 spends no retry), by a unique id in each prompt;
* lost answers: a request the server answered with a 200 whose caller got an
  error instead (phase 2; must be 0);
* calls past their deadline: calls that took longer than their max_time (plus
  0.5 s of slack for a loaded machine), and ``close`` past its timeout (phase 3; 0);
* each phase ends with as many threads and open file descriptors as it began;
* resident memory grows less than 20 MB between warm-up and the end (phase 1).

    python bench/soak.py                        # all phases, 5,000 requests in phase 1
    python bench/soak.py --requests 1000        # shorter
    python bench/soak.py --phases redis,hung    # some phases
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from llmkit import LLMClient, LLMError, RateLimit, RetryPolicy
from llmkit.testing import FakeLLMServer

KEYS = [f"sk-soak-key-{i}-0000000000" for i in range(4)]
FAULTS = {500: 0.05, 503: 0.03, 529: 0.02, 429: 0.05, "drop": 0.02, "slow": 0.01, "malformed": 0.01}
MAX_RETRIES = 3


def live_threads() -> int:
    """Threads, without llmkit's one watchdog per process (started once, on first use)."""
    return sum(1 for t in threading.enumerate() if t.name != "llmkit-watchdog")


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


def sent_ids(log: list[dict]) -> collections.Counter[int]:
    """How many times each id was sent, not counting the sends answered 429: a 429 spends no
    retry (the call waits, then goes again), so only the others count against max_retries."""
    sends: collections.Counter[int] = collections.Counter()
    for record in log:
        match = re.search(r"soak request #(\d+)#", str(record.get("body")))
        if match and record.get("status") != 429:
            sends[int(match.group(1))] += 1
    return sends


def answered_ids(log: list[dict]) -> set[int]:
    """The ids the server answered in full with a 200 (no injected fault)."""
    ids = set()
    for record in log:
        match = re.search(r"soak request #(\d+)#", str(record.get("body")))
        if match and record.get("status") == 200 and not record.get("fault"):
            ids.add(int(match.group(1)))
    return ids


def phase_faults(args: argparse.Namespace) -> dict[str, bool]:
    print("\n== phase 1: random faults", file=sys.stderr)
    with FakeLLMServer.spawn(fault_rates=FAULTS, seed=1, slow_seconds=1.0, fault_retry_after=0.1) as server:
        threads_before, fds_before = live_threads(), open_fds()
        outcomes, growth = soak(server, args.requests, args.threads)
        time.sleep(0.5)  # let closed sockets and finished threads go
        threads_after, fds_after = live_threads(), open_fds()
        log = server.requests
    sends = sent_ids(log)
    faults = collections.Counter(str(r.get("fault") or r.get("status")) for r in log)
    most_sends = max(sends.values())
    untyped = sum(n for name, n in outcomes.items() if name.startswith("UNTYPED"))
    print(f"outcomes: {dict(outcomes)}")
    print(f"server saw {len(log)} requests; replies/faults: {dict(faults)}")
    print(f"most sends of one request, 429s aside: {most_sends} (limit {MAX_RETRIES + 1})")
    print(f"threads: {threads_before} -> {threads_after}; open fds: {fds_before} -> {fds_after}")
    print(f"resident memory growth after warm-up: {growth:.1f} MB (limit 20)")
    return {
        "faults: every request accounted for": sum(outcomes.values()) == args.requests + 50,
        "faults: no untyped errors": untyped == 0,
        "faults: no request sent more than max_retries + 1 times (429s aside)": most_sends <= MAX_RETRIES + 1,
        "faults: threads back to where they began": threads_after <= threads_before,
        "faults: file descriptors back to where they began": fds_after <= fds_before,
        "faults: memory growth under 20 MB": growth < 20,
    }


# -- phase 2: Redis killed, restarted, frozen ----------------------------------------------------


class Redis:
    """A private redis-server on a free port, which this phase kills, restarts and freezes."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", tempfile.mkdtemp(prefix="soak-redis-")]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def signal(self, sig: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)


def redis_faults(redis: Redis, log: Callable[[str], None]) -> None:
    """The fault schedule: 3 s up, killed for 2 s, up 2 s, frozen 2 s, up to the end."""
    time.sleep(3)
    redis.kill()
    log("redis killed")
    time.sleep(2)
    redis.start()
    log("redis restarted")
    time.sleep(2)
    redis.signal(signal.SIGSTOP)
    log("redis frozen")
    time.sleep(2)
    redis.signal(signal.SIGCONT)
    log("redis thawed")


def phase_redis(args: argparse.Namespace) -> dict[str, bool]:
    from llmkit.backends.redis import RedisLimits

    print("\n== phase 2: Redis killed, restarted and frozen under traffic", file=sys.stderr)
    redis = Redis()
    redis.start()
    outcomes: collections.Counter[str] = collections.Counter()
    failed: set[int] = set()
    lock = threading.Lock()
    with FakeLLMServer.spawn(latency=0.02) as server:
        threads_before, fds_before = live_threads(), open_fds()
        client = LLMClient("openai", api_keys=KEYS, base_url=server.openai_base_url, timeout=5,
                           max_retries=MAX_RETRIES, retry_delay=0.01, acquire_timeout=30,
                           rate_limit=RateLimit(requests_per_minute=6000),
                           shared_limits=RedisLimits(redis.url, on_unavailable="local"))  # fmt: skip
        stop = time.monotonic() + 12
        counter = iter(range(10**9))

        def worker() -> None:
            while time.monotonic() < stop:
                with lock:
                    i = next(counter)
                try:
                    client.complete(f"soak request #{i}#", max_tokens=16)
                    outcome = "ok"
                except LLMError as exc:
                    outcome = type(exc).__name__
                    with lock:
                        failed.add(i)
                except Exception as exc:
                    outcome = "UNTYPED " + type(exc).__name__
                    with lock:
                        failed.add(i)
                with lock:
                    outcomes[outcome] += 1

        faults = threading.Thread(target=redis_faults, args=(redis, _say))
        faults.start()
        with ThreadPoolExecutor(8) as pool:
            for _ in range(8):
                pool.submit(worker)
        faults.join()
        client.close()
        time.sleep(0.5)
        threads_after, fds_after = live_threads(), open_fds()
        log = server.requests
    redis.kill()
    lost = answered_ids(log) & failed
    untyped = sum(n for name, n in outcomes.items() if name.startswith("UNTYPED"))
    print(f"outcomes: {dict(outcomes)}")
    print(f"answered by the server: {len(answered_ids(log))}; lost answers: {len(lost)}")
    print(f"threads: {threads_before} -> {threads_after}; open fds: {fds_before} -> {fds_after}")
    return {
        "redis: lost answers 0": not lost,
        "redis: no untyped errors": untyped == 0,
        "redis: threads back to where they began": threads_after <= threads_before,
        "redis: file descriptors back to where they began": fds_after <= fds_before,
    }


# -- phase 3: a hung server ----------------------------------------------------------------------

MAX_TIME = 3.0
SLACK = 0.5


def phase_hung(args: argparse.Namespace) -> dict[str, bool]:
    print("\n== phase 3: a server that hangs (deadlines, then close with calls stuck)", file=sys.stderr)
    late: list[float] = []
    outcomes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    with FakeLLMServer.spawn(fault_rates={"slow": 0.2}, slow_seconds=60, seed=3,
                             stream_interval=0.01) as server:  # fmt: skip
        threads_before, fds_before = live_threads(), open_fds()
        client = LLMClient("openai", api_keys=KEYS, base_url=server.openai_base_url, timeout=1.0,
                           retry=RetryPolicy(max_retries=2, base_delay=0.05, max_time=MAX_TIME))  # fmt: skip

        def one(i: int) -> None:
            started = time.monotonic()
            try:
                if i % 4 == 0:
                    "".join(client.stream(f"soak request #{i}#", max_tokens=16, chunk_timeout=0.5))
                else:
                    client.complete(f"soak request #{i}#", max_tokens=16)
                outcome = "ok"
            except LLMError as exc:
                outcome = type(exc).__name__
            except Exception as exc:
                outcome = "UNTYPED " + type(exc).__name__
            elapsed = time.monotonic() - started
            with lock:
                outcomes[outcome] += 1
                if elapsed > MAX_TIME + SLACK:
                    late.append(elapsed)

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(one, range(400)))
        client.close()
        # Calls with no deadline of their own: about a fifth are stuck on replies 60 s away.
        patient = LLMClient("openai", api_keys=KEYS, base_url=server.openai_base_url, timeout=120)
        stuck = [patient.submit(f"soak stuck #{i}#", max_tokens=16) for i in range(40)]
        time.sleep(1.0)
        on_the_wire = patient.status()["in_use_clients"]
        started = time.monotonic()
        patient.close(timeout=1.0)
        close_took = time.monotonic() - started
        ended = sum(1 for f in stuck if f.done() or _ends(f, 3.0))
        time.sleep(0.5)
        threads_after, fds_after = live_threads(), open_fds()
    untyped = sum(n for name, n in outcomes.items() if name.startswith("UNTYPED"))
    print(f"outcomes: {dict(outcomes)}")
    print(f"calls past max_time + {SLACK} s: {len(late)} {sorted(late)[-3:]}")
    print(f"close(timeout=1) with calls on the wire on {on_the_wire} keys took {close_took:.2f} s; "
          f"calls ended: {ended}/{len(stuck)}")
    print(f"threads: {threads_before} -> {threads_after}; open fds: {fds_before} -> {fds_after}")
    return {
        "hung: calls past their deadline 0": not late,
        "hung: no untyped errors": untyped == 0,
        "hung: close(timeout=1) within 1.5 s": close_took < 1.0 + SLACK,
        "hung: every stuck call ended after close": ended == len(stuck),
        "hung: threads back to where they began": threads_after <= threads_before,
        "hung: file descriptors back to where they began": fds_after <= fds_before,
    }


def _ends(future, timeout: float) -> bool:
    with contextlib.suppress(Exception):
        future.exception(timeout=timeout)
    return future.done()


def _say(message: str) -> None:
    print("  " + message, file=sys.stderr)


PHASES = {"faults": phase_faults, "redis": phase_redis, "hung": phase_hung}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated: " + ", ".join(PHASES))
    args = parser.parse_args()
    checks: dict[str, bool] = {}
    for name in args.phases.split(","):
        checks.update(PHASES[name.strip()](args))
    print()
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
