"""The fake server's batch jobs: their clock, their faults, their results (provider-neutral).

A job holds its requests as the provider's batch API received them. Time runs
``time_scale`` times faster for batches than the server clock: a job takes
``batch_seconds`` of that scaled time (a few minutes at the providers, by
default), so a "24 h" batch finishes in seconds. Its requests are processed
in order and evenly over that time; a job is answered (every request run
through the chat dialect, as a live request would be) when it ends:
completed, expired (a :class:`BatchFault` with ``expire_after``), cancelled
(what was processed when the cancel came is kept), or failed (a fault, or the
key's queue limit, at validation). The provider modules (``batch_openai``,
``batch_anthropic``, ``batch_gemini``) write the jobs in their own shapes.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BatchBook", "BatchFault", "BatchJob", "BatchReply", "LineResult"]

_VALIDATION = 0.01  # of batch_seconds: how long a job stays "validating"
_CANCEL_DELAY = 0.01  # of batch_seconds: from "cancelling" to "cancelled"

Answer = Callable[[str, Any, str, str | None], "LineResult"]


@dataclass(frozen=True)
class BatchFault:
    """A batch job that goes wrong on demand (applied to the next jobs created).

    * ``expire_after`` (0 to 1): the job expires after that fraction of its time;
      the requests processed by then succeed, the rest are expired.
    * ``error_every=N``: every Nth request (N, 2N, ...) fails with
      ``error_status`` (and ``error_message``), in the provider's error shape.
    * ``fail``: the job fails validation with this message (nothing is run).
    * ``drop_downloads=N``: the first N downloads of its results break off
      halfway (the connection drops); later ones work.

    ``provider`` (``"openai"``, ``"anthropic"``, ``"google"``) and ``key``
    restrict the fault to matching jobs.
    """

    expire_after: float | None = None
    error_every: int | None = None
    error_status: int = 500
    error_message: str | None = None
    fail: str | None = None
    drop_downloads: int = 0
    provider: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if self.expire_after is not None and not 0 <= self.expire_after <= 1:
            raise ValueError("BatchFault: expire_after is a fraction of the batch's time, 0 to 1")
        if self.error_every is not None and self.error_every < 1:
            raise ValueError("BatchFault: error_every must be >= 1")
        if not 400 <= self.error_status <= 599:
            raise ValueError("BatchFault: error_status must be 4xx or 5xx")

    def applies_to(self, provider: str, key: str) -> bool:
        return (self.provider is None or self.provider == provider) and (self.key is None or self.key == key)


@dataclass(frozen=True)
class LineResult:
    """One request's answer: ``status`` and body (the chat reply or the error), or
    ``unfinished`` (``"expired"``/``"cancelled"``) when it never ran."""

    custom_id: str
    status: int = 0
    body: Any = None
    unfinished: str | None = None
    request_id: str = ""


@dataclass(frozen=True)
class BatchReply:
    """What a batch endpoint answers; ``drop_after`` breaks the body off after that many bytes."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop_after: int | None = None


@dataclass
class BatchJob:
    """One batch (mutable: guarded by its book's lock)."""

    id: str
    provider: str
    key: str
    model: str | None
    requests: list[tuple[str, Any]]  # (custom_id, the request as sent)
    created: float  # server clock
    wall_created: float
    fault: BatchFault | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    refused: str | None = None  # why it fails at validation (a fault, the queue limit)
    refused_code: str = "invalid_request"
    cancel_at: float | None = None  # server clock
    ended_at: float | None = None
    outcome: str | None = None  # completed / expired / cancelled / failed
    results: list[LineResult] | None = None
    downloads_dropped: int = 0
    files: dict[str, str] = field(default_factory=dict)  # what a provider module made of it (kind -> id)

    @property
    def custom_ids(self) -> list[str]:
        return [custom_id for custom_id, _ in self.requests]


