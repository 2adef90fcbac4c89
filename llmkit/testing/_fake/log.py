"""The fake server's in-memory request log and its statistics (thread-safe).

This log is the only place where the fake server keeps API keys: it is a test
tool, and tests assert on which key each request used.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RequestLog", "RequestRecord"]


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw and answered it.

    ``time`` is the server clock's reading on arrival; ``status`` is ``None``
    when the connection was dropped without a reply; ``fault`` labels the
    fault served (``"429"``, ``"drop"``, ``"stream_500@2"``...), if any;
    ``headers`` have lower-case names; ``body`` is the decoded JSON body
    (``None`` when it was not JSON); ``input_tokens``/``output_tokens`` are the
    usage a 200 reply reported (0 otherwise).
    """

    time: float
    method: str
    path: str
    provider: str | None
    key: str | None
    model: str | None
    status: int | None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    fault: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """Records (the most recent ``limit``), exact running counts, per-key in-flight peaks."""

    def __init__(self, limit: int | None = 100_000) -> None:
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque(maxlen=limit)
        self._in_flight: Counter[str] = Counter()
        self._zero()

    def _zero(self) -> None:
        self._total = self._dropped = self._input = self._output = 0
        self._by_status: Counter[int] = Counter()
        self._by_key: Counter[str] = Counter()
        self._by_provider: Counter[str] = Counter()
        self._peak: Counter[str] = Counter(self._in_flight)

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)
            self._total += 1
            if record.status is None:
                self._dropped += 1
            else:
                self._by_status[record.status] += 1
            if record.key is not None:
                self._by_key[record.key] += 1
            if record.provider:
                self._by_provider[record.provider] += 1
            self._input += record.input_tokens
            self._output += record.output_tokens

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def begin(self, key: str) -> None:
        """A request of ``key`` is being served (for ``peak_in_flight``)."""
        with self._lock:
            self._in_flight[key] += 1
            self._peak[key] = max(self._peak[key], self._in_flight[key])

    def end(self, key: str) -> None:
        with self._lock:
            self._in_flight[key] -= 1

    def stats(self) -> dict[str, Any]:
        """Counts since the last reset (exact even when old records were let go)."""
        with self._lock:
            return {
                "total": self._total,
                "by_status": dict(self._by_status),
                "by_key": dict(self._by_key),
                "by_provider": dict(self._by_provider),
                "dropped": self._dropped,
                "input_tokens": self._input,
                "output_tokens": self._output,
                "peak_in_flight": {k: v for k, v in self._peak.items() if v},
            }

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._zero()
