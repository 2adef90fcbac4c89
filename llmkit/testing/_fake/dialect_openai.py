"""OpenAI Chat Completions, as the fake server speaks it (``POST /v1/chat/completions``).

Besides text and tool calls (see :class:`~.replies.Reply`): a refusal is
``content: null`` with ``message.refusal`` (streamed as ``delta.refusal``
pieces) and ``finish_reason: "stop"``, as OpenAI sends it; thinking is only
counted (``completion_tokens_details.reasoning_tokens``); cache reads are
``prompt_tokens_details.cached_tokens``; a truncated stream stops after its
content, without the finish chunk, the usage chunk and ``[DONE]``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .buckets import INPUT, OUTPUT, REQUESTS, TOKENS, Admission, BucketState
from .dialect_base import (
    LIMIT_ABBREVIATIONS,
    BadRequest,
    Dialect,
    Headers,
    Output,
    StreamEvent,
    fragments,
    go_duration,
    limit_name,
    limit_text,
    new_id,
    sse,
    used_of,
)
from .replies import RequestInfo
from .tokens import IMAGE_TOKENS, count_tokens, split_deltas

__all__ = ["OpenAIDialect"]

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_FINISH = {"stop": "stop", "length": "length", "tool": "tool_calls", "refusal": "stop"}
_LIMITS_PAGE = "Visit https://platform.openai.com/account/rate-limits to learn more."
_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)


def read_content(content: Any, where: str) -> tuple[str, int]:
    """Return the text of a message's content and its token count."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, count_tokens(content)
    if not isinstance(content, list):
        raise BadRequest(f"Invalid type for '{where}': expected a string or an array.", where)
    texts, tokens = [], 0
    for index, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise BadRequest(f"Invalid content part at '{where}[{index}]'.", f"{where}[{index}]")
        text = part.get("text", part.get("refusal"))
        if isinstance(text, str):
            texts.append(text)
            tokens += count_tokens(text)
        else:  # image_url, input_audio, file...
            tokens += IMAGE_TOKENS
    return "\n".join(texts), tokens


