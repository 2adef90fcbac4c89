"""A Response's answer as plain JSON and back: the form the response cache and batch checkpoints share.

The answer is everything that describes what the model said: ``content``,
``model``, ``provider``, ``finish_reason``, every :class:`~llmkit.types.Usage`
count, ``tool_calls`` (with Gemini's thought signatures), ``request_id``,
and, when set, ``refusal``, ``parts`` (text, thinking blocks with their
signatures or redacted data, the blocks of tools the provider ran) and
``fallback_index``. What describes the call instead (``latency``,
``key_id``, ``cost``, ``attempts``, ``cached``) and the SDK's ``raw`` object
are each user's own business: the cache and the checkpoint decide.

Parts are written tagged by ``"part"`` (``text``, ``thinking``,
``server_tool``) so that each comes back as the same class with the same
fields; a part of any other type cannot be written (:class:`ValueError`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from llmkit.blocks import ServerToolPart, ThinkingPart
from llmkit.types import Response, TextPart, ToolCall, Usage

__all__ = [
    "USAGE_FIELDS",
    "answer_from_json",
    "answer_to_json",
    "parts_from_json",
    "parts_to_json",
    "usage_from_json",
    "usage_to_json",
]

USAGE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Usage))
"""Every token count of a Usage, by name."""


def usage_to_json(usage: Usage) -> dict[str, int]:
    """Every count of ``usage`` by name."""
    return {name: getattr(usage, name) for name in USAGE_FIELDS}


def usage_from_json(data: Any) -> Usage:
    """A Usage from counts by name (missing: 0; unknown names ignored) or a positional list."""
    if data is None:
        return Usage()
    if isinstance(data, Mapping):
        return Usage(**{name: int(data.get(name) or 0) for name in USAGE_FIELDS})
    if isinstance(data, Sequence) and not isinstance(data, str) and len(data) <= len(USAGE_FIELDS):
        return Usage(*(int(count or 0) for count in data))
    raise ValueError(f"not a usage record: {data!r}")


def _part_to_json(part: Any) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"part": "text", "text": part.text}
    if isinstance(part, ThinkingPart):
        data: dict[str, Any] = {"part": "thinking", "thinking": part.thinking}
        if part.signature is not None:
            data["signature"] = part.signature
        if part.redacted is not None:
            data["redacted"] = part.redacted
        return data
    if isinstance(part, ServerToolPart):
        return {"part": "server_tool", "block": dict(part.block)}
    raise ValueError(f"a {type(part).__name__} in Response.parts cannot be written as JSON")


def _part_from_json(data: Any) -> Any:
    kind = data.get("part") if isinstance(data, Mapping) else None
    if kind == "text":
        return TextPart(data["text"])
    if kind == "thinking":
        return ThinkingPart(data.get("thinking") or "", data.get("signature"), data.get("redacted"))
    if kind == "server_tool" and isinstance(data.get("block"), Mapping):
        return ServerToolPart(dict(data["block"]))
    raise ValueError(f"not a stored response part: {data!r}")


def parts_to_json(parts: Sequence[Any]) -> list[dict[str, Any]]:
    """``Response.parts`` as tagged dicts; ValueError for a part of another type."""
    return [_part_to_json(part) for part in parts]


def parts_from_json(data: Any) -> tuple[Any, ...]:
    """The parts :func:`parts_to_json` wrote; ValueError for anything else."""
    if not data:
        return ()
    if not isinstance(data, list):
        raise ValueError(f"not a list of response parts: {data!r}")
    return tuple(_part_from_json(item) for item in data)


def answer_to_json(response: Response) -> dict[str, Any]:
    """The answer of ``response`` as plain data (``refusal``, ``parts``, ``fallback_index`` only when set)."""
    data: dict[str, Any] = {
        "content": response.content,
        "model": response.model,
        "provider": response.provider,
        "finish_reason": response.finish_reason,
        "usage": usage_to_json(response.usage),
        "tool_calls": [call.to_dict() for call in response.tool_calls],
        "request_id": response.request_id,
    }
    if response.refusal is not None:
        data["refusal"] = response.refusal
    if response.parts:
        data["parts"] = parts_to_json(response.parts)
    if response.fallback_index:
        data["fallback_index"] = response.fallback_index
    return data


def answer_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """Response keyword arguments from :func:`answer_to_json`'s form (absent fields: their defaults)."""
    return {
        "content": data.get("content") or "",
        "model": data.get("model") or "",
        "provider": data.get("provider") or "",
        "finish_reason": data.get("finish_reason"),
        "usage": usage_from_json(data.get("usage")),
        "tool_calls": tuple(ToolCall.from_dict(call) for call in data.get("tool_calls") or ()),
        "request_id": data.get("request_id"),
        "refusal": data.get("refusal"),
        "parts": parts_from_json(data.get("parts")),
        "fallback_index": int(data.get("fallback_index") or 0),
    }
