"""Anthropic's Message Batches API: ``/v1/messages/batches`` and its results JSONL.

* **Lines**: ``{"custom_id", "params"}``, ``params`` being
  :meth:`AnthropicProvider.build_params` of the request with the SDK's
  ``extra_body`` folded in (where llmkit puts ``temperature``), so it is what
  the live call sends. ``custom_id`` matches ``^[a-zA-Z0-9_-]{1,64}$``.
* **Submit**: ``POST /v1/messages/batches`` with ``{"requests": [...]}``, sent
  as the bytes already built (the SDK would re-validate 100,000 dicts).
  Limits: 100,000 requests and 256 MB. A 429 (the batch API's rate limit, or
  too many requests queued for processing) makes llmkit wait and try again.
  Message batches carry no metadata, so :meth:`AnthropicBatch.find` finds nothing.
* **Poll**: ``processing_status`` ``in_progress`` -> ``canceling`` -> ``ended``;
  ``request_counts`` (processing, succeeded, errored, canceled, expired).
* **Results**: the ``results_url`` JSONL, fetched at its path on the client's
  own base URL (the key is never sent to another host): ``result.type``
  ``succeeded`` (``message``, read by :meth:`AnthropicProvider.parse_message`),
  ``errored`` (an error body, mapped by its type), ``canceled``, ``expired``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from llmkit.providers import _anthropic_format as fmt
from llmkit.providers._anthropic_reply import error_from_event
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
from llmkit.providers._options import call_options
from llmkit.request import Request

if TYPE_CHECKING:
    from llmkit.providers.anthropic import AnthropicProvider
    from llmkit.types import Response

__all__ = ["AnthropicBatch"]

_PATH = "/v1/messages/batches"
_UNFINISHED = {"canceled": "cancelled", "expired": "expired"}


class AnthropicBatch(ProviderBatchAPI):
    """Message Batches for :class:`~llmkit.providers.anthropic.AnthropicProvider`."""

    provider: AnthropicProvider
    limits = BatchLimits(max_requests=100_000, max_bytes=256_000_000)

    def line(self, custom_id: str, request: Request) -> bytes:
        self.check(request)
        params = body_of(self.provider.build_params(forced_tool_request(request)))
        return dumps({"custom_id": custom_id, "params": params})

    def submit(self, client: Any, lines: list[bytes], model: str, tag: str) -> str:
        body = b'{"requests":[' + b",".join(lines) + b"]}"
        options = {"headers": {"content-type": "application/json"}, "timeout": TRANSFER_TIMEOUT}
        raw = self._call("Creating the message batch", lambda: client.post(
            _PATH, cast_to=bytes, content=body, options=options))  # fmt: skip
        return str(load_json(raw, "message batch", self.provider.name)["id"])

    def poll(self, client: Any, batch_id: str) -> BatchState:
        raw = self._call(f"Polling message batch {batch_id}", lambda: client.get(
            f"{_PATH}/{batch_id}", cast_to=bytes))  # fmt: skip
        return self.state_of(load_json(raw, "message batch", self.provider.name))

    def state_of(self, data: Mapping[str, Any]) -> BatchState:
        """Common words for a MessageBatch object."""
        status = str(data.get("processing_status"))
        counts = data.get("request_counts") or {}
        tally = BatchCounts(*(int(counts.get(k) or 0) for k in
                              ("processing", "succeeded", "errored", "expired", "canceled")))  # fmt: skip
        if status != "ended":
            return BatchState(str(data["id"]), status, False, tally, data=data)
        outcome = "expired" if tally.expired else "completed"
        if data.get("cancel_initiated_at"):
            outcome = "cancelled"
        return BatchState(str(data["id"]), status, True, tally, outcome, data=data)

    def outcomes(self, client: Any, state: BatchState) -> Iterator[LineOutcome]:
        url = state.data.get("results_url") or f"{_PATH}/{state.batch_id}/results"
        parts = urlsplit(str(url))
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        data = self._call(f"Downloading the results of message batch {state.batch_id}", lambda: client.get(
            path, cast_to=bytes, options={"timeout": TRANSFER_TIMEOUT}))  # fmt: skip
        for record in jsonl(data, "batch result line", self.provider.name):
            yield self.outcome_of(record)

    def outcome_of(self, record: Mapping[str, Any]) -> LineOutcome:
        """One line of the results file."""
        custom_id = str(record.get("custom_id"))
        result = mapping(record.get("result"))
        kind = result.get("type")
        if kind == "succeeded":
            return LineOutcome(custom_id, payload=result.get("message"))
        if kind == "errored":
            body = result.get("error")
            request_id = body.get("request_id") if isinstance(body, Mapping) else None
            return LineOutcome(custom_id, error=error_from_event(body, request_id))
        if kind in _UNFINISHED:
            return LineOutcome(custom_id, unfinished=_UNFINISHED[str(kind)], reason=f"result type {kind}")
        unknown = {"error": {"message": f"unknown result type {kind!r}"}}
        return LineOutcome(custom_id, error=error_from_event(unknown))

    def parse(self, payload: Any, request: Request) -> Response:
        response = self.provider.parse_message(payload, {})
        sent = forced_tool_request(request)
        if fmt.json_prefill(sent, call_options(sent, self.provider.name)):  # put the "{" back, as live
            object.__setattr__(response, "content", fmt.JSON_PREFILL + response.content)
        return response

    def cancel(self, client: Any, batch_id: str) -> None:
        self._call(f"Cancelling message batch {batch_id}", lambda: client.post(
            f"{_PATH}/{batch_id}/cancel", cast_to=bytes))  # fmt: skip
