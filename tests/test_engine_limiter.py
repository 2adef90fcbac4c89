"""The limiter on fake time: buckets, lanes, the server's view, pacing, learning, AIMD, clamping."""

from __future__ import annotations

import itertools
import math

import pytest

from llmkit.config import RateLimit
from llmkit.engine.bucket import Bucket
from llmkit.engine.lanes import Lane, ServerView
from llmkit.engine.limiter import BURST_STEP, MAX_BURST, PACE_CUT, Cost, KeyLimiter
from llmkit.errors import RateLimitError
from llmkit.providers.base import ServerLimitState

T0 = 1000.0


# -- the bucket ------------------------------------------------------------------------------


def test_a_bucket_admits_min_of_cost_and_capacity_then_pays_back_the_debt():
    bucket = Bucket(rate=10.0, capacity=5.0, now=T0)
    assert bucket.wait(20, T0) == 0.0  # more than the bucket: waits for a full one only
    bucket.take(20, T0)
    assert bucket.level == -15.0
    assert bucket.wait(1, T0) == pytest.approx(1.6)  # 16 tokens of debt and one more at 10/s
    assert bucket.wait(1, T0 + 1.6) == 0.0


def test_a_bucket_answers_as_if_something_was_taken_first():
    bucket = Bucket(rate=1.0, capacity=2.0, now=T0)
    assert bucket.wait(1, T0) == 0.0
    assert bucket.wait(1, T0, already=2) == pytest.approx(1.0)


# -- pacing: never a minute's burst ------------------------------------------------------------


def sends_under_load(limiter: KeyLimiter, cost: Cost, seconds: float, step: float = 0.001) -> list[float]:
    """Send whenever the limiter lets us (a caller with endless demand), for ``seconds``."""
    now, times = T0, []
    while now < T0 + seconds:
        if limiter.wait_time(cost, now) <= 0:
            reservation = limiter.take(limiter.clamp(cost), now)
            limiter.finish(reservation, None, None, now)
            times.append(now)
        now += step
    return times


def test_a_dashboard_limit_is_paced_over_the_second_not_spent_at_once():
    limiter = KeyLimiter(RateLimit(requests_per_minute=1200), T0)
    times = sends_under_load(limiter, Cost(), 2.0)
    assert sum(1 for t in times if t < T0 + 0.1) <= 3  # not 1,200 at once, nor 20
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 60 / 1200 * 0.99  # one every 50 ms or a little more


def test_over_any_minute_a_key_never_sends_more_than_its_limit():
    limiter = KeyLimiter(RateLimit(requests_per_minute=120), T0)
    for _ in range(200):  # a burst grown to its largest
        limiter.on_success(T0)
    times = sends_under_load(limiter, Cost(), 180.0, step=0.01)
    for i, start in enumerate(times):
        window = sum(1 for t in times[i:] if t < start + 60)
        assert window <= 120


def test_an_explicit_burst_is_a_plain_bucket():
    limiter = KeyLimiter(RateLimit(requests_per_minute=60, burst_seconds=60), T0)
    times = sends_under_load(limiter, Cost(), 0.5)
    assert len(times) == 60  # the whole minute's allowance, as asked
    limiter.on_success(T0)  # and no adaptation
    assert limiter.burst == 60


# -- additive increase, multiplicative decrease -------------------------------------------------


def test_the_burst_grows_with_successes_and_halves_on_an_unpredicted_429():
    limiter = KeyLimiter(RateLimit(requests_per_minute=600), T0)
    assert limiter.burst == 0.0  # one request at a time to begin with
    for _ in range(6):
        limiter.on_success(T0)
    assert limiter.burst == pytest.approx(6 * BURST_STEP)
    capacity = limiter.lanes["requests"].bucket.capacity
    assert capacity == pytest.approx(max(1.0, 600 / 61 * 6 * BURST_STEP))
    limiter.on_rate_limited(T0, RateLimitError("429"))
    assert limiter.burst == pytest.approx(3 * BURST_STEP)
    assert limiter.pace == pytest.approx(PACE_CUT)
    for _ in range(1000):
        limiter.on_success(T0)
    assert limiter.burst == MAX_BURST and limiter.pace == 1.0


def test_the_burst_never_passes_what_the_servers_headers_showed_it_holds():
    limiter = KeyLimiter(RateLimit(requests_per_minute=1200), T0)
    for _ in range(100):
        limiter.on_success(T0)
    state = ServerLimitState(remaining_requests=1, limit_requests=1200, reset_requests=0.05)
    limiter.observe(state, T0, T0 + 0.05, Cost())  # nginx burst=1: one more at most
    limiter.on_success(T0)
    assert limiter.lanes["requests"].bucket.capacity == pytest.approx(1.0)


