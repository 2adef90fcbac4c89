"""The fake server's enforcement styles, driven directly on an injected clock (no server)."""

from __future__ import annotations

import copy
import math
import random
from collections import deque

import pytest

from llmkit.testing import ENFORCEMENT_STYLES, Enforcer, ServerLimits, make_enforcer
from llmkit.testing._fake.buckets import INPUT, OUTPUT, REQUESTS, TOKENS, RateLimiter

T0 = 1000.0  # a whole minute boundary is 960 and 1020; a whole second boundary every 1.0


def take_all(enforcer: Enforcer, now: float, amount: float = 1) -> int:
    """How many ``amount``s are admitted at ``now`` before the first refusal."""
    taken = 0
    while enforcer.admit(now, amount) == 0.0:
        taken += 1
        assert taken < 100_000
    return taken


def test_the_styles_and_the_default() -> None:
    assert ENFORCEMENT_STYLES == ("per_second", "minute_bucket", "second_bucket", "leaky",
                                  "fixed_minute", "sliding_minute")
    for style in ENFORCEMENT_STYLES:
        enforcer = make_enforcer(style, 1200)
        assert (enforcer.style, enforcer.limit) == (style, 1200.0)
    assert ServerLimits(requests_per_minute=60).style == "per_second"
    with pytest.raises(ValueError, match="unknown enforcement style 'burst'"):
        make_enforcer("burst", 60)
    with pytest.raises(ValueError, match="> 0"):
        make_enforcer("per_second", 0)


# (c) per-second fixed windows ------------------------------------------------------------


def test_per_second_admits_a_sixtieth_per_whole_second() -> None:
    enforcer = make_enforcer("per_second", 1200)
    assert enforcer.capacity == 20
    assert take_all(enforcer, T0 + 0.25) == 20
    assert enforcer.wait(T0 + 0.25, 1) == pytest.approx(0.75)
    for _ in range(50):  # refusals take nothing
        assert enforcer.admit(T0 + 0.9, 1) == pytest.approx(0.1)
    assert (enforcer.remaining(T0 + 0.9), enforcer.reset_in(T0 + 0.9)) == (0.0, pytest.approx(0.1))
    assert enforcer.wait(T0 + 0.999, 1) == pytest.approx(0.001)
    assert take_all(enforcer, T0 + 1.0) == 20  # the boundary instant belongs to the new window
    assert enforcer.remaining(T0 + 2.5) == 20 and enforcer.reset_in(T0 + 2.5) == 0.0


def test_per_second_windows_are_aligned_not_sliding() -> None:
    enforcer = make_enforcer("per_second", 600)  # 10 a second
    assert take_all(enforcer, T0 + 0.99) == 10
    assert take_all(enforcer, T0 + 1.01) == 10  # 20 within 20 ms across the boundary
    assert enforcer.wait(T0 + 1.5, 1) == pytest.approx(0.5)


def test_per_second_capacity_is_at_least_one_and_not_rounded() -> None:
    slow = make_enforcer("per_second", 30)  # max(1, 0.5): one a second
    assert slow.capacity == 1 and take_all(slow, T0) == 1
    uneven = make_enforcer("per_second", 90)  # 1.5 a second: one whole request
    assert take_all(uneven, T0) == 1 and uneven.remaining(T0) == pytest.approx(0.5)
    assert uneven.admit(T0, 0.5) == 0.0  # half a unit still fits (token dimensions)


def test_per_second_wait_on_a_float_clock_always_lands_in_the_next_window() -> None:
    enforcer = make_enforcer("per_second", 60)
    now = 1234.567
    for _ in range(1000):
        assert enforcer.admit(now, 1) == 0.0
        wait = enforcer.admit(now, 1)
        assert 0 < wait <= 1
        now += wait
    assert now == pytest.approx(2234.0)


def test_a_time_within_a_nanosecond_of_a_boundary_counts_as_after_it() -> None:
    enforcer = make_enforcer("per_second", 60)
    assert enforcer.admit(T0 + 0.9999999995, 1) == 0.0
    assert enforcer.wait(T0 + 1.0, 1) == pytest.approx(1.0)


# (a) (b) continuous buckets --------------------------------------------------------------