class BatchBook:
    """Every batch job and file of one server, on its clock (thread-safe)."""

    def __init__(self, clock: Callable[[], float], wall_offset: float, time_scale: float,
                 batch_seconds: float, queue_limit: int | None) -> None:  # fmt: skip
        if time_scale <= 0 or batch_seconds < 0:
            raise ValueError("batch_time_scale must be > 0 and batch_seconds >= 0")
        self.clock = clock
        self.wall_offset = wall_offset
        self.time_scale = time_scale
        self.batch_seconds = batch_seconds
        self.queue_limit = queue_limit
        self._lock = threading.Lock()
        self.jobs: dict[str, BatchJob] = {}
        self.files: dict[str, dict[str, Any]] = {}  # id -> {"data": bytes, ...fields}
        self._faults: list[list[Any]] = []  # [fault, remaining or None]
        self.lines_answered = 0

    # -- configuration ------------------------------------------------------------------
    def add_fault(self, fault: BatchFault, times: int | None = None) -> None:
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        with self._lock:
            self._faults.append([fault, times])

    def reset(self) -> None:
        with self._lock:
            self.jobs.clear()
            self.files.clear()
            self._faults.clear()
            self.lines_answered = 0

    # -- files ---------------------------------------------------------------------------
    def add_file(self, prefix: str, data: bytes, file_id: str | None = None, **fields: Any) -> dict[str, Any]:
        """Store a file (its id: ``file_id``, else ``prefix`` and a random part)."""
        record = {"id": file_id or prefix + uuid.uuid4().hex[:24], "data": data, "bytes": len(data),
                  "created_at": int(self.wall()), **fields}  # fmt: skip
        with self._lock:
            self.files[record["id"]] = record
        return record

    def file(self, file_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self.files.get(file_id)

    def find_file(self, name: str, value: Any) -> dict[str, Any] | None:
        """The file whose field ``name`` is ``value``."""
        with self._lock:
            return next((f for f in self.files.values() if f.get(name) == value), None)

    # -- jobs ----------------------------------------------------------------------------
    def wall(self, at: float | None = None) -> float:
        return (self.clock() if at is None else at) + self.wall_offset

    def queued(self, key: str) -> int:
        """Requests of ``key``'s jobs that have not ended (what its queue limit counts)."""
        now = self.clock()
        with self._lock:
            jobs = list(self.jobs.values())
        return sum(len(job.requests) for job in jobs if job.key == key and not self._ended(job, now))

    def over_queue_limit(self, key: str, count: int) -> bool:
        return self.queue_limit is not None and self.queued(key) + count > self.queue_limit

    def create(self, prefix: str, provider: str, key: str, model: str | None,
               requests: list[tuple[str, Any]], refused: tuple[str, str] | None = None,
               **metadata: Any) -> BatchJob:  # fmt: skip
        """A new job, its id ``prefix`` and a random part; ``refused`` (code, message): it fails
        at validation."""
        now = self.clock()
        job = BatchJob(prefix + uuid.uuid4().hex[:24], provider, key, model, requests, now, self.wall(now),
                       metadata=metadata)  # fmt: skip
        if refused is not None:
            job.refused_code, job.refused = refused
        with self._lock:
            job.fault = self._take_fault(provider, key)
            if job.refused is None and job.fault is not None and job.fault.fail:
                job.refused = job.fault.fail
            self.jobs[job.id] = job
        return job

    def _take_fault(self, provider: str, key: str) -> BatchFault | None:
        for entry in self._faults:
            fault, remaining = entry
            if fault.applies_to(provider, key):
                if remaining is not None:
                    entry[1] -= 1
                    if entry[1] <= 0:
                        self._faults.remove(entry)
                return fault
        return None

    def job(self, job_id: str) -> BatchJob | None:
        with self._lock:
            return self.jobs.get(job_id)

    def jobs_of(self, provider: str, key: str) -> list[BatchJob]:
        """The jobs of ``provider`` and ``key``, newest first."""
        with self._lock:
            jobs = [j for j in self.jobs.values() if j.provider == provider and j.key == key]
        return sorted(jobs, key=lambda j: j.created, reverse=True)

    def cancel(self, job: BatchJob) -> None:
        with self._lock:
            if job.cancel_at is None and job.ended_at is None:
                job.cancel_at = self.clock()

    # -- time -----------------------------------------------------------------------------
    def _scaled(self, job: BatchJob, at: float) -> float:
        """Seconds of batch time since the job was created, at server time ``at``."""
        return max(at - job.created, 0.0) * self.time_scale

    def _end_time(self, job: BatchJob) -> tuple[float, str]:
        """When (server clock) the job ends, and how."""
        span = self.batch_seconds / self.time_scale
        if job.refused is not None:
            return job.created + span * _VALIDATION, "failed"
        end, outcome = job.created + span, "completed"
        if job.fault is not None and job.fault.expire_after is not None:
            end, outcome = job.created + span * job.fault.expire_after, "expired"
        if job.cancel_at is not None and job.cancel_at + span * _CANCEL_DELAY < end:
            end, outcome = job.cancel_at + span * _CANCEL_DELAY, "cancelled"
        return end, outcome

    def _ended(self, job: BatchJob, now: float) -> bool:
        return job.ended_at is not None or now >= self._end_time(job)[0]

    def done_count(self, job: BatchJob, at: float) -> int:
        """How many of the job's requests are processed at server time ``at``."""
        if job.refused is not None or not self.batch_seconds:
            return 0 if job.refused is not None else len(job.requests)
        fraction = min(self._scaled(job, at) / self.batch_seconds, 1.0)
        return min(math.floor(fraction * len(job.requests) + 1e-9), len(job.requests))

    def view(self, job: BatchJob, answer: Answer) -> dict[str, Any]:
        """The job now: ``phase`` (validating, running, finalizing, cancelling, ended),
        ``done`` and ``total`` requests, and once ended its ``outcome`` and results."""
        now = self.clock()
        end, outcome = self._end_time(job)
        with self._lock:
            if job.ended_at is None and now >= end:
                job.ended_at, job.outcome = end, outcome
                processed = len(job.requests) if outcome == "completed" else self.done_count(job, end)
                job.results = self._answer(job, processed, answer)
        if job.ended_at is not None:
            done = sum(1 for r in job.results or () if r.unfinished is None)
            return {"phase": "ended", "outcome": job.outcome, "done": done, "total": len(job.requests)}
        scaled = self._scaled(job, now)
        phase = "validating" if scaled < self.batch_seconds * _VALIDATION else "running"
        if job.cancel_at is not None:
            phase = "cancelling"
        return {"phase": phase, "done": self.done_count(job, now), "total": len(job.requests)}

    def _answer(self, job: BatchJob, processed: int, answer: Answer) -> list[LineResult]:
        """Every request's result (called under the lock, once)."""
        unfinished = {"expired": "expired", "cancelled": "cancelled"}.get(job.outcome or "", "expired")
        fault = job.fault
        results = []
        for index, (custom_id, request) in enumerate(job.requests):
            if job.outcome == "failed":
                break
            if index >= processed:
                results.append(LineResult(custom_id, unfinished=unfinished))
            elif fault is not None and fault.error_every and (index + 1) % fault.error_every == 0:
                results.append(LineResult(custom_id, fault.error_status, None, request_id=_rid()))
            else:
                results.append(answer(custom_id, request, job.key, job.model))
        self.lines_answered += sum(1 for r in results if r.unfinished is None)
        return results

    def take_drop(self, job: BatchJob) -> bool:
        """Whether this download of ``job``'s results breaks off (its fault's ``drop_downloads``)."""
        with self._lock:
            if job.fault is not None and job.downloads_dropped < job.fault.drop_downloads:
                job.downloads_dropped += 1
                return True
        return False

    def snapshot(self) -> list[dict[str, Any]]:
        """Every job as plain data, oldest first (what tests read: ``FakeLLMServer.batch_jobs()``)."""
        with self._lock:
            jobs = sorted(self.jobs.values(), key=lambda j: j.created)
            return [
                {"id": j.id, "provider": j.provider, "key": j.key, "model": j.model,
                 "custom_ids": j.custom_ids, "created": j.created, "outcome": j.outcome,
                 "cancelled": j.cancel_at is not None, "metadata": dict(j.metadata)}
                for j in jobs
            ]  # fmt: skip

    def stats(self) -> dict[str, Any]:
        with self._lock:
            by_provider: dict[str, int] = {}
            for job in self.jobs.values():
                by_provider[job.provider] = by_provider.get(job.provider, 0) + 1
            return {"created": len(self.jobs), "by_provider": by_provider,
                    "requests": sum(len(j.requests) for j in self.jobs.values()),
                    "answered": self.lines_answered}  # fmt: skip


def _rid() -> str:
    return "req_" + uuid.uuid4().hex[:24]


def error_message(fault: BatchFault | None, status: int) -> str:
    if fault is not None and fault.error_message:
        return fault.error_message
    return f"Error {status} (injected by the fake server's batch fault)."


def rfc3339_exact(wall: float) -> str:
    """Unix time as RFC 3339 with microseconds, in UTC (Anthropic's and Google's timestamps)."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(wall, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
