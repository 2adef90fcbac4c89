"""What the fake server can answer: tool calls, rich replies, faults, and what a reply function sees."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "REPLY_TYPES",
    "Fault",
    "Reply",
    "ReplyFunction",
    "ReplyValue",
    "RequestInfo",
    "ToolCallReply",
    "entry_from_json",
    "entry_to_json",
    "fault_message",
    "fault_to_json",
]


@dataclass(frozen=True)
class ToolCallReply:
    """A reply that calls a tool (OpenAI ``tool_calls``, Anthropic ``tool_use``, Gemini ``functionCall``).

    ``arguments=None`` builds the arguments from the JSON schema of the tool of
    that name in the request (a minimal valid instance; ``{}`` when the request
    has no such tool). ``id=None`` makes a fresh call id (Gemini's calls then
    have none, as Gemini's API often sends them).
    """

    name: str
    arguments: Mapping[str, Any] | None = None
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """A reply with what real APIs send besides text, each in its provider's documented shape.

    * ``thinking``: a thinking block before the answer (Anthropic ``thinking``
      with a ``signature``; Gemini a ``thought: true`` part; OpenAI only counts
      it, in ``completion_tokens_details.reasoning_tokens``); its tokens are
      output tokens. ``redacted_thinking`` adds Anthropic's ``redacted_thinking``
      block after it.
    * ``refusal``: the model refuses (OpenAI ``content: null`` and
      ``message.refusal``, streamed as ``delta.refusal``; Anthropic
      ``stop_reason: "refusal"`` with ``stop_details.explanation``).
    * ``web_search``: Anthropic runs its web search tool with this query before
      the text: a ``server_tool_use`` block, its ``web_search_tool_result``, and
      usage with ``server_tool_use.web_search_requests`` (the message_delta of
      a stream then carries the cumulative input count, larger than message_start's).
    * ``tool_call``: after the text, a call of the caller's tool (the turn ends
      with ``tool_use`` / ``tool_calls``).
    * ``cached_input_tokens`` / ``cache_write_tokens``: of the request's input
      tokens, read from / written to the prompt cache (OpenAI
      ``prompt_tokens_details.cached_tokens``; Anthropic
      ``cache_read_input_tokens`` / ``cache_creation_input_tokens``; Gemini
      ``cachedContentTokenCount``).
    * ``truncated``: a streamed reply whose body ends cleanly before the
      provider's end (no finish reason, usage or ``[DONE]``; no
      ``message_delta``/``message_stop``; no ``finishReason``).
    """

    text: str = ""
    thinking: str | None = None
    redacted_thinking: bool = False
    refusal: str | None = None
    web_search: str | None = None
    tool_call: ToolCallReply | None = None
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    truncated: bool = False

    def __post_init__(self) -> None:
        if self.cached_input_tokens < 0 or self.cache_write_tokens < 0:
            raise ValueError("Reply: cache token counts must be >= 0")


@dataclass(frozen=True)
class Fault:
    """A failure the server produces on demand: scripted, as a rule, or at random.

    Exactly one way of failing applies, chosen by the fields:

    * ``status`` (4xx/5xx): the provider's error body and headers for that status;
      ``retry_after`` (seconds) adds ``retry-after`` (whole seconds rounded up,
      min 1) and ``retry-after-ms``; ``None`` sends neither.
    * ``drop=True``: the server closes the connection without any reply.
    * ``malformed=True``: a 200 whose body is not valid JSON (or a broken SSE event);
      with ``body=`` too, a 200 whose body is that JSON value instead (valid
      JSON, not what the API documents, e.g. ``{"choices": []}``).
    * ``out_of_credit=True``: the provider's answer to an account out of credit
      (OpenAI: 429 ``insufficient_quota``; Anthropic: 402 ``billing_error``;
      Gemini: 429 ``RESOURCE_EXHAUSTED``, prepaid credits depleted). Not a rate limit.
    * only ``delay`` and/or ``headers``: a normal reply, ``delay`` seconds late,
      whose headers of the names in ``headers`` are replaced by those raw values
      (poisoned rate-limit headers, see :meth:`poisoned_headers`).
    * ``trickle=s`` (seconds): a normal reply whose headers come at once and whose
      body then arrives one byte every ``s`` seconds (a server that is slow, not
      silent: every read gets a byte before a per-read timeout).
    * ``after_deltas=N`` with ``status`` or ``drop``: on a streamed request, a
      normal stream that breaks after N content deltas, with an SSE error event
      (``status``) or a dropped connection (``drop``); a reply with N deltas
      or fewer breaks after its last one. A request that does not stream gets
      the plain fault instead.

    ``delay`` (seconds) waits before any of these. ``key`` and ``provider``
    (``"openai"``, ``"anthropic"``) restrict the fault to matching requests;
    ``None`` matches all. ``message``/``error_type`` override the provider's
    default error message and type; ``headers`` replace the reply's headers of
    the same names (or are added), on error replies too.

    Faults with ``status``, ``drop``, ``malformed`` or ``out_of_credit`` (and no
    mid-stream part) are served before rate limiting and charge nothing; the
    others go through the key's limits like a normal reply (a rate-limit 429
    then gets their ``headers`` too).
    """

    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    drop: bool = False
    malformed: bool = False
    out_of_credit: bool = False
    after_deltas: int | None = None
    message: str | None = None
    error_type: str | None = None
    key: str | None = None
    provider: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    body: Any = field(default=None, hash=False, compare=False)
    trickle: float = 0.0

    def __post_init__(self) -> None:
        ways = (self.status is not None) + self.drop + self.malformed + self.out_of_credit
        if ways > 1:
            raise ValueError("Fault: choose one of status=, drop=True, malformed=True, "
                             "out_of_credit=True")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError(f"Fault: status must be 4xx or 5xx, got {self.status}")
        if self.after_deltas is not None and (self.after_deltas < 0 or not ways or self.malformed
                                              or self.out_of_credit):
            raise ValueError("Fault: after_deltas needs status= or drop=True and must be >= 0")
        if self.trickle < 0 or (self.trickle and ways):
            raise ValueError("Fault: trickle= (seconds per body byte, >= 0) goes with a normal reply")
        if self.delay < 0 or (self.retry_after is not None and self.retry_after < 0):
            raise ValueError("Fault: delay and retry_after must be >= 0")
        if self.body is not None and not self.malformed:
            raise ValueError("Fault: body= goes with malformed=True (a 200 that is not what the API sends)")

    # Shorthands -------------------------------------------------------------
    @classmethod
    def rate_limited(cls, retry_after: float = 1.0, **kw: Any) -> Fault:
        """429 with ``retry-after``/``retry-after-ms`` headers."""
        return cls(status=429, retry_after=retry_after, **kw)

    @classmethod
    def overloaded(cls, **kw: Any) -> Fault:
        """529 (Anthropic ``overloaded_error``)."""
        return cls(status=529, **kw)

    @classmethod
    def server_error(cls, status: int = 500, **kw: Any) -> Fault:
        """500 (or another 5xx)."""
        return cls(status=status, **kw)

    @classmethod
    def dropped(cls, **kw: Any) -> Fault:
        """Close the connection without replying."""
        return cls(drop=True, **kw)

    @classmethod
    def malformed_body(cls, **kw: Any) -> Fault:
        """A 200 whose body is not valid JSON."""
        return cls(malformed=True, **kw)

    @classmethod
    def no_credit(cls, **kw: Any) -> Fault:
        """The provider's out-of-credit error (a billing error, not a rate limit)."""
        return cls(out_of_credit=True, **kw)

    @classmethod
    def poisoned_headers(cls, headers: Mapping[str, str], **kw: Any) -> Fault:
        """A normal reply whose headers of these names carry these raw values instead,
        e.g. ``{"x-ratelimit-remaining-requests": "-1e12"}``."""
        return cls(headers={name.lower(): str(value) for name, value in headers.items()}, **kw)

    @classmethod
    def slow(cls, seconds: float, **kw: Any) -> Fault:
        """A normal reply, ``seconds`` late."""
        return cls(delay=seconds, **kw)

    @classmethod
    def mid_stream(cls, after: int = 1, status: int | None = None, **kw: Any) -> Fault:
        """Break a stream after ``after`` deltas: error event with ``status``, else drop."""
        return cls(after_deltas=after, status=status, drop=status is None, **kw)

    # Used by the server -----------------------------------------------------
    def applies_to(self, key: str | None, provider: str) -> bool:
        """Whether this fault targets a request with this key and provider."""
        return (self.key is None or self.key == key) and (
            self.provider is None or self.provider == provider
        )

    def is_early(self, stream: bool) -> bool:
        """Whether it replaces the reply before rate limiting (see the class doc)."""
        if self.malformed or self.out_of_credit:
            return True
        failing = self.status is not None or self.drop
        return failing and (self.after_deltas is None or not stream)

    def describe(self) -> str:
        """A short label for the request log and stats."""
        if self.malformed:
            return "malformed"
        if self.out_of_credit:
            return "out_of_credit"
        if self.after_deltas is not None:
            return f"stream_{'drop' if self.drop else self.status}@{self.after_deltas}"
        if self.drop:
            return "drop"
        if self.status is not None:
            return str(self.status)
        if self.trickle:
            return f"trickle {self.trickle:g}s/byte"
        return f"delay {self.delay:g}s" if self.delay or not self.headers else "headers"