# -- learning from the server ------------------------------------------------------------------


def test_with_no_limits_a_key_sends_one_request_until_a_reply_teaches_it():
    limiter = KeyLimiter(None, T0)
    reservation = limiter.take(Cost(), T0)
    assert limiter.wait_time(Cost(), T0) == math.inf  # one at a time until it hears back
    limiter.finish(reservation, 10, 5, T0 + 0.05)
    state = ServerLimitState(limit_requests=1200, remaining_requests=1199, reset_requests=0.05,
                             limit_tokens=40_000, remaining_tokens=39_900, reset_tokens=0.15)  # fmt: skip
    limiter.observe(state, T0, T0 + 0.05, Cost(1, 10, 5))
    lanes = limiter.snapshot(T0)["limits"]
    assert lanes["requests"]["per_minute"] == 1200 and lanes["requests"]["source"] == "learned"
    assert lanes["tokens"]["per_minute"] == 40_000
    assert limiter.wait_time(Cost(), T0 + 0.05) == 0.0


def test_a_learned_limit_is_logged_once(caplog):
    caplog.set_level("INFO", logger="llmkit.engine.limiter")
    limiter = KeyLimiter(None, T0, name="openai:key-1")
    state = ServerLimitState(limit_requests=600, remaining_requests=599, reset_requests=0.1)
    limiter.observe(state, T0, T0 + 0.05, Cost())
    limiter.observe(state, T0, T0 + 0.06, Cost())
    lines = [r.getMessage() for r in caplog.records if "limits" in r.getMessage()]
    assert lines == ["openai:key-1: limits 600 requests/min (learned)"]


def test_a_429_naming_its_limit_teaches_it():
    limiter = KeyLimiter(None, T0)
    error = RateLimitError("Quota exceeded", retry_after=2.0)
    error.limit = 15.0  # Gemini's QuotaFailure quotaValue
    limiter.on_rate_limited(T0, error)
    assert limiter.lanes["requests"].limit == 15.0


def test_a_429_naming_nothing_teaches_no_limit():
    limiter = KeyLimiter(None, T0)
    limiter.on_rate_limited(T0, RateLimitError("slow down", retry_after=1.0))
    assert limiter.lanes == {}


def test_the_server_knowing_of_less_than_configured_wins():
    limiter = KeyLimiter(RateLimit(requests_per_minute=1000), T0)
    limiter.observe(ServerLimitState(limit_requests=100, remaining_requests=99), T0, T0, Cost())
    assert limiter.lanes["requests"].limit == 100


@pytest.mark.parametrize("remaining", [-1e12, -1, float("inf"), float("-inf"), float("nan"), 5_000_000])
def test_a_remaining_count_out_of_bounds_is_not_believed(remaining):
    limiter = KeyLimiter(RateLimit(requests_per_minute=60), T0)
    state = ServerLimitState(remaining_requests=remaining, limit_requests=60, reset_requests=1.0)
    limiter.observe(state, T0, T0 + 0.05, Cost())
    assert limiter.lanes["requests"].view.remaining is None
    assert limiter.wait_time(Cost(), T0 + 0.05) == 0.0  # the key is not locked


@pytest.mark.parametrize("limit", [0, -5, float("inf"), float("nan"), 1e15])
def test_a_limit_header_out_of_bounds_is_not_believed(limit):
    limiter = KeyLimiter(None, T0)
    limiter.observe(ServerLimitState(limit_requests=limit, remaining_requests=1), T0, T0, Cost())
    assert limiter.lanes == {}


def test_a_reset_out_of_bounds_is_replaced_by_a_short_default():
    view_limiter = KeyLimiter(RateLimit(requests_per_minute=60), T0)
    state = ServerLimitState(remaining_requests=0, limit_requests=60, reset_requests=1e9)
    view_limiter.observe(state, T0, T0, Cost())
    assert view_limiter.lanes["requests"].view.until <= T0 + 1.0


# -- the server's view ----------------------------------------------------------------------------


