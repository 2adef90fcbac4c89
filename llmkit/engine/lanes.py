"""One limited dimension of a key (requests, input, output or all tokens): its pace and the server's word.

A :class:`Lane` has a per-minute limit (configured, or learned from the
provider's headers), a pacing :class:`~llmkit.engine.bucket.Bucket` that
spreads sends over the second, and a :class:`ServerView`: what the server's
last headers said remains until their reset, minus what was sent since.
A send must pass both: the pace keeps every style of server happy on
average, the view catches the windows a per-second or per-minute server
counts in (a pace alone cannot see where a window ends).

Not locked: the pool's lock guards every lane (see :mod:`llmkit.engine`).
"""

from __future__ import annotations

from collections import deque

from llmkit.engine.bucket import Bucket

__all__ = ["INPUT", "LANE_NAMES", "OUTPUT", "REQUESTS", "TOKENS", "Lane", "ServerView", "Unanswered"]

REQUESTS, INPUT, OUTPUT, TOKENS = "requests", "input_tokens", "output_tokens", "tokens"
LANE_NAMES = (REQUESTS, INPUT, OUTPUT, TOKENS)

# How long sends are remembered, to subtract those a server's count cannot include yet.
_SEND_MEMORY = 30.0
_RESET_ROUNDING = 0.001  # resets come rounded to the millisecond
_MIN_LAG = 0.1  # the least time from a grant to the server assumed (before replies tell)
_MAX_LAG = 0.5  # the most (a slow reply says nothing of the way there)
_LAG_DECAY = 0.98  # how fast a long grant-to-reply time seen once is forgotten, per reply


