"""The contract every provider dialect of the fake server fulfils, and shared helpers.

A dialect knows one provider's wire format: which paths it serves, where the
API key is, how to read a request into a :class:`RequestInfo`, and how to
write replies, SSE streams, errors and rate-limit headers. It holds no state;
the engine decides what to answer. Adding a provider (say Gemini) means one
more module with a :class:`Dialect` subclass, listed in ``engine.DIALECTS``.
"""

from __future__ import annotations

import json
import math
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar

from .buckets import INPUT, OUTPUT, REQUESTS, Admission, BucketState
from .replies import Reply, RequestInfo, ToolCallReply
from .schema import example_from_schema
from .tokens import count_tokens, truncate_tokens

__all__ = [
    "BadRequest",
    "Dialect",
    "Output",
    "StreamEvent",
    "build_output",
    "default_reply",
    "dumps",
    "fragments",
    "go_duration",
    "new_id",
    "proto_duration",
    "retry_after_headers",
    "rfc3339",
    "sse",
]

Headers = list[tuple[str, str]]


class BadRequest(Exception):
    """The request body is not what the provider accepts (answered with a 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class Output:
    """A decided reply, independent of the provider's format.

    ``finish`` is ``"stop"``, ``"length"`` (cut at max_tokens), ``"tool"`` or
    ``"refusal"``. A tool call comes after the text, if there is text. The
    other fields are a :class:`~.replies.Reply`'s extras (``thinking_tokens``
    is part of ``output_tokens``; the cache counts are part of the input).
    """

    text: str = ""
    tool_name: str | None = None
    tool_arguments: Mapping[str, Any] | None = None
    tool_id: str = ""
    finish: str = "stop"
    output_tokens: int = 0
    thinking: str = ""
    thinking_tokens: int = 0
    redacted_thinking: bool = False
    refusal: str = ""
    web_search: str | None = None
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    truncated: bool = False

    @property
    def arguments_json(self) -> str:
        return dumps(self.tool_arguments or {})


@dataclass(frozen=True)
class StreamEvent:
    """One SSE event; ``delta`` marks content deltas (where mid-stream faults cut)."""

    data: bytes
    delta: bool = False


def build_output(
    info: RequestInfo, value: str | ToolCallReply | Reply, id_prefix: str | None = "call_"
) -> Output:
    """Turn a reply value into an :class:`Output`, applying ``max_tokens``."""
    if isinstance(value, ToolCallReply):
        return _tool_output(info, value, id_prefix)
    if isinstance(value, Reply):
        return _rich_output(info, value, id_prefix)
    text, cut = truncate_tokens(str(value), info.max_tokens)
    return Output(text=text, finish="length" if cut else "stop", output_tokens=count_tokens(text))


def _tool_output(info: RequestInfo, value: ToolCallReply, id_prefix: str | None) -> Output:
    args = value.arguments
    if args is None:
        args = example_from_schema(info.tools.get(value.name) or {"type": "object"})
    call_id = value.id or ("" if id_prefix is None else new_id(id_prefix))
    tokens = count_tokens(dumps(args))
    return Output(tool_name=value.name, tool_arguments=args, tool_id=call_id,
                  finish="tool", output_tokens=tokens)  # fmt: skip


def _rich_output(info: RequestInfo, reply: Reply, id_prefix: str | None) -> Output:
    tool = _tool_output(info, reply.tool_call, id_prefix) if reply.tool_call else Output()
    thinking = reply.thinking or ""
    budget = None if info.max_tokens is None else max(info.max_tokens - count_tokens(thinking), 0)
    text, cut = truncate_tokens(reply.text, budget)
    refusal = reply.refusal or ""
    finish = "tool" if reply.tool_call else "length" if cut else "stop"
    if reply.refusal is not None:
        finish = "refusal"
    cached = min(reply.cached_input_tokens, info.input_tokens)
    written = min(reply.cache_write_tokens, info.input_tokens - cached)
    thinking_tokens = count_tokens(thinking) if thinking else 0
    tokens = count_tokens(text) + count_tokens(refusal) + thinking_tokens + tool.output_tokens
    return Output(
        text=text, tool_name=tool.tool_name, tool_arguments=tool.tool_arguments, tool_id=tool.tool_id,
        finish=finish, output_tokens=tokens, thinking=thinking, thinking_tokens=thinking_tokens,
        redacted_thinking=reply.redacted_thinking, refusal=refusal, web_search=reply.web_search,
        cached_input_tokens=cached, cache_write_tokens=written, truncated=reply.truncated,
    )  # fmt: skip


def default_reply(info: RequestInfo) -> str | ToolCallReply:
    """A forced tool call, a JSON instance of a requested schema, or the echo."""
    if info.forced_tool is not None:
        return ToolCallReply(info.forced_tool)
    if info.response_schema is not None:
        return dumps(example_from_schema(info.response_schema))
    return info.last_user_text


def fragments(text: str, size: int = 8) -> list[str]:
    """Cut ``text`` into pieces of ``size`` characters (streamed tool arguments)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def sse(data: Any, event: str | None = None) -> bytes:
    """Format one server-sent event."""
    payload = data if isinstance(data, str) else dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def go_duration(seconds: float) -> str:
    """Format a duration like Go's ``time.Duration`` (``"20ms"``, ``"1s"``, ``"6m0s"``)."""
    ms = max(0, round(seconds * 1000))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    minutes, ms = divmod(ms, 60_000)
    hours, minutes = divmod(minutes, 60)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    return f"{minutes}m{secs}" if minutes else secs


