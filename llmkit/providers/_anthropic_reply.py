"""Anthropic replies read: content blocks, usage, error events, and what counts toward ITPM.

Content blocks (a reply's ``content``, a stream's finished blocks):

* ``text`` -> the answer's text (:class:`~llmkit.types.TextPart` in ``Response.parts``);
* ``thinking`` / ``redacted_thinking`` -> :class:`~llmkit.types.ThinkingPart`
  (with its ``signature`` / encrypted ``data``), never in the text;
* ``tool_use`` -> :class:`~llmkit.types.ToolCall` (the caller's tools);
* ``server_tool_use``, ``mcp_tool_use``, ``*_tool_result`` and the like ->
  :class:`~llmkit.types.ServerToolPart`, kept whole: the provider ran them,
  nothing on the caller's side does, and they go back as they came.

``Response.parts`` is filled only when the turn holds more than text.

Usage: Anthropic counts ``input_tokens`` apart from cache reads and writes;
llmkit's ``Usage.input_tokens`` is all three (reads also in
``cached_input_tokens``, writes in ``cache_write_tokens``, one-hour writes in
``cache_write_1h_tokens``); ``output_tokens_details.thinking_tokens`` is
``reasoning_tokens``. Rate limits (Anthropic's rate-limit docs): input tokens
and cache writes count toward the input-tokens-per-minute limit; cache reads
do too only on the older models marked so there (Claude 3 and 3.5: Haiku 3,
Haiku 3.5, Sonnet 3.5, Opus 3), not on Claude 3.7 and later.

Errors: an ``event: error`` inside a 200 stream carries ``error.type``; it
maps to the error of the HTTP status Anthropic documents for that type
(``overloaded_error`` 529, ``rate_limit_error`` 429, ``api_error`` 500 ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from llmkit.errors import LLMError
from llmkit.providers._errors import error_for_status
from llmkit.providers._reply import field
from llmkit.types import ServerToolPart, TextPart, ThinkingPart, ToolCall, Usage, is_server_tool_block

__all__ = ["ERROR_STATUS", "as_dict", "error_from_event", "itpm_input_tokens", "read_blocks", "usage_of"]

PROVIDER = "anthropic"

ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
"""Anthropic's error types and the HTTP status each comes with (its errors reference)."""

# Models whose cache reads still count toward ITPM (the rate-limit docs mark them with a dagger).
_CACHE_READS_COUNT = re.compile(r"^(?:anthropic\.)?claude-3-(?!7)")


def as_dict(block: Any) -> dict[str, Any]:
    """A content block as a plain dict (the JSON's dict, or the SDK object's dump)."""
    if isinstance(block, Mapping):
        return dict(block)
    dump = getattr(block, "model_dump", None)
    return dict(dump(exclude_none=True)) if callable(dump) else {}


def read_blocks(blocks: Any) -> tuple[str, tuple[ToolCall, ...], tuple[Any, ...]]:
    """The text, the caller's tool calls and the ordered parts (empty: text only) of a reply's blocks."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    parts: list[Any] = []
    extra = False
    for block in blocks or ():
        kind = field(block, "type")
        if kind == "text":
            text = field(block, "text") or ""
            texts.append(text)
            parts.append(TextPart(text))
        elif kind == "tool_use":
            arguments = dict(field(block, "input") or {})
            calls.append(ToolCall(id=field(block, "id"), name=field(block, "name"), arguments=arguments))
        elif kind == "thinking":
            parts.append(ThinkingPart(field(block, "thinking") or "", field(block, "signature")))
            extra = True
        elif kind == "redacted_thinking":
            parts.append(ThinkingPart(redacted=field(block, "data") or ""))
            extra = True
        elif is_server_tool_block(kind):
            parts.append(ServerToolPart(as_dict(block)))
            extra = True
    return "".join(texts), tuple(calls), tuple(parts) if extra else ()


def usage_of(usage: Any) -> Usage:
    """llmkit's Usage of an Anthropic ``usage`` (object or dict; zero when None)."""
    if usage is None:
        return Usage()
    cached = field(usage, "cache_read_input_tokens") or 0
    written = field(usage, "cache_creation_input_tokens") or 0
    creation = field(usage, "cache_creation")
    hour = (field(creation, "ephemeral_1h_input_tokens") if creation is not None else None) or 0
    details = field(usage, "output_tokens_details")
    thinking = (field(details, "thinking_tokens") if details is not None else None) or 0
    total_in = (field(usage, "input_tokens") or 0) + cached + written
    return Usage(total_in, field(usage, "output_tokens") or 0, cached, written, thinking, hour)


def itpm_input_tokens(model: str | None, usage: Usage) -> int | None:
    """What Anthropic charges to the key's ITPM limit, when it is not ``usage.input_tokens``."""
    if not usage.cached_input_tokens or _CACHE_READS_COUNT.match(model or ""):
        return None
    return usage.input_tokens - usage.cached_input_tokens


def error_from_event(body: Any, request_id: str | None = None) -> LLMError:
    """The llmkit error for the JSON of an ``event: error`` (``{"type": "error", "error": {...}}``)."""
    error = body.get("error") if isinstance(body, Mapping) else None
    error = error if isinstance(error, Mapping) else {}
    kind = error.get("type")
    message = error.get("message") if isinstance(error.get("message"), str) else None
    status = ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500
    text = message or f"Anthropic stream error {kind or '(no type)'}"
    return error_for_status(status, text, provider=PROVIDER, request_id=request_id)
