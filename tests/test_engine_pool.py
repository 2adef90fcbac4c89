"""The key pool and the retry loop, driven by an in-process provider on a fake clock."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict, deque

import pytest

from llmkit.config import PoolConfig, RateLimit, RetryPolicy
from llmkit.engine.clock import FakeClock
from llmkit.engine.limiter import Cost
from llmkit.engine.loop import RetryLoop
from llmkit.engine.pool import KeyPool
from llmkit.errors import (
    AuthenticationError,
    InvalidRequestError,
    MalformedResponseError,
    PoolClosedError,
    PoolExhaustedError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    RequestTooLargeError,
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
    limits = rate_limit if isinstance(rate_limit, list) else [rate_limit] * len(keys)
    config = PoolConfig(acquire_timeout=acquire_timeout, **pool_kw)
    pool = KeyPool(provider, keys, rate_limits=limits, pool_config=config, clock=clock)
    retries: list[dict] = []
    giveups: list[dict] = []
    loop = RetryLoop(
        pool,
        retry or RetryPolicy(max_retries=3, base_delay=1.0, jitter=False),
        acquire_timeout=acquire_timeout,
        on_retry=retries.append,
        on_giveup=giveups.append,
    )
    return clock, provider, pool, loop, retries, giveups


def req(**kw):
    return build_request("hello", model="m", **kw)


def in_thread(fn):
    """Run ``fn`` in a thread; returns (thread, results, errors)."""
    results: list = []
    errors: list = []

    def run():
        try:
            results.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, results, errors


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


# -- choosing keys ------------------------------------------------------------------------------


def test_round_robin_when_all_keys_are_equal():
    _, provider, _, loop, _, _ = make()
    for _ in range(6):
        loop.execute(req())
    assert provider.calls == KEYS + KEYS


def test_response_carries_key_fingerprint_and_attempts():
    _, _, _, loop, _, _ = make()
    response = loop.execute(req())
    assert response.key_id == fingerprint(KEYS[0]) and KEYS[0] not in response.key_id
    assert response.attempts == 1


def test_fewest_in_flight_wins_then_the_first_to_be_free():
    clock, _, pool, _, _, _ = make(rate_limit=RateLimit(requests_per_minute=60, burst_seconds=1))
    leases = [pool.acquire(Cost(), deadline=clock.now() + 1) for _ in range(3)]
    assert {lease.slot.index for lease in leases} == {0, 1, 2}
    # every key is now empty (1 per second each); the first to refill serves next
    thread, got, _ = in_thread(lambda: pool.acquire(Cost(), deadline=clock.now() + 10))
    _wait(lambda: clock.waiting == 1)
    clock.advance(1.0)
    thread.join(5)
    assert got and got[0].slot.index == 0


def test_keys_of_one_group_share_one_set_of_limits():
    group = RateLimit(requests_per_minute=60, burst_seconds=1, group="project-a")
    clock, _, pool, _, _, _ = make(keys=KEYS[:2], rate_limit=group, acquire_timeout=0.0)
    pool.acquire(Cost(), deadline=clock.now())
    with pytest.raises(PoolExhaustedError):  # the other key of the project has nothing left either
        pool.acquire(Cost(), deadline=clock.now())
    assert pool.slots[0].limiter is pool.slots[1].limiter
    assert pool.status()["client_statuses"][1]["limit_group"] == "scripted:project-a"


# -- a 429 is a wait ------------------------------------------------------------------------------


def test_429_cools_the_key_and_the_call_goes_to_another_key_at_once():
    clock, provider, pool, loop, retries, _ = make()
    provider.scripts[KEYS[0]].append(RateLimitError("slow down", status_code=429, retry_after=20.0))
    response = loop.execute(req())
    assert provider.calls == [KEYS[0], KEYS[1]] and response.attempts == 2
    assert clock.sleeps == []  # no backoff sleep: another key was free
    status = pool.status()["client_statuses"][0]
    assert status["state"] == "cooling"
    assert 20.0 <= status["cooldown_remaining"] <= 21.0  # Retry-After plus jitter, never less
    assert retries[0]["exception"].key_id == fingerprint(KEYS[0])


def test_a_429_spends_no_retry():
    clock, provider, _, loop, _, _ = make(keys=KEYS[:1], retry=RetryPolicy(max_retries=0, jitter=False))
    for _ in range(5):
        provider.scripts[KEYS[0]].append(RateLimitError("slow down", status_code=429, retry_after=1.0))
    thread, results, errors = in_thread(lambda: loop.execute(req()))
    for sent in range(1, 6):
        _wait(lambda n=sent: len(provider.calls) == n and clock.waiting == 1)
        clock.advance(1.2)  # past Retry-After and its jitter
    thread.join(5)
    assert not errors and results[0].attempts == 6  # five 429s, then the answer: no retry spent
    assert len(provider.calls) == 6


def test_all_keys_rate_limited_waits_for_the_first_to_cool_down():
    clock, provider, _, loop, _, _ = make(keys=KEYS[:1])
    provider.scripts[KEYS[0]].append(RateLimitError("slow down", status_code=429, retry_after=5.0))
    thread, result, _ = in_thread(lambda: loop.execute(req()))
    _wait(lambda: clock.waiting == 1)
    clock.advance(4.9)
    time.sleep(0.05)
    assert not result  # Retry-After not yet passed: still waiting
    clock.advance(1.0)  # past 5 s + at most 0.5 s jitter
    thread.join(5)
    assert result and result[0].attempts == 2


def test_a_retry_after_longer_than_the_time_left_fails_at_once_with_the_servers_error():
    clock, provider, _, loop, _, _ = make(keys=KEYS[:1], acquire_timeout=30.0)
    error = RateLimitError("Resource exhausted", status_code=429, retry_after=30.0, request_id="req_1")
    provider.scripts[KEYS[0]].append(error)  # Gemini's retryDelay "30s", one key, 30 s to wait
    with pytest.raises(RateLimitError) as info:
        loop.execute(req())
    assert clock.now() == 1000.0  # nothing was waited out
    assert info.value.retry_after >= 30.0 and info.value.status_code == 429
    assert info.value.request_id == "req_1" and "more than the 30.0 s" in info.value.message


def test_the_final_error_says_how_long_it_waited_the_429s_and_each_keys_state():
    _clock, provider, _, loop, _, _ = make(acquire_timeout=2.0)
    for key in KEYS[:2]:
        provider.scripts[key].append(RateLimitError("slow", status_code=429, retry_after=60.0))
    provider.scripts[KEYS[2]].append(AuthenticationError("bad", status_code=401))
    with pytest.raises(RateLimitError) as info:  # the servers ask for 60 s; the call has 2
        loop.execute(req())
    text = str(info.value)
    assert "met 2 429s" in text and "waited" in text
    assert f"{fingerprint(KEYS[0])} cooling" in text and f"{fingerprint(KEYS[2])} disabled" in text
    assert all(k not in text for k in KEYS)


def test_pool_exhausted_after_waiting_names_the_keys():
    clock, _, pool, loop, _, _ = make(keys=KEYS[:1], rate_limit=RateLimit(max_concurrent=1),
                                      acquire_timeout=2.0)  # fmt: skip
    held = pool.acquire(Cost(), deadline=None)
    thread, _, errors = in_thread(lambda: loop.execute(req()))
    _wait(lambda: clock.waiting == 1)
    clock.advance(3.0)
    thread.join(5)
    assert isinstance(errors[0], PoolExhaustedError)
    assert "at its rate or concurrency limit" in str(errors[0]) and "1 key" in str(errors[0])
    pool.release_unjudged(held)


# -- other failures ---------------------------------------------------------------------------------


def test_server_errors_back_off_exponentially_and_give_up_after_max_retries():
    clock, provider, _, loop, retries, giveups = make(keys=KEYS[:1])
    for _ in range(10):
        provider.scripts[KEYS[0]].append(ProviderError("boom", status_code=500))
    with pytest.raises(ProviderError) as info:
        loop.execute(req())
    assert len(provider.calls) == 4  # max_retries + 1
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert [r["tries"] for r in retries] == [1, 2, 3]
    assert len(giveups) == 1 and giveups[0]["tries"] == 4
    assert info.value.key_id == fingerprint(KEYS[0])


def test_backoff_sleeps_never_pass_max_time():
    policy = RetryPolicy(max_retries=10, base_delay=4.0, max_time=5.0, jitter=False)
    clock, provider, _, loop, _, _ = make(keys=KEYS[:1], retry=policy)
    for _ in range(10):
        provider.scripts[KEYS[0]].append(ProviderError("boom", status_code=503))
    with pytest.raises(ProviderError):
        loop.execute(req())
    assert clock.sleeps == [4.0, 1.0]  # the second is cut to what is left of the 5 s
    assert clock.now() - 1000.0 == pytest.approx(5.0)


def test_a_503_with_retry_after_waits_at_least_that_long():
    clock, provider, _, loop, _, _ = make(keys=KEYS[:1])
    provider.scripts[KEYS[0]].append(ProviderError("busy", status_code=503, retry_after=7.0))
    loop.execute(req())
    assert clock.sleeps[0] >= 7.0


def test_a_retry_after_of_zero_is_a_retry_after():
    clock, provider, _, loop, _, _ = make(keys=KEYS[:1], retry=RetryPolicy(base_delay=3.0, jitter=False))
    provider.scripts[KEYS[0]].append(ProviderError("busy", status_code=503, retry_after=0.0))
    loop.execute(req())
    assert clock.sleeps == [3.0]  # the backoff, not less; 0 was read as 0, not as absent


def test_per_call_max_retries_overrides_the_policy():
    _, provider, _, loop, _, _ = make(keys=KEYS[:1])
    for _ in range(5):
        provider.scripts[KEYS[0]].append(ProviderError("boom", status_code=502))
    with pytest.raises(ProviderError):
        loop.execute(req(max_retries=1))
    assert len(provider.calls) == 2


def test_invalid_request_is_not_retried():
    _, provider, _, loop, retries, _ = make()
    provider.scripts[KEYS[0]].append(InvalidRequestError("bad", status_code=400))
    with pytest.raises(InvalidRequestError):
        loop.execute(req())
    assert len(provider.calls) == 1 and not retries


def test_a_malformed_success_is_not_sent_again_nor_held_against_the_key():
    _clock, provider, pool, loop, _, _ = make(
        keys=KEYS[:1], rate_limit=RateLimit(requests_per_minute=60, burst_seconds=60))
    provider.scripts[KEYS[0]].append(MalformedResponseError("the reply has no choices", status_code=200))
    with pytest.raises(MalformedResponseError):
        loop.execute(req())
    status = pool.status()["client_statuses"][0]
    assert len(provider.calls) == 1  # billed once, sent once
    assert status["state"] == "healthy" and status["consecutive_failures"] == 0
    assert status["remaining"]["requests"] == 59  # it was counted, not credited back


def test_401_disables_the_key_and_moves_on_without_spending_retries():
    _, provider, pool, loop, _, _ = make(retry=RetryPolicy(max_retries=0))
    provider.scripts[KEYS[0]].append(AuthenticationError("bad key", status_code=401))
    assert loop.execute(req()).content == "ok"
    status = pool.status()
    assert status["client_statuses"][0]["state"] == "disabled"
    assert "401" in status["client_statuses"][0]["disabled_reason"]
    assert status["available_clients"] == 2
    loop.execute(req())
    assert KEYS[0] not in provider.calls[2:]


def test_out_of_credit_disables_the_key_with_its_reason_and_moves_on():
    _, provider, pool, loop, _, _ = make(retry=RetryPolicy(max_retries=0))
    provider.scripts[KEYS[0]].append(QuotaExceededError("You exceeded your current quota", status_code=429))
    assert loop.execute(req()).content == "ok"
    status = pool.status()["client_statuses"][0]
    assert status["state"] == "disabled" and "exceeded your current quota" in status["disabled_reason"]
    for _ in range(4):
        loop.execute(req())
    assert provider.calls.count(KEYS[0]) == 1  # never hit again


def test_all_keys_out_of_credit_raises_quota_exceeded():
    _, provider, _, loop, _, _ = make()
    for key in KEYS:
        provider.scripts[key].append(QuotaExceededError("insufficient_quota", status_code=429))
    with pytest.raises(QuotaExceededError):
        loop.execute(req())
    with pytest.raises(QuotaExceededError, match="All 3 keys"):
        loop.execute(req())
    assert len(provider.calls) == 3


def test_all_keys_disabled_raises_authentication_error_at_once():
    clock, provider, _, loop, retries, _ = make()
    for key in KEYS:
        provider.scripts[key].append(AuthenticationError("bad key", status_code=401))
    with pytest.raises(AuthenticationError) as info:
        loop.execute(req())
    assert len(provider.calls) == 3 and not retries and clock.sleeps == []
    assert info.value.status_code == 401
    with pytest.raises(AuthenticationError, match="All 3 keys"):
        loop.execute(req())
    assert len(provider.calls) == 3  # nothing more was sent


def test_circuit_opens_after_repeated_failures_and_traffic_moves_away():
    _, provider, pool, loop, _, _ = make(
        keys=KEYS[:2], failure_threshold=2, retry=RetryPolicy(max_retries=5, base_delay=0.01, jitter=False)
    )
    for _ in range(2):
        provider.scripts[KEYS[0]].append(ProviderError("boom", status_code=500))
    provider.scripts[KEYS[1]].append(ProviderError("boom", status_code=500))
    loop.execute(req())
    assert pool.status()["client_statuses"][0]["state"] == "open"
    provider.calls.clear()
    for _ in range(3):
        loop.execute(req())
    assert provider.calls == [KEYS[1]] * 3


# -- books ----------------------------------------------------------------------------------------


def test_a_request_that_could_never_fit_is_refused_before_anything_is_sent():
    _, provider, _, loop, _, _ = make(rate_limit=RateLimit(input_tokens_per_minute=5000))
    with pytest.raises(RequestTooLargeError, match="input tokens limit of 5,000 a minute"):
        loop.execute(build_request("x" * 200_000, model="m"))
    assert provider.calls == []


def test_a_request_that_fits_the_first_key_looks_at_no_other(monkeypatch):
    """Per call, a thousand keys cost what one does: the size check stops at the first that fits."""
    from llmkit.engine.limiter import KeyLimiter

    keys = [f"sk-test-many-{i:04d}" for i in range(1000)]
    _, _, pool, _, _, _ = make(keys=keys, rate_limit=RateLimit(input_tokens_per_minute=5000))
    looked = []
    too_large = KeyLimiter.too_large
    monkeypatch.setattr(KeyLimiter, "too_large", lambda self, cost: looked.append(1) or too_large(self, cost))
    pool.check_fits(Cost(1, 100, 0))
    assert len(looked) == 1
    with pytest.raises(RequestTooLargeError):
        pool.check_fits(Cost(1, 200_000, 0))


def test_whether_calls_reserve_tokens_is_known_without_looking_at_every_key(monkeypatch):
    from llmkit.engine.limiter import KeyLimiter

    keys = [f"sk-test-many-{i:04d}" for i in range(1000)]
    _, provider, pool, loop, _, _ = make(keys=keys, rate_limit=RateLimit(requests_per_minute=600))
    looked = []
    counts = KeyLimiter.counts_tokens
    spy = property(lambda self: looked.append(1) or counts.fget(self))
    monkeypatch.setattr(KeyLimiter, "counts_tokens", spy)
    assert loop.estimate(req(max_tokens=10)) == Cost(1, 0, 0)
    assert looked == []
    # a token limit learned from a reply's headers counts from that reply on
    provider.limits = ServerLimitState(remaining_tokens=9000, limit_tokens=10_000, reset_tokens=6.0)
    loop.execute(req())
    assert pool.counts_tokens and loop.estimate(req(max_tokens=10)).output_tokens == 10
    assert len(looked) < 10


def test_the_workers_are_what_the_keys_allow_in_flight():
    assert make(keys=KEYS[:1])[2].workers() == 64  # one key, no cap
    assert make(rate_limit=RateLimit(max_concurrent=5))[2].workers() == 5 * len(KEYS)
    grouped = RateLimit(max_concurrent=6, group="project-a")  # one limit for every key
    assert make(rate_limit=grouped)[2].workers() == 6
    assert make(keys=KEYS[:1], rate_limit=RateLimit(max_concurrent=1))[2].workers() == 4  # at least 4
    assert make(max_workers=3)[2].workers() == 3
    pool = make(keys=KEYS[:1], rate_limit=RateLimit(max_concurrent=40))[2]
    assert pool.executor()._max_workers == 40
    pool.close()


def test_token_reservation_is_reconciled_with_real_usage():
    _, _, pool, loop, _, _ = make(
        keys=KEYS[:1],
        rate_limit=RateLimit(input_tokens_per_minute=1000, output_tokens_per_minute=1000, burst_seconds=60),
    )
    loop.execute(req(max_tokens=300))
    remaining = pool.status()["client_statuses"][0]["remaining"]
    assert remaining == {"input_tokens": 990, "output_tokens": 995}  # usage was 10 in, 5 out


def test_the_servers_word_holds_a_key_until_its_reset():
    clock, provider, pool, loop, _, _ = make(keys=KEYS[:1], rate_limit=RateLimit(requests_per_minute=6000),
                                             acquire_timeout=0.0)  # fmt: skip
    provider.limits = ServerLimitState(remaining_requests=0, limit_requests=6000, reset_requests=2.0)
    loop.execute(req())  # another process used the key: the server says nothing is left for 2 s
    with pytest.raises(PoolExhaustedError):
        pool.acquire(Cost(), deadline=clock.now())
    clock.advance(2.1)
    pool.acquire(Cost(), deadline=clock.now())


def test_closed_pool_refuses_work_and_wakes_waiters():
    clock, _, pool, loop, _, _ = make(keys=KEYS[:1], rate_limit=RateLimit(requests_per_minute=1),
                                      acquire_timeout=None)  # fmt: skip
    loop.execute(req())
    thread, _, errors = in_thread(lambda: loop.execute(req()))  # a minute to wait: it waits
    _wait(lambda: clock.waiting == 1)
    pool.close()
    pool.close()  # idempotent
    thread.join(5)
    assert isinstance(errors[0], PoolClosedError)
    with pytest.raises(PoolClosedError):
        loop.execute(req())


def test_a_closed_pool_builds_no_sdk_client():
    _, provider, pool, loop, _, _ = make()
    built: list[str] = []
    provider.create_client = lambda key: built.append(key) or key  # type: ignore[method-assign]
    pool.close()
    with pytest.raises(PoolClosedError):
        loop.execute(req())
    assert built == []


# -- waiting in asyncio --------------------------------------------------------------------------


def test_an_async_wait_holds_no_thread_and_a_cancelled_one_leaves_the_queue():
    _clock, _, pool, _, _, _ = make(keys=KEYS[:1], rate_limit=RateLimit(max_concurrent=1))

    async def main():
        held = await pool.acquire_async(Cost())
        waiters = [asyncio.ensure_future(pool.acquire_async(Cost())) for _ in range(50)]
        await asyncio.sleep(0.01)
        assert pool.status()["waiting_requests"] == 50 and threading.active_count() < 10
        waiters[0].cancel()
        await asyncio.sleep(0.01)
        assert pool.status()["waiting_requests"] == 49
        pool.release_success(held, None, None, None)  # the next in line gets the key
        second = await waiters[1]
        assert second.slot.index == 0
        for waiter in waiters[2:]:
            waiter.cancel()
        await asyncio.gather(*waiters[2:], return_exceptions=True)
        pool.release_success(second, None, None, None)
        assert pool.status()["waiting_requests"] == 0 and pool.in_flight() == 0

    asyncio.run(main())


# -- no network under the pool's lock -------------------------------------------------------------


class _BlockingLink:
    """A shared-limits twin whose every round trip blocks until released (Redis answering slowly)."""

    def __init__(self, gate: threading.Event, inside: list[str], name: str) -> None:
        self.gate, self.inside, self.name = gate, inside, name

    def confirm(self, pool, lease) -> bool:
        self.inside.append(f"confirm {self.name}")
        self.gate.wait(5)
        return True

    def push(self, pool, limiter) -> None:
        self.inside.append(f"push {self.name}")
        self.gate.wait(5)


class _BlockingShared:
    def __init__(self) -> None:
        self.gate = threading.Event()
        self.inside: list[str] = []

    def link(self, name, rate_limit):
        return _BlockingLink(self.gate, self.inside, name)


@pytest.mark.timeout(10)
def test_a_slow_shared_store_never_holds_the_pools_lock():
    shared = _BlockingShared()
    provider = ScriptedProvider()
    pool = KeyPool(provider, KEYS, rate_limits=[RateLimit(requests_per_minute=600)] * len(KEYS),
                   pool_config=PoolConfig(acquire_timeout=5), clock=FakeClock(),
                   shared_limits=shared)  # fmt: skip
    loop = RetryLoop(pool, RetryPolicy(max_retries=0), acquire_timeout=5)
    calls = [in_thread(lambda: loop.execute(req())) for _ in KEYS]  # one per key, all blocked in Redis
    _wait(lambda: len(shared.inside) == len(KEYS))
    assert all(step.startswith("confirm") for step in shared.inside)  # all three are in at once
    assert pool.status()["total_clients"] == len(KEYS)  # status answers while they wait
    assert pool._lock.acquire(timeout=0.5)  # and the lock itself is free
    pool._lock.release()
    shared.gate.set()
    for thread, results, errors in calls:
        thread.join(5)
        assert not errors and results[0].content == "ok"
    pool.close()


def test_a_reply_is_measured_from_when_its_request_left_not_from_its_grant():
    """A thread granted a key may be scheduled late (many threads, one core): what the reply's
    headers say is reckoned from the send, or a window's end looks that much early."""
    clock, _, pool, loop, _, _ = make(keys=KEYS[:1])
    grant = pool.acquire

    def granted_then_scheduled_late(*args, **kwargs):
        lease = grant(*args, **kwargs)
        clock.advance(0.04)
        return lease

    seen: list[float] = []
    release = pool.release_success

    def seen_at_release(lease, *args, **kwargs):
        seen.append(lease.reservation.sent_at)
        return release(lease, *args, **kwargs)

    pool.acquire = granted_then_scheduled_late  # type: ignore[method-assign]
    pool.release_success = seen_at_release  # type: ignore[method-assign]
    start = clock.now()
    loop.execute(req())
    assert seen == [pytest.approx(start + 0.04)]

