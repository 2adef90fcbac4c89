"""Every transition of a key's health."""

from __future__ import annotations

import math

from llmkit.engine.health import KeyHealth


def test_healthy_key_is_ready_now():
    health = KeyHealth()
    assert health.ready_at(10.0) == 10.0
    assert health.state(10.0) == "healthy"


def test_rate_limited_key_cools_down_until_retry_after():
    health = KeyHealth()
    health.on_rate_limited(10.0, 2.5, "RateLimitError (429)")
    assert health.state(11.0) == "cooling"
    assert health.ready_at(11.0) == 12.5
    assert health.state(12.5) == "healthy"
    assert health.error_count == 1


def test_consecutive_failures_open_the_circuit_then_one_probe():
    health = KeyHealth(failure_threshold=3, circuit_cooldown=30.0)
    for _ in range(2):
        health.on_failure(0.0, "ProviderError (500)")
    assert health.state(0.0) == "healthy"
    health.on_failure(0.0, "ProviderError (500)")
    assert health.state(1.0) == "open"
    assert health.ready_at(1.0) == 30.0
    assert health.state(30.0) == "half-open"
    health.on_acquire(30.0)  # the probe
    assert health.ready_at(30.0) == math.inf  # nobody else until the probe's verdict
    health.on_failure(31.0, "ProviderError (500)")  # probe failed: open again
    assert health.state(32.0) == "open" and health.ready_at(32.0) == 61.0
    health.on_acquire(61.0)
    health.on_success()  # probe succeeded: closed
    assert health.state(61.0) == "healthy" and health.consecutive_failures == 0


def test_success_resets_the_failure_count():
    health = KeyHealth(failure_threshold=3)
    health.on_failure(0.0, "x")
    health.on_failure(0.0, "x")
    health.on_success()
    health.on_failure(0.0, "x")
    assert health.state(0.0) == "healthy"


def test_disabled_key_stays_disabled_until_enabled():
    health = KeyHealth()
    health.disable("401 AuthenticationError")
    assert health.ready_at(0.0) == math.inf
    assert health.state(1e9) == "disabled"
    assert health.snapshot(0.0)["disabled_reason"] == "401 AuthenticationError"
    health.enable()
    assert health.state(0.0) == "healthy"


def test_a_request_without_verdict_frees_the_probe():
    health = KeyHealth(failure_threshold=1, circuit_cooldown=5.0)
    health.on_failure(0.0, "x")
    health.on_acquire(5.0)
    health.on_released_unjudged()
    assert health.ready_at(5.0) == 5.0
