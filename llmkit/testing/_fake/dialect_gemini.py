"""Google Gemini, as the fake server speaks it.

``POST /v1beta/models/{model}:generateContent``, ``:streamGenerateContent``
(always answered as SSE, as with ``?alt=sse``; events end with ``\\r\\n\\r\\n``
like Google's) and ``:countTokens`` (``/v1/...`` too). The key comes from the
``x-goog-api-key`` header or the ``?key=`` query parameter. Errors have Google's
shape, ``{"error": {"code", "message", "status", "details"}}``; a 429 is
``RESOURCE_EXHAUSTED``. Gemini sends no rate-limit headers, and neither does
this dialect: when the rate limiter refuses, the 429's ``details`` carry a
``google.rpc.Help`` link, a ``google.rpc.QuotaFailure`` (the violated quota's
``quotaMetric``, ``quotaId``, ``quotaDimensions`` and ``quotaValue``, the limit)
and a ``google.rpc.RetryInfo`` ``retryDelay``, as Google sends them, and no
``retry-after`` header. The metric and quota names of the request and input
token limits are Google's (paid tier); Gemini has no output or combined token
limit per minute, so those two names follow the same pattern. A key out of
credit gets the 429 Google sends when prepaid credits are depleted. An injected
429 :class:`Fault` with ``retry_after`` carries both the RetryInfo detail and
the ``retry-after`` headers.

A ``responseSchema`` (Gemini's OpenAPI subset, upper-case types) or
``responseJsonSchema`` with ``responseMimeType: application/json`` gets a JSON
instance of the schema unless a script entry or ``reply=`` says otherwise.

Besides text and function calls (see :class:`~.replies.Reply`): thinking is a
``thought: true`` part before the answer (streamed first) and
``thoughtsTokenCount``; cache reads are ``cachedContentTokenCount``; a
truncated stream ends without the chunk that has the ``finishReason``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from .buckets import INPUT, OUTPUT, REQUESTS, TOKENS, Admission, BucketState
from .dialect_base import (
    BadRequest,
    Dialect,
    Headers,
    Output,
    StreamEvent,
    dumps,
    limit_text,
    new_id,
    proto_duration,
)
from .replies import RequestInfo
from .tokens import IMAGE_TOKENS, count_tokens, split_deltas

__all__ = ["GeminiDialect"]

_PATH = re.compile(
    r"^/v1(?:beta|alpha)?/models/([^/:]+):(generateContent|streamGenerateContent|countTokens)$"
)
_ENDPOINTS = {"generateContent": "chat", "streamGenerateContent": "chat", "countTokens": "count_tokens"}
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool": "STOP", "refusal": "STOP"}
_ROLES = {"user": "user", "model": "assistant", "function": "tool"}
THOUGHT_SIGNATURE = "c2lnbmVkIGJ5IHRoZSBmYWtlIHNlcnZlcg=="  # opaque to clients
_RPC = "type.googleapis.com/google.rpc."
_QUOTAS = {  # dimension: (quotaMetric, quotaId)
    REQUESTS: ("generate_requests_per_model_per_minute", "GenerateRequestsPerMinutePerProjectPerModel"),
    INPUT: ("generate_content_paid_tier_input_token_count",
            "GenerateContentPaidTierInputTokensPerModelPerMinute"),
    OUTPUT: ("generate_content_paid_tier_output_token_count",
             "GenerateContentPaidTierOutputTokensPerModelPerMinute"),
    TOKENS: ("generate_content_paid_tier_token_count", "GenerateContentPaidTierTokensPerModelPerMinute"),
}
_QUOTA_TEXT = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To "
    "monitor your current usage, head to: https://ai.dev/rate-limit. "
)
_HELP_LINK = {"description": "Learn more about Gemini API quotas",
              "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}
_DEPLETED = ("Your prepayment credits are depleted. Please go to AI Studio at "
             "https://ai.studio/projects to manage your project and billing.")


def _sse(data: Any) -> bytes:
    return f"data: {dumps(data)}\r\n\r\n".encode()


def read_parts(parts: Any, where: str) -> tuple[str, int]:
    """Return the text of a content's parts and their token count."""
    if not isinstance(parts, list) or not parts:
        raise BadRequest(f"* {where}: contents.parts must not be empty.", where)
    texts, tokens = [], 0
    for index, part in enumerate(parts):
        if not isinstance(part, dict):
            raise BadRequest(f"* {where}[{index}]: a part must be an object.", where)
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
            tokens += count_tokens(part["text"])
        elif isinstance(part.get("functionCall"), dict):
            _check_named(part["functionCall"], f"{where}[{index}].function_call")
            tokens += count_tokens(dumps(part["functionCall"].get("args", {})))
        elif isinstance(part.get("functionResponse"), dict):
            response = part["functionResponse"]
            _check_named(response, f"{where}[{index}].function_response")
            if not isinstance(response.get("response"), dict):
                raise BadRequest(f"* {where}[{index}].function_response.response: must be an object.", where)
            tokens += count_tokens(dumps(response["response"]))
        else:  # inlineData, fileData...
            tokens += IMAGE_TOKENS
    return "\n".join(texts), tokens


