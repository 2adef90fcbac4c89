"""Gemini's Batch Mode: ``models/{model}:batchGenerateContent``, inline or from an uploaded JSONL file.

* **Lines**: ``{"key", "request"}``, ``request`` being
  :meth:`GeminiProvider.build_body` of the request (for ``response_model=``,
  Gemini's JSON-schema mode, as the live path asks it), so it is what the live
  call sends.
* **Submit**: batches up to 20 MB go inline (``inputConfig.requests.requests``:
  ``{"request", "metadata": {"key"}}``); larger ones are uploaded first with
  the resumable Files upload (``POST /upload/v1beta/files``, ``start`` then
  ``upload, finalize``) and named in ``inputConfig.fileName``. ``displayName``
  is ``llmkit-<tag>``, what :meth:`GeminiBatch.find` looks for. A 429
  (enqueued tokens of the model, or the batch API's rate limit) makes llmkit
  wait and try again. The operation's ``name`` (``batches/...``) is the id.
* **Poll**: ``GET /v1beta/batches/{id}``: ``metadata.state``
  ``BATCH_STATE_PENDING`` / ``RUNNING`` -> ``SUCCEEDED``, ``FAILED``,
  ``CANCELLED`` or ``EXPIRED`` (``JOB_STATE_*`` read alike); ``batchStats``.
* **Results**: ``response.inlinedResponses.inlinedResponses`` (in input order,
  keyed by ``metadata.key``) or ``response.responsesFile``, downloaded from
  ``/download/v1beta/{file}:download?alt=media``: lines ``{"key",
  "response"}`` or ``{"key", "error"}`` (a ``google.rpc.Status``).

URLs the server hands back (the upload session) are used by their path on the
client's own base URL, so the key header never goes to another host.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit

from llmkit.errors import ProviderError
from llmkit.providers import _gemini_wire as wire
from llmkit.providers._batch import (
    TRANSFER_TIMEOUT,
    BatchCounts,
    BatchLimits,
    BatchState,
    LineOutcome,
    ProviderBatchAPI,
    dumps,
    jsonl,
    load_json,
    mapping,
)
from llmkit.request import Request

if TYPE_CHECKING:
    import requests

    from llmkit.providers.gemini import GeminiProvider
    from llmkit.types import Response

__all__ = ["GeminiBatch"]

_VERSIONS = ("/v1beta", "/v1", "/v1alpha")
_ENDED = {"SUCCEEDED": "completed", "FAILED": "failed", "CANCELLED": "cancelled", "EXPIRED": "expired"}
# google.rpc.Code -> the HTTP status Google maps it to (for per-request errors).
_RPC_STATUS = {1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409,
               11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401}  # fmt: skip
_CALL_TIMEOUT = 60.0
_REQUEST_MARK = b',"request":'


class GeminiBatch(ProviderBatchAPI):
    """Batch Mode for :class:`~llmkit.providers.gemini.GeminiProvider`."""

    provider: GeminiProvider
    limits = BatchLimits(max_requests=None, max_bytes=2_000_000_000)  # the input file's limit
    inline_bytes: ClassVar[int] = 20_000_000
    """Batches up to this size go inline; larger ones as an uploaded file."""

    def line(self, custom_id: str, request: Request) -> bytes:
        self.check(request)
        body = self.provider.build_body(request)
        if request.response_model is not None:
            from llmkit.structured.gemini import structured_body

            body = structured_body(request, body)
        return b'{"key":' + dumps(custom_id) + b',"request":' + dumps(body) + b"}"

    # -- plumbing -------------------------------------------------------------------------

    def _roots(self) -> tuple[str, str]:
        """(the versioned API root, the origin the upload and download paths hang off)."""
        root = (self.provider.base_url or self.provider.default_base_url or "").rstrip("/")
        versioned = root if root.endswith(_VERSIONS) else root + "/v1beta"
        return versioned, versioned.rsplit("/", 1)[0]

    def _send(self, session: Any, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.provider.timeout or _CALL_TIMEOUT)
        reply = self._call(what, lambda: session.request(method, url, allow_redirects=False, **kwargs))
        if reply.status_code >= 300:
            with contextlib.closing(reply):
                error = self.provider._status_error(reply)
            error.message = f"{what}: {error.message}"
            raise error
        return reply

    def _json(self, session: Any, method: str, url: str, what: str, **kwargs: Any) -> Any:
        reply = self._send(session, method, url, what, **kwargs)
        return load_json(reply.content, what, self.provider.name)

    # -- the batch API ----------------------------------------------------------------------

    def submit(self, client: Any, lines: list[bytes], model: str, tag: str) -> str:
        size = sum(len(line) + 1 for line in lines)
        source = self._inline(lines) if size <= self.inline_bytes else self._uploaded(client, lines, tag)
        body = b'{"batch":{"displayName":' + dumps(f"llmkit-{tag}") + b',"inputConfig":' + source + b"}}"
        versioned, _ = self._roots()
        url = f"{versioned}/models/{quote(model.removeprefix('models/'), safe='')}:batchGenerateContent"
        operation = self._json(client, "POST", url, "Creating the batch", data=body, timeout=TRANSFER_TIMEOUT)
        return str(operation["name"])

    @staticmethod
    def _inline(lines: list[bytes]) -> bytes:
        """``{"requests": {"requests": [{"request", "metadata": {"key"}}]}}`` from file lines."""
        entries = []
        for line in lines:  # b'{"key":"...","request":{...}}', as line() writes it
            cut = line.index(_REQUEST_MARK)  # cannot occur inside the key: its quotes would be escaped
            key, body = line[7:cut], line[cut + len(_REQUEST_MARK) : -1]
            entries.append(b'{"request":' + body + b',"metadata":{"key":' + key + b"}}")
        return b'{"requests":{"requests":[' + b",".join(entries) + b"]}}"

    def _uploaded(self, session: Any, lines: list[bytes], tag: str) -> bytes:
        data = b"\n".join(lines) + b"\n"
        _, origin = self._roots()
        start = self._send(session, "POST", f"{origin}/upload/v1beta/files", "Starting the batch file upload",
                           data=dumps({"file": {"displayName": f"llmkit-{tag}"}}), headers={
                               "X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start",
                               "X-Goog-Upload-Header-Content-Length": str(len(data)),
                               "X-Goog-Upload-Header-Content-Type": "application/jsonl",
                           })  # fmt: skip
        session_url = start.headers.get("x-goog-upload-url")
        if not session_url:
            raise ProviderError("Gemini's upload start gave no X-Goog-Upload-URL", provider="google")
        parts = urlsplit(session_url)
        url = origin + parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"}
        uploaded = self._json(session, "POST", url, "Uploading the batch file", data=data,
                              timeout=TRANSFER_TIMEOUT, headers=headers)  # fmt: skip
        return b'{"fileName":' + dumps(uploaded["file"]["name"]) + b"}"

    def poll(self, client: Any, batch_id: str) -> BatchState:
        versioned, _ = self._roots()
        return self.state_of(self._json(client, "GET", f"{versioned}/{batch_id}", f"Polling {batch_id}"))

    def state_of(self, operation: Mapping[str, Any]) -> BatchState:
        """Common words for a batch operation."""
        meta = mapping(operation.get("metadata"))
        state = str(meta.get("state") or "BATCH_STATE_UNSPECIFIED")
        stats = mapping(meta.get("batchStats"))
        succeeded, failed, pending = (
            int(stats.get(k) or 0)
            for k in ("successfulRequestCount", "failedRequestCount", "pendingRequestCount")
        )
        outcome = next((word for suffix, word in _ENDED.items() if state.endswith("_" + suffix)), None)
        ended = outcome is not None or bool(operation.get("done"))
        rest = {"expired": pending, "cancelled": pending}.get(outcome or "", 0)
        counts = BatchCounts(
            0 if ended else pending,
            succeeded,
            failed,
            rest if outcome == "expired" else 0,
            rest if outcome == "cancelled" else 0,
        )
        error = operation.get("error") if isinstance(operation.get("error"), Mapping) else None
        reason = str(error.get("message")) if error else None
        return BatchState(str(operation.get("name")), state, ended, counts,
                          (outcome or "completed") if ended else None, reason, data=operation)  # fmt: skip

    def outcomes(self, client: Any, state: BatchState) -> Iterator[LineOutcome]:
        data = state.data
        output = data.get("response") or (data.get("metadata") or {}).get("output") or {}
        inlined = output.get("inlinedResponses")
        if isinstance(inlined, Mapping):
            inlined = inlined.get("inlinedResponses")
        if isinstance(inlined, list):
            for entry in inlined:
                key = (entry.get("metadata") or {}).get("key")
                yield self.outcome_of(str(key), entry)
            return
        name = output.get("responsesFile")
        if not name:
            return
        _, origin = self._roots()
        url = f"{origin}/download/v1beta/{name}:download?alt=media"
        reply = self._send(client, "GET", url, f"Downloading the results of {state.batch_id}",
                           timeout=TRANSFER_TIMEOUT)  # fmt: skip
        content = self._call(f"Downloading the results of {state.batch_id}", lambda: reply.content)
        for record in jsonl(content, "batch result line", self.provider.name):
            yield self.outcome_of(str(record.get("key")), record)

    def outcome_of(self, key: str, entry: Mapping[str, Any]) -> LineOutcome:
        """One inlined response, or one line of the responses file."""
        if isinstance(entry.get("response"), Mapping):
            return LineOutcome(key, payload=entry["response"])
        error = mapping(entry.get("error"))
        code = error.get("code")
        status = code if isinstance(code, int) and code >= 400 else 500
        if isinstance(code, int) and code in _RPC_STATUS:
            status = _RPC_STATUS[code]
        message = str(error.get("message") or "the request failed without a reason")
        return LineOutcome(key, error=wire.error_from_body(status, {"error": error}, None, None, message))

    def parse(self, payload: Any, request: Request) -> Response:
        return wire.parse_reply(payload, request.model, None)

    def cancel(self, client: Any, batch_id: str) -> None:
        versioned, _ = self._roots()
        self._send(client, "POST", f"{versioned}/{batch_id}:cancel", f"Cancelling {batch_id}").close()

    def find(self, client: Any, tag: str) -> str | None:
        versioned, _ = self._roots()
        page = self._json(client, "GET", f"{versioned}/batches", "Listing batches", params={"pageSize": 100})
        for operation in page.get("operations") or ():
            if (operation.get("metadata") or {}).get("displayName") == f"llmkit-{tag}":
                return str(operation["name"])
        return None