class ServerView:
    """What the server said remains, kept conservative (see the module).

    ``observe`` takes the ``remaining`` a reply's headers reported and
    subtracts every send made after that reply's request was sent (the server
    may not have counted them when it answered). What happens next depends on
    how the server counts, which the view tells from the resets it is given:

    * **windows** (a per-second or per-minute server): consecutive replies
      name the same reset instant while ``remaining`` falls. Nothing more
      than ``remaining`` may go before that instant (kept late: the latest
      end the replies of the window allow, see ``_observe_window``); then a new window
      opens with the most the server was seen to hold, for one period (the
      longest reset seen, rounded up to a second or a minute), and so on
      until the next reply says better;
    * otherwise a **bucket** that refills continuously: ``remaining`` grows at
      the limit's rate from the moment the request was sent (the earliest the
      server can have counted it: optimistic by one trip at most, which the
      pace absorbs; the view is there to see capacity taken by others).
    """

    __slots__ = ("at", "capacity", "crossing", "earliest", "heard_at", "instant", "lag", "owed", "period",
                 "rate", "remaining", "sends", "spread", "unanswered", "until", "windowed")  # fmt: skip

    def __init__(self) -> None:
        self.remaining: float | None = None
        self.at = 0.0  # when the server counted ``remaining``, at the earliest
        self.rate = 0.0  # its refill per second, when it is a bucket
        self.until = 0.0  # when its window ends (a windowed server), or when it is full
        self.instant: float | None = None  # the reset instant the last reply named
        self.spread = 0.0  # ... to within this, either way
        self.heard_at = 0.0  # ... in a reply that came back then
        self.windowed = False
        self.capacity = 0.0  # the most the server was seen to hold at once
        self.period = 0.0  # a window's length, once windowed
        self.earliest: float | None = None  # the earliest its window can end (``until``: the latest)
        self.lag = _MIN_LAG  # how long after its grant a request may reach the server (recent, at most)
        self.unanswered = Unanswered()
        self.crossing = (0.0, 0.0)  # when the sends that may cross the last window's end were granted
        self.owed = 0.0  # what of those the current window holds too, until their replies say
        self.sends: deque[tuple[float, float]] = deque()

    @property
    def short_windows(self) -> bool:
        """Windows of a second or less: the view alone keeps to them (no pace needed)."""
        return self.windowed and 0 < self.period <= 1.0

    def wait(self, amount: float, now: float, already: float = 0.0) -> float:
        """Seconds until the server's word allows ``amount`` (0 if now)."""
        if self.remaining is None:
            return 0.0
        if self.windowed:
            self._roll(now)
        elif now >= self.until:
            return 0.0
        remaining = self.remaining
        assert remaining is not None
        if not self.windowed:
            remaining += self.rate * max(0.0, now - self.at)
        short = amount - (remaining - already)
        if short <= 1e-9:
            return 0.0
        if self.windowed or self.rate <= 0:
            return max(0.0, self.until - now)
        return min(self.until - now, short / self.rate)

    def _roll(self, now: float) -> None:
        """Past the window's end: the next window, full, as the server showed it."""
        if now < self.until or self.period <= 0:
            return
        ended, earliest = self.until, self.earliest
        windows = 1 + int((now - ended) // self.period)
        self.until += windows * self.period
        if earliest is not None:
            self.earliest = earliest + windows * self.period
        # Sends granted just before the end may reach the server after it: the new window holds
        # those not answered yet too, until their replies say in which window they were counted.
        self.crossing = ((ended if earliest is None else earliest) - self.lag, ended)
        self.owed = self.unanswered.between(*self.crossing) if windows == 1 else 0.0
        self.remaining = self.capacity - self.owed

    def spend(self, amount: float, now: float) -> None:
        sends = self.sends
        sends.append((now, amount))
        while sends and sends[0][0] < now - _SEND_MEMORY:
            sends.popleft()
        self.unanswered.add(now, amount, forget_before=now - _SEND_MEMORY)
        if self.remaining is None:
            return
        if self.windowed:
            self._roll(now)
            self.remaining -= amount
        elif now < self.until:
            self.remaining -= amount

    def observe(self, remaining: float, reset: float, rate: float, sent_at: float, received_at: float,
                admitted: float = 0.0, granted_at: float | None = None) -> None:  # fmt: skip
        """The server had ``remaining`` left, ``reset`` s from full, when it admitted (``admitted``
        of this lane) or refused a request granted at ``granted_at``, sent at ``sent_at`` and
        answered at ``received_at``; ``rate``: the limit per second."""
        trip = max(0.0, received_at - sent_at)
        charged = 0.0
        if granted_at is not None:
            charged = self.unanswered.answered(granted_at)
            # From its grant to its reply: an upper bound of the time to the server (which may
            # include tens of ms before the request is written, with many threads), kept short
            # where the reply takes seconds to write.
            self.lag = max(_MIN_LAG, self.lag * _LAG_DECAY, min(received_at - granted_at, _MAX_LAG))
        counted_at = sent_at + trip / 2
        self._classify(counted_at + reset, trip / 2 + _RESET_ROUNDING, sent_at, received_at,
                       admitted / rate if rate > 0 else 0.0)  # fmt: skip
        self.capacity = max(self.capacity, remaining + admitted)
        self.period = max(self.period, _window_period(reset))
        # Sends made after it may not be counted in ``remaining`` yet. (Ones sent just before it
        # may not be either, if they overtook each other on the way: the view's own count,
        # kept when it is lower, covers those.)
        fresh = remaining - self._sent_after(sent_at)
        if self.windowed:
            crossed = charged if granted_at is not None and self._crossing(granted_at) else 0.0
            self._observe_window(fresh, sent_at + reset, received_at + reset + _RESET_ROUNDING, received_at,
                                 crossed)  # fmt: skip
            return
        # A bucket refills from when the request was sent at the earliest: at most one trip's
        # refill too early, which the pace absorbs.
        self.earliest = None
        if self._lower_bucket(fresh, sent_at, received_at):
            return  # sends that overtook each other on the way: what we counted ourselves is less
        self.remaining, self.rate, self.at, self.until = fresh, rate, sent_at, sent_at + reset

    def _sent_after(self, moment: float) -> float:
        """What was sent after ``moment``: read from the newest send back, so a reply costs what
        is in flight, not what the last 30 s sent (sends are kept in time order)."""
        total = 0.0
        for at, amount in reversed(self.sends):
            if at <= moment:
                break
            total += amount
        return total

    def _crossing(self, granted_at: float) -> bool:
        start, end = self.crossing
        return start < granted_at < end

    def _observe_window(
        self, fresh: float, earliest: float, latest: float, now: float, crossed: float
    ) -> None:
        """A window's end lies between ``earliest`` (had the server counted the request the moment
        it left) and ``latest`` (had it counted it the moment before its reply came back): replies
        about the same window narrow it down, and the view keeps the latest end still possible,
        so that it never opens the next window before the server does.

        ``crossed``: what this request was charged, if it was one of those the current window
        holds as well (granted just before the last end, not answered then).
        """
        if self.earliest is not None and self.remaining is not None:
            self._roll(now)
            settled = min(self.owed, crossed)
            self.owed -= settled
            if latest < self.earliest - self.period / 2:  # it speaks of a window that is over
                if latest > self.earliest - 1.5 * self.period:  # the one before: counted there
                    self.remaining += settled
                return
            if earliest <= self.until + 0.002:  # the same window: both bounds hold
                self.earliest = max(self.earliest, earliest)
                self.until = max(min(self.until, latest), self.earliest)
                self.remaining = min(self.remaining, fresh)
                return
        self.remaining, self.earliest, self.until = fresh, earliest, latest

    def _lower_bucket(self, fresh: float, sent_at: float, now: float) -> bool:
        """Whether the view already holds less than this reply says, for the same bucket.

        Requests may reach the server in another order than they were sent, so a
        reply can miss a request sent just before it: the view keeps the lower count.
        """
        if self.remaining is None or now >= self.until:
            return False
        mine = self.remaining + self.rate * (now - self.at)
        theirs = fresh + self.rate * (now - sent_at)
        return mine <= theirs

    def _classify(self, instant: float, spread: float, sent_at: float, received_at: float,
                  moves: float) -> None:  # fmt: skip
        """Windows name one reset instant until it passes; a bucket's "full" instant moves on
        by ``moves`` (the admitted amount over the rate) with every request it takes.

        A reply names its instant within ``spread`` either way (the server counted the request
        somewhere between its send and its reply). Only what the two replies' ranges rule out
        decides: a bucket that cannot have moved by ``moves`` since a request counted before
        this one (its reply was back before this one left) is a window; an instant surely later
        than the last, named before the last had surely come or less than half a window after
        it, is a bucket. Otherwise the view stays as it was (trips that vary under load made it
        flip back and forth; replies that overtook each other made a bucket look like windows).
        """
        previous, previous_spread, heard_at = self.instant, self.spread, self.heard_at
        self.instant, self.spread, self.heard_at = instant, spread, received_at
        if previous is None or moves <= 0:
            return
        if sent_at >= heard_at and instant + spread < previous - previous_spread + moves:
            self.windowed = True
        elif instant - spread > previous + previous_spread and (
            received_at < previous - previous_spread  # named before the last had come
            or instant + spread < previous - previous_spread + self.period / 2  # not the next window
        ):
            self.windowed = False

    def forget(self) -> None:
        self.remaining, self.until, self.instant, self.earliest = None, 0.0, None, None


class Unanswered:
    """Sends whose replies have not come back yet, by grant time: what may still be on its way."""

    __slots__ = ("_by_time",)

    def __init__(self) -> None:
        self._by_time: dict[float, list[float]] = {}  # in grant order (the clock is monotonic)

    def add(self, at: float, amount: float, forget_before: float) -> None:
        self._by_time.setdefault(at, []).append(amount)
        by_time = self._by_time
        while by_time:  # a send never answered (an error without headers) is let go in time
            first = next(iter(by_time))
            if first >= forget_before:
                break
            del by_time[first]

    def answered(self, at: float) -> float:
        """One send granted at ``at`` came back: what it was charged (0 if unknown)."""
        amounts = self._by_time.get(at)
        if not amounts:
            return 0.0
        amount = amounts.pop()
        if not amounts:
            del self._by_time[at]
        return amount

    def between(self, start: float, end: float) -> float:
        return sum(sum(amounts) for at, amounts in self._by_time.items() if start < at < end)


def _window_period(reset: float) -> float:
    """The window a reset fits in: a second or a minute (rounded up), else the reset itself."""
    for period in (1.0, 60.0):
        if reset <= period * 1.01:
            return period
    return reset


class Lane:
    """A limit of one kind: per-minute number, pacing bucket and the server's view."""

    __slots__ = ("bucket", "configured", "limit", "name", "view")

    def __init__(self, name: str, limit: float | None, configured: bool) -> None:
        self.name = name
        self.limit = limit
        self.configured = configured
        self.bucket: Bucket | None = None
        self.view = ServerView()

    def __repr__(self) -> str:
        source = "configured" if self.configured else "learned"
        return f"Lane({self.name}, {self.limit}/min {source}, {self.bucket})"

    def pace(self, rate: float, capacity: float, now: float) -> None:
        """Set the pacing bucket (made on first use, starting full)."""
        if self.bucket is None:
            self.bucket = Bucket(rate, capacity, now)
        else:
            self.bucket.resize(rate, capacity, now)

    def wait(self, amount: float, now: float, already: float = 0.0) -> float:
        view = self.view
        wait = view.wait(amount, now, already)
        if self.bucket is not None and amount > 0 and not view.short_windows:
            wait = max(wait, self.bucket.wait(amount, now, already))
        return wait

    def take(self, amount: float, now: float) -> None:
        # The pace is charged even while short windows make it unneeded: if the view stops
        # taking the server for windows, what a window's burst sent is already in it (a pace
        # left full let a second burst go into the same window: 10-20% of calls drew a 429
        # with 64 threads on four keys).
        if self.bucket is not None:
            self.bucket.take(amount, now)
        self.view.spend(amount, now)

    def give(self, amount: float, now: float) -> None:
        """Reconcile: ``amount`` reserved but not used (negative: used more than reserved)."""
        if self.bucket is not None and amount:
            self.bucket.give(amount, now)

    def level(self, now: float) -> float | None:
        if self.bucket is None:
            return None
        self.bucket.refill(now)
        return self.bucket.level
