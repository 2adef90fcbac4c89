"""Which reply or fault a request gets: the script queue, fault rules, random faults.

Order for a chat request: a matching rule, then a random fault, then the
first script entry that applies to the request (FIFO; a :class:`Fault` entry
with ``key=``/``provider=`` waits for a matching request). Faults that replace
the reply (status, drop, malformed) are taken before rate limiting; text,
tool-call, delay and mid-stream entries only once the request is admitted, so
a rate-limited request never consumes a script entry.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .replies import REPLY_TYPES, Fault, ReplyValue

__all__ = ["FaultBook", "FaultRule", "random_fault_kinds"]

_NAMED_KINDS = ("drop", "slow", "malformed", "stream_drop", "stream_error")


def random_fault_kinds() -> tuple[str, ...]:
    """The non-status keys ``fault_rates`` accepts (besides 4xx/5xx status codes)."""
    return _NAMED_KINDS


@dataclass(eq=False)
class FaultRule:
    """A fault applied to every matching request (``remaining=None``) or the next N."""

    fault: Fault
    remaining: int | None = None


class FaultBook:
    """Thread-safe store of the script, the rules and the random fault generator."""

    def __init__(
        self,
        fault_rates: Mapping[int | str, float] | None = None,
        seed: int | None = None,
        slow_seconds: float = 1.0,
        retry_after: float = 1.0,
    ) -> None:
        self._rates = _check_rates(fault_rates or {})
        self._seed = seed
        self._rng = random.Random(seed)
        self._slow = slow_seconds
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self._script: list[ReplyValue] = []
        self._rules: list[FaultRule] = []

    # Configuration ----------------------------------------------------------
    def script(self, entries: Iterable[ReplyValue]) -> None:
        items = list(entries)
        for item in items:
            if not isinstance(item, REPLY_TYPES):
                raise TypeError(f"script entries are str, ToolCallReply, Reply or Fault, not {item!r}")
        with self._lock:
            self._script.extend(items)

    def pending(self) -> list[ReplyValue]:
        with self._lock:
            return list(self._script)

    def add_rule(self, fault: Fault, times: int | None = None) -> FaultRule:
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        rule = FaultRule(fault, times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove_rule(self, rule: FaultRule) -> None:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def reset(self) -> None:
        """Clear the script and the rules; restart the random sequence from the seed."""
        with self._lock:
            self._script.clear()
            self._rules.clear()
            self._rng = random.Random(self._seed)

    # Decisions --------------------------------------------------------------
    def early(
        self, key: str | None, provider: str, stream: bool, chat: bool
    ) -> tuple[Fault | None, list[Fault]]:
        """Return the fault that replaces the reply (if any) and the late faults."""
        late: list[Fault] = []
        with self._lock:
            for rule in self._rules:
                if rule.fault.applies_to(key, provider):
                    self._consume(rule)
                    if rule.fault.is_early(stream):
                        return rule.fault, []
                    late.append(rule.fault)
                    break
            if not chat:
                return None, []
            drawn = self._draw(stream)
            if drawn is not None:
                if drawn.is_early(stream):
                    return drawn, []
                late.append(drawn)
            index = self._first(key, provider)
            entry = self._script[index] if index is not None else None
            if isinstance(entry, Fault) and entry.is_early(stream):
                del self._script[index]  # type: ignore[arg-type]
                return entry, []
        return None, late

    def take(self, key: str | None, provider: str) -> ReplyValue | None:
        """Pop the first script entry that applies to this (admitted) request."""
        with self._lock:
            index = self._first(key, provider)
            return self._script.pop(index) if index is not None else None

    def _first(self, key: str | None, provider: str) -> int | None:
        for index, entry in enumerate(self._script):
            if not isinstance(entry, Fault) or entry.applies_to(key, provider):
                return index
        return None

    def _consume(self, rule: FaultRule) -> None:
        if rule.remaining is not None:
            rule.remaining -= 1
            if rule.remaining <= 0:
                self._rules.remove(rule)

    def _draw(self, stream: bool) -> Fault | None:
        if not self._rates:
            return None
        roll, total = self._rng.random(), 0.0
        for kind, rate in self._rates.items():
            total += rate
            if roll < total:
                return self._make(kind, stream)
        return None

    def _make(self, kind: int | str, stream: bool) -> Fault | None:
        if isinstance(kind, int):
            return Fault(status=kind, retry_after=self._retry_after if kind == 429 else None)
        if kind == "drop":
            return Fault(drop=True)
        if kind == "slow":
            return Fault(delay=self._slow)
        if kind == "malformed":
            return Fault(malformed=True)
        if not stream:  # stream_drop / stream_error only break streams
            return None
        if kind == "stream_drop":
            return Fault(drop=True, after_deltas=1)
        return Fault(status=500, after_deltas=1)


def _check_rates(rates: Mapping[int | str, float]) -> dict[int | str, float]:
    checked: dict[int | str, float] = {}
    for kind, rate in rates.items():
        name: int | str = int(kind) if isinstance(kind, str) and kind.isdigit() else kind
        if isinstance(name, int) and not 400 <= name <= 599:
            raise ValueError(f"fault_rates: status {name} is not 4xx/5xx")
        if isinstance(name, str) and name not in _NAMED_KINDS:
            raise ValueError(f"fault_rates: unknown kind {name!r}; use a status or {_NAMED_KINDS}")
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"fault_rates: rate of {name!r} must be within [0, 1]")
        checked[name] = float(rate)
    if sum(checked.values()) > 1.0 + 1e-9:
        raise ValueError("fault_rates: the rates add up to more than 1")
    return checked
