"""Token buckets and key limiters on a fake clock: exact and fast."""

from __future__ import annotations

import threading
import time

import pytest

from llmkit.config import RateLimit
from llmkit.engine.clock import FakeClock
from llmkit.engine.limiter import Cost, KeyLimiter, TokenBucket
from llmkit.errors import CapacityTimeoutError
from llmkit.providers.base import ServerLimitState


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


def test_bucket_starts_full_and_refills_continuously():
    clock = FakeClock()
    bucket = TokenBucket(10, 1.0, clock=clock)
    assert bucket.level == 10
    bucket.consume(10)
    assert bucket.level == 0
    clock.advance(2.5)
    assert bucket.level == pytest.approx(2.5)
    clock.advance(100)
    assert bucket.level == 10  # never above capacity


def test_wait_time_and_debt():
    clock = FakeClock()
    bucket = TokenBucket(10, 2.0, clock=clock)
    assert bucket.wait_time(4) == 0
    bucket.consume(14)  # a reconciled reservation may overdraw
    assert bucket.level == -4
    assert bucket.wait_time(2) == pytest.approx(3.0)  # pay 4 debt + 2 at 2/s
    assert bucket.wait_time(50) == pytest.approx(7.0)  # a cost above capacity counts as full
    bucket.credit(100)
    assert bucket.level == 10
    bucket.drain()
    assert bucket.level == 0
    bucket.credit(5)
    bucket.cap(3)
    assert bucket.level == 3
    bucket.cap(7)
    assert bucket.level == 3


def test_try_acquire():
    clock = FakeClock()
    bucket = TokenBucket(2, 1.0, clock=clock)
    assert bucket.try_acquire(1) and bucket.try_acquire(1)
    assert not bucket.try_acquire(1)
    clock.advance(1)
    assert bucket.try_acquire(1)


def test_hundred_threads_against_a_bucket_of_five_admit_exactly_five_per_window():
    clock = FakeClock()
    bucket = TokenBucket(5, 5 / 60.0, clock=clock)  # 5 per minute
    admitted: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        bucket.acquire(1)
        with lock:
            admitted.append(i)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(100)]
    for t in threads:
        t.start()
    wait_until(lambda: len(admitted) == 5 and clock.waiting == 95)
    for window in range(2, 5):
        clock.advance(60)
        wait_until(lambda w=window: len(admitted) == 5 * w and clock.waiting == 100 - 5 * w)
        time.sleep(0.02)  # give any wrongly woken thread a chance to overdraw
        assert len(admitted) == 5 * window
    assert bucket.level == pytest.approx(0)


def test_acquire_is_fifo():
    clock = FakeClock()
    bucket = TokenBucket(1, 1.0, clock=clock, initial=0)
    order: list[int] = []

    def worker(i: int) -> None:
        bucket.acquire(1)
        order.append(i)

    threads = []
    for i in range(8):
        t = threading.Thread(target=worker, args=(i,), daemon=True)
        t.start()
        threads.append(t)
        wait_until(lambda n=i + 1: clock.waiting == n)
    for step in range(8):
        clock.advance(1.0)
        wait_until(lambda n=step + 1: len(order) == n)
    assert order == list(range(8))


def test_acquire_times_out_with_a_named_error():
    clock = FakeClock()
    bucket = TokenBucket(5, 5 / 60.0, clock=clock, initial=0)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            bucket.acquire(1, timeout=10)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    wait_until(lambda: clock.waiting == 1)
    clock.advance(11)  # 0.92 tokens refilled: not enough, and past the deadline
    t.join(5)
    assert len(errors) == 1 and isinstance(errors[0], CapacityTimeoutError)
    assert "within 10 s" in str(errors[0])


def test_bucket_rejects_nonsense():
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


def limiter(clock, **limits):
    return KeyLimiter(RateLimit(send_allowance=0, **limits), clock)