def test_minute_bucket_holds_a_whole_minute() -> None:
    enforcer = make_enforcer("minute_bucket", 60)
    assert take_all(enforcer, T0) == 60
    assert enforcer.wait(T0, 1) == pytest.approx(1.0)
    assert enforcer.reset_in(T0) == pytest.approx(60.0)
    assert enforcer.remaining(T0 + 2.5) == pytest.approx(2.5)
    assert enforcer.admit(T0 + 2.5, 3) == pytest.approx(0.5)  # refused: nothing taken
    assert enforcer.admit(T0 + 3.0, 3) == 0.0
    assert enforcer.reset_in(T0 + 3.0) == pytest.approx(60.0)


def test_second_bucket_holds_one_second() -> None:
    enforcer = make_enforcer("second_bucket", 1200)
    assert enforcer.capacity == 20 and take_all(enforcer, T0) == 20
    assert enforcer.wait(T0, 1) == pytest.approx(0.05)
    assert enforcer.admit(T0 + 0.05, 1) == 0.0
    assert enforcer.remaining(T0 + 10) == 20 and enforcer.reset_in(T0 + 10) == 0.0
    assert make_enforcer("second_bucket", 30).capacity == 1  # holds one request at least


def test_a_bucket_of_burst_seconds() -> None:
    limits = ServerLimits(requests_per_minute=600, burst_seconds=0.5)
    assert limits.style == "bucket"
    enforcer = limits.enforcer(REQUESTS, 600)
    assert enforcer.capacity == 5 and take_all(enforcer, T0) == 5
    assert enforcer.wait(T0, 1) == pytest.approx(0.1)


# (d) nginx limit_req ----------------------------------------------------------------------


