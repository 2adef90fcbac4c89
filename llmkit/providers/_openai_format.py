"""OpenAI chat-completions shapes of llmkit's messages, content parts and tools.

Shared by every OpenAI-compatible adapter (OpenAI, Groq, local servers).
Only what the chat-completions spec defines is sent: thinking and server tool
parts of earlier turns (another provider's, say) are left out, an assistant
turn's text parts are joined into its string, and ``name`` never goes on a
``tool`` message (the spec has none there), nor anywhere on APIs that refuse
it (Groq); a dropped name is said once with a warning.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from llmkit.request import Request
from llmkit.types import ImagePart, Message, MessageRole, ServerToolPart, TextPart, ThinkingPart, ToolCall

__all__ = [
    "JSON_INSTRUCTION", "content_parts", "message_dict", "message_dicts", "system_prompt", "tool_params",
    "warn_dropped_name",
]  # fmt: skip

# OpenAI refuses json_object mode unless the messages mention JSON; this is added when they do not.
JSON_INSTRUCTION = "Answer with a single JSON object."


def content_parts(content: Any) -> Any:
    """A string as it is; a list of parts as OpenAI ``text`` / ``image_url`` parts."""
    if isinstance(content, str):
        return content
    parts: list[Any] = []
    for part in content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            parts.append({"type": "image_url", "image_url": {"url": part.data_url()}})
        elif isinstance(part, (ThinkingPart, ServerToolPart)):
            continue  # another provider's blocks: chat completions has no place for them
        else:  # a provider-native dict: untouched
            parts.append(dict(part) if isinstance(part, Mapping) else part)
    return parts


def _tool_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)},
    }


def message_dicts(messages: Sequence[Message], provider: str, *, names: bool = True) -> list[dict[str, Any]]:
    """The messages in OpenAI's form; ``names=False`` leaves every ``name`` out (said once, by a warning)."""
    result = [message_dict(m, names=names) for m in messages]
    if any(m.name is not None and "name" not in d for m, d in zip(messages, result)):
        warn_dropped_name(provider)
    return result


def warn_dropped_name(provider: str) -> None:
    warnings.warn(
        f"{provider} does not take messages[].name here (never on tool messages; nowhere on some APIs): "
        "llmkit leaves it out.",
        UserWarning,
        stacklevel=3,
    )


def message_dict(message: Message, *, names: bool = True) -> dict[str, Any]:
    """One message in OpenAI's form (assistant ``tool_calls``, ``role: tool`` results)."""
    content = content_parts(message.content)
    if message.role is MessageRole.ASSISTANT and isinstance(content, list) and _only_text(content):
        content = "".join(part["text"] for part in content)
    data: dict[str, Any] = {"role": message.role.value, "content": content}
    if message.name is not None and names and message.role is not MessageRole.TOOL:
        data["name"] = message.name
    if message.role is MessageRole.TOOL:
        if message.tool_call_id is None:
            data["role"] = "user"  # a tool result without an id: keep the text
        else:
            data["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        data["tool_calls"] = [_tool_call(c) for c in message.tool_calls]
        if data["content"] == "":
            data["content"] = None
    return data


def _only_text(parts: list[Any]) -> bool:
    return all(isinstance(p, dict) and p.get("type") == "text" and set(p) == {"type", "text"} for p in parts)


def tool_params(request: Request) -> dict[str, Any]:
    """``tools``, ``tool_choice`` and ``response_format`` for a request that asks for them."""
    params: dict[str, Any] = {}
    if request.tools:
        params["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
            }
            for t in request.tools
        ]
    choice = request.tool_choice
    if choice is not None:
        if choice.mode == "tool":
            params["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        else:
            params["tool_choice"] = choice.mode
    if request.json_mode:
        params["response_format"] = {"type": "json_object"}
    return params


def system_prompt(request: Request) -> str | None:
    """The system prompt, with :data:`JSON_INSTRUCTION` when JSON mode needs it."""
    if not request.json_mode or "json" in request.text().lower():
        return request.system
    return f"{request.system}\n\n{JSON_INSTRUCTION}" if request.system else JSON_INSTRUCTION
