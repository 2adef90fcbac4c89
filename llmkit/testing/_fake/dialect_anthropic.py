"""Anthropic Messages, as the fake server speaks it.

``POST /v1/messages`` (non-streamed and SSE) and ``POST /v1/messages/count_tokens``.

Besides text and tool use (see :class:`~.replies.Reply`): ``thinking`` and
``redacted_thinking`` blocks (streamed as ``thinking_delta`` pieces and a
``signature_delta``), a ``server_tool_use`` web search with its
``web_search_tool_result``, ``stop_reason: "refusal"`` with ``stop_details``,
cache reads and writes in ``usage``, and streams truncated before
``message_delta``. Requests are checked as Anthropic checks them where
llmkit depends on it: with ``thinking`` enabled, the budget must be below
``max_tokens``, and the last assistant turn of a tool-use loop must start with
its thinking block (else the documented 400).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .buckets import INPUT, OUTPUT, REQUESTS, TOKENS, Admission, BucketState
from .dialect_base import (
    BadRequest,
    Dialect,
    Headers,
    Output,
    StreamEvent,
    dumps,
    fragments,
    limit_name,
    limit_text,
    new_id,
    retry_after_headers,
    rfc3339,
    sse,
)
from .replies import RequestInfo
from .tokens import IMAGE_TOKENS, count_tokens, split_deltas

__all__ = ["AnthropicDialect"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool": "tool_use", "refusal": "refusal"}
SIGNATURE = "ZmFrZSBzZXJ2ZXIgdGhpbmtpbmcgc2lnbmF0dXJl"  # opaque to clients
REDACTED = "ZmFrZSBzZXJ2ZXIgcmVkYWN0ZWQgdGhpbmtpbmc="
_THINKING_FIRST = (
    "messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. "
    "When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding "
    "the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks "
    "from previous turns. To avoid this requirement, disable `thinking`."
)
_PATHS = {"/v1/messages": "chat", "/v1/messages/count_tokens": "count_tokens"}
_HEADER_NAMES = ((REQUESTS, "requests"), (INPUT, "input-tokens"), (OUTPUT, "output-tokens"))
_CREDIT_MESSAGE = ("Your credit balance is too low to access the Anthropic API. Please go to "
                   "Plans & Billing to upgrade or purchase credits.")


def read_blocks(content: Any, where: str) -> tuple[str, int]:
    """Return the text of a content (string or blocks) and its token count."""
    if isinstance(content, str):
        return content, count_tokens(content)
    if not isinstance(content, list):
        raise BadRequest(f"{where}: Input should be a valid string or list", where)
    texts, tokens = [], 0
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise BadRequest(f"{where}.{index}: Input should be a content block", where)
        kind = block["type"]
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
            tokens += count_tokens(block["text"])
        elif kind in ("thinking", "redacted_thinking"):
            pass  # earlier turns' thinking is stripped from the context: it costs no input
        elif kind == "tool_use":
            tokens += count_tokens(dumps(block.get("input", {})))
        elif kind == "tool_result":
            result = block.get("content", "")
            tokens += read_blocks(result, f"{where}.{index}.content")[1] if result else 0
        else:  # image, document...
            tokens += IMAGE_TOKENS
    return "\n".join(texts), tokens


class AnthropicDialect(Dialect):
    name = "anthropic"
    request_id_header = "request-id"
    tool_id_prefix = "toolu_"

    def route(self, method: str, path: str) -> str | None:
        return _PATHS.get(path) if method == "POST" else None

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        key = headers.get("x-api-key", "").strip()
        if key:
            return key
        auth = headers.get("authorization", "")  # the SDK's auth_token
        return auth[7:].strip() or None if auth[:7].lower() == "bearer " else None

    def parse(self, endpoint: str, path: str, body: Any, key: str | None) -> RequestInfo:
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("model: Field required", "model")
        raw = body.get("messages")
        if not isinstance(raw, list) or not raw:
            raise BadRequest("messages: Field required (a non-empty list)", "messages")
        max_tokens = body.get("max_tokens")
        if endpoint == "chat" and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise BadRequest("max_tokens: Field required (an integer >= 1)", "max_tokens")
        messages, tokens = [], 0
        if body.get("system"):
            text, tokens = read_blocks(body["system"], "system")
            messages.append({"role": "system", "content": text})
        for index, message in enumerate(raw):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise BadRequest(f"messages.{index}.role: Input should be 'user' or 'assistant'")
            text, count = read_blocks(message.get("content"), f"messages.{index}.content")
            messages.append({"role": message["role"], "content": text})
            tokens += count
        _check_thinking(body, raw)
        tools = {}
        for tool in body.get("tools") or []:
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise BadRequest("tools: each tool needs a name", "tools")
            if "type" in tool and "input_schema" not in tool:
                continue  # a server tool (web_search_20250305...): Anthropic runs it
            tools[tool["name"]] = tool.get("input_schema") or {"type": "object"}
        return RequestInfo(
            provider=self.name, model=model, messages=messages, key=key, path=path,
            params={k: v for k, v in body.items() if k not in ("messages", "system")},
            stream=bool(body.get("stream")), max_tokens=max_tokens, input_tokens=tokens,
            tools=tools, forced_tool=_forced_tool(body.get("tool_choice"), tools),
            endpoint=endpoint,
        )

    def reply_id(self) -> str:
        return new_id("msg_")

    def _content(self, out: Output) -> list[dict[str, Any]]:
        """The reply's content blocks, in Anthropic's order."""
        blocks: list[dict[str, Any]] = []
        if out.thinking:
            blocks.append({"type": "thinking", "thinking": out.thinking, "signature": SIGNATURE})
        if out.redacted_thinking:
            blocks.append({"type": "redacted_thinking", "data": REDACTED})
        if out.web_search is not None:
            blocks += _web_search(out.web_search)
        if out.text or out.tool_name is None:
            blocks.append({"type": "text", "text": out.text})
        if out.tool_name is not None:
            blocks.append({"type": "tool_use", "id": out.tool_id, "name": out.tool_name,
                           "input": dict(out.tool_arguments or {})})  # fmt: skip
        return blocks

    def _usage(self, info: RequestInfo, out: Output, output_tokens: int, final: bool) -> dict[str, Any]:
        searched = _SEARCH_TOKENS if out.web_search is not None and final else 0
        usage: dict[str, Any] = {
            "input_tokens": info.input_tokens - out.cached_input_tokens - out.cache_write_tokens + searched,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": out.cache_write_tokens,
            "cache_read_input_tokens": out.cached_input_tokens,
        }
        if final and out.thinking_tokens:
            usage["output_tokens_details"] = {"thinking_tokens": out.thinking_tokens}
        if final and out.web_search is not None:
            usage["server_tool_use"] = {"web_search_requests": 1}
        return usage

    def _message(self, info: RequestInfo, reply_id: str, content: list[Any], out: Output,
                 final: bool) -> dict[str, Any]:  # fmt: skip
        message: dict[str, Any] = {
            "id": reply_id, "type": "message", "role": "assistant", "model": info.model,
            "content": content, "stop_reason": _STOP[out.finish] if final else None, "stop_sequence": None,
            "usage": self._usage(info, out, out.output_tokens if final else 1, final),
        }
        if final and out.finish == "refusal":
            message["stop_details"] = _refusal_details(out)
        return message

    def reply_body(self, info: RequestInfo, out: Output, reply_id: str) -> dict[str, Any]:
        return self._message(info, reply_id, self._content(out), out, final=True)

    def stream_events(self, info: RequestInfo, out: Output, reply_id: str) -> list[StreamEvent]:
        def event(name: str, data: dict[str, Any], delta: bool = False) -> StreamEvent:
            return StreamEvent(sse({"type": name, **data}, event=name), delta)

        events = [event("message_start", {"message": self._message(info, reply_id, [], out, final=False)}),
                  event("ping", {})]  # fmt: skip
        for index, block in enumerate(self._content(out)):
            start, deltas = _streamed(block)
            events.append(event("content_block_start", {"index": index, "content_block": start}))
            events += [event("content_block_delta", {"index": index, "delta": d}, True) for d in deltas]
            events.append(event("content_block_stop", {"index": index}))
        if out.truncated:
            return events
        delta: dict[str, Any] = {"stop_reason": _STOP[out.finish], "stop_sequence": None}
        if out.finish == "refusal":
            delta["stop_details"] = _refusal_details(out)
        usage = self._usage(info, out, out.output_tokens, final=True)
        if not (out.web_search is not None or out.cached_input_tokens or out.cache_write_tokens):
            usage = {k: v for k, v in usage.items() if k in ("output_tokens", "output_tokens_details")}
        return [*events, event("message_delta", {"delta": delta, "usage": usage}), event("message_stop", {})]

    def count_tokens_body(self, info: RequestInfo) -> dict[str, Any]:
        return {"input_tokens": info.input_tokens}

    def error_body(self, status: int, message: str, error_type: str | None) -> dict[str, Any]:
        kind = error_type or _ERROR_TYPES.get(status) or (
            "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def stream_error(self, status: int, message: str, error_type: str | None) -> bytes:
        return sse(self.error_body(status, message, error_type), event="error")

    def malformed_stream(self) -> bytes:
        return b'event: message_start\ndata: {"type": "message_start", "message": {\n\n'

    def rate_limit_body(self, refusal: Admission, model: str) -> dict[str, Any]:
        """Anthropic's ``rate_limit_error``, naming the limit that refused."""
        limit = refusal.state[refusal.exceeded].limit
        amount = f"{int(limit):,}" if float(limit).is_integer() else f"{limit:g}"
        message = (
            f"This request would exceed the rate limit for your organization of {amount} "
            f"{limit_name(refusal.exceeded)} per minute. For details, refer to: "
            "https://docs.claude.com/en/api/rate-limits. You can see the response headers for "
            "current usage. Please reduce the prompt length or the maximum tokens requested, "
            "or try again later.")  # fmt: skip
        return self.error_body(429, message, "rate_limit_error")

    def out_of_credit(self) -> tuple[int, dict[str, Any]]:
        """The documented 402 ``billing_error``."""
        return 402, self.error_body(402, _CREDIT_MESSAGE, "billing_error")

    def retry_headers(self, seconds: float) -> Headers:
        """Anthropic documents ``retry-after`` in whole seconds only."""
        return retry_after_headers(seconds)[:1]

    def ratelimit_headers(self, state: Mapping[str, BucketState], wall_offset: float) -> Headers:
        """``anthropic-ratelimit-{requests,input-tokens,output-tokens,tokens}-{limit,remaining,
        reset}``; ``tokens-*`` shows the most restrictive token limit when there is no combined
        one; ``reset`` is an RFC 3339 time (the server clock mapped to wall time)."""
        headers: Headers = []
        tokens = state.get(TOKENS) or _tightest(state.get(INPUT), state.get(OUTPUT))
        for name, bucket in [(label, state.get(b)) for b, label in _HEADER_NAMES] + [
                ("tokens", tokens)]:
            if bucket is not None:
                prefix = f"anthropic-ratelimit-{name}"
                headers += [
                    (f"{prefix}-limit", limit_text(bucket.limit)),
                    (f"{prefix}-remaining", str(bucket.remaining)),
                    (f"{prefix}-reset", rfc3339(bucket.reset_at + wall_offset)),
                ]
        return headers


