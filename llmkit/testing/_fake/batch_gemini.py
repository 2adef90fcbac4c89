"""Gemini's Batch Mode and the Files upload it uses, as the fake server speaks them.

``POST /v1beta/models/{model}:batchGenerateContent`` with ``{"batch":
{"displayName", "inputConfig": {"requests": {"requests": [{"request",
"metadata"}]}} or {"fileName"}}}`` (camelCase or snake_case, as the JSON
mapping of the protos allows; inline bodies up to 20 MB) answers a long-running
operation named ``batches/{id}``; ``GET /v1beta/batches/{id}``,
``GET /v1beta/batches`` and ``POST /v1beta/batches/{id}:cancel``.
``metadata.state`` ``BATCH_STATE_PENDING`` -> ``RUNNING`` -> ``SUCCEEDED``
(or ``FAILED``, ``CANCELLED``, ``EXPIRED``), ``metadata.batchStats`` (int64 as
strings). Once done, ``response`` (and ``metadata.output``) holds
``inlinedResponses.inlinedResponses`` (input order, ``metadata.key``) or, for a
file input, ``responsesFile``: JSON lines ``{"key", "response"}`` or ``{"key",
"error"}`` (a ``google.rpc.Status``, gRPC code). Requests not run by the end
(cancelled or expired) have no entry. Uploads: ``POST /upload/v1beta/files``
with ``X-Goog-Upload-Protocol: resumable``, ``start`` (answered with
``X-Goog-Upload-URL``) then ``upload, finalize``; downloads
``GET /download/v1beta/files/{id}:download?alt=media``. A key over the
server's ``batch_queue_limit`` gets ``RESOURCE_EXHAUSTED``.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any
from urllib.parse import unquote

from .batch_http import BatchCall, BatchEndpoints, json_reply
from .batch_jobs import BatchJob, BatchReply, LineResult, error_message, rfc3339_exact
from .dialect_gemini import GeminiDialect

__all__ = ["GeminiBatchEndpoints"]

_V = r"/v1(?:beta|alpha)?"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(rf"^{_V}/models/([^/:]+):batchGenerateContent$"), "create"),
    ("GET", re.compile(rf"^{_V}/batches$"), "list_batches"),
    ("GET", re.compile(rf"^{_V}/batches/([^/:]+)$"), "retrieve"),
    ("POST", re.compile(rf"^{_V}/batches/([^/:]+):cancel$"), "cancel"),
    ("POST", re.compile(r"^/upload/v1beta/files$"), "upload"),
    ("GET", re.compile(r"^/download/v1beta/files/([^/:]+):download$"), "download"),
]
_INLINE_LIMIT = 20_000_000
_TYPES = "type.googleapis.com/google.ai.generativelanguage.v1main."
_STATES = {"validating": "PENDING", "running": "RUNNING", "cancelling": "RUNNING", "completed": "SUCCEEDED",
           "failed": "FAILED", "cancelled": "CANCELLED", "expired": "EXPIRED"}  # fmt: skip
_RPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 499: 1, 500: 13, 501: 12, 503: 14, 504: 4}
_RPC_NAMES = {3: "INVALID_ARGUMENT", 16: "UNAUTHENTICATED", 7: "PERMISSION_DENIED", 5: "NOT_FOUND",
              10: "ABORTED", 8: "RESOURCE_EXHAUSTED", 1: "CANCELLED", 13: "INTERNAL", 12: "UNIMPLEMENTED",
              14: "UNAVAILABLE", 4: "DEADLINE_EXCEEDED"}  # fmt: skip


def _chat_path(model: str | None) -> str:
    return f"/v1beta/models/{model}:generateContent"


def _get(data: Any, camel: str) -> Any:
    """``data[camel]`` or its snake_case twin (``inputConfig`` / ``input_config``)."""
    if not isinstance(data, dict):
        return None
    snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel)
    return data.get(camel, data.get(snake))


class GeminiBatchEndpoints(BatchEndpoints):
    provider = "google"
    dialect = GeminiDialect()
    routes = _ROUTES

    # -- files ------------------------------------------------------------------------------
    def upload(self, call: BatchCall) -> BatchReply:
        command = call.headers.get("x-goog-upload-command", "").lower()
        if command == "start":
            if call.headers.get("x-goog-upload-protocol", "").lower() != "resumable":
                return self.error(400, "Only the resumable upload protocol is supported here.")
            display = _get(_get(call.json(), "file"), "displayName") or ""
            upload_id = uuid.uuid4().hex
            self.book.add_file("upload-", b"", upload_id=upload_id, displayName=display)
            url = f"{call.origin}/upload/v1beta/files?upload_id={upload_id}&upload_protocol=resumable"
            return BatchReply(
                200, b"", headers=[("x-goog-upload-url", url), ("x-goog-upload-status", "active")]
            )
        if "finalize" not in command or "upload_id" not in call.query:
            return self.error(400, "Send X-Goog-Upload-Command: upload, finalize to the upload URL.")
        pending = self.book.find_file("upload_id", call.query["upload_id"])
        if pending is None:
            return self.error(404, "No such upload session.")
        name = "files/" + uuid.uuid4().hex[:16]
        record = self.book.add_file("", call.raw, name, name=name, displayName=pending["displayName"])
        return json_reply(
            200, {"file": self._file_resource(record, call)}, [("x-goog-upload-status", "final")]
        )

    def _file_resource(self, record: dict[str, Any], call: BatchCall) -> dict[str, Any]:
        created = rfc3339_exact(record["created_at"])
        return {"name": record["name"], "displayName": record.get("displayName", ""),
                "mimeType": "application/jsonl", "sizeBytes": str(record["bytes"]), "createTime": created,
                "updateTime": created, "expirationTime": rfc3339_exact(record["created_at"] + 48 * 3600),
                "sha256Hash": hashlib.sha256(record["data"]).hexdigest(), "uri": f"{call.origin}/v1beta/"
                + record["name"], "state": "ACTIVE", "source": "UPLOADED"}  # fmt: skip

    def download(self, call: BatchCall) -> BatchReply:
        record = self.book.file("files/" + call.params[0])
        if record is None:
            return self.error(404, f"File files/{call.params[0]} does not exist.")
        job = self.book.job(record.get("batch_id", ""))
        drop = job is not None and self.book.take_drop(job)
        body = record["data"]
        return BatchReply(200, body, "application/octet-stream", drop_after=len(body) // 2 if drop else None)

    # -- batches ----------------------------------------------------------------------------
    def create(self, call: BatchCall) -> BatchReply:
        if len(call.raw) > _INLINE_LIMIT:
            return self.error(400, "Request payload size exceeds the limit: 20971520 bytes. Use a file.")
        batch = _get(call.json(), "batch")
        config = _get(batch, "inputConfig")
        if not isinstance(config, dict):
            return self.error(400, "* BatchGenerateContentRequest.batch.input_config: is required")
        requests, source = self._requests(config)
        if isinstance(requests, BatchReply):
            return requests
        if self.book.over_queue_limit(call.key, len(requests)):
            return self.error(429, f"Enqueued requests of this project would exceed {self.book.queue_limit}: "
                                   "wait for running batches to finish.", "RESOURCE_EXHAUSTED")  # fmt: skip
        model = unquote(call.params[0])
        job = self.book.create("batches/", self.provider, call.key, model, requests, None,
                               displayName=_get(batch, "displayName") or "", source=source)  # fmt: skip
        return json_reply(200, self.operation(job))

    def _requests(self, config: dict[str, Any]) -> tuple[list[tuple[str, Any]] | BatchReply, str]:
        inline = _get(_get(config, "requests"), "requests")
        if isinstance(inline, list):
            keys = [_get(e, "metadata").get("key") if isinstance(_get(e, "metadata"), dict) else i
                    for i, e in enumerate(inline)]  # fmt: skip
            return [(str(key), _get(e, "request")) for key, e in zip(keys, inline)], "inline"
        record = self.book.file(str(_get(config, "fileName")))
        if record is None:
            return self.error(
                400, f"* input_config.file_name: file {_get(config, 'fileName')!r} not found"
            ), ""
        try:
            lines = [json.loads(line) for line in record["data"].splitlines() if line.strip()]
            return [(str(line["key"]), line["request"]) for line in lines], "file"
        except (ValueError, KeyError, TypeError) as exc:
            return self.error(400, f"The input file is not JSON lines of {{key, request}}: {exc}"), ""

    def list_batches(self, call: BatchCall) -> BatchReply:
        return json_reply(
            200, {"operations": [self.operation(j) for j in self.book.jobs_of(self.provider, call.key)]}
        )

    def retrieve(self, call: BatchCall) -> BatchReply:
        job = self.job_or_404("batches/" + call.params[0])
        return job if isinstance(job, BatchReply) else json_reply(200, self.operation(job))

    def cancel(self, call: BatchCall) -> BatchReply:
        job = self.job_or_404("batches/" + call.params[0])
        if isinstance(job, BatchReply):
            return job
        self.book.cancel(job)
        return json_reply(200, {})

    def operation(self, job: BatchJob) -> dict[str, Any]:
        view = self.view(job, _chat_path)
        ended = view["phase"] == "ended"
        state = _STATES[view["outcome"] if ended else view["phase"]]
        results = job.results or []
        ok = sum(1 for r in results if r.status == 200)
        failed = sum(1 for r in results if r.unfinished is None and r.status != 200)
        pending = view["total"] - (ok + failed if ended else view["done"])
        stats = {"requestCount": str(view["total"]), "successfulRequestCount": str(ok if ended else 0),
                 "failedRequestCount": str(failed if ended else 0),
                 "pendingRequestCount": str(pending)}  # fmt: skip
        meta: dict[str, Any] = {
            "@type": _TYPES + "GenerateContentBatch", "name": job.id, "model": f"models/{job.model}",
            "displayName": job.metadata.get("displayName", ""), "state": f"BATCH_STATE_{state}",
            "createTime": rfc3339_exact(job.wall_created), "batchStats": stats,
        }  # fmt: skip
        operation: dict[str, Any] = {"name": job.id, "metadata": meta, "done": ended}
        if not ended:
            return operation
        if job.outcome == "failed":
            operation["error"] = {"code": 3, "message": job.refused or "the batch failed"}
            return operation
        output = self._output(job)
        meta["output"] = output
        operation["response"] = {"@type": _TYPES + "GenerateContentBatchOutput", **output}
        return operation

    def _output(self, job: BatchJob) -> dict[str, Any]:
        done = [r for r in job.results or () if r.unfinished is None]
        if job.metadata.get("source") == "inline":
            entries = [{**self._entry(job, r), "metadata": {"key": r.custom_id}} for r in done]
            return {"inlinedResponses": {"inlinedResponses": entries}}
        if "output" not in job.files:
            body = b"".join(
                json.dumps({"key": r.custom_id, **self._entry(job, r)}).encode() + b"\n" for r in done
            )
            name = "files/batch-" + uuid.uuid4().hex[:12]
            self.book.add_file("", body, name, name=name, batch_id=job.id)
            job.files["output"] = name
        return {"responsesFile": job.files["output"]}

    def _entry(self, job: BatchJob, result: LineResult) -> dict[str, Any]:
        if result.status == 200:
            return {"response": result.body}
        body = result.body or self.dialect.error_body(
            result.status, error_message(job.fault, result.status), None
        )
        code = _RPC_CODES.get(result.status, 13 if result.status >= 500 else 3)
        return {
            "error": {"code": code, "message": body["error"]["message"], "status": _RPC_NAMES.get(code, "")}
        }