def _check_named(function: dict[str, Any], where: str) -> None:
    if not isinstance(function.get("name"), str) or not function["name"]:
        raise BadRequest(f"* {where}.name: Name cannot be empty.", where)


def json_schema(schema: Any) -> Any:
    """Gemini's schema subset as plain JSON schema (lower-case types) for the example builder."""
    if isinstance(schema, list):
        return [json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: json_schema(v) for k, v in schema.items() if k != "properties"}
    if isinstance(schema.get("type"), str):
        out["type"] = schema["type"].lower()
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: json_schema(v) for k, v in schema["properties"].items()}
    return out


class GeminiDialect(Dialect):
    name = "google"
    request_id_header = "x-goog-request-id"
    tool_id_prefix = None

    def route(self, method: str, path: str) -> str | None:
        match = _PATH.match(path) if method == "POST" else None
        return _ENDPOINTS[match.group(2)] if match else None

    def api_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return headers.get("x-goog-api-key", "").strip() or query.get("key", "").strip() or None

    def parse(self, endpoint: str, path: str, body: Any, key: str | None) -> RequestInfo:
        match = _PATH.match(path)
        assert match is not None
        model = unquote(match.group(1))
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        if endpoint == "count_tokens" and isinstance(body.get("generateContentRequest"), dict):
            body = body["generateContentRequest"]
        raw = body.get("contents")
        if not isinstance(raw, list) or not raw:
            raise BadRequest("* GenerateContentRequest.contents: contents is not specified", "contents")
        messages, tokens = [], 0
        system = body.get("systemInstruction")
        if system is not None:
            parts = system.get("parts") if isinstance(system, dict) else None
            text, tokens = read_parts(parts, "systemInstruction.parts")
            messages.append({"role": "system", "content": text})
        for index, content in enumerate(raw):
            role = content.get("role", "user") if isinstance(content, dict) else None
            if role not in _ROLES:
                raise BadRequest(f"* contents[{index}].role: Please use a valid role: user, model.")
            text, count = read_parts(content.get("parts"), f"contents[{index}].parts")
            messages.append({"role": _ROLES[role], "content": text})
            tokens += count
        config = body.get("generationConfig") or {}
        if not isinstance(config, dict):
            raise BadRequest("* generationConfig: must be an object.", "generationConfig")
        max_tokens = config.get("maxOutputTokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise BadRequest("* generationConfig.max_output_tokens: must be a positive integer.")
        tools = _tools(body.get("tools"))
        return RequestInfo(
            provider=self.name, model=model, messages=messages, key=key, path=path,
            params={k: v for k, v in body.items() if k not in ("contents", "systemInstruction")},
            stream=path.endswith(":streamGenerateContent"), max_tokens=max_tokens,
            input_tokens=tokens, tools=tools, forced_tool=_forced_tool(body.get("toolConfig"), tools),
            response_schema=_response_schema(config), endpoint=endpoint,
        )  # fmt: skip

    def reply_id(self) -> str:
        return new_id("")

    def _usage(self, info: RequestInfo, out: Output | None) -> dict[str, int]:
        usage = {"promptTokenCount": info.input_tokens, "totalTokenCount": info.input_tokens}
        if out is not None:
            usage["candidatesTokenCount"] = out.output_tokens - out.thinking_tokens
            usage["totalTokenCount"] += out.output_tokens
            if out.thinking_tokens:
                usage["thoughtsTokenCount"] = out.thinking_tokens
            if out.cached_input_tokens:
                usage["cachedContentTokenCount"] = out.cached_input_tokens
        return usage

    def _chunk(self, info: RequestInfo, reply_id: str, parts: list[Any], finish: str | None,
               out: Output | None) -> dict[str, Any]:  # fmt: skip
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish is not None:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "usageMetadata": self._usage(info, out),
                "modelVersion": info.model, "responseId": reply_id}  # fmt: skip

    def _call_parts(self, out: Output) -> list[Any]:
        if out.tool_name is None:
            return []
        call: dict[str, Any] = {"name": out.tool_name, "args": dict(out.tool_arguments or {})}
        if out.tool_id:
            call["id"] = out.tool_id
        # Thinking models sign their calls; the signature must come back with the call.
        return [{"functionCall": call, "thoughtSignature": THOUGHT_SIGNATURE}]

    def _parts(self, out: Output) -> list[Any]:
        parts: list[Any] = [{"text": out.thinking, "thought": True}] if out.thinking else []
        if out.text or out.tool_name is None:
            parts.append({"text": out.text or out.refusal})
        return parts + self._call_parts(out)

    def reply_body(self, info: RequestInfo, out: Output, reply_id: str) -> dict[str, Any]:
        return self._chunk(info, reply_id, self._parts(out), _FINISH[out.finish], out)

    def stream_events(self, info: RequestInfo, out: Output, reply_id: str) -> list[StreamEvent]:
        pieces = [[{"text": p, "thought": True}] for p in split_deltas(out.thinking)]
        pieces += [[{"text": p}] for p in split_deltas(out.text or out.refusal)]
        if out.tool_name is not None:
            pieces.append(self._call_parts(out))
        events = [StreamEvent(_sse(self._chunk(info, reply_id, p, None, None)), True) for p in pieces]
        if out.truncated:
            return events
        last = self._chunk(info, reply_id, [{"text": ""}], _FINISH[out.finish], out)
        return [*events, StreamEvent(_sse(last))]

    def count_tokens_body(self, info: RequestInfo) -> dict[str, Any]:
        return {"totalTokens": info.input_tokens}

    def error_body(self, status: int, message: str, error_type: str | None) -> dict[str, Any]:
        kind = error_type or _STATUS.get(status) or ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return {"error": {"code": status, "message": message, "status": kind}}

    def with_retry_delay(self, body: dict[str, Any], seconds: float) -> dict[str, Any]:
        detail = {"@type": _RPC + "RetryInfo", "retryDelay": proto_duration(seconds)}
        error = body.get("error")
        if isinstance(error, dict):
            error["details"] = [*error.get("details", []), detail]
        return body

    def stream_error(self, status: int, message: str, error_type: str | None) -> bytes:
        return _sse(self.error_body(status, message, error_type))

    def malformed_stream(self) -> bytes:
        return b'data: {"candidates": [{"content": {\r\n\r\n'

    def ratelimit_headers(self, state: Mapping[str, BucketState], wall_offset: float) -> Headers:
        return []

    def retry_headers(self, seconds: float) -> Headers:
        return []  # Gemini says it in the body only (RetryInfo)

    def rate_limit_body(self, refusal: Admission, model: str) -> dict[str, Any]:
        """``RESOURCE_EXHAUSTED`` with Help, QuotaFailure and RetryInfo details."""
        metric, quota_id = _QUOTAS[refusal.exceeded]
        metric = "generativelanguage.googleapis.com/" + metric
        limit = limit_text(refusal.state[refusal.exceeded].limit)
        delay = proto_duration(refusal.retry_after)
        message = (f"{_QUOTA_TEXT}\n* Quota exceeded for metric: {metric}, limit: {limit}, "
                   f"model: {model}\nPlease retry in {delay}.")
        violation = {"quotaMetric": metric, "quotaId": quota_id,
                     "quotaDimensions": {"location": "global", "model": model}, "quotaValue": limit}
        details = [{"@type": _RPC + "Help", "links": [dict(_HELP_LINK)]},
                   {"@type": _RPC + "QuotaFailure", "violations": [violation]},
                   {"@type": _RPC + "RetryInfo", "retryDelay": delay}]
        return {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED",
                          "details": details}}

    def out_of_credit(self) -> tuple[int, dict[str, Any]]:
        """What Gemini answers a project whose prepaid credits are depleted."""
        return 429, self.error_body(429, _DEPLETED, "RESOURCE_EXHAUSTED")


def _tools(raw: Any) -> dict[str, Any]:
    tools = {}
    for tool in raw or []:
        for function in (tool.get("functionDeclarations") or []) if isinstance(tool, dict) else []:
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise BadRequest("* tools.function_declarations: each function needs a name.", "tools")
            schema = function.get("parameters") or function.get("parametersJsonSchema")
            tools[function["name"]] = json_schema(schema or {"type": "object"})
    return tools


def _forced_tool(config: Any, tools: Mapping[str, Any]) -> str | None:
    calling = config.get("functionCallingConfig") if isinstance(config, dict) else None
    if not isinstance(calling, dict) or calling.get("mode") != "ANY" or not tools:
        return None
    allowed = calling.get("allowedFunctionNames") or list(tools)
    return str(allowed[0])


def _response_schema(config: Mapping[str, Any]) -> Any:
    if config.get("responseMimeType") != "application/json":
        return None
    if isinstance(config.get("responseJsonSchema"), dict):
        return config["responseJsonSchema"]
    return json_schema(config.get("responseSchema") or {"type": "object"})
