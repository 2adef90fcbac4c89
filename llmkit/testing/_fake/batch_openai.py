"""OpenAI's Files and Batch API, as the fake server speaks it (Groq's is the same under ``/v1``).

``POST /v1/files`` (multipart: ``purpose=batch`` and the ``.jsonl`` file),
``GET /v1/files/{id}`` and ``/content``; ``POST /v1/batches``,
``GET /v1/batches`` (``limit``, ``after``), ``GET /v1/batches/{id}``,
``POST /v1/batches/{id}/cancel``. Batch objects follow the API reference:
``status`` ``validating`` -> ``in_progress`` -> ``completed`` (or ``failed``,
``expired``, ``cancelling`` -> ``cancelled``), ``request_counts``, the
timestamps, ``output_file_id`` (status 200 lines) and ``error_file_id``
(other statuses; ``batch_expired`` / ``batch_cancelled`` for requests never
run). An input file that is not valid (bad JSON, another ``url``, several
models, duplicate ``custom_id``, over 50,000 lines) makes the batch fail at
validation with ``errors.data``; a key over the server's ``batch_queue_limit``
gets a batch that fails with ``token_limit_exceeded``, as OpenAI's
enqueued-token limit does (counted here in requests).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import uuid
from typing import Any

from .batch_http import BatchCall, BatchEndpoints, json_reply
from .batch_jobs import BatchJob, BatchReply, LineResult, error_message
from .dialect_base import BadRequest
from .dialect_openai import OpenAIDialect

__all__ = ["OpenAIBatchEndpoints"]

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/v1/files$"), "upload"),
    ("GET", re.compile(r"^/v1/files/([^/]+)$"), "file_object"),
    ("GET", re.compile(r"^/v1/files/([^/]+)/content$"), "file_content"),
    ("POST", re.compile(r"^/v1/batches$"), "create"),
    ("GET", re.compile(r"^/v1/batches$"), "list_batches"),
    ("GET", re.compile(r"^/v1/batches/([^/]+)$"), "retrieve"),
    ("POST", re.compile(r"^/v1/batches/([^/]+)/cancel$"), "cancel"),
]
_ENDPOINT = "/v1/chat/completions"
_MAX_REQUESTS = 50_000
_STATUS = {"validating": "validating", "running": "in_progress", "cancelling": "cancelling"}
_UNFINISHED = {
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
    "cancelled": ("batch_cancelled", "This request was cancelled before it could be executed."),
}


def _chat_path(model: str | None) -> str:
    return _ENDPOINT


class OpenAIBatchEndpoints(BatchEndpoints):
    provider = "openai"
    dialect = OpenAIDialect()
    routes = _ROUTES

    # -- files ------------------------------------------------------------------------------
    def upload(self, call: BatchCall) -> BatchReply:
        fields = _multipart(call.headers.get("content-type", ""), call.raw)
        purpose, upload = fields.get("purpose"), fields.get("file")
        if purpose is None or upload is None:
            return self.error(400, "Uploads need 'purpose' and 'file' (multipart/form-data).")
        name, data = upload
        record = self.book.add_file("file-", data, filename=name or "upload.jsonl",
                                    purpose=purpose[1].decode())  # fmt: skip
        return json_reply(200, _file_object(record))

    def file_object(self, call: BatchCall) -> BatchReply:
        record = self.book.file(call.params[0])
        if record is None:
            return self.error(404, f"No such File object: {call.params[0]}")
        return json_reply(200, _file_object(record))

    def file_content(self, call: BatchCall) -> BatchReply:
        record = self.book.file(call.params[0])
        if record is None:
            return self.error(404, f"No such File object: {call.params[0]}")
        job = self.book.job(record.get("batch_id", ""))
        drop = job is not None and self.book.take_drop(job)
        body = record["data"]
        return BatchReply(200, body, "application/octet-stream", drop_after=len(body) // 2 if drop else None)

    # -- batches ----------------------------------------------------------------------------
    def create(self, call: BatchCall) -> BatchReply:
        body = call.json()
        if not isinstance(body, dict) or body.get("endpoint") != _ENDPOINT:
            return self.error(400, f"endpoint must be {_ENDPOINT!r} here.")
        if body.get("completion_window") != "24h":
            return self.error(400, "completion_window must be '24h'.")
        record = self.book.file(str(body.get("input_file_id")))
        if record is None or record.get("purpose") != "batch":
            return self.error(400, f"No batch input file with id {body.get('input_file_id')!r}.")
        requests, model, refused = _read_input(record["data"])
        if refused is None and self.book.over_queue_limit(call.key, len(requests)):
            limit = self.book.queue_limit
            refused = ("token_limit_exceeded", f"Enqueued token limit reached for {model} in organization "
                       f"org-fake. Limit: {limit} enqueued requests. Please try again once some "
                       "in_progress batches have been completed.")  # fmt: skip
        job = self.book.create("batch_", self.provider, call.key, model, requests, refused,
                               input_file_id=record["id"], metadata=body.get("metadata"))  # fmt: skip
        return json_reply(200, self.batch_object(job))

    def list_batches(self, call: BatchCall) -> BatchReply:
        jobs = self.book.jobs_of(self.provider, call.key)
        after = call.query.get("after")
        if after:
            ids = [job.id for job in jobs]
            jobs = jobs[ids.index(after) + 1 :] if after in ids else []
        limit = int(call.query.get("limit") or 20)
        page = [self.batch_object(job) for job in jobs[:limit]]
        return json_reply(200, {"object": "list", "data": page, "has_more": len(jobs) > limit,
                                "first_id": page[0]["id"] if page else None,
                                "last_id": page[-1]["id"] if page else None})  # fmt: skip

    def retrieve(self, call: BatchCall) -> BatchReply:
        job = self.job_or_404(call.params[0])
        return job if isinstance(job, BatchReply) else json_reply(200, self.batch_object(job))

    def cancel(self, call: BatchCall) -> BatchReply:
        job = self.job_or_404(call.params[0])
        if isinstance(job, BatchReply):
            return job
        self.book.cancel(job)
        return json_reply(200, self.batch_object(job))

    def batch_object(self, job: BatchJob) -> dict[str, Any]:
        view = self.view(job, _chat_path)
        wall = self.book.wall
        data: dict[str, Any] = {
            "id": job.id, "object": "batch", "endpoint": _ENDPOINT, "errors": None,
            "input_file_id": job.metadata.get("input_file_id"), "completion_window": "24h",
            "status": _STATUS.get(view["phase"], view.get("outcome") or "failed"),
            "output_file_id": None, "error_file_id": None, "created_at": int(job.wall_created),
            "in_progress_at": None, "expires_at": int(job.wall_created) + 86_400, "finalizing_at": None,
            "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None,
            "cancelled_at": None, "metadata": job.metadata.get("metadata"), "model": job.model,
            "request_counts": {"total": view["total"], "completed": view["done"], "failed": 0},
        }  # fmt: skip
        if job.cancel_at is not None:
            data["cancelling_at"] = int(wall(job.cancel_at))
        if view["phase"] != "ended":
            return data
        assert job.ended_at is not None and job.results is not None
        ended = int(wall(job.ended_at))
        data[{"completed": "completed_at", "failed": "failed_at", "expired": "expired_at",
              "cancelled": "cancelled_at"}[job.outcome or "failed"]] = ended  # fmt: skip
        if job.outcome == "failed":
            data["errors"] = {"object": "list", "data": [{"code": job.refused_code, "message": job.refused,
                                                          "param": None, "line": None}]}  # fmt: skip
            data["request_counts"] = {"total": view["total"], "completed": 0, "failed": 0}
            return data
        ok = [r for r in job.results if r.status == 200]
        failed = [r for r in job.results if r.unfinished is None and r.status != 200]
        data["request_counts"] = {"total": view["total"], "completed": len(ok), "failed": len(failed)}
        data["output_file_id"], data["error_file_id"] = self._result_files(job)
        return data

    def _result_files(self, job: BatchJob) -> tuple[str | None, str | None]:
        """The output and error files of an ended job (made once)."""
        if "output" not in job.files:
            results = sorted(job.results or [], key=lambda r: r.custom_id)  # not in input order
            good = [self._line(job, r) for r in results if r.status == 200]
            bad = [self._line(job, r) for r in results if r.status != 200]
            for kind, lines in (("output", good), ("error", bad)):
                if lines:
                    body = b"".join(
                        json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines
                    )
                    record = self.book.add_file("file-", body, filename=f"batch_{kind}.jsonl",
                                                purpose=f"batch_{kind}", batch_id=job.id)  # fmt: skip
                    job.files[kind] = record["id"]
            job.files.setdefault("output", "")
        return job.files.get("output") or None, job.files.get("error") or None

    def _line(self, job: BatchJob, result: LineResult) -> dict[str, Any]:
        line: dict[str, Any] = {"id": "batch_req_" + uuid.uuid4().hex[:24], "custom_id": result.custom_id,
                                "response": None, "error": None}  # fmt: skip
        if result.unfinished is not None:
            code, message = _UNFINISHED[result.unfinished]
            line["error"] = {"code": code, "message": message}
            return line
        body = result.body
        if body is None:  # an injected error
            body = self.dialect.error_body(result.status, error_message(job.fault, result.status), None)
        line["response"] = {"status_code": result.status, "request_id": result.request_id, "body": body}
        return line


def _file_object(record: dict[str, Any]) -> dict[str, Any]:
    created = record["created_at"]
    return {"id": record["id"], "object": "file", "bytes": record["bytes"], "created_at": created,
            "filename": record["filename"], "purpose": record["purpose"], "status": "processed",
            "expires_at": created + 30 * 86_400, "status_details": None}  # fmt: skip


def _read_input(data: bytes) -> tuple[list[tuple[str, Any]], str | None, tuple[str, str] | None]:
    """The requests of an input file, its model, and why it is refused (None: it is valid)."""
    requests: list[tuple[str, Any]] = []
    models, seen = set(), set()
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            custom_id, body = entry["custom_id"], entry["body"]
            if entry.get("method") != "POST" or entry.get("url") != _ENDPOINT:
                raise ValueError(f"each line must POST to {_ENDPOINT}")
            if custom_id in seen:
                raise ValueError(f"the custom_id {custom_id!r} is used twice")
        except (ValueError, KeyError, TypeError) as exc:
            return [], None, ("invalid_request", f"Line {number}: {exc}")
        seen.add(custom_id)
        models.add(body.get("model") if isinstance(body, dict) else None)
        requests.append((str(custom_id), body))
    model = next(iter(models)) if len(models) == 1 else None
    if len(models) > 1:
        return requests, None, ("model_mismatch", "All requests of a batch must use the same model.")
    if not requests or len(requests) > _MAX_REQUESTS:
        return requests, model, ("invalid_request", f"A batch holds 1 to {_MAX_REQUESTS} requests.")
    return requests, model, None


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, bytes)."""
    if "multipart/form-data" not in content_type:
        raise BadRequest("Uploads are multipart/form-data.")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if name:
            fields[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields
