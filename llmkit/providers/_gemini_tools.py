"""Gemini function calling, both ways: declarations, calls and their results.

* ``tools`` -> ``tools: [{"functionDeclarations": [...]}]``. Parameters are
  rewritten into Gemini's schema subset (:mod:`llmkit.providers._gemini_schema`);
  a schema that subset cannot express (``dict[str, X]``, ``Any``, recursion)
  goes as it is in ``parametersJsonSchema``; a function without parameters
  sends none (Gemini refuses an object schema with no properties). The proto
  marks ``description`` required: a tool without one (a function with no
  docstring) gets ``"Calls <name>."``.
* ``tool_choice`` -> ``toolConfig.functionCallingConfig``: auto -> ``AUTO``,
  none -> ``NONE``, required -> ``ANY``, one tool -> ``ANY`` with
  ``allowedFunctionNames``.
* An assistant turn's ``tool_calls`` -> ``functionCall`` parts of a ``model``
  turn, each with its ``thoughtSignature`` when Gemini gave one (calls from
  elsewhere get Google's placeholder signature, see :func:`function_call_parts`).
* A TOOL message -> a ``functionResponse`` part of a ``user`` turn; the results
  of one turn's calls go together in one turn, as Gemini wants. Gemini names
  the function a result answers: it is the message's ``name`` or, usually,
  looked up by ``tool_call_id`` in the assistant turns before it. A JSON object
  result is sent as the response; anything else as ``{"output": ...}``.

Gemini's API does not always number its calls. A call without an ``id`` gets
one made here (``gemini_call_...``, unique, so a conversation stays valid for
providers that require unique ids); made-up ids are not sent back to Gemini.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmkit.errors import InvalidRequestError
from llmkit.request import message_text
from llmkit.types import ToolCall

if TYPE_CHECKING:
    from llmkit.tools import ToolChoice, ToolSpec
    from llmkit.types import Message

__all__ = [
    "LOCAL_ID_PREFIX", "UNSIGNED_HISTORY", "function_call_parts", "function_response", "read_call",
    "tool_params",
]  # fmt: skip

LOCAL_ID_PREFIX = "gemini_call_"
# Google's documented stand-in signature for function calls from outside Gemini.
UNSIGNED_HISTORY = "skip_thought_signature_validator"
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}


def tool_params(tools: Sequence[ToolSpec], choice: ToolChoice | None) -> dict[str, Any]:
    """The top-level ``tools`` and ``toolConfig`` fields of a generateContent body."""
    params: dict[str, Any] = {}
    if tools:
        params["tools"] = [{"functionDeclarations": [_declaration(t) for t in tools]}]
    if choice is not None:
        config: dict[str, Any] = {"mode": _MODES[choice.mode]}
        if choice.mode == "tool":
            config["allowedFunctionNames"] = [choice.name]
        params["toolConfig"] = {"functionCallingConfig": config}
    return params


def _declaration(tool: ToolSpec) -> dict[str, Any]:
    from llmkit.providers._gemini_schema import gemini_schema

    description = tool.description or f"Calls {tool.name}."
    declaration: dict[str, Any] = {"name": tool.name, "description": description}
    if tool.parameters.get("properties"):
        try:
            declaration["parameters"] = gemini_schema(tool.parameters, tool.name)
        except InvalidRequestError:  # beyond the subset: Gemini takes the JSON schema itself too
            declaration["parametersJsonSchema"] = dict(tool.parameters)
    return declaration


def function_call_parts(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    """The ``functionCall`` parts of a model turn that made ``calls``.

    Calls that Gemini did not make (another provider's, before a fallback, or
    written by hand) have no signature, which Gemini 3 refuses; the first of
    them then carries the placeholder Google documents for such histories.
    """
    parts = []
    for call in calls:
        function: dict[str, Any] = {"name": call.name, "args": dict(call.arguments)}
        if not call.id.startswith(LOCAL_ID_PREFIX):
            function["id"] = call.id
        part: dict[str, Any] = {"functionCall": function}
        if call.thought_signature is not None:
            part["thoughtSignature"] = call.thought_signature
        parts.append(part)
    if parts and not any(call.thought_signature for call in calls):
        parts[0]["thoughtSignature"] = UNSIGNED_HISTORY
    return parts


def function_response(message: Message, names: Mapping[str, str]) -> dict[str, Any] | None:
    """The ``functionResponse`` part for a TOOL message; None when its function is unknown."""
    call_id = message.tool_call_id
    name = message.name or (names.get(call_id) if call_id is not None else None)
    if name is None:
        return None
    response: dict[str, Any] = {"name": name, "response": _result(message_text(message))}
    if call_id is not None and not call_id.startswith(LOCAL_ID_PREFIX):
        response["id"] = call_id
    return {"functionResponse": response}


def _result(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_constant=_not_json)
    except ValueError:  # plain text, or NaN/Infinity, which JSON (and so Gemini) cannot carry
        return {"output": text}
    return value if isinstance(value, dict) else {"output": value}


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_call(part: Mapping[str, Any]) -> ToolCall | None:
    """The ToolCall of a reply part, if it is a ``functionCall``."""
    call = part.get("functionCall")
    if not isinstance(call, Mapping):
        return None
    args = call.get("args")
    call_id = call.get("id")
    signature = part.get("thoughtSignature")
    return ToolCall(
        id=call_id if isinstance(call_id, str) and call_id else LOCAL_ID_PREFIX + secrets.token_hex(6),
        name=str(call.get("name", "")),
        arguments=dict(args) if isinstance(args, Mapping) else {},
        thought_signature=signature if isinstance(signature, str) else None,
    )