class OpenAIDialect(Dialect):
    name = "openai"
    request_id_header = "x-request-id"

    def route(self, method: str, path: str) -> str | None:
        if method == "POST" and path == "/v1/chat/completions":
            return "chat"
        return None

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip() or None
        return None

    def parse(self, endpoint: str, path: str, body: Any, key: str | None) -> RequestInfo:
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter", "model")
        raw = body.get("messages")
        if not isinstance(raw, list) or not raw:
            raise BadRequest("'messages' must be a non-empty array.", "messages")
        messages, tokens = [], 0
        for index, message in enumerate(raw):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise BadRequest(f"Invalid message at 'messages[{index}]'.", f"messages[{index}]")
            text, count = read_content(message.get("content"), f"messages[{index}].content")
            for call in message.get("tool_calls") or []:
                arguments = str((call.get("function") or {}).get("arguments", ""))
                count += count_tokens(arguments)
            role = "system" if message["role"] in ("system", "developer") else message["role"]
            messages.append({"role": role, "content": text})
            tokens += count
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise BadRequest("max_tokens must be a positive integer.", "max_tokens")
        tools = {}
        for tool in body.get("tools") or []:
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise BadRequest("Invalid tool: expected {'type': 'function', 'function': {...}}.",
                                 "tools")
            tools[function["name"]] = function.get("parameters") or {"type": "object"}
        stream_options = body.get("stream_options") or {}
        return RequestInfo(
            provider=self.name, model=model, messages=messages, key=key, path=path,
            params={k: v for k, v in body.items() if k != "messages"},
            stream=bool(body.get("stream")), max_tokens=max_tokens, input_tokens=tokens,
            tools=tools, forced_tool=_forced_tool(body.get("tool_choice"), tools),
            response_schema=_response_schema(body.get("response_format")),
            include_usage=bool(stream_options.get("include_usage")), endpoint=endpoint,
        )

    def reply_id(self) -> str:
        return new_id("chatcmpl-")

    def rate_limit_body(self, refusal: Admission, model: str) -> dict[str, Any]:
        """OpenAI's 429 (``type`` ``requests``/``tokens``, ``code`` ``rate_limit_exceeded``),
        worded as OpenAI words it."""
        exceeded = refusal.exceeded
        state = refusal.state[exceeded]
        what = f"{limit_name(exceeded)} per min ({LIMIT_ABBREVIATIONS.get(exceeded, 'TPM')})"
        where = f"for {model} in organization org-fake on {what}"
        requested = limit_text(refusal.requested)
        if refusal.too_large:
            message = (f"Request too large {where}: Limit {limit_text(state.limit)}, Requested "
                       f"{requested}. The input or output tokens must be reduced in order to run "
                       f"successfully. {_LIMITS_PAGE}")
        else:
            message = (f"Rate limit reached {where}: Limit {limit_text(state.limit)}, Used "
                       f"{used_of(refusal)}, Requested {requested}. Please try again in "
                       f"{go_duration(refusal.retry_after)}. {_LIMITS_PAGE}")
        kind = "requests" if exceeded == REQUESTS else "tokens"
        return {"error": {"message": message, "type": kind, "param": None,
                          "code": "rate_limit_exceeded"}}

    def out_of_credit(self) -> tuple[int, dict[str, Any]]:
        """OpenAI's ``insufficient_quota`` 429, as its error-codes guide documents it."""
        return 429, {"error": {"message": _QUOTA_MESSAGE, "type": "insufficient_quota",
                               "param": None, "code": "insufficient_quota"}}

    def _usage(self, info: RequestInfo, out: Output) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": info.input_tokens, "completion_tokens": out.output_tokens,
            "total_tokens": info.input_tokens + out.output_tokens,
        }  # fmt: skip
        if out.cached_input_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": out.cached_input_tokens, "audio_tokens": 0}
        if out.thinking_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": out.thinking_tokens, "audio_tokens": 0}
        return usage

    def reply_body(self, info: RequestInfo, out: Output, reply_id: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": out.text, "refusal": None}
        if out.refusal:
            message.update(content=None, refusal=out.refusal)
        if out.tool_name is not None:
            message["content"] = out.text or None
            message["tool_calls"] = [{"id": out.tool_id, "type": "function", "function": {
                "name": out.tool_name, "arguments": out.arguments_json}}]
        return {
            "id": reply_id, "object": "chat.completion", "created": int(time.time()),
            "model": info.model, "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": _FINISH[out.finish]}],
            "usage": self._usage(info, out),
        }

    def stream_events(self, info: RequestInfo, out: Output, reply_id: str) -> list[StreamEvent]:
        base = {"id": reply_id, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": info.model, "system_fingerprint": "fp_fake"}
        if info.include_usage:
            base["usage"] = None

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice]})

        if out.refusal:
            events = [StreamEvent(chunk({"role": "assistant", "content": None, "refusal": ""}))]
            events += [StreamEvent(chunk({"refusal": p}), True) for p in split_deltas(out.refusal)]
        else:
            events = [StreamEvent(chunk({"role": "assistant", "content": "", "refusal": None}))]
            events += [StreamEvent(chunk({"content": p}), True) for p in split_deltas(out.text)]
        if out.tool_name is not None:
            head = {"index": 0, "id": out.tool_id, "type": "function",
                    "function": {"name": out.tool_name, "arguments": ""}}
            events.append(StreamEvent(chunk({"tool_calls": [head]})))
            for piece in fragments(out.arguments_json):
                call = {"index": 0, "function": {"arguments": piece}}
                events.append(StreamEvent(chunk({"tool_calls": [call]}), delta=True))
        if out.truncated:
            return events
        events.append(StreamEvent(chunk({}, _FINISH[out.finish])))
        if info.include_usage:
            events.append(StreamEvent(sse({**base, "choices": [], "usage": self._usage(info, out)})))
        events.append(StreamEvent(sse("[DONE]")))
        return events

    def count_tokens_body(self, info: RequestInfo) -> dict[str, Any]:
        return {"input_tokens": info.input_tokens}

    def error_body(self, status: int, message: str, error_type: str | None) -> dict[str, Any]:
        kind, code = _ERROR_TYPES.get(status, ("server_error" if status >= 500 else
                                               "invalid_request_error", None))
        return {"error": {"message": message, "type": error_type or kind, "param": None,
                          "code": code}}

    def stream_error(self, status: int, message: str, error_type: str | None) -> bytes:
        return sse(self.error_body(status, message, error_type))

    def malformed_stream(self) -> bytes:
        return b'data: {"id": "chatcmpl-broken", "choices": [\n\n'

    def ratelimit_headers(self, state: Mapping[str, BucketState], wall_offset: float) -> Headers:
        """``x-ratelimit-limit/-remaining/-reset-requests`` and ``-tokens`` (OpenAI has only a
        combined token limit: separate input and output limits show as their sum)."""
        headers: Headers = []
        tokens = state.get(TOKENS) or _combined(state.get(INPUT), state.get(OUTPUT))
        for suffix, bucket in (("requests", state.get(REQUESTS)), ("tokens", tokens)):
            if bucket is not None:
                headers += [
                    (f"x-ratelimit-limit-{suffix}", limit_text(bucket.limit)),
                    (f"x-ratelimit-remaining-{suffix}", str(bucket.remaining)),
                    (f"x-ratelimit-reset-{suffix}", go_duration(bucket.reset_seconds)),
                ]
        return headers


def _combined(first: BucketState | None, second: BucketState | None) -> BucketState | None:
    """Input and output limits reported as one token limit (OpenAI has only TPM)."""
    if first is None or second is None:
        return first or second
    return BucketState(first.limit + second.limit, first.remaining + second.remaining,
                       max(first.reset_seconds, second.reset_seconds),
                       max(first.reset_at, second.reset_at))


def _forced_tool(choice: Any, tools: Mapping[str, Any]) -> str | None:
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return name if isinstance(name, str) else None
    if choice == "required" and tools:
        return next(iter(tools))
    return None


def _response_schema(response_format: Any) -> Any:
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
    return None

