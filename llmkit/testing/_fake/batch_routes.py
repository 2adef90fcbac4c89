"""The fake server's batch APIs: routing, keys, injected faults and the request log for them.

Batch endpoints take the same keys as the chat endpoints (missing or invalid:
401; ``forbidden_keys``: 403; ``out_of_credit_keys``: the provider's billing
error) and the same fault rules (``FakeLLMServer.add_fault``: a status or a
dropped connection), but no rate limits: the providers limit batches by what
is queued (``batch_queue_limit``), not per minute. Every call is logged like a
chat request (its JSON body when it has one), so tests can count
submissions; :meth:`BatchAPIs.handle` answers None for a path it does not serve.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from .batch_anthropic import AnthropicBatchEndpoints
from .batch_gemini import GeminiBatchEndpoints
from .batch_http import BatchCall, BatchEndpoints, ChatEngine
from .batch_jobs import BatchBook, BatchReply
from .batch_openai import OpenAIBatchEndpoints
from .dialect_base import BadRequest
from .log import RequestRecord

__all__ = ["BatchAPIs"]

_OTHER_PATHS = ("/v1/files", "/upload/", "/download/")  # batch endpoints without "batch" in the path


class BatchAPIs:
    """Every provider's batch endpoints over one :class:`BatchBook`."""

    def __init__(self, engine: ChatEngine, book: BatchBook) -> None:
        self.engine = engine
        self.book = book
        self.endpoints: tuple[BatchEndpoints, ...] = (
            OpenAIBatchEndpoints(book, engine), AnthropicBatchEndpoints(book, engine),
            GeminiBatchEndpoints(book, engine),
        )  # fmt: skip

    def handle(self, method: str, path: str, query_string: str, headers: Mapping[str, str],
               raw: bytes) -> BatchReply | None:  # fmt: skip
        if "batch" not in path and not path.startswith(_OTHER_PATHS):  # chat requests: at once
            return None
        query = dict(parse_qsl(query_string))
        for endpoints in self.endpoints:
            found = endpoints.route(method, path)
            if found is None:
                continue
            handler, params = found
            key = endpoints.dialect.api_key(headers, query)
            call = BatchCall(method, path, query, headers, raw, key or "", params)
            reply = self._denied(endpoints, call) or self._faulted(endpoints, call)
            if reply is None:
                try:
                    reply = handler(call)
                except BadRequest as exc:
                    reply = endpoints.error(400, exc.message)
            self._log(endpoints, call, reply)
            return reply
        return None

    def _denied(self, endpoints: BatchEndpoints, call: BatchCall) -> BatchReply | None:
        engine = self.engine
        if not call.key or (engine.valid_keys is not None and call.key not in engine.valid_keys):
            return endpoints.error(401, "Invalid API key." if call.key else "Missing API key.")
        if call.key in engine.forbidden_keys:
            return endpoints.error(403, "This API key may not use this resource.")
        if call.key in engine.out_of_credit_keys:
            status, body = endpoints.dialect.out_of_credit()
            return BatchReply(status, json.dumps(body).encode())
        return None

    def _faulted(self, endpoints: BatchEndpoints, call: BatchCall) -> BatchReply | None:
        fault, _ = self.engine.book.early(call.key, endpoints.provider, False, chat=False)
        if fault is None:
            return None
        if fault.drop:
            return BatchReply(0, drop_after=0)
        status = fault.status or 500
        reply = endpoints.error(status, fault.message or f"Error {status} (injected by the fake server).",
                                fault.error_type)  # fmt: skip
        return reply

    def _log(self, endpoints: BatchEndpoints, call: BatchCall, reply: BatchReply) -> None:
        body: Any = None
        if call.raw and "json" in call.headers.get("content-type", "json"):
            try:
                body = json.loads(call.raw)
            except ValueError:
                body = None
        self.engine.log.add(RequestRecord(
            time=self.engine.clock(), method=call.method, path=call.path, provider=endpoints.provider,
            key=call.key or None, model=None, status=reply.status or None, body=body,
            headers=dict(call.headers), fault="drop" if reply.drop_after is not None else None,
        ))  # fmt: skip