class NginxReference:
    """nginx's ``ngx_http_limit_req_lookup`` for one key (one zone, ``nodelay``), written
    from its C source: integer milliseconds, excess in thousandths of a request."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = int(per_minute * 1000 // 60)  # rate=Nr/m -> N * 1000 / 60
        self.burst = burst * 1000
        self.node: list[int] | None = None  # [excess, last]

    def request(self, now_ms: int) -> bool:
        if self.node is None:
            self.node = [0, now_ms]  # a new entry: excess 0, admitted
            return True
        excess, last = self.node
        ms = now_ms - last
        ms = 1 if ms < -60000 else max(0, ms)
        excess = max(0, excess - self.rate * ms // 1000 + 1000)
        if excess > self.burst:
            return False  # NGX_BUSY: the entry is left as it was
        self.node[0] = excess
        if ms:
            self.node[1] = now_ms
        return True


@pytest.mark.parametrize(("per_minute", "burst"), [(1200, 1), (1200, 0), (100, 1), (7, 3),
                                                     (3000, 5)])
def test_leaky_matches_nginx_request_by_request(per_minute: float, burst: int) -> None:
    rng = random.Random(per_minute * 10 + burst)
    enforcer = make_enforcer("leaky", per_minute, burst=burst)
    reference = NginxReference(per_minute, burst)
    now_ms, admitted = 5_000_000, 0
    gap = 60_000 / per_minute
    for _ in range(4000):
        now_ms += rng.choice([0, 0, 1, rng.randint(0, int(2 * gap)), rng.randint(0, int(gap / 3) + 1)])
        expected = reference.request(now_ms)
        wait = enforcer.admit(now_ms / 1000, 1)
        assert (wait == 0.0) == expected, (now_ms, wait)
        admitted += expected
        if not expected:  # the wait is exact to the millisecond: nginx agrees at once, not before
            later = round((now_ms / 1000 + wait) * 1000)
            early, exact = copy.deepcopy(reference), copy.deepcopy(reference)
            assert not early.request(later - 1) and exact.request(later)
    assert 0 < admitted < 4000


def test_leaky_burst_arithmetic() -> None:
    enforcer = make_enforcer("leaky", 1200)  # rate=20r/s burst=1 nodelay
    assert enforcer.capacity == 2 and enforcer.remaining(T0) == 2
    assert enforcer.admit(T0, 1) == 0.0  # a first request finds no excess
    assert enforcer.admit(T0, 1) == 0.0  # excess 1.000 = burst: still admitted
    for _ in range(10):
        assert enforcer.admit(T0, 1) == pytest.approx(0.05)  # excess would be 2.000 > 1
    assert enforcer.admit(T0 + 0.049, 1) == pytest.approx(0.001)
    assert enforcer.admit(T0 + 0.05, 1) == 0.0
    assert enforcer.reset_in(T0 + 0.05) == pytest.approx(0.1)
    assert enforcer.remaining(T0 + 0.15) == 2


def test_leaky_drops_the_remainder_of_each_drain_as_nginx_does() -> None:
    enforcer = make_enforcer("leaky", 100, burst=0)  # 1.666/s: rate 1666 thousandths
    assert enforcer.admit(T0, 1) == 0.0
    assert enforcer.admit(T0 + 0.6, 1) == pytest.approx(0.001)  # 1666 * 600 // 1000 = 999
    assert enforcer.admit(T0 + 0.601, 1) == 0.0  # 1001: admitted, the 0.266 thousandths lost
    assert enforcer.wait(T0 + 0.601, 1) == pytest.approx(0.601)


def test_leaky_amounts_are_that_many_requests_at_once() -> None:
    enforcer = make_enforcer("leaky", 6000, burst=5)  # 100/s, holds 6
    assert enforcer.admit(T0, 4) == 0.0
    assert enforcer.admit(T0, 3) == pytest.approx(0.01)
    assert enforcer.admit(T0, 2) == 0.0
    assert enforcer.admit(T0, 7) == math.inf  # more than burst + 1 never fits
    with pytest.raises(ValueError, match=r"0\.06/min"):
        make_enforcer("leaky", 0.05)


# (e) fixed minute, (f) sliding minute -----------------------------------------------------


def test_fixed_minute_resets_on_the_minute() -> None:
    enforcer = make_enforcer("fixed_minute", 10)
    assert take_all(enforcer, 1019.5) == 10  # the window [960, 1020)
    assert enforcer.wait(1019.5, 1) == pytest.approx(0.5)
    assert enforcer.reset_in(1019.5) == pytest.approx(0.5)
    assert take_all(enforcer, 1020.0) == 10  # 20 within half a second
    assert enforcer.wait(1021.0, 1) == pytest.approx(59.0)
    assert enforcer.remaining(1080.0) == 10


def test_sliding_minute_counts_each_admission_for_sixty_seconds() -> None:
    enforcer = make_enforcer("sliding_minute", 3)
    for when in (T0, T0 + 10, T0 + 20):
        assert enforcer.admit(when, 1) == 0.0
    assert enforcer.admit(T0 + 30, 1) == pytest.approx(30.0)
    assert enforcer.remaining(T0 + 30) == 0 and enforcer.reset_in(T0 + 30) == pytest.approx(50.0)
    assert enforcer.admit(T0 + 59.999, 1) == pytest.approx(0.001)
    assert enforcer.admit(T0 + 60, 1) == 0.0  # the first expired exactly 60 s after
    assert enforcer.admit(T0 + 60, 1) == pytest.approx(10.0)
    assert enforcer.admit(T0 + 65, 2) == pytest.approx(15.0)  # needs two to expire
    assert enforcer.admit(T0 + 65, 4) == math.inf
    assert enforcer.remaining(T0 + 200) == 3 and enforcer.reset_in(T0 + 200) == 0.0


# What is given back ---------------------------------------------------------------------


@pytest.mark.parametrize("style", ENFORCEMENT_STYLES)
def test_a_refusal_changes_nothing(style: str) -> None:
    enforcer = make_enforcer(style, 120, burst=1)
    taken = take_all(enforcer, T0 + 0.5)
    before = (enforcer.remaining(T0 + 0.6), enforcer.reset_in(T0 + 0.6), enforcer.wait(T0 + 0.6, 1))
    for _ in range(20):
        assert enforcer.admit(T0 + 0.6, 1) > 0
    assert (enforcer.remaining(T0 + 0.6), enforcer.reset_in(T0 + 0.6),
            enforcer.wait(T0 + 0.6, 1)) == before
    assert taken >= 1


@pytest.mark.parametrize("style", ENFORCEMENT_STYLES)
def test_what_is_given_back_can_be_taken_again(style: str) -> None:
    enforcer = make_enforcer(style, 6000, burst=99)  # 100 or 6000 at once
    assert enforcer.admit(T0 + 0.5, enforcer.capacity) == 0.0 and enforcer.wait(T0 + 0.5, 60) > 0
    enforcer.give_back(T0 + 0.5, 60, taken_at=T0 + 0.5)
    assert enforcer.remaining(T0 + 0.5) == pytest.approx(60)
    assert enforcer.admit(T0 + 0.5, 60) == 0.0
    enforcer.give_back(T0 + 0.5, -10, taken_at=T0 + 0.5)  # 10 beyond the reservation: owed
    assert enforcer.wait(T0 + 0.5, 1) > 0


def test_a_window_gets_back_only_while_it_is_current() -> None:
    per_second = make_enforcer("per_second", 6000)  # 100 a second
    assert per_second.admit(T0 + 0.2, 100) == 0.0
    per_second.give_back(T0 + 0.7, 40, taken_at=T0 + 0.2)  # the same window: back
    assert per_second.remaining(T0 + 0.7) == 40
    assert per_second.admit(T0 + 0.8, 40) == 0.0
    per_second.give_back(T0 + 1.3, 40, taken_at=T0 + 0.8)  # the window is over: lost
    assert per_second.remaining(T0 + 1.3) == 100
    sliding = make_enforcer("sliding_minute", 100)
    assert sliding.admit(T0, 70) == 0.0 and sliding.admit(T0 + 5, 30) == 0.0
    sliding.give_back(T0 + 6, 50, taken_at=T0)  # the entry of T0 is smaller now
    assert sliding.remaining(T0 + 6) == 50 and sliding.reset_in(T0 + 6) == pytest.approx(59.0)
    assert sliding.wait(T0 + 6, 60) == pytest.approx(54.0)
    sliding.give_back(T0 + 70, 30, taken_at=T0 + 5)  # expired: nothing to give back to
    assert sliding.remaining(T0 + 70) == 100


# Simulations: exact waits and the bound of each style ------------------------------------


def bound_holds(style: str, per_minute: float, times: list[float]) -> bool:
    """Whether admissions at ``times`` respect what ``style`` promises."""
    counts: dict[int, int] = {}
    if style in ("per_second", "fixed_minute"):
        window = 1.0 if style == "per_second" else 60.0
        cap = max(1.0, per_minute / 60) if style == "per_second" else per_minute
        for when in times:
            counts[math.floor(when / window + 1e-9)] = counts.get(math.floor(when / window + 1e-9), 0) + 1
        return max(counts.values()) <= cap
    if style == "sliding_minute":
        recent: deque[float] = deque()
        for when in times:
            while recent and recent[0] + 60 <= when + 1e-9:
                recent.popleft()
            recent.append(when)
            if len(recent) > per_minute:
                return False
        return True
    held = {"minute_bucket": per_minute, "second_bucket": max(1, per_minute / 60), "leaky": 2}
    first = times[0]  # a bucket lets its capacity go at once, then the rate
    return all(index + 1 <= held[style] + (when - first) * per_minute / 60 + 1e-6
               for index, when in enumerate(times))


@pytest.mark.parametrize("style", ENFORCEMENT_STYLES)
def test_ten_thousand_requests_waiting_exactly_what_they_are_told(style: str) -> None:
    rng = random.Random(style)
    per_minute = 1200
    enforcer, now, admitted = make_enforcer(style, per_minute), 5000.123, []
    for _ in range(10_000):
        wait = enforcer.admit(now, 1)
        if wait:
            assert 0 < wait < 61
            now += wait
            assert enforcer.admit(now, 1) == 0.0  # waiting what it said is always enough
        admitted.append(now)
        now += rng.choice([0.0, 0.0, 0.001, rng.random() / 10])
    assert bound_holds(style, per_minute, admitted)
    elapsed = admitted[-1] - admitted[0]
    assert len(admitted) / elapsed * 60 <= per_minute * 1.6 + 60  # about the rate, not more


# The server's limiter: all dimensions at once --------------------------------------------


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_admission_is_all_or_nothing_across_dimensions() -> None:
    clock = Clock(T0 + 0.5)
    limits = ServerLimits(requests_per_minute=600, input_tokens_per_minute=6000)  # 10 and 100/s
    limiter = RateLimiter(limits, None, clock)
    assert limiter.admit("k", 90, 10).ok
    refused = limiter.admit("k", 20, 10)  # requests would fit, input tokens do not
    assert not refused.ok and refused.exceeded == INPUT and not refused.too_large
    assert refused.retry_after == pytest.approx(0.5) and refused.requested == 20
    assert limiter.state("k")[REQUESTS].remaining == 9  # the refusal took no request
    too_big = limiter.admit("k", 101, 10)
    assert too_big.too_large and too_big.exceeded == INPUT and too_big.capacity == 100
    assert limiter.counts() == {"per_second": {"admitted": 1, "refused": 2}}
    limiter.reset()
    assert limiter.counts() == {} and limiter.state("k")[INPUT].remaining == 100


def test_the_output_reservation_is_settled_in_the_window_of_admission() -> None:
    clock = Clock(T0 + 0.1)
    limits = ServerLimits(output_tokens_per_minute=6000, tokens_per_minute=12000)  # 100, 200/s
    limiter = RateLimiter(limits, None, clock)
    first = limiter.admit("k", 10, 80)
    assert first.charges == {OUTPUT: 80, TOKENS: 90}
    assert limiter.state("k")[OUTPUT].remaining == 20
    limiter.settle(first, 30)  # 50 of the 80 come back to this window
    assert limiter.state("k")[OUTPUT].remaining == 70
    assert limiter.state("k")[TOKENS].remaining == 200 - 40
    second = limiter.admit("k", 10, 500)  # capped to what a window can ever hold: 100, 200
    assert not second.ok and not second.too_large and second.retry_after == pytest.approx(0.9)
    assert (second.exceeded, second.requested) == (TOKENS, 200)  # 40 used already
    clock.now = T0 + 1.2
    third = limiter.admit("k", 10, 500)
    assert third.ok and limiter.state("k")[OUTPUT].remaining == 0
    clock.now = T0 + 2.5
    limiter.settle(third, 5)  # its window is over: nothing to give back to
    assert limiter.state("k")[OUTPUT].remaining == 100


def test_the_state_is_clamped_and_floored() -> None:
    clock = Clock(T0 + 0.5)
    limiter = RateLimiter(ServerLimits(output_tokens_per_minute=600), None, clock)  # 10/s
    admission = limiter.admit("k", 0, 10)
    limiter.settle(admission, 25)  # 15 beyond the reservation: owed, not negative headers
    state = limiter.state("k")[OUTPUT]
    assert (state.limit, state.remaining) == (600, 0)
    assert state.reset_seconds == pytest.approx(0.5) and state.reset_at == pytest.approx(T0 + 1)


def test_server_limits_choose_one_style() -> None:
    assert ServerLimits(burst_seconds=60) == ServerLimits(style="minute_bucket")
    assert ServerLimits(burst_seconds=1).style == "second_bucket"
    assert ServerLimits(style="second_bucket").burst_seconds == 1
    assert ServerLimits(burst_seconds=60, style="minute_bucket").style == "minute_bucket"
    for bad, words in [({"burst_seconds": 1, "style": "per_second"}, "contradicts"),
                       ({"burst_seconds": 0}, "> 0"), ({"style": "token_bucket"}, "unknown style"),
                       ({"style": "bucket"}, "needs burst_seconds"),
                       ({"leaky_burst": -1}, ">= 0"),
                       ({"style": "leaky", "requests_per_minute": 0.01}, "0.06")]:
        with pytest.raises(ValueError, match=words):
            ServerLimits(**bad)
    tokens = ServerLimits(input_tokens_per_minute=6000, style="leaky").enforcer(INPUT, 6000)
    assert tokens.capacity == 101  # token limits: a burst of one second of the rate
    custom = ServerLimits(style="leaky", leaky_token_burst=9).enforcer(OUTPUT, 6000)
    assert custom.capacity == 10
