"""The pool against FakeLLMServer: bad keys, 429 storms, keys that recover, real limits."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from llmkit import AuthenticationError, LLMClient, PoolConfig, RateLimit
from llmkit.redaction import fingerprint
from llmkit.testing import FakeLLMServer, Fault, ServerLimits

GOOD = ["sk-test-good-aaaaaaaaaa", "sk-test-good-bbbbbbbbbb"]
BAD = "sk-test-revoked-cccccccc"


def make(server, keys, **kw):
    return LLMClient("openai", api_keys=keys, base_url=server.openai_base_url, **kw)


def test_a_revoked_key_is_disabled_after_one_401_and_traffic_moves_on():
    with FakeLLMServer(valid_keys=GOOD) as server, make(server, [BAD, *GOOD], max_retries=0) as client:
        results = [client.complete(f"hi {i}") for i in range(9)]
        status = client.status()
    assert all(r.content.startswith("hi") for r in results)
    assert [r.status for r in server.requests].count(401) == 1  # one try, then never again
    bad = next(s for s in status["client_statuses"] if s["client_id"] == fingerprint(BAD))
    assert bad["state"] == "disabled" and "401" in bad["disabled_reason"]
    assert status["available_clients"] == 2


def test_only_revoked_keys_fail_fast_without_a_retry_storm():
    with FakeLLMServer(valid_keys=GOOD) as server, make(server, [BAD, BAD + "x"]) as client:
        started = time.monotonic()
        with pytest.raises(AuthenticationError):
            client.complete("hi")
        with pytest.raises(AuthenticationError, match="All 2 keys"):
            client.complete("hi again")
        assert time.monotonic() - started < 5
    assert len(server.requests) == 2  # each key tried once, nothing after


def test_a_429_storm_is_ridden_out_on_the_other_keys():
    with FakeLLMServer() as server, make(server, GOOD, max_retries=6) as client:
        server.add_fault(Fault(status=429, retry_after=0.3, key=GOOD[0]), times=5)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda i: client.complete(f"storm {i}"), range(20)))
        assert len(results) == 20
        statuses = [r.status for r in server.requests]
    assert statuses.count(429) <= 5 and statuses.count(200) == 20
    # after its first 429 the key cooled down: the storm mostly hit nobody
    assert sum(1 for r in server.requests if r.key == GOOD[0] and r.status == 429) >= 1


def test_a_failing_key_opens_its_circuit_then_recovers_after_a_probe():
    pool = PoolConfig(failure_threshold=2, circuit_cooldown=0.5)
    with FakeLLMServer() as server, make(server, GOOD, pool=pool, retry_delay=0.01) as client:
        server.add_fault(Fault(status=500, key=GOOD[0]), times=2)
        for i in range(4):
            client.complete(f"x{i}")
        state = {s["client_id"]: s["state"] for s in client.status()["client_statuses"]}
        assert state[fingerprint(GOOD[0])] == "open"
        time.sleep(0.6)
        for i in range(4):
            client.complete(f"y{i}")
        state = {s["client_id"]: s["state"] for s in client.status()["client_statuses"]}
    assert state[fingerprint(GOOD[0])] == "healthy"
    recovered = [r for r in server.requests if r.key == GOOD[0] and r.status == 200]
    assert recovered  # the probe succeeded and the key serves again


def test_per_key_limits_are_kept_without_429s():
    limits = ServerLimits(requests_per_minute=1200, burst_seconds=1)  # 20/s per key
    keys = [f"sk-test-limit-{i}-aaaaaaa" for i in range(3)]
    rate_limit = RateLimit(requests_per_minute=1200, burst_seconds=1)
    with FakeLLMServer(limits=limits) as server, make(server, keys, rate_limit=rate_limit) as client:
        client.complete("warm up")
        time.sleep(1.1)
        server.reset()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: client.complete(f"r{i}"), range(120)))
        stats = server.stats()
    assert len(results) == 120
    assert stats["by_status"].get(429, 0) <= 2
    assert set(stats["by_key"]) == set(keys)  # spread over every key


def test_status_is_consistent_while_requests_wait():
    limits = ServerLimits(requests_per_minute=60, burst_seconds=1)  # 1 per second
    with FakeLLMServer(limits=limits) as server, make(
        server, GOOD[:1], rate_limit=RateLimit(requests_per_minute=60, burst_seconds=1)
    ) as client:
        client.complete("first")
        waiter = threading.Thread(target=lambda: client.complete("second"))
        waiter.start()
        time.sleep(0.2)
        status = client.status()
        waiter.join(5)
    assert status["waiting_requests"] == 1
    assert status["client_statuses"][0]["remaining"]["requests"] < 1