@dataclass(frozen=True)
class RequestInfo:
    """What a ``reply=`` function sees of one chat request.

    ``messages`` are plain ``{"role", "content"}`` dicts with text content (text
    parts joined by newlines); a system prompt (OpenAI system/developer
    message or Anthropic top-level ``system``) comes first with role
    ``"system"``. ``params`` is the request body without ``messages`` and
    ``system``. ``tools`` maps each tool name to its JSON schema;
    ``forced_tool`` names the tool the request forces, if any.
    """

    provider: str
    model: str
    messages: list[dict[str, str]]
    params: dict[str, Any]
    key: str | None
    path: str = ""
    stream: bool = False
    max_tokens: int | None = None
    input_tokens: int = 0
    tools: dict[str, Any] = field(default_factory=dict)
    forced_tool: str | None = None
    response_schema: Any = None
    include_usage: bool = False
    endpoint: str = "chat"

    @property
    def last_user_text(self) -> str:
        """The text of the last user message (``""`` when there is none)."""
        for message in reversed(self.messages):
            if message["role"] == "user":
                return message["content"]
        return ""


ReplyValue = str | ToolCallReply | Reply | Fault
ReplyFunction = Callable[[RequestInfo], ReplyValue]
REPLY_TYPES = (str, ToolCallReply, Reply, Fault)
"""What a script entry or a ``reply=`` function may be."""


