"""llmkit's pool against every way a provider enforces its per-minute numbers, on simulated time.

Each test runs the real KeyPool (its queue, pacing, views and learning) against
the fake server's own enforcers (:mod:`llmkit.testing._fake.enforcement`) in
a discrete-event simulation (``engine_sim.py``): 16 callers, 4 keys, replies in
50-60 ms with occasional slow ones. Capacity used is
``(what was sent / the enforced rate) / wall time``.
"""

from __future__ import annotations

import random

import pytest
from engine_sim import SimServer, Simulation

from llmkit.config import RateLimit
from llmkit.engine.limiter import Cost

REQUEST_STYLES = ["minute_bucket", "second_bucket", "per_second", "leaky", "fixed_minute", "sliding_minute"]
TOKEN_STYLES = [s for s in REQUEST_STYLES if s != "leaky"]  # nginx counts requests only
TOKEN_LIMITS = {"requests": 6000, "input_tokens": 90_000, "output_tokens": 24_000}


def latency(rng: random.Random) -> float:
    slow = 0.03 if rng.random() < 0.02 else 0.0
    return 0.05 + rng.uniform(0.0, 0.01) + slow


def requests_run(style: str, rate_limit: RateLimit | None, *, headers: bool = True, requests: int = 400,
                 seed: int = 7):  # fmt: skip
    server = SimServer(style, {"requests": 1200}, headers=headers)
    result = Simulation(server, rate_limit, latency=latency, seed=seed).run([Cost()] * requests)
    return result, result.capacity_used(requests / 80.0)  # 4 keys x 20 a second


def tokens_run(style: str, rate_limit: RateLimit | None, *, seed: int = 7):
    rng = random.Random(seed)
    costs = [Cost(1, rng.randint(40, 2400) // 4 + 6, 24) for _ in range(400)]  # prompts of 40-2,400 chars
    result = Simulation(SimServer(style, TOKEN_LIMITS), rate_limit, latency=latency, seed=seed).run(
        costs, output_tokens=lambda cost: 12
    )
    ideal = sum(cost.input_tokens for cost in costs) / (4 * 1500.0)  # input binds: 1,500 a second a key
    return result, result.capacity_used(ideal)


DASHBOARD = RateLimit(requests_per_minute=1200)
TOKEN_DASHBOARD = RateLimit(requests_per_minute=6000, input_tokens_per_minute=90_000,
                            output_tokens_per_minute=24_000)  # fmt: skip


@pytest.mark.parametrize("seed", [7, 11])
@pytest.mark.parametrize("style", REQUEST_STYLES)
def test_dashboard_numbers_are_enough_for_every_style(style, seed):
    result, capacity = requests_run(style, DASHBOARD, seed=seed)
    assert result.succeeded == 400 and result.failed == 0
    assert capacity >= 0.95
    assert result.rate_limited <= 4  # at most 1%


@pytest.mark.parametrize("seed", [7, 11])
@pytest.mark.parametrize("style", REQUEST_STYLES)
def test_no_limits_given_are_learned_from_the_headers(style, seed):
    result, capacity = requests_run(style, None, seed=seed)
    assert result.succeeded == 400 and result.failed == 0
    assert capacity >= 0.90
    assert result.rate_limited <= 8  # at most 2%


@pytest.mark.parametrize("style", TOKEN_STYLES)
@pytest.mark.parametrize("rate_limit", [TOKEN_DASHBOARD, None], ids=["dashboard", "learned"])
def test_token_limits_hold_for_every_style(style, rate_limit):
    result, capacity = tokens_run(style, rate_limit)
    assert result.succeeded == 400 and result.failed == 0
    assert capacity >= (0.95 if rate_limit is not None else 0.90)
    assert result.rate_limited <= (4 if rate_limit is not None else 8)


@pytest.mark.parametrize("style", ["per_second", "leaky"])
def test_with_neither_limits_nor_headers_nothing_is_lost(style):
    result, _ = requests_run(style, None, headers=False, requests=200)
    assert result.succeeded == 200 and result.failed == 0


def test_ten_simulated_minutes_against_the_strict_per_second_style_draw_no_429():
    server = SimServer("per_second", {"requests": 600})  # 10 a second a key
    result = Simulation(server, RateLimit(requests_per_minute=600), keys=2, workers=8,
                        latency=latency).run([Cost()] * 12_000)  # fmt: skip
    assert result.succeeded == 12_000 and result.rate_limited == 0
    assert 597 <= result.wall <= 615  # the ten minutes' allowance, used


def test_no_second_of_any_key_passes_the_per_second_capacity():
    server = SimServer("per_second", {"requests": 1200})
    result = Simulation(server, DASHBOARD, latency=latency).run([Cost()] * 800)
    assert max(result.sends_per_key_second.values()) <= 20
