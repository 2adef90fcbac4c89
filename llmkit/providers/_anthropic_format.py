"""Anthropic Messages shapes of llmkit's messages, content parts, tools, thinking, caching and JSON mode.

JSON mode (``json_mode=True``) is best-effort on Anthropic, which has no JSON
switch: the system prompt asks for a single JSON object, and when the
conversation ends with a user turn and no tools are given, the assistant's
answer is prefilled with ``{`` (and that ``{`` is put back in front of the
reply, so ``Response.content`` is the whole object). The reply is not
validated; use ``response_model=`` for a validated answer. No prefill is
made when thinking is on (Anthropic refuses prefills with thinking).

Thinking (``thinking=``): a budget, an effort or True becomes
``{"type": "enabled", "budget_tokens": N}`` (True: 4096; efforts as in
:data:`llmkit.providers._options.EFFORT_BUDGETS`); a dict is sent as it is.
Thinking and server tool blocks of earlier turns
(:class:`~llmkit.types.ThinkingPart`, :class:`~llmkit.types.ServerToolPart`)
go back as the blocks they came as.

Prompt caching (``cache_control=``): the breakpoints go on the last tool, the
system prompt, the last message and the user message before it (at most four,
Anthropic's limit), so the stable prefix is cached and the previous turn's
cache is read.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from llmkit.providers._options import CallOptions, thinking_budget
from llmkit.request import Request
from llmkit.types import ImagePart, Message, MessageRole, ServerToolPart, TextPart, ThinkingPart

__all__ = [
    "JSON_INSTRUCTION", "JSON_PREFILL", "MIN_THINKING_BUDGET", "json_prefill", "mark_cache", "messages",
    "system_prompt", "thinking_param", "tool_params",
]  # fmt: skip

# Anthropic's smallest thinking budget.
MIN_THINKING_BUDGET = 1024

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
        elif isinstance(part, (ThinkingPart, ServerToolPart)):
            blocks.append(part.to_dict())  # back exactly as it came
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


def messages(request: Request, options: CallOptions | None = None) -> list[dict[str, Any]]:
    """The conversation; the results of one turn's tool calls go together in one user turn.

    Anthropic takes no ``name`` on messages: a message's name is left out, said once by a warning.
    """
    if any(m.name is not None and m.role is not MessageRole.TOOL for m in request.messages):
        note = "anthropic does not take messages[].name: llmkit leaves it out."
        warnings.warn(note, UserWarning, stacklevel=3)
    result: list[dict[str, Any]] = []
    for message in request.messages:
        data = _message(message)
        if result and _is_tool_results(data) and _is_tool_results(result[-1]):
            result[-1] = {"role": "user", "content": [*result[-1]["content"], *data["content"]]}
        else:
            result.append(data)
    if json_prefill(request, options):
        result.append({"role": "assistant", "content": JSON_PREFILL})
    return result


def json_prefill(request: Request, options: CallOptions | None = None) -> bool:
    """Whether the answer is prefilled with ``{``: JSON mode, a user turn last, no tools, no thinking."""
    return (
        request.json_mode
        and not request.tools
        and not (options is not None and options.thinking_on)
        and request.messages[-1].role in (MessageRole.USER, MessageRole.TOOL)
    )


def thinking_param(thinking: Any) -> dict[str, Any] | None:
    """The ``thinking`` object for ``thinking=`` (None: send none)."""
    if thinking is None or thinking is False or thinking == "none":
        return None
    if isinstance(thinking, Mapping):
        return dict(thinking)
    return {"type": "enabled", "budget_tokens": thinking_budget(thinking)}


# -- prompt caching -----------------------------------------------------------------


def mark_cache(params: dict[str, Any], control: Mapping[str, Any], prefilled: bool) -> None:
    """Put ``cache_control`` breakpoints on the stable prefix of ``params`` (in place)."""
    tools = params.get("tools")
    if tools:
        tools[-1] = {**tools[-1], "cache_control": dict(control)}
    system = params.get("system")
    if isinstance(system, str) and system:
        params["system"] = [{"type": "text", "text": system, "cache_control": dict(control)}]
    turns = params["messages"][:-1] if prefilled else params["messages"]
    for index in _cache_turns(turns):
        turns[index] = _marked(turns[index], control)


def _cache_turns(turns: list[dict[str, Any]]) -> list[int]:
    """The last turn, and the user turn before the last user turn (where last call's cache ends)."""
    if not turns:
        return []
    users = [i for i, turn in enumerate(turns) if turn["role"] == "user"]
    earlier = [i for i in users[:-1] if i != len(turns) - 1]
    return [len(turns) - 1, *earlier[-1:]]


def _marked(turn: dict[str, Any], control: Mapping[str, Any]) -> dict[str, Any]:
    content = turn["content"]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    for index in range(len(blocks) - 1, -1, -1):
        block = blocks[index]
        if isinstance(block, dict) and _cacheable(block):
            blocks[index] = {**block, "cache_control": dict(control)}
            return {**turn, "content": blocks}
    return turn


def _cacheable(block: Mapping[str, Any]) -> bool:
    """Thinking blocks and empty text blocks cannot carry ``cache_control``."""
    kind = block.get("type")
    if kind in ("thinking", "redacted_thinking"):
        return False
    return kind != "text" or bool(block.get("text"))


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
