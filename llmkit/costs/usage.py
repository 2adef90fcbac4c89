"""Thread-safe usage totals: requests, tokens and dollars by provider, model and key."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmkit.types import Response

__all__ = ["UsageTracker"]


class _Totals:
    """The totals of one bucket: requests, dollars and every token count of the calls' Usage.

    ``add`` spells each count out (a loop or ``Usage.__add__`` costs three
    times as much per call); ``tests/test_usage_totals.py`` checks it misses none.
    """

    __slots__ = (
        "batch_requests",
        "cache_hits",
        "cache_write_1h_tokens",
        "cache_write_tokens",
        "cached_input_tokens",
        "cost",
        "input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "requests",
        "unpriced_requests",
    )

    def __init__(self) -> None:
        self.requests = self.cache_hits = self.unpriced_requests = self.batch_requests = 0
        self.input_tokens = self.output_tokens = self.cached_input_tokens = 0
        self.cache_write_tokens = self.cache_write_1h_tokens = self.reasoning_tokens = 0
        self.cost = 0.0

    def add(self, response: Response, batch: bool = False) -> None:
        self.requests += 1
        self.batch_requests += batch
        if response.cached:
            self.cache_hits += 1
            return
        usage = response.usage
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cached_input_tokens += usage.cached_input_tokens
        self.cache_write_tokens += usage.cache_write_tokens
        self.cache_write_1h_tokens += usage.cache_write_1h_tokens
        self.reasoning_tokens += usage.reasoning_tokens
        if response.cost is None:
            self.unpriced_requests += 1
        else:
            self.cost += response.cost

    def merge(self, other: _Totals) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: getattr(self, name) for name in self.__slots__}
        data["total_tokens"] = self.input_tokens + self.output_tokens
        return data


class UsageTracker:
    """Thread-safe totals of requests, tokens and dollars.

    Every token count of :class:`~llmkit.types.Usage` is totalled under its
    own name (``input_tokens``, ``output_tokens``, ``cached_input_tokens``,
    ``cache_write_tokens``, ``cache_write_1h_tokens``, ``reasoning_tokens``),
    with ``total_tokens`` (input plus output). Cache hits count as requests
    (and ``cache_hits``) with no tokens and no cost, and under no key.
    ``unpriced_requests`` counts calls whose model has no known price: when
    it is not 0, ``cost`` is a lower bound. ``batch_requests`` counts the
    requests answered through a provider's batch API (priced at its batch
    rates), included in ``requests``.

    A call is recorded in one bucket per (provider, model, key), a few
    hundred nanoseconds; :meth:`snapshot` adds the buckets up.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, str | None], _Totals] = {}

    def reset(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._buckets = {}

    def record(self, response: Response, *, batch: bool = False) -> None:
        """Add one finished call (``response.cost`` already set); ``batch``: it came
        through the provider's batch API."""
        label = (response.provider, response.model, response.key_id)
        with self._lock:
            bucket = self._buckets.get(label)
            if bucket is None:
                bucket = self._buckets[label] = _Totals()
            bucket.add(response, batch)

    def snapshot(self) -> dict[str, Any]:
        """Totals as plain data: the overall counters, plus ``by_provider``, ``by_model``, ``by_key``."""
        total = _Totals()
        groups: dict[str, dict[str, _Totals]] = {"by_provider": {}, "by_model": {}, "by_key": {}}
        with self._lock:
            for (provider, model, key_id), bucket in self._buckets.items():
                total.merge(bucket)
                _group(groups["by_provider"], provider).merge(bucket)
                _group(groups["by_model"], model).merge(bucket)
                if key_id is not None:
                    _group(groups["by_key"], key_id).merge(bucket)
        data = total.as_dict()
        for name, group in groups.items():
            data[name] = {label: totals.as_dict() for label, totals in group.items()}
        return data


def _group(group: dict[str, _Totals], label: str) -> _Totals:
    totals = group.get(label)
    if totals is None:
        totals = group[label] = _Totals()
    return totals