def proto_duration(seconds: float) -> str:
    """A protobuf ``Duration`` in JSON (``"2s"``, ``"0.25s"``), rounded up to the millisecond
    so that waiting that long is always enough."""
    millis = max(0, math.ceil(seconds * 1000 - 1e-6))
    return f"{millis / 1000:.3f}".rstrip("0").rstrip(".") + "s"


def rfc3339(wall: float) -> str:
    """Unix time ``wall`` as RFC 3339 in UTC, rounded up to the whole second
    (``2024-01-01T00:00:05Z``): by then the moment has surely come."""
    when = datetime.fromtimestamp(math.ceil(wall - 1e-6), timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def retry_after_headers(seconds: float) -> Headers:
    """``retry-after`` (whole seconds, rounded up, at least 1) and ``retry-after-ms``."""
    whole = max(1, math.ceil(seconds - 1e-9))
    millis = max(1, math.ceil(seconds * 1000 - 1e-6))
    return [("retry-after", str(whole)), ("retry-after-ms", str(millis))]


def limit_name(dimension: str) -> str:
    """``"requests"``, ``"input tokens"``, ``"output tokens"`` or ``"tokens"``."""
    return dimension.replace("_", " ")


def used_of(admission: Admission) -> int:
    """How much of its current allowance the refusing dimension has used."""
    state = admission.state.get(admission.exceeded)
    remaining = state.remaining if state is not None else 0
    return max(0, round(admission.capacity - remaining))


LIMIT_ABBREVIATIONS = {REQUESTS: "RPM", INPUT: "ITPM", OUTPUT: "OTPM"}


def limit_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class Dialect(ABC):
    """One provider's wire format (stateless)."""

    name: ClassVar[str]
    request_id_header: ClassVar[str]
    # How fresh tool call ids start; None: the provider gives calls no id unless scripted.
    tool_id_prefix: ClassVar[str | None] = "call_"

    @abstractmethod
    def route(self, method: str, path: str) -> str | None:
        """The endpoint (``"chat"``, ``"count_tokens"``) this dialect serves at ``path``."""

    @abstractmethod
    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The API key of the request (headers have lower-case names)."""

    @abstractmethod
    def parse(self, endpoint: str, path: str, body: Any, key: str | None) -> RequestInfo:
        """Read a decoded JSON body; raise :class:`BadRequest` when it is invalid."""

    @abstractmethod
    def reply_body(self, info: RequestInfo, out: Output, reply_id: str) -> dict[str, Any]:
        """The JSON body of a non-streamed reply."""

    @abstractmethod
    def stream_events(self, info: RequestInfo, out: Output, reply_id: str) -> list[StreamEvent]:
        """The SSE events of a streamed reply, the terminator included."""

    @abstractmethod
    def count_tokens_body(self, info: RequestInfo) -> dict[str, Any]:
        """The body of a token-count reply."""

    @abstractmethod
    def error_body(self, status: int, message: str, error_type: str | None) -> dict[str, Any]:
        """The provider's error body for ``status``."""

    @abstractmethod
    def stream_error(self, status: int, message: str, error_type: str | None) -> bytes:
        """The SSE event that reports an error in the middle of a stream."""

    @abstractmethod
    def malformed_stream(self) -> bytes:
        """An SSE event whose data is not valid JSON."""

    @abstractmethod
    def ratelimit_headers(self, state: Mapping[str, BucketState], wall_offset: float) -> Headers:
        """Rate-limit headers for a key's limits (only the limits that exist);
        ``wall_offset`` maps the server clock to Unix time (``wall = clock + offset``)."""

    @abstractmethod
    def rate_limit_body(self, refusal: Admission, model: str) -> dict[str, Any]:
        """The body of the 429 the provider sends when its rate limiter refuses a request."""

    @abstractmethod
    def out_of_credit(self) -> tuple[int, dict[str, Any]]:
        """The status and body the provider sends to a key whose account has no credit left."""

    def retry_headers(self, seconds: float) -> Headers:
        """The headers of a rate-limit 429 that say when to retry (OpenAI: both kinds)."""
        return retry_after_headers(seconds)

    def with_retry_delay(self, body: dict[str, Any], seconds: float) -> dict[str, Any]:
        """An error ``body`` that also says, in the body, to retry after ``seconds``
        (Gemini's RetryInfo detail); by default the retry-after headers say it alone."""
        return body

    def reply_id(self) -> str:
        """A fresh id for a reply body."""
        return new_id("id_")

    def request_id(self) -> str:
        return new_id("req_")
