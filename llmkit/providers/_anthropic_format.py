"""Anthropic Messages shapes of llmkit's messages, content parts, tools and JSON mode.

JSON mode (``json_mode=True``) is best-effort on Anthropic, which has no JSON
switch: the system prompt asks for a single JSON object, and when the
conversation ends with a user turn and no tools are given, the assistant's
answer is prefilled with ``{`` (and that ``{`` is put back in front of the
reply, so ``Response.content`` is the whole object). The reply is not
validated; use ``response_model=`` for a validated answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmkit.request import Request
from llmkit.types import ImagePart, Message, MessageRole, TextPart

__all__ = ["JSON_INSTRUCTION", "JSON_PREFILL", "json_prefill", "messages", "system_prompt", "tool_params"]

JSON_INSTRUCTION = "Answer with a single JSON object and nothing else: no prose, no code fences."
JSON_PREFILL = "{"


def _blocks(content: Any) -> Any:
    """A string as it is; a list of parts as Anthropic ``text`` / ``image`` blocks."""
    if isinstance(content, str):
        return content
    blocks: list[Any] = []
    for part in content:
        if isinstance(part, TextPart):
            blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append({"type": "image", "source": _image_source(part)})
        else:  # a provider-native dict: untouched
            blocks.append(dict(part) if isinstance(part, Mapping) else part)
    return blocks


def _image_source(image: ImagePart) -> dict[str, Any]:
    if image.url is not None:
        return {"type": "url", "url": image.url}
    return {"type": "base64", "media_type": image.media_type, "data": image.base64()}


def _message(message: Message) -> dict[str, Any]:
    if message.role is MessageRole.TOOL:
        if not message.tool_call_id:
            return {"role": "user", "content": _blocks(message.content)}
        block = {"type": "tool_result", "tool_use_id": message.tool_call_id}
        return {"role": "user", "content": [{**block, "content": _blocks(message.content)}]}
    if message.tool_calls:
        content = _blocks(message.content)
        blocks: list[Any] = content if isinstance(content, list) else []
        if isinstance(content, str) and content:
            blocks.append({"type": "text", "text": content})
        for c in message.tool_calls:
            blocks.append({"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)})
        return {"role": "assistant", "content": blocks}
    return {"role": message.role.value, "content": _blocks(message.content)}


def _is_tool_results(data: dict[str, Any]) -> bool:
    content = data["content"]
    return (
        data["role"] == "user"
        and isinstance(content, list)
        and all(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    )


def messages(request: Request) -> list[dict[str, Any]]:
    """The conversation; the results of one turn's tool calls go together in one user turn."""
    result: list[dict[str, Any]] = []
    for message in request.messages:
        data = _message(message)
        if result and _is_tool_results(data) and _is_tool_results(result[-1]):
            result[-1] = {"role": "user", "content": [*result[-1]["content"], *data["content"]]}
        else:
            result.append(data)
    if json_prefill(request):
        result.append({"role": "assistant", "content": JSON_PREFILL})
    return result


def json_prefill(request: Request) -> bool:
    """Whether the answer is prefilled with ``{`` (JSON mode, ends with a user turn, no tools)."""
    return (
        request.json_mode
        and not request.tools
        and request.messages[-1].role in (MessageRole.USER, MessageRole.TOOL)
    )


def system_prompt(request: Request) -> str | None:
    if not request.json_mode:
        return request.system
    return f"{request.system}\n\n{JSON_INSTRUCTION}" if request.system else JSON_INSTRUCTION


def tool_params(request: Request) -> dict[str, Any]:
    """``tools`` and ``tool_choice`` in Anthropic's form."""
    params: dict[str, Any] = {}
    if request.tools:
        params["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
            for t in request.tools
        ]
    choice = request.tool_choice
    if choice is not None:
        kinds = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}
        params["tool_choice"] = kinds.get(choice.mode) or {"type": "tool", "name": choice.name}
    return params