def test_limiter_reserves_and_reconciles_refund_and_debt():
    clock = FakeClock()
    lim = limiter(clock, requests_per_minute=60, input_tokens_per_minute=1000, output_tokens_per_minute=600)
    r = lim.reserve(Cost(1, 100, 200))
    assert lim.in_flight == 1
    assert lim.buckets["input_tokens"].level == 900
    assert lim.buckets["output_tokens"].level == 400
    lim.finish(r, input_tokens=120, output_tokens=50)  # 20 more input (debt), 150 output refunded
    assert lim.in_flight == 0
    assert lim.buckets["input_tokens"].level == 880
    assert lim.buckets["output_tokens"].level == 550
    lim.finish(r, input_tokens=0, output_tokens=0)  # a second finish changes nothing
    assert lim.buckets["input_tokens"].level == 880


def test_limiter_clamps_reservations_to_capacity():
    clock = FakeClock()
    lim = limiter(clock, output_tokens_per_minute=2000)
    r = lim.reserve(Cost(1, 10, 4096))
    assert r.cost.output_tokens == 2000
    assert lim.buckets["output_tokens"].level == 0


def test_limiter_wait_time_is_the_longest_of_its_buckets_and_inf_at_concurrency_cap():
    clock = FakeClock()
    lim = limiter(clock, requests_per_minute=60, input_tokens_per_minute=600, max_concurrent=2)
    lim.reserve(Cost(1, 600, 0))
    assert lim.wait_time(Cost(1, 60, 0)) == pytest.approx(6.0)
    lim.reserve(Cost(1, 0, 0))
    assert lim.wait_time(Cost(1, 0, 0)) == float("inf")


def test_limiter_refund_and_drain_and_server_state():
    clock = FakeClock()
    lim = limiter(clock, requests_per_minute=10, tokens_per_minute=1000)
    r = lim.reserve(Cost(1, 100, 100))
    assert lim.buckets["tokens"].level == 800
    lim.refund(r)
    assert lim.buckets["tokens"].level == 1000 and lim.buckets["requests"].level == 10
    lim.apply_server_state(ServerLimitState(remaining_requests=3, remaining_tokens=5000))
    assert lim.buckets["requests"].level == 3  # the server knows of less: believe it
    assert lim.buckets["tokens"].level == 1000  # it says more: keep ours
    lim.drain()
    assert lim.buckets["requests"].level == 0 and lim.buckets["tokens"].level == 0


def test_unlimited_limiter_admits_everything():
    lim = KeyLimiter(None, FakeClock())
    assert lim.wait_time(Cost(1, 10**9, 10**9)) == 0
    assert not lim.counts_tokens


def test_a_burst_holds_back_the_refill_of_the_send_allowance():
    """The provider counts a request on arrival: near a full bucket, hold back its travel time."""
    clock = FakeClock()
    lim = KeyLimiter(RateLimit(requests_per_minute=1200, burst_seconds=1, send_allowance=0.05), clock)
    lim.reserve(Cost())
    assert lim.buckets["requests"].level == pytest.approx(20 - 1 - 1)  # 20/s x 0.05 s held back
    for _ in range(10):
        lim.reserve(Cost())
    assert lim.buckets["requests"].level == pytest.approx(8)  # far from full: nothing more held back


def test_an_extension_takes_more_for_a_call_in_flight_and_is_reconciled_with_it():
    clock = FakeClock()
    lim = limiter(  # a second's burst: 2 requests, 1,200 input tokens
        clock, requests_per_minute=120, input_tokens_per_minute=72_000, burst_seconds=1, max_concurrent=1
    )
    r = lim.reserve(Cost(1, 300, 0))  # buckets: requests 2 -> 1, input 1200 -> 900
    assert lim.wait_time(Cost()) == float("inf")  # at its concurrency cap...
    assert lim.try_extend(r, Cost(1, 400, 0)) == 0.0  # ...yet the call in flight may take more
    assert r.cost == Cost(2, 700, 0) and lim.in_flight == 1
    assert lim.try_extend(r, Cost(1, 100, 0)) == pytest.approx(0.5)  # no request left: wait for one
    assert r.cost == Cost(2, 700, 0)  # nothing taken
    lim.force_extend(r, Cost(1, 100, 0))  # taken anyway: debt
    assert lim.buckets["requests"].level == -1 and r.cost == Cost(3, 800, 0)
    lim.finish(r, input_tokens=650, output_tokens=0)  # the three requests used 650 of the 800 reserved
    assert lim.buckets["input_tokens"].level == 1200 - 650 and lim.in_flight == 0