def entry_to_json(entry: ReplyValue) -> Any:
    """Encode a script entry for the admin endpoint ``POST /_fake/script``."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, ToolCallReply):
        return {"tool_call": _call_to_json(entry)}
    if isinstance(entry, Reply):
        data = {name: getattr(entry, name) for name in Reply.__dataclass_fields__}
        data["tool_call"] = None if entry.tool_call is None else _call_to_json(entry.tool_call)
        return {"reply": data}
    return {"fault": fault_to_json(entry)}


def _call_to_json(call: ToolCallReply) -> dict[str, Any]:
    args = None if call.arguments is None else dict(call.arguments)
    return {"name": call.name, "arguments": args, "id": call.id}


def fault_to_json(fault: Fault) -> dict[str, Any]:
    data = {name: getattr(fault, name) for name in Fault.__dataclass_fields__}
    data["headers"] = dict(fault.headers)
    return data


def entry_from_json(data: Any) -> ReplyValue:
    """Decode what :func:`entry_to_json` made; raise ``ValueError`` when it is not one."""
    if isinstance(data, str):
        return data
    if isinstance(data, dict) and isinstance(data.get("tool_call"), dict):
        call = data["tool_call"]
        return ToolCallReply(str(call["name"]), call.get("arguments"), call.get("id"))
    if isinstance(data, dict) and isinstance(data.get("reply"), dict):
        fields = dict(data["reply"])
        call = fields.get("tool_call")
        if isinstance(call, dict):
            fields["tool_call"] = ToolCallReply(str(call["name"]), call.get("arguments"), call.get("id"))
        try:
            return Reply(**fields)
        except TypeError as exc:
            raise ValueError(f"invalid reply: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("fault"), dict):
        try:
            return Fault(**data["fault"])
        except TypeError as exc:
            raise ValueError(f"invalid fault: {exc}") from exc
    raise ValueError(f"not a script entry: {data!r}")


_DEFAULT_MESSAGES = {
    429: "Rate limit exceeded (injected by the fake server).",
    500: "Internal server error (injected by the fake server).",
    503: "Service unavailable (injected by the fake server).",
    529: "Overloaded",
}


def fault_message(fault: Fault) -> tuple[str, str | None]:
    """The error message and type an injected fault is answered with."""
    status = fault.status or 500
    default = _DEFAULT_MESSAGES.get(status, f"Error {status} (injected by the fake server).")
    return fault.message or default, fault.error_type