def test_a_window_is_told_from_a_bucket_by_its_reset_instant():
    window, bucket, unsure = ServerView(), ServerView(), ServerView()
    # a per-second window: every reply of the second names the same reset instant
    window.observe(19, 0.9, 20.0, T0 + 0.10, T0 + 0.12, admitted=1)
    window.observe(18, 0.85, 20.0, T0 + 0.15, T0 + 0.17, admitted=1)
    assert window.windowed
    # a bucket: its "full" instant moves on with every request it takes
    bucket.windowed = True  # even after it was taken for windows
    bucket.observe(19, 0.9, 20.0, T0 + 0.10, T0 + 0.12, admitted=1)
    bucket.observe(19, 0.9, 20.0, T0 + 0.15, T0 + 0.17, admitted=1)
    assert not bucket.windowed
    # replies that overtook each other: the request counted first answers last, naming the
    # earlier instant; a bucket says that too (seen: a 1 s bucket taken for windows, 5 429s)
    overtaken = ServerView()
    overtaken.observe(18, 0.10, 20.0, T0 + 0.10, T0 + 0.12, admitted=1)  # counted second
    overtaken.observe(19, 0.05, 20.0, T0 + 0.10, T0 + 0.13, admitted=1)  # counted first
    assert not overtaken.windowed
    # trips as long as one request moves a bucket: either could say this; the view stays as it was
    unsure.observe(19, 0.9, 20.0, T0 + 0.10, T0 + 0.15, admitted=1)
    unsure.observe(18, 0.85, 20.0, T0 + 0.15, T0 + 0.20, admitted=1)
    assert not unsure.windowed


def sent(view: ServerView, at: float, amount: float = 1) -> float:
    view.spend(amount, at)
    return at


def test_a_window_holds_what_remains_until_it_ends_then_opens_full():
    view = ServerView()
    view.observe(3, 0.9, 20.0, sent(view, T0), T0 + 0.02, admitted=1)
    view.observe(2, 0.85, 20.0, sent(view, T0 + 0.05), T0 + 0.07, admitted=1)
    assert view.windowed and view.remaining == 2
    view.spend(1, T0 + 0.2)
    view.spend(1, T0 + 0.2)
    assert view.wait(1, T0 + 0.2) == pytest.approx(view.until - (T0 + 0.2))
    assert view.wait(1, view.until) == 0.0  # the next window, full as the server showed it
    assert view.remaining == view.capacity == 4


def test_a_windows_end_is_never_placed_before_the_servers():
    """A request may wait long before it reaches the server (a busy thread, a queue) and its
    reply come back at once: the window then ends a whole trip after ``sent + reset``. The
    view places the end at the latest the replies allow (seen: a view that rolled 25 ms early
    sent its next window's 20 requests into the old one, all refused)."""
    view = ServerView()
    end = T0 + 1.0  # the server's window ends here
    for sent_at, counted_at, received_at, remaining in (
        (T0, T0 + 0.040, T0 + 0.045, 19),  # 40 ms to reach the server, 5 back
        (T0 + 0.05, T0 + 0.090, T0 + 0.095, 18),
    ):
        view.observe(remaining, end - counted_at, 20.0, sent(view, sent_at), received_at, admitted=1)
    assert view.windowed and view.until >= end
    view.remaining = 0  # the window is used up
    assert view.wait(1, end - 0.005) > 0
    # a reply with a short trip narrows it down: the end is known within that trip
    view.observe(0, end - (T0 + 0.101), 20.0, T0 + 0.100, T0 + 0.102, admitted=1)
    assert end <= view.until <= end + 0.003


def test_sends_granted_just_before_a_windows_end_are_held_by_the_next_until_answered():
    """With many threads, a request granted 40 ms before a window's end may reach the server
    80 ms later, in the next window: seen, the next window's full burst then drew 2-6 refusals.
    The next window holds the sends not answered at its start, and gives each back when its
    reply says it was counted in the window before."""
    view = ServerView()
    view.observe(19, 0.9, 20.0, T0, T0 + 0.02, admitted=1, granted_at=sent(view, T0))
    view.observe(18, 0.85, 20.0, T0 + 0.05, T0 + 0.07, admitted=1, granted_at=sent(view, T0 + 0.05))
    assert view.windowed
    late = T0 + 0.87  # a burst of 10, 50 ms before the window's end
    for _ in range(10):
        sent(view, late)
    end = view.until
    assert view.wait(1, end) == 0.0 and view.remaining == 20 - 10  # the new window holds them
    for _ in range(7):  # seven were counted in the old window: each reply gives its send back
        view.observe(8, end - late - 0.02, 20.0, late, end + 0.01, admitted=1, granted_at=late)
    assert view.remaining == 20 - 3 and view.owed == 3
    # one reached the server in the new window: its charge stands
    view.observe(19, 1.0, 20.0, late, end + 0.02, admitted=1, granted_at=late)
    assert view.owed == 2 and view.remaining <= 17