_SEARCH_TOKENS = 1200  # what a search's results add to the input (message_delta's input count grows by it)


def _web_search(query: str) -> list[dict[str, Any]]:
    call_id = new_id("srvtoolu_")
    result = {"type": "web_search_result", "title": f"Results for {query}", "url": "https://example.com/search",
              "encrypted_content": "ZmFrZSBzZWFyY2ggcmVzdWx0", "page_age": "1 day ago"}  # fmt: skip
    return [
        {"type": "server_tool_use", "id": call_id, "name": "web_search", "input": {"query": query}},
        {"type": "web_search_tool_result", "tool_use_id": call_id, "content": [result]},
    ]


def _refusal_details(out: Output) -> dict[str, Any]:
    return {"type": "refusal", "category": None, "explanation": out.refusal or None}


def _streamed(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A content block as its ``content_block_start`` and its deltas."""
    kind = block["type"]
    if kind == "text":
        texts = [{"type": "text_delta", "text": p} for p in split_deltas(block["text"])]
        return {"type": "text", "text": ""}, texts
    if kind == "thinking":
        pieces = [{"type": "thinking_delta", "thinking": p} for p in split_deltas(block["thinking"])]
        return {"type": "thinking", "thinking": "", "signature": ""}, [
            *pieces, {"type": "signature_delta", "signature": block["signature"]}]  # fmt: skip
    if kind in ("tool_use", "server_tool_use"):
        arguments = fragments(dumps(block["input"]))
        return {**block, "input": {}}, [{"type": "input_json_delta", "partial_json": p} for p in arguments]
    return block, []  # redacted thinking, tool results: whole at the start


def _check_thinking(body: dict[str, Any], messages: list[Any]) -> None:
    """Anthropic's own checks of a request with thinking enabled (see the module doc)."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024:
        raise BadRequest("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    if budget >= body.get("max_tokens", 0):
        raise BadRequest("`max_tokens` must be greater than `thinking.budget_tokens`.", "max_tokens")
    turns = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"]
    content = messages[turns[-1]].get("content") if turns else None
    if not isinstance(content, list) or not any(isinstance(b, dict) and b.get("type") == "tool_use"
                                                for b in content):  # fmt: skip
        return
    first = content[0].get("type") if isinstance(content[0], dict) else None
    if first not in ("thinking", "redacted_thinking"):
        raise BadRequest(_THINKING_FIRST.format(index=turns[-1], found=first))


def _tightest(first: BucketState | None, second: BucketState | None) -> BucketState | None:
    """The most restrictive token limit in effect (what ``tokens-*`` headers show)."""
    if first is None or second is None:
        return first or second
    return first if first.remaining <= second.remaining else second


def _forced_tool(choice: Any, tools: Mapping[str, Any]) -> str | None:
    if not isinstance(choice, dict):
        return None
    if choice.get("type") == "tool" and isinstance(choice.get("name"), str):
        return str(choice["name"])
    if choice.get("type") == "any" and tools:
        return next(iter(tools))
    return None

