"""The key pool and the retry loop, driven by an in-process provider on a fake clock."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

import pytest

from llmkit.config import PoolConfig, RateLimit, RetryPolicy
from llmkit.engine.clock import FakeClock
from llmkit.engine.limiter import Cost
from llmkit.engine.loop import Dispatcher
from llmkit.engine.pool import KeyPool
from llmkit.errors import (
    AuthenticationError,
    InvalidRequestError,
    PoolClosedError,
    PoolExhaustedError,
    ProviderError,
    RateLimitError,
)
from llmkit.providers.base import Provider, ProviderReply, ServerLimitState
from llmkit.redaction import fingerprint
from llmkit.request import build_request
from llmkit.types import Response, Usage

KEYS = ["sk-test-aaaaaaaaaaaa", "sk-test-bbbbbbbbbbbb", "sk-test-cccccccccccc"]


class ScriptedProvider(Provider):
    """Answers from a per-key script of exceptions; anything else succeeds."""

    name = "scripted"
    default_model = "m"

    def __init__(self) -> None:
        super().__init__()
        self.scripts: dict[str, deque] = defaultdict(deque)
        self.calls: list[str] = []
        self.limits: ServerLimitState | None = None
        self.lock = threading.Lock()

    def create_client(self, api_key: str) -> str:
        return api_key

    def complete(self, client, request) -> ProviderReply:
        with self.lock:
            self.calls.append(client)
            script = self.scripts[client]
            outcome = script.popleft() if script else None
        if isinstance(outcome, BaseException):
            raise outcome
        return ProviderReply(
            Response(content="ok", model=request.model, provider=self.name, usage=Usage(10, 5)),
            self.limits,
        )


def make(keys=KEYS, rate_limit=None, retry=None, acquire_timeout=30.0, **pool_kw):
    clock = FakeClock()
    provider = ScriptedProvider()
    pool = KeyPool(
        provider,
        keys,
        rate_limits=[rate_limit] * len(keys),
        pool_config=PoolConfig(acquire_timeout=acquire_timeout, **pool_kw),
        clock=clock,
    )
    retries: list[dict] = []
    giveups: list[dict] = []
    dispatcher = Dispatcher(
        pool,
        retry or RetryPolicy(max_retries=3, base_delay=1.0, jitter=False),
        acquire_timeout=acquire_timeout,
        on_retry=retries.append,
        on_giveup=giveups.append,
    )
    return clock, provider, pool, dispatcher, retries, giveups


def req(**kw):
    return build_request("hello", model="m", **kw)


def test_round_robin_when_all_keys_are_equal():
    _, provider, _, dispatcher, _, _ = make()
    for _ in range(6):
        dispatcher.execute(req())
    assert provider.calls == KEYS + KEYS


def test_response_carries_key_fingerprint_and_attempts():
    _, _, _, dispatcher, _, _ = make()
    response = dispatcher.execute(req())
    assert response.key_id == fingerprint(KEYS[0])
    assert KEYS[0] not in response.key_id
    assert response.attempts == 1


def test_fewest_in_flight_wins_then_soonest():
    clock, _, pool, _, _, _ = make(
        rate_limit=RateLimit(send_allowance=0, requests_per_minute=60, burst_seconds=1)
    )
    first = pool.acquire(Cost(), 1)
    second = pool.acquire(Cost(), 1)
    assert first.slot.index != second.slot.index
    third = pool.acquire(Cost(), 1)
    assert {first.slot.index, second.slot.index, third.slot.index} == {0, 1, 2}
    # every key is now empty (1 per second each); the first to refill serves next
    waiter: list = []
    t = threading.Thread(target=lambda: waiter.append(pool.acquire(Cost(), 10)), daemon=True)
    t.start()
    _wait(lambda: clock.waiting == 1)
    clock.advance(1.0)
    t.join(5)
    assert waiter and waiter[0].slot.index == 0


def test_429_cools_the_key_and_the_retry_goes_to_another_key_at_once():
    clock, provider, pool, dispatcher, retries, _ = make()
    provider.scripts[KEYS[0]].append(RateLimitError("slow down", status_code=429, retry_after=20.0))
    response = dispatcher.execute(req())
    assert provider.calls == [KEYS[0], KEYS[1]]
    assert response.attempts == 2
    assert clock.sleeps in ([], [0.0])  # no backoff sleep: another key was free
    status = pool.status()["client_statuses"][0]
    assert status["state"] == "cooling"
    assert 20.0 <= status["cooldown_remaining"] <= 21.0  # Retry-After plus jitter, never less
    assert retries[0]["exception"].key_id == fingerprint(KEYS[0])


def test_all_keys_rate_limited_waits_for_the_first_to_cool_down():
    clock, provider, _, dispatcher, _, _ = make(keys=KEYS[:1])
    provider.scripts[KEYS[0]].append(RateLimitError("slow down", status_code=429, retry_after=5.0))
    result: list = []
    t = threading.Thread(target=lambda: result.append(dispatcher.execute(req())), daemon=True)
    t.start()
    _wait(lambda: clock.waiting == 1)
    clock.advance(4.9)
    time.sleep(0.05)
    assert not result  # Retry-After not yet passed: still waiting
    clock.advance(1.0)  # past 5 s + at most 0.5 s jitter
    t.join(5)
    assert result and result[0].attempts == 2


def test_server_errors_back_off_exponentially_and_give_up_after_max_retries():
    clock, provider, _, dispatcher, retries, giveups = make(keys=KEYS[:1])
    for _ in range(10):
        provider.scripts[KEYS[0]].append(ProviderError("boom", status_code=500))
    with pytest.raises(ProviderError) as info:
        dispatcher.execute(req())
    assert len(provider.calls) == 4  # max_retries + 1
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert [r["tries"] for r in retries] == [1, 2, 3]
    assert len(giveups) == 1 and giveups[0]["tries"] == 4
    assert info.value.key_id == fingerprint(KEYS[0])


def test_a_503_with_retry_after_waits_at_least_that_long():
    clock, provider, _, dispatcher, _, _ = make(keys=KEYS[:1])
    provider.scripts[KEYS[0]].append(ProviderError("busy", status_code=503, retry_after=7.0))
    dispatcher.execute(req())
    assert clock.sleeps[0] >= 7.0


def test_per_call_max_retries_overrides_the_policy():
    _, provider, _, dispatcher, _, _ = make(keys=KEYS[:1])
    for _ in range(5):
        provider.scripts[KEYS[0]].append(ProviderError("boom", status_code=502))
    with pytest.raises(ProviderError):
        dispatcher.execute(req(max_retries=1))
    assert len(provider.calls) == 2


def test_invalid_request_is_not_retried():
    _, provider, _, dispatcher, retries, _ = make()
    provider.scripts[KEYS[0]].append(InvalidRequestError("bad", status_code=400))
    with pytest.raises(InvalidRequestError):
        dispatcher.execute(req())
    assert len(provider.calls) == 1 and not retries


def test_401_disables_the_key_and_moves_on_without_spending_retries():
    _, provider, pool, dispatcher, _, _ = make(retry=RetryPolicy(max_retries=0))
    provider.scripts[KEYS[0]].append(AuthenticationError("bad key", status_code=401))
    response = dispatcher.execute(req())
    assert response.content == "ok"
    status = pool.status()
    assert status["client_statuses"][0]["state"] == "disabled"
    assert "401" in status["client_statuses"][0]["disabled_reason"]
    assert status["available_clients"] == 2
    dispatcher.execute(req())
    assert KEYS[0] not in provider.calls[2:]


def test_all_keys_disabled_raises_authentication_error_at_once():
    clock, provider, _, dispatcher, retries, _ = make()
    for key in KEYS:
        provider.scripts[key].append(AuthenticationError("bad key", status_code=401))
    with pytest.raises(AuthenticationError) as info:
        dispatcher.execute(req())
    assert len(provider.calls) == 3
    assert not retries and clock.sleeps == []
    assert info.value.status_code == 401
    with pytest.raises(AuthenticationError, match="All 3 keys"):
        dispatcher.execute(req())
    assert len(provider.calls) == 3  # nothing more was sent


def test_circuit_opens_after_repeated_failures_and_traffic_moves_away():
    _, provider, pool, dispatcher, _, _ = make(
        keys=KEYS[:2], failure_threshold=2, retry=RetryPolicy(max_retries=5, base_delay=0.01, jitter=False)
    )
    for _ in range(2):
        provider.scripts[KEYS[0]].append(ProviderError("boom", status_code=500))
    provider.scripts[KEYS[1]].append(ProviderError("boom", status_code=500))
    dispatcher.execute(req())
    assert pool.status()["client_statuses"][0]["state"] == "open"
    provider.calls.clear()
    for _ in range(3):
        dispatcher.execute(req())
    assert provider.calls == [KEYS[1]] * 3


def test_pool_exhausted_error_says_why():
    clock, provider, _, dispatcher, _, _ = make(acquire_timeout=2.0)
    for key in KEYS[:2]:
        provider.scripts[key].append(RateLimitError("slow", status_code=429, retry_after=60.0))
    provider.scripts[KEYS[2]].append(AuthenticationError("bad", status_code=401))
    errors: list = []

    def run():
        try:
            dispatcher.execute(req())
        except Exception as exc:
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    _wait(lambda: clock.waiting == 1)
    clock.advance(3.0)
    t.join(5)
    error = errors[0]
    assert isinstance(error, PoolExhaustedError)
    text = str(error)
    assert "within 2.0 s" in text and "3 keys" in text
    assert "2 cooling down" in text and "1 disabled" in text
    assert all(k not in text for k in KEYS)


def test_rate_limited_pool_never_admits_more_than_the_limit_in_any_window():
    clock, provider, _, dispatcher, _, _ = make(
        keys=KEYS[:2], rate_limit=RateLimit(send_allowance=0, requests_per_minute=5), acquire_timeout=None
    )
    done: list = []
    threads = [
        threading.Thread(target=lambda: done.append(dispatcher.execute(req())), daemon=True)
        for _ in range(30)
    ]
    for t in threads:
        t.start()
    _wait(lambda: len(done) == 10 and clock.waiting == 20)
    for window in (2, 3):
        clock.advance(60)
        _wait(lambda w=window: len(done) == 10 * w)
        time.sleep(0.02)
        assert len(done) == 10 * window
    counts = {k: provider.calls.count(k) for k in KEYS[:2]}
    assert counts == {KEYS[0]: 15, KEYS[1]: 15}


def test_server_headers_lower_the_local_picture():
    _, provider, pool, dispatcher, _, _ = make(
        keys=KEYS[:1], rate_limit=RateLimit(send_allowance=0, requests_per_minute=100)
    )
    provider.limits = ServerLimitState(remaining_requests=2)
    dispatcher.execute(req())
    assert pool.status()["client_statuses"][0]["remaining"]["requests"] == 2


def test_token_reservation_is_reconciled_with_real_usage():
    _, _, pool, dispatcher, _, _ = make(
        keys=KEYS[:1],
        rate_limit=RateLimit(send_allowance=0, input_tokens_per_minute=1000, output_tokens_per_minute=1000),
    )
    dispatcher.execute(req(max_tokens=300))
    remaining = pool.status()["client_statuses"][0]["remaining"]
    assert remaining == {"input_tokens": 990, "output_tokens": 995}  # usage was 10 in, 5 out


def test_closed_pool_refuses_work_and_wakes_waiters():
    clock, _, pool, dispatcher, _, _ = make(
        keys=KEYS[:1], rate_limit=RateLimit(send_allowance=0, requests_per_minute=1)
    )
    dispatcher.execute(req())
    errors: list = []

    def run():
        try:
            dispatcher.execute(req())
        except Exception as exc:
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    _wait(lambda: clock.waiting == 1)
    pool.close()
    pool.close()  # idempotent
    t.join(5)
    assert isinstance(errors[0], PoolClosedError)
    with pytest.raises(PoolClosedError):
        dispatcher.execute(req())


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)
