"""The fake server's brain: from an HTTP request to an :class:`HttpReply`, no sockets.

For an API request: route to a dialect -> authenticate (and out-of-credit
keys) -> parse -> early faults (rules, random, script) -> rate limits -> reply
(script entry, reply function, forced tool call, or echo) -> late faults
(delay, replaced headers, mid-stream).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from .batch_jobs import BatchBook, BatchReply
from .batch_routes import BatchAPIs
from .buckets import Admission, RateLimiter, ServerLimits
from .dialect_anthropic import AnthropicDialect
from .dialect_base import (
    BadRequest,
    Dialect,
    Output,
    StreamEvent,
    build_output,
    default_reply,
    retry_after_headers,
)
from .dialect_gemini import GeminiDialect
from .dialect_openai import OpenAIDialect
from .faults import FaultBook
from .log import RequestLog, RequestRecord
from .replies import (
    REPLY_TYPES,
    Fault,
    ReplyFunction,
    ReplyValue,
    RequestInfo,
    entry_from_json,
    fault_message,
)

__all__ = ["DIALECTS", "Engine", "HttpReply"]

logger = logging.getLogger("llmkit.testing.fake_server")

DIALECTS: tuple[Dialect, ...] = (OpenAIDialect(), AnthropicDialect(), GeminiDialect())
"""Every provider the server speaks; a new provider is one more entry."""

Headers = list[tuple[str, str]]
JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream; charset=utf-8"
@dataclass
class HttpReply:
    """What to write back; the HTTP layer does the I/O.

    ``events`` (not ``None``) makes a chunked SSE stream; ``cut_at`` stops it
    before that event, then sends ``cut_event`` or, when it is ``None``, drops
    the connection. ``drop`` closes without any reply.
    """

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    events: list[StreamEvent] | None = None
    delay: float = 0.0
    interval: float = 0.0
    drop: bool = False
    cut_at: int | None = None
    cut_event: bytes | None = None
    trickle: float = 0.0  # seconds per body byte (0: the body at once)
    on_done: Callable[[], None] | None = None


@dataclass
class _Call:
    """One API request in flight through the engine."""

    dialect: Dialect
    method: str
    path: str
    headers: Mapping[str, str]
    time: float
    key: str | None = None
    body: Any = None
    info: RequestInfo | None = None
    admission: Admission | None = None


class Engine:
    """Shared state of one fake server: limits, script, faults, log (all thread-safe)."""

    def __init__(
        self,
        *,
        reply: ReplyFunction | None = None,
        limits: ServerLimits | None = None,
        key_limits: Mapping[str, ServerLimits] | None = None,
        valid_keys: Collection[str] | None = None,
        forbidden_keys: Collection[str] = (),
        out_of_credit_keys: Collection[str] = (),
        latency: float = 0.0,
        stream_interval: float = 0.0,
        fault_rates: Mapping[int | str, float] | None = None,
        seed: int | None = None,
        slow_seconds: float = 1.0,
        fault_retry_after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        log_limit: int | None = 100_000,
        batch_time_scale: float = 1000.0,
        batch_seconds: float = 600.0,
        batch_queue_limit: int | None = None,
    ) -> None:
        self.reply = reply
        self.clock = clock
        self.wall_offset = wall_clock() - clock()  # Unix time = server clock + offset
        self.latency = latency
        self.stream_interval = stream_interval
        self.valid_keys = None if valid_keys is None else frozenset(valid_keys)
        self.forbidden_keys = frozenset(forbidden_keys)
        self.out_of_credit_keys = frozenset(out_of_credit_keys)
        # With the real clock, fixed windows are the wall clock's seconds and minutes (a provider's
        # are, and its whole-second reset stamps are then exact); an injected clock keeps its own.
        origin = self.wall_offset if clock is time.monotonic else 0.0
        self.limiter = RateLimiter(limits, key_limits, clock, origin)
        self.book = FaultBook(fault_rates, seed, slow_seconds, fault_retry_after)
        self.log = RequestLog(log_limit)
        book = BatchBook(clock, self.wall_offset, batch_time_scale, batch_seconds, batch_queue_limit)
        self.batches = BatchAPIs(self, book)

    def reset(self) -> None:
        """Clear the log, the script, the fault rules and every key's limit state."""
        self.log.clear()
        self.book.reset()
        self.limiter.reset()
        self.batches.book.reset()

    def stats(self) -> dict[str, Any]:
        """The log's counts, plus ``"rate_limits"``: ``{style: {"admitted", "refused"}}`` and
        ``"batches"``: ``{"created", "by_provider", "requests", "answered"}``."""
        batches = self.batches.book.stats()
        return {**self.log.stats(), "rate_limits": self.limiter.counts(), "batches": batches}

    # Entry point ------------------------------------------------------------
    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> HttpReply:
        path, _, query = target.partition("?")
        if path.startswith("/_fake/"):
            return self._admin(method, path, body)
        batch = self.batches.handle(method, path, query, headers, body)
        if batch is not None:
            return self._batch_reply(batch)
        for dialect in DIALECTS:
            endpoint = dialect.route(method, path)
            if endpoint is not None:
                call = _Call(dialect, method, path, headers, self.clock())
                return self._api(call, endpoint, dict(parse_qsl(query)), body)
        message = f"Unknown request URL: {method} {path}."
        return _json(404, DIALECTS[0].error_body(404, message, None))

    def _batch_reply(self, reply: BatchReply) -> HttpReply:
        """A batch endpoint's answer on the wire; ``drop_after`` breaks its body off there."""
        if reply.status == 0:
            return HttpReply(0, delay=self.latency, drop=True)
        headers = [("content-type", reply.content_type), *reply.headers]
        if reply.drop_after is None:
            return HttpReply(reply.status, headers, reply.body, delay=self.latency)
        events = [StreamEvent(reply.body[: reply.drop_after]), StreamEvent(reply.body[reply.drop_after :])]
        return HttpReply(reply.status, headers, events=events, cut_at=1, delay=self.latency)

    def crash_reply(self, exc: BaseException) -> HttpReply:
        """A 500 for an unexpected error inside the server (never a silent hang)."""
        body = DIALECTS[0].error_body(500, f"The fake server failed: {exc!r}", None)
        return _json(500, body)

    # API requests -----------------------------------------------------------
    def _api(self, call: _Call, endpoint: str, query: Mapping[str, str], raw: bytes) -> HttpReply:
        call.key = call.dialect.api_key(call.headers, query)
        denied = self._authenticate(call)
        if denied is not None:
            return denied
        try:
            call.body = json.loads(raw)
        except ValueError:
            return self._error(call, 400, "We could not parse the JSON body of your request.")
        try:
            info = call.info = call.dialect.parse(endpoint, call.path, call.body, call.key)
        except BadRequest as exc:
            return self._error(call, 400, exc.message)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:  # odd shapes deep down
            return self._error(call, 400, f"Invalid request body: {exc}")
        provider, chat = call.dialect.name, endpoint == "chat"
        early, late = self.book.early(call.key, provider, info.stream, chat)
        if early is not None:
            return self._fault(call, early)
        if not chat:
            return self._json_reply(call, 200, call.dialect.count_tokens_body(info))
        assert call.key is not None
        admission = call.admission = self.limiter.admit(call.key, info.input_tokens,
                                                        info.max_tokens)
        if not admission.ok:
            return self._rate_limited(call, admission, late)
        try:
            value = self._choose(call, info, late)
        except BaseException:
            self.limiter.cancel(admission)
            raise
        if isinstance(value, Fault):  # from a reply function
            self.limiter.cancel(admission)
            return self._fault(call, value)
        out = build_output(info, value, call.dialect.tool_id_prefix)
        return self._reply(call, info, out, late)

    def _authenticate(self, call: _Call) -> HttpReply | None:
        if not call.key:
            return self._error(call, 401, "Missing API key: send it in the provider's header.",
                               with_limits=False)
        if self.valid_keys is not None and call.key not in self.valid_keys:
            return self._error(call, 401, "Invalid API key.", with_limits=False)
        if call.key in self.forbidden_keys:
            return self._error(call, 403, "This API key may not use this resource.",
                               with_limits=False)
        if call.key in self.out_of_credit_keys:
            return self._out_of_credit(call)
        return None

    def _out_of_credit(self, call: _Call, fault: Fault | None = None) -> HttpReply:
        status, body = call.dialect.out_of_credit()
        return self._json_reply(call, status, body, fault, with_limits=False)

    def _choose(self, call: _Call, info: RequestInfo, late: list[Fault]) -> ReplyValue:
        entry = self.book.take(call.key, call.dialect.name)
        if isinstance(entry, Fault):
            late.append(entry)
        elif entry is not None:
            return entry
        value = self._generated(info)
        if isinstance(value, Fault) and not value.is_early(info.stream):
            late.append(value)
            return default_reply(info)
        return value

    def generated(self, info: RequestInfo) -> ReplyValue:
        """What ``reply=`` (or the echo) answers ``info`` with (the batch endpoints use it too)."""
        return self._generated(info)

    def _generated(self, info: RequestInfo) -> ReplyValue:
        if self.reply is None:
            return default_reply(info)
        value = self.reply(info)
        if not isinstance(value, REPLY_TYPES):
            raise TypeError(f"reply= must return str, ToolCallReply, Reply or Fault, not {value!r}")
        return value

    def _reply(self, call: _Call, info: RequestInfo, out: Output, late: list[Fault]) -> HttpReply:
        dialect, admission, key = call.dialect, call.admission, call.key
        assert admission is not None and key is not None
        cut = next((f for f in late if f.after_deltas is not None), None)
        self._record(call, 200, out, cut.describe() if cut else _label(late))
        self.log.begin(key)

        def done() -> None:
            self.limiter.settle(admission, out.output_tokens)
            self.log.end(key)

        headers = _replaced(self._headers(call, admission.state), late)
        reply = HttpReply(200, headers, delay=self.latency + sum(f.delay for f in late),
                          trickle=max((f.trickle for f in late), default=0.0), on_done=done)
        reply_id = dialect.reply_id()
        if not info.stream:
            reply.body = _dumps(dialect.reply_body(info, out, reply_id))
            headers.append(("content-type", JSON_TYPE))
            return reply
        headers += [("content-type", SSE_TYPE), ("cache-control", "no-cache")]
        reply.events = dialect.stream_events(info, out, reply_id)
        reply.interval = self.stream_interval
        if cut is not None:
            reply.cut_at = _cut_index(reply.events, cut.after_deltas or 0)
            if cut.status is not None:
                message, kind = fault_message(cut)
                reply.cut_event = dialect.stream_error(cut.status, message, kind)
        return reply

    def _fault(self, call: _Call, fault: Fault) -> HttpReply:
        delay = self.latency + fault.delay
        stream = call.info is not None and call.info.stream
        if fault.drop:
            self._record(call, None, None, fault.describe())
            return HttpReply(0, delay=delay, drop=True)
        if fault.out_of_credit:
            reply = self._out_of_credit(call, fault)
        elif fault.malformed:
            reply = self._json_reply(call, 200, None, fault)
            if stream:
                reply.headers[-1] = ("content-type", SSE_TYPE)
                reply.events = [StreamEvent(call.dialect.malformed_stream())]
            elif fault.body is not None:
                reply.body = _dumps(fault.body)
            else:
                reply.body = b'{"id": "broken", "choices": [{"index": 0, '
        else:
            assert fault.status is not None
            message, kind = fault_message(fault)
            reply = self._error(call, fault.status, message, kind, fault.retry_after, fault)
        reply.delay = delay
        reply.headers = _replaced(reply.headers, [fault])
        return reply

    def _rate_limited(self, call: _Call, admission: Admission, late: list[Fault]) -> HttpReply:
        """The provider's own 429 for a refusal of the rate limiter: its body, its
        rate-limit headers as they stand, and its way of saying when to retry."""
        model = call.info.model if call.info is not None else ""
        body = call.dialect.rate_limit_body(admission, model)
        reply = self._json_reply(call, 429, body, state=admission.state)
        reply.headers += call.dialect.retry_headers(admission.retry_after)
        reply.headers = _replaced(reply.headers, late)
        return reply

    # Reply helpers -----------------------------------------------------------
    def _error(self, call: _Call, status: int, message: str, kind: str | None = None,
               retry_after: float | None = None, fault: Fault | None = None,
               with_limits: bool = True, state: Any = None) -> HttpReply:
        body = call.dialect.error_body(status, message, kind)
        if retry_after is not None:
            body = call.dialect.with_retry_delay(body, retry_after)
        reply = self._json_reply(call, status, body, fault, with_limits, state)
        if retry_after is not None:
            reply.headers += retry_after_headers(retry_after)
        reply.delay = self.latency
        return reply

    def _json_reply(self, call: _Call, status: int, body: Any, fault: Fault | None = None,
                    with_limits: bool = True, state: Any = None) -> HttpReply:
        self._record(call, status, None, fault.describe() if fault else None)
        if state is None and with_limits and call.key:
            state = self.limiter.state(call.key)
        headers = self._headers(call, state or {})
        headers.append(("content-type", JSON_TYPE))
        return HttpReply(status, headers, _dumps(body), delay=self.latency)

    def _headers(self, call: _Call, state: Any) -> Headers:
        headers = [(call.dialect.request_id_header, call.dialect.request_id())]
        if not state:
            return headers
        return headers + call.dialect.ratelimit_headers(state, self.wall_offset)

    def _record(self, call: _Call, status: int | None, out: Output | None,
                fault: str | None) -> None:
        info = call.info
        self.log.add(RequestRecord(
            time=call.time, method=call.method, path=call.path, provider=call.dialect.name,
            key=call.key, model=info.model if info else _model(call.body), status=status,
            body=call.body, headers=dict(call.headers), stream=bool(info and info.stream),
            input_tokens=info.input_tokens if info and status == 200 else 0,
            output_tokens=out.output_tokens if out else 0, fault=fault,
        ))

    # Admin endpoints -----------------------------------------------------------
    def _admin(self, method: str, path: str, raw: bytes) -> HttpReply:
        action = (method, path)
        if action == ("GET", "/_fake/stats"):
            return _json(200, self.stats())
        if action == ("GET", "/_fake/log"):
            return _json(200, {"requests": [r.to_dict() for r in self.log.records()]})
        if action == ("GET", "/_fake/batches"):
            return _json(200, {"batches": self.batches.book.snapshot()})
        if action == ("GET", "/_fake/health"):
            return _json(200, {"ok": True})
        if action == ("POST", "/_fake/reset"):
            self.reset()
            return _json(200, {"ok": True})
        if action in (("POST", "/_fake/script"), ("POST", "/_fake/faults")):
            try:
                data = json.loads(raw or b"{}")
                if path.endswith("script"):
                    self.book.script(entry_from_json(e) for e in data["entries"])
                else:
                    fault = entry_from_json({"fault": data["fault"]})
                    assert isinstance(fault, Fault)
                    self.book.add_rule(fault, data.get("times"))
            except (ValueError, KeyError, TypeError, AssertionError) as exc:
                return _json(400, {"error": {"message": f"bad admin request: {exc}"}})
            return _json(200, {"ok": True, "pending": len(self.book.pending())})
        return _json(404, {"error": {"message": f"Unknown admin endpoint: {method} {path}"}})


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _json(status: int, data: Any) -> HttpReply:
    return HttpReply(status, [("content-type", JSON_TYPE)], _dumps(data))


def _cut_index(events: list[StreamEvent], after_deltas: int) -> int:
    """Where to break a stream: before its delta number ``after_deltas + 1``, or just
    after its last delta when it has no more (so the fault always happens)."""
    seen, last = 0, 0
    for index, event in enumerate(events):
        if event.delta:
            if seen == after_deltas:
                return index
            seen, last = seen + 1, index + 1
    return last


def _replaced(headers: Headers, faults: list[Fault]) -> Headers:
    """``headers`` with those the faults name replaced by the faults' raw values."""
    given = {name.lower(): value for fault in faults for name, value in fault.headers.items()}
    if not given:
        return headers
    kept = [(name, value) for name, value in headers if name.lower() not in given]
    return kept + list(given.items())


def _label(faults: list[Fault]) -> str | None:
    return ", ".join(f.describe() for f in faults) or None


def _model(body: Any) -> str | None:
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None
