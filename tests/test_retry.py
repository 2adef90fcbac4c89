"""Retry-After parsing, what retries, and the backoff delays."""

from __future__ import annotations

import email.utils
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmkit.config import RetryPolicy
from llmkit.engine.backoff import backoff_delays, is_retryable, retry_after_wait
from llmkit.errors import (
    AuthenticationError,
    InvalidRequestError,
    NetworkError,
    OverloadedError,
    ProviderError,
    RateLimitError,
    RequestTimeoutError,
)
from llmkit.providers._headers import parse_retry_after

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),  # ms is the finer of the two
        ({"retry-after-ms": "nonsense", "retry-after": "2"}, 2.0),
        ({"Retry-After": "4"}, 4.0),
        ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),  # a date in the past
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": "99999"}, 600.0),  # clamped
        ({"retry-after": "soon"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "inf"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_parse_retry_after(headers, expected):
    result = parse_retry_after(headers, now=NOW)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


@given(st.text(max_size=40))
def test_parse_retry_after_never_raises_on_garbage(text):
    result = parse_retry_after({"retry-after": text}, now=NOW)
    assert result is None or 0.0 <= result <= 600.0


@given(st.floats(min_value=0, max_value=600), st.integers(min_value=0, max_value=2**32))
def test_jitter_never_shortens_a_retry_after(retry_after, seed):
    wait = retry_after_wait(retry_after, random.Random(seed))
    assert retry_after <= wait <= retry_after + 1.0


def test_backoff_without_jitter_is_exponential_and_capped():
    policy = RetryPolicy(base_delay=0.5, multiplier=2.0, max_delay=3.0, jitter=False)
    delays = backoff_delays(policy)
    assert [next(delays) for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_backoff_with_jitter_stays_within_the_exponential_envelope():
    policy = RetryPolicy(base_delay=1.0, multiplier=2.0, max_delay=8.0, jitter=True)
    delays = backoff_delays(policy, random.Random(7))
    values = [next(delays) for _ in range(6)]
    for value, cap in zip(values, [1, 2, 4, 8, 8, 8]):
        assert 0 <= value <= cap
    assert len(set(values)) == 6  # really jittered


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (RateLimitError("x", status_code=429), True),
        (ProviderError("x", status_code=500), True),
        (ProviderError("x", status_code=503), True),
        (OverloadedError("x", status_code=529), True),
        (RequestTimeoutError("x", status_code=408), True),
        (ProviderError("x", status_code=409), True),
        (NetworkError("x"), True),
        (RequestTimeoutError("x"), True),
        (InvalidRequestError("x", status_code=400), False),
        (InvalidRequestError("x", status_code=422), False),
        (AuthenticationError("x", status_code=401), False),
        (ValueError("not ours"), False),
    ],
)
def test_is_retryable(error, retry):
    assert is_retryable(error, RetryPolicy()) is retry
