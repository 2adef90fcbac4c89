"""Property tests: invariants that must hold for any input hypothesis can think of."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit.config import RateLimit
from llmkit.engine.clock import FakeClock
from llmkit.engine.limiter import Cost, KeyLimiter, TokenBucket
from llmkit.errors import InvalidRequestError
from llmkit.request import build_request
from llmkit.types import MessageRole, normalize_messages

ROLES = [r.value for r in MessageRole]

message = st.fixed_dictionaries(
    {"role": st.one_of(st.sampled_from(ROLES), st.text(max_size=8)),
     "content": st.one_of(st.text(max_size=30), st.integers(), st.none())}
)  # fmt: skip


@given(st.lists(message, max_size=6))
def test_message_normalization_validates_or_raises_clearly(messages):
    try:
        result = normalize_messages(messages)
    except InvalidRequestError as exc:
        assert str(exc)  # a message that says what was wrong
        return
    assert len(result) == len(messages)
    for original, normalized in zip(messages, result):
        assert normalized.role.value == original["role"].lower()
        assert normalized.content == original["content"]


@given(
    st.one_of(st.none(), st.floats(allow_nan=True), st.integers(-5, 5), st.text(max_size=3)),
    st.one_of(st.none(), st.integers(-10, 10_000), st.floats(allow_nan=False)),
)
def test_build_request_validates_parameters(temperature, max_tokens):
    try:
        request = build_request("hi", model="m", temperature=temperature, max_tokens=max_tokens)
    except InvalidRequestError:
        return
    assert request.temperature is None or 0 <= request.temperature <= 2
    assert request.max_tokens is None or (isinstance(request.max_tokens, int) and request.max_tokens >= 1)


ops = st.lists(
    st.tuples(st.sampled_from(["take", "advance", "credit"]), st.floats(0, 20, allow_nan=False)),
    max_size=60,
)


@settings(max_examples=200)
@given(st.floats(1, 50), st.floats(0.1, 10), ops)
def test_bucket_is_never_negative_nor_above_capacity_and_never_overadmits(capacity, rate, operations):
    clock = FakeClock(0.0)
    bucket = TokenBucket(capacity, rate, clock=clock)
    admitted = 0.0
    for op, amount in operations:
        if op == "take" and amount > capacity:
            with pytest.raises(ValueError, match="can never be admitted"):
                bucket.try_acquire(amount)
        elif op == "take":
            if bucket.try_acquire(amount):
                admitted += amount
        elif op == "advance":
            clock.advance(amount)
        else:
            bucket.credit(amount)
        level = bucket.level
        assert -1e-9 <= level <= capacity + 1e-9
    # never more than what the bucket started with, refilled, and was given back
    given_back = sum(a for op, a in operations if op == "credit")
    assert admitted <= capacity + rate * clock.now() + given_back + 1e-6


@settings(max_examples=200)
@given(st.integers(1, 30), st.lists(st.floats(0, 30, allow_nan=False), min_size=1, max_size=40))
def test_requests_admitted_in_any_window_never_exceed_the_limit(per_minute, gaps):
    """Over any 60 s window, at most the per-minute limit (the bucket holds one minute)."""
    clock = FakeClock(0.0)
    limiter = KeyLimiter(RateLimit(send_allowance=0, requests_per_minute=per_minute), clock)
    times = []
    for gap in gaps:
        clock.advance(gap)
        while True:
            reservation, _ = limiter.try_reserve(Cost())
            if reservation is None:
                break
            limiter.finish(reservation, input_tokens=0, output_tokens=0)
            times.append(clock.now())
    for i, start in enumerate(times):
        in_window = sum(1 for t in times[i:] if t < start + 60)
        # the full burst plus what refills during the window
        assert in_window <= 2 * per_minute


@settings(max_examples=100)
@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500), st.booleans()), max_size=20))
def test_reservations_reconcile_to_exactly_the_real_usage(calls):
    clock = FakeClock(0.0)
    limiter = KeyLimiter(
        RateLimit(send_allowance=0, input_tokens_per_minute=10_000, output_tokens_per_minute=10_000), clock
    )
    used_in = used_out = 0
    for estimate, actual, fails in calls:
        reservation = limiter.reserve(Cost(1, estimate, estimate))
        if fails:
            limiter.refund(reservation)
        else:
            limiter.finish(reservation, input_tokens=actual, output_tokens=actual)
            used_in += actual
            used_out += actual
    assert limiter.in_flight == 0
    # with no time passing, what is gone is exactly what was used: refunds and refunds of
    # over-estimates come back, debts of under-estimates are taken
    assert limiter.buckets["input_tokens"].level == pytest.approx(10_000 - used_in)
    assert limiter.buckets["output_tokens"].level == pytest.approx(10_000 - used_out)
