"""Anthropic's Message Batches API, as the fake server speaks it.

``POST /v1/messages/batches`` (``{"requests": [{"custom_id", "params"}]}``),
``GET /v1/messages/batches`` (``limit``, ``after_id``), ``GET
/v1/messages/batches/{id}``, ``POST .../{id}/cancel`` and ``GET
.../{id}/results`` (JSON lines, once ended; ``results_url`` points there on the
host the client used). ``processing_status`` ``in_progress`` -> ``canceling`` ->
``ended``; as Anthropic documents, ``request_counts`` keep every request under
``processing`` until the whole batch ends. Results, by ``custom_id`` (not in
input order: Anthropic promises none): ``succeeded`` (a Messages
reply), ``errored`` (an error body: a request Anthropic refuses, or an injected
fault), ``canceled``, ``expired``. ``custom_id`` must match
``^[a-zA-Z0-9_-]{1,64}$`` and be unique; at most 100,000 requests. A key over
the server's ``batch_queue_limit`` gets Anthropic's 429 (``rate_limit_error``).
"""

from __future__ import annotations

import re
from typing import Any

from .batch_http import BatchCall, BatchEndpoints, json_reply, jsonl_reply
from .batch_jobs import BatchJob, BatchReply, LineResult, error_message, rfc3339_exact
from .dialect_anthropic import AnthropicDialect
from .dialect_base import retry_after_headers

__all__ = ["AnthropicBatchEndpoints"]

_BASE = "/v1/messages/batches"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/v1/messages/batches$"), "create"),
    ("GET", re.compile(r"^/v1/messages/batches$"), "list_batches"),
    ("GET", re.compile(r"^/v1/messages/batches/([^/]+)$"), "retrieve"),
    ("POST", re.compile(r"^/v1/messages/batches/([^/]+)/cancel$"), "cancel"),
    ("GET", re.compile(r"^/v1/messages/batches/([^/]+)/results$"), "results"),
]
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_MAX_REQUESTS = 100_000
_UNFINISHED = {"expired": "expired", "cancelled": "canceled"}


def _chat_path(model: str | None) -> str:
    return "/v1/messages"


class AnthropicBatchEndpoints(BatchEndpoints):
    provider = "anthropic"
    dialect = AnthropicDialect()
    routes = _ROUTES

    def create(self, call: BatchCall) -> BatchReply:
        body = call.json()
        raw = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(raw, list) or not 1 <= len(raw) <= _MAX_REQUESTS:
            return self.error(400, f"requests: a list of 1 to {_MAX_REQUESTS} requests is required")
        requests, seen = [], set()
        for index, entry in enumerate(raw):
            custom_id = entry.get("custom_id") if isinstance(entry, dict) else None
            if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id) or custom_id in seen:
                return self.error(400, f"requests.{index}.custom_id: must be unique and match "
                                       "^[a-zA-Z0-9_-]{1,64}$")  # fmt: skip
            if not isinstance(entry.get("params"), dict):
                return self.error(400, f"requests.{index}.params: Field required")
            seen.add(custom_id)
            requests.append((custom_id, entry["params"]))
        if self.book.over_queue_limit(call.key, len(requests)):
            message = (
                f"Number of batch requests in the processing queue would exceed "
                f"{self.book.queue_limit} for this organization. Please wait for batches to finish."
            )
            reply = self.error(429, message, "rate_limit_error")
            return BatchReply(429, reply.body, headers=retry_after_headers(1.0))
        job = self.book.create("msgbatch_", self.provider, call.key, None, requests)
        return json_reply(200, self.batch_object(job, call))

    def list_batches(self, call: BatchCall) -> BatchReply:
        jobs = self.book.jobs_of(self.provider, call.key)
        after = call.query.get("after_id")
        if after:
            ids = [job.id for job in jobs]
            jobs = jobs[ids.index(after) + 1 :] if after in ids else []
        limit = int(call.query.get("limit") or 20)
        page = [self.batch_object(job, call) for job in jobs[:limit]]
        return json_reply(200, {"data": page, "has_more": len(jobs) > limit,
                                "first_id": page[0]["id"] if page else None,
                                "last_id": page[-1]["id"] if page else None})  # fmt: skip

    def retrieve(self, call: BatchCall) -> BatchReply:
        job = self.job_or_404(call.params[0])
        return job if isinstance(job, BatchReply) else json_reply(200, self.batch_object(job, call))

    def cancel(self, call: BatchCall) -> BatchReply:
        job = self.job_or_404(call.params[0])
        if isinstance(job, BatchReply):
            return job
        self.book.cancel(job)
        return json_reply(200, self.batch_object(job, call))

    def results(self, call: BatchCall) -> BatchReply:
        job = self.job_or_404(call.params[0])
        if isinstance(job, BatchReply):
            return job
        if self.view(job, _chat_path)["phase"] != "ended":
            return self.error(400, f"Batch {job.id} has not ended yet: its results are not available.")
        # Not in input order (Anthropic does not promise it): by custom_id, as strings.
        results = sorted(self._results(job), key=lambda r: r.custom_id)
        return jsonl_reply([self._line(job, r) for r in results], drop=self.book.take_drop(job))

    def batch_object(self, job: BatchJob, call: BatchCall) -> dict[str, Any]:
        view = self.view(job, _chat_path)
        wall = self.book.wall
        counts = {"processing": view["total"], "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        data: dict[str, Any] = {
            "id": job.id, "type": "message_batch", "processing_status": "in_progress",
            "request_counts": counts, "ended_at": None, "created_at": rfc3339_exact(job.wall_created),
            "expires_at": rfc3339_exact(job.wall_created + 86_400), "archived_at": None,
            "cancel_initiated_at": None if job.cancel_at is None else rfc3339_exact(wall(job.cancel_at)),
            "results_url": None,
        }  # fmt: skip
        if view["phase"] == "cancelling":
            data["processing_status"] = "canceling"
        if view["phase"] != "ended":
            return data
        assert job.ended_at is not None
        counts["processing"] = 0
        for result in self._results(job):
            counts[self._kind(result)] += 1
        data.update(processing_status="ended", ended_at=rfc3339_exact(wall(job.ended_at)),
                    results_url=f"{call.origin}{_BASE}/{job.id}/results")  # fmt: skip
        return data

    def _results(self, job: BatchJob) -> list[LineResult]:
        """An ended job's results; Anthropic fails no batch whole: a refused job errs every request."""
        if job.outcome != "failed":
            return job.results or []
        body = self.dialect.error_body(400, job.refused or "invalid request", None)
        return [LineResult(custom_id, 400, body) for custom_id in job.custom_ids]

    @staticmethod
    def _kind(result: LineResult) -> str:
        if result.unfinished is not None:
            return _UNFINISHED[result.unfinished]
        return "succeeded" if result.status == 200 else "errored"

    def _line(self, job: BatchJob, result: LineResult) -> dict[str, Any]:
        kind = self._kind(result)
        if kind == "succeeded":
            return {"custom_id": result.custom_id, "result": {"type": "succeeded", "message": result.body}}
        if kind != "errored":
            return {"custom_id": result.custom_id, "result": {"type": kind}}
        body = result.body
        if body is None:
            body = self.dialect.error_body(result.status, error_message(job.fault, result.status), None)
        error = {**body, "request_id": result.request_id or None}
        return {"custom_id": result.custom_id, "result": {"type": "errored", "error": error}}