def test_a_reply_that_missed_a_request_sent_just_before_it_does_not_raise_the_count():
    view = ServerView()
    view.observe(10, 0.9, 20.0, sent(view, T0), T0 + 0.02, admitted=1)
    view.observe(9, 0.85, 20.0, sent(view, T0 + 0.05), T0 + 0.07, admitted=1)
    first = sent(view, T0 + 0.105)
    for _ in range(8):
        sent(view, T0 + 0.11)
    assert view.remaining == 0
    # the first of those nine reached the server after the others: its reply counts only itself
    view.observe(8, 0.8, 20.0, first, T0 + 0.16, admitted=1)
    assert view.remaining == 0


def test_a_reply_about_a_window_that_is_over_changes_nothing():
    view = ServerView()
    view.observe(10, 0.5, 20.0, sent(view, T0), T0 + 0.02, admitted=1)
    view.observe(9, 0.45, 20.0, sent(view, T0 + 0.05), T0 + 0.07, admitted=1)
    view.spend(1, T0 + 0.6)  # the next window
    before = (view.remaining, view.until)
    view.observe(0, 0.01, 20.0, T0 + 0.48, T0 + 0.61, admitted=1)  # late news of the old one
    assert (view.remaining, view.until) == before


def test_a_burst_into_short_windows_is_charged_to_the_pace_too():
    """Short windows let the view alone pace the calls; when the view stops taking the server for
    windows, the pace must already hold what the window's burst sent (a full pace let a second
    burst go into the same second: 10-20% of calls drew a 429 with 64 threads on four keys)."""
    lane = Lane("requests", 1200.0, configured=True)
    lane.pace(20.0, 1.0, T0)
    lane.view.observe(19, 0.9, 20.0, sent(lane.view, T0), T0 + 0.02, admitted=1)
    lane.view.observe(18, 0.85, 20.0, sent(lane.view, T0 + 0.05), T0 + 0.07, admitted=1)
    assert lane.view.short_windows
    for _ in range(18):
        assert lane.wait(1, T0 + 0.2) == 0.0
        lane.take(1, T0 + 0.2)
    lane.view.windowed = False  # a reply later reads as a bucket
    assert lane.wait(1, T0 + 0.2) > 0.5  # the pace is 18 in debt at 20/s


# -- clamping and what can never fit --------------------------------------------------------------


def test_the_output_reservation_is_clamped_to_a_minutes_limit():
    limiter = KeyLimiter(RateLimit(output_tokens_per_minute=2000, tokens_per_minute=3000), T0)
    assert limiter.clamp(Cost(1, 100, 4096)) == Cost(1, 100, 2000)
    assert limiter.clamp(Cost(1, 2500, 4096)) == Cost(1, 2500, 500)


def test_an_input_larger_than_a_minutes_limit_is_named():
    limiter = KeyLimiter(RateLimit(input_tokens_per_minute=5000), T0)
    assert limiter.too_large(Cost(1, 4000, 100)) is None
    reason = limiter.too_large(Cost(1, 50_000, 100))
    assert reason is not None and "50,000 input tokens" in reason and "5,000" in reason


def test_reconciliation_gives_back_what_was_not_used():
    limiter = KeyLimiter(RateLimit(input_tokens_per_minute=1000, output_tokens_per_minute=1000,
                                   burst_seconds=60), T0)  # fmt: skip
    reservation = limiter.take(Cost(1, 100, 300), T0)
    limiter.finish(reservation, 90, 20, T0)
    levels = limiter.snapshot(T0)["remaining"]
    assert levels == {"input_tokens": 910, "output_tokens": 980}


def test_a_refused_request_is_refunded_whole():
    limiter = KeyLimiter(RateLimit(requests_per_minute=60, burst_seconds=60), T0)
    reservation = limiter.take(Cost(), T0)
    limiter.refund(reservation, T0)
    assert limiter.snapshot(T0)["remaining"]["requests"] == 60 and limiter.in_flight == 0


def test_a_reset_timestamp_counts_from_when_the_reply_was_read():
    """Anthropic's resets are instants (RFC 3339), turned into seconds when the reply is read:
    the window ends that long after the reply, not after the request was counted (a trip earlier),
    which would open the next window early and send into a full one."""
    now = 100.0
    relative, absolute = KeyLimiter(None, now), KeyLimiter(None, now)
    sent, received = 100.0, 100.2  # a 200 ms trip
    for limiter, from_reply in ((relative, False), (absolute, True)):
        state = ServerLimitState(remaining_requests=0, limit_requests=60, reset_requests=0.5,
                                 resets_from_reply=from_reply)  # fmt: skip
        limiter.observe(state, sent, received, Cost())
    counted = relative.lanes["requests"].view.instant  # a duration: from when the server counted it
    named = absolute.lanes["requests"].view.instant  # a timestamp: the instant it names
    assert counted == pytest.approx(sent + 0.1 + 0.5)  # counted half a trip after the send
    assert named == pytest.approx(received + 0.5)
