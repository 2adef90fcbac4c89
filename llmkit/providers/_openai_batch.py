"""OpenAI's Batch API (also Groq's, which is OpenAI-shaped): Files, Batches, JSONL both ways.

* **Lines**: ``{"custom_id", "method": "POST", "url": "/v1/chat/completions",
  "body"}``, the body being :meth:`OpenAIProvider.build_params` of the request
  (SDK-only options left out), so it is what the live call sends.
* **Submit**: the lines as one ``.jsonl`` file (``POST /files``,
  ``purpose=batch``), then ``POST /batches`` against ``/v1/chat/completions``
  with a 24 h window and ``metadata.llmkit_tag`` (what :meth:`OpenAIBatch.find`
  looks for). Limits: 50,000 requests and 200 MB a file.
* **Poll**: ``GET /batches/{id}``: ``validating`` -> ``in_progress`` ->
  ``finalizing`` -> ``completed`` (or ``failed``, ``expired``, ``cancelling``
  -> ``cancelled``). A batch that ``failed`` with ``token_limit_exceeded``
  (the organization's enqueued-token limit for the model) is marked
  ``queue_full``: it cost nothing, and its requests go again later.
* **Results**: the output file (``response.status_code`` 200, ``body`` a chat
  completion, read by :meth:`OpenAIProvider.parse_completion`) and the error
  file (a non-200 ``response`` with the API's error body, or an ``error`` with
  ``batch_expired`` / ``batch_cancelled`` for requests never run).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from llmkit.errors import LLMError, ProviderError
from llmkit.providers._batch import (
    TRANSFER_TIMEOUT,
    BatchCounts,
    BatchLimits,
    BatchState,
    LineOutcome,
    ProviderBatchAPI,
    body_of,
    dumps,
    forced_tool_request,
    jsonl,
    load_json,
    mapping,
)
from llmkit.providers._errors import error_for_status
from llmkit.request import Request

if TYPE_CHECKING:
    from llmkit.providers.openai import OpenAIProvider
    from llmkit.types import Response

__all__ = ["OpenAIBatch"]

_RUNNING = ("validating", "in_progress", "finalizing", "cancelling")
_UNFINISHED = {"batch_expired": "expired", "batch_cancelled": "cancelled"}
_QUEUE_CODES = frozenset({"token_limit_exceeded"})
_FIND_PAGES = 5  # pages of 100 batches looked through for a lost create


class OpenAIBatch(ProviderBatchAPI):
    """The Batch API of OpenAI-compatible adapters (OpenAI, Groq)."""

    provider: OpenAIProvider
    limits = BatchLimits(max_requests=50_000, max_bytes=200_000_000)
    endpoint: ClassVar[str] = "/v1/chat/completions"
    completion_window: ClassVar[str] = "24h"

    def line(self, custom_id: str, request: Request) -> bytes:
        self.check(request)
        body = body_of(self.provider.build_params(forced_tool_request(request)))
        return dumps({"custom_id": custom_id, "method": "POST", "url": self.endpoint, "body": body})

    def submit(self, client: Any, lines: list[bytes], model: str, tag: str) -> str:
        data = b"\n".join(lines) + b"\n"
        file = (f"llmkit-{tag}.jsonl", data, "application/jsonl")
        upload = self._call("Uploading the batch file", lambda: client.files.create(
            file=file, purpose="batch", timeout=TRANSFER_TIMEOUT))  # fmt: skip
        batch = self._call("Creating the batch", lambda: client.batches.create(
            input_file_id=upload.id, endpoint=self.endpoint, completion_window=self.completion_window,
            metadata={"llmkit_tag": tag},
        ))  # fmt: skip
        return str(batch.id)

    def poll(self, client: Any, batch_id: str) -> BatchState:
        raw = self._call(f"Polling batch {batch_id}", lambda: client.get(
            f"/batches/{batch_id}", cast_to=bytes))  # fmt: skip
        return self.state_of(load_json(raw, "batch object", self.provider.name))

    def state_of(self, data: Mapping[str, Any]) -> BatchState:
        """Common words for a Batch object (see the module doc)."""
        status = str(data.get("status"))
        counts = data.get("request_counts") or {}
        total, done, failed = (int(counts.get(k) or 0) for k in ("total", "completed", "failed"))
        rest = max(total - done - failed, 0)
        ended = status not in _RUNNING
        tally = BatchCounts(
            processing=0 if ended else rest, succeeded=done, errored=failed,
            expired=rest if status == "expired" else 0, cancelled=rest if status == "cancelled" else 0,
        )  # fmt: skip
        if not ended:
            return BatchState(str(data["id"]), status, False, tally, data=data)
        errors = [e for e in ((data.get("errors") or {}).get("data") or ()) if isinstance(e, Mapping)]
        reason = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors) or None
        outcome = status if status in ("completed", "expired", "cancelled") else "failed"
        full = outcome == "failed" and any(e.get("code") in _QUEUE_CODES for e in errors)
        return BatchState(str(data["id"]), status, True, tally, outcome, reason, full, data)

    def outcomes(self, client: Any, state: BatchState) -> Iterator[LineOutcome]:
        for key in ("output_file_id", "error_file_id"):
            file_id = state.data.get(key)
            if file_id:
                data = self._call(f"Downloading the results of batch {state.batch_id}", lambda f=file_id: (
                    client.files.content(f, timeout=TRANSFER_TIMEOUT).content))  # fmt: skip
                for record in jsonl(data, "batch result line", self.provider.name):
                    yield self.outcome_of(record)

    def outcome_of(self, record: Mapping[str, Any]) -> LineOutcome:
        """One line of an output or error file."""
        custom_id = str(record.get("custom_id"))
        response = record.get("response") or None
        error = record.get("error") or None
        if isinstance(response, Mapping) and response.get("status_code") == 200:
            return LineOutcome(custom_id, payload=response, request_id=response.get("request_id"))
        if isinstance(response, Mapping):
            return LineOutcome(custom_id, error=self._line_error(response))
        code = str(error.get("code")) if isinstance(error, Mapping) else "unknown"
        message = str(error.get("message")) if isinstance(error, Mapping) else "no reason given"
        if code in _UNFINISHED:
            return LineOutcome(custom_id, unfinished=_UNFINISHED[code], reason=f"{code}: {message}")
        return LineOutcome(custom_id, error=ProviderError(f"{code}: {message}", provider=self.provider.name))

    def _line_error(self, response: Mapping[str, Any]) -> LLMError:
        error = mapping(mapping(response.get("body")).get("error"))
        message = str(error.get("message") or f"HTTP {response.get('status_code')}")
        kind = error.get("code") or error.get("type")
        status = int(response.get("status_code") or 500)
        return error_for_status(status, message, provider=self.provider.name,
                                request_id=response.get("request_id"), kind=kind)  # fmt: skip

    def parse(self, payload: Any, request: Request) -> Response:
        request_id = payload.get("request_id")
        headers = {"x-request-id": request_id} if request_id else {}
        return self.provider.parse_completion(payload.get("body"), headers)

    def cancel(self, client: Any, batch_id: str) -> None:
        self._call(f"Cancelling batch {batch_id}", lambda: client.post(
            f"/batches/{batch_id}/cancel", cast_to=bytes))  # fmt: skip

    def find(self, client: Any, tag: str) -> str | None:
        after: str | None = None
        for _ in range(_FIND_PAGES):
            query = {"limit": 100, **({"after": after} if after else {})}
            raw = self._call("Listing batches", lambda q=query: client.get(
                "/batches", cast_to=bytes, options={"params": q}))  # fmt: skip
            page = load_json(raw, "batch list", self.provider.name)
            for batch in page.get("data") or ():
                if (batch.get("metadata") or {}).get("llmkit_tag") == tag:
                    return str(batch["id"])
            if not page.get("has_more") or not page.get("data"):
                return None
            after = page["data"][-1]["id"]
        return None
