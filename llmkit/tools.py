"""Tools (function calling): one internal :class:`ToolSpec`, whatever the user passes.

``client.complete(..., tools=[...], tool_choice=...)`` takes, for each tool:

* a Python function: its name, its docstring's first part as the description,
  and the JSON schema of its parameters from the signature and type hints
  (through pydantic's ``create_model``; per-parameter descriptions come from a
  Google-style ``Args:`` section or Sphinx ``:param x:`` lines);
* a pydantic model class: its name, docstring and JSON schema;
* a dict: a JSON schema with a ``title`` (the tool's name), the generic
  ``{"name", "description", "parameters"}``, or a provider's own shape
  (OpenAI ``{"type": "function", "function": {...}}``, Anthropic
  ``{"name", "description", "input_schema"}``);
* a :class:`ToolSpec`.

``tool_choice``: None (the provider's default), ``"auto"``, ``"none"``,
``"required"`` (alias ``"any"``: some tool must be called), or one tool, by
name or by the function or model passed in ``tools``. Each adapter translates
:class:`ToolSpec` and :class:`ToolChoice` into its provider's form; the model's
calls come back as ``Response.tool_calls`` (:class:`~llmkit.types.ToolCall`),
the same shape for every provider.

To answer calls, send back the assistant turn and one TOOL message per call::

    r = client.complete(messages, tools=[get_weather])
    messages += run_tool_calls(r, [get_weather])     # assistant turn + results
    final = client.complete(messages, tools=[get_weather])
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmkit.errors import InvalidRequestError

if TYPE_CHECKING:
    from llmkit.types import Message, Response

__all__ = [
    "ToolChoice", "ToolSpec", "normalize_tool_choice", "normalize_tools", "run_tool_calls", "tool_spec",
]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CHOICE_MODES = {"auto": "auto", "none": "none", "required": "required", "any": "required"}


@dataclass(frozen=True)
class ToolSpec:
    """A tool as llmkit keeps it: ``parameters`` is a JSON schema of an object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InvalidRequestError(
                f"Tool name {self.name!r} is not valid: use 1-64 letters, digits, '_' or '-'."
            )
        if not isinstance(self.parameters, Mapping) or self.parameters.get("type", "object") != "object":
            raise InvalidRequestError(f"Tool {self.name!r}: parameters must be a JSON schema of an object.")


@dataclass(frozen=True)
class ToolChoice:
    """Which tool the model must use: ``mode`` is auto, none, required, or tool (then ``name``)."""

    mode: str
    name: str | None = None


def normalize_tools(tools: Iterable[Any] | None) -> tuple[ToolSpec, ...]:
    """ToolSpecs for what the user passed; InvalidRequestError for anything unusable."""
    if tools is None:
        return ()
    if isinstance(tools, (str, Mapping)) or callable(tools):
        tools = [tools]
    specs = tuple(tool_spec(tool) for tool in tools)
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidRequestError(f"Two tools share the name {duplicates[0]!r}: give each a unique name.")
    return specs


def tool_spec(tool: Any) -> ToolSpec:
    """One tool as a ToolSpec (see the module docstring for what is accepted)."""
    if isinstance(tool, ToolSpec):
        return tool
    if isinstance(tool, Mapping):
        return _dict_spec(tool)
    if isinstance(tool, type) and hasattr(tool, "model_json_schema"):
        return _model_spec(tool)
    if callable(tool) and not isinstance(tool, type):
        return _function_spec(tool)
    raise InvalidRequestError(
        f"Cannot use {tool!r} as a tool: pass a function, a pydantic model class or a JSON schema dict."
    )


def normalize_tool_choice(choice: Any, tools: Sequence[ToolSpec]) -> ToolChoice | None:
    """A ToolChoice for ``tool_choice=`` (None stays None)."""
    if choice is None or isinstance(choice, ToolChoice):
        return choice
    if not tools:
        raise InvalidRequestError("tool_choice= needs tools=: pass the tools the model may call.")
    name: Any = None
    if isinstance(choice, str):
        mode = _CHOICE_MODES.get(choice.strip().lower())
        if mode is not None:
            return ToolChoice(mode)
        name = choice
    elif isinstance(choice, Mapping):  # a provider's own shape
        kind = choice.get("type")
        if kind in _CHOICE_MODES:
            return ToolChoice(_CHOICE_MODES[kind])
        name = (choice.get("function") or {}).get("name") if kind == "function" else choice.get("name")
    else:
        name = getattr(choice, "__name__", None)
    if name not in {tool.name for tool in tools}:
        known = ", ".join(tool.name for tool in tools)
        raise InvalidRequestError(
            f"tool_choice={choice!r} names no tool given: use 'auto', 'none', 'required' or one of {known}."
        )
    return ToolChoice("tool", str(name))


# -- building specs ---------------------------------------------------------------------


def _dict_spec(tool: Mapping[str, Any]) -> ToolSpec:
    if tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
        tool = tool["function"]
    if "name" in tool and ("parameters" in tool or "input_schema" in tool or len(tool) <= 2):
        parameters = tool.get("parameters", tool.get("input_schema")) or {"type": "object", "properties": {}}
        return ToolSpec(str(tool["name"]), str(tool.get("description") or ""), dict(parameters))
    if tool.get("type") == "object" and isinstance(tool.get("title"), str):
        schema = dict(tool)
        name = schema.pop("title")
        return ToolSpec(_safe_name(name), str(schema.pop("description", "") or ""), schema)
    raise InvalidRequestError(
        "A tool dict needs a name: pass {'name', 'description', 'parameters'} or a JSON schema "
        "of an object with a 'title'."
    )


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64]


def _model_spec(model: Any) -> ToolSpec:
    schema = dict(model.model_json_schema())
    schema.pop("title", None)
    description = schema.pop("description", "") or ""
    return ToolSpec(model.__name__, description, schema)


def _function_spec(fn: Callable[..., Any]) -> ToolSpec:
    model, description = _model_of(fn)
    schema = dict(model.model_json_schema())
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    return ToolSpec(_safe_name(getattr(fn, "__name__", "tool")), description, schema)


def _model_of(fn: Callable[..., Any]) -> tuple[Any, str]:
    try:
        return _function_model(fn)
    except TypeError:  # an unhashable callable: not cached
        return _function_model.__wrapped__(fn)


@functools.lru_cache(maxsize=256)
def _function_model(fn: Callable[..., Any]) -> tuple[Any, str]:
    """The pydantic model of ``fn``'s parameters and its description (cached per function)."""
    import typing

    from pydantic import Field, create_model

    try:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
    except (TypeError, ValueError, NameError) as exc:
        raise InvalidRequestError(f"Cannot read the signature of tool {fn!r}: {exc}") from exc
    description, arg_docs = _parse_docstring(inspect.getdoc(fn) or "")
    fields: dict[str, Any] = {}
    for name, param in signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is param.empty else param.default
        fields[name] = (hints.get(name, Any), Field(default, description=arg_docs.get(name)))
    model = create_model(_safe_name(getattr(fn, "__name__", "tool")), **fields)
    return model, description


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?):\s*$")
_ARG_LINE = re.compile(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+):\s*(.*)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description (text before any section) and per-argument descriptions."""
    description: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    last: str | None = None
    for line in doc.splitlines():
        heading = _SECTION.match(line.strip())
        sphinx = _SPHINX.match(line.strip())
        if heading:
            section, last = heading.group(1), None
        elif sphinx:
            section, last = "sphinx", sphinx.group(1)
            args[last] = sphinx.group(2).strip()
        elif section is None:
            if line.strip().startswith(":"):
                section = "sphinx"
            else:
                description.append(line)
        elif section in ("Args", "Arguments", "Parameters", "Params") and (match := _ARG_LINE.match(line)):
            last = match.group(1).lstrip("*")
            args[last] = match.group(2).strip()
        elif last is not None and line.strip() and line.startswith((" ", "\t")):
            args[last] = f"{args[last]} {line.strip()}".strip()
    return "\n".join(description).strip(), args


# -- answering calls ------------------------------------------------------------------------


def run_tool_calls(
    response: Response, functions: Sequence[Callable[..., Any]] | Mapping[str, Callable[..., Any]]
) -> list[Message]:
    """Run the tool calls of ``response``; return the messages to append to the conversation.

    The list is the assistant turn that made the calls
    (:meth:`Message.assistant_tool_calls`) and then one TOOL message per call,
    with the call's id. Arguments are validated against the function's
    signature first; a call of an unknown tool or with arguments that do not
    validate gets an ``"Error: ..."`` result the model can act on. Exceptions
    the functions raise propagate. Results that are not strings are sent as
    JSON.
    """
    from llmkit.types import Message, MessageRole

    table = dict(functions) if isinstance(functions, Mapping) else {tool_spec(f).name: f for f in functions}
    messages = [Message.assistant_tool_calls(response)]
    for call in response.tool_calls:
        fn = table.get(call.name)
        if fn is None:
            result: Any = f"Error: there is no tool named {call.name!r}."
        else:
            result = _call(fn, call.arguments)
        messages.append(Message(MessageRole.TOOL, _result_text(result), tool_call_id=call.id))
    return messages


def _call(fn: Callable[..., Any], arguments: Mapping[str, Any]) -> Any:
    from pydantic import ValidationError

    model, _ = _model_of(fn)
    try:
        validated = model.model_validate(dict(arguments))
    except ValidationError as exc:
        return f"Error: invalid arguments: {exc.errors(include_url=False)}"
    return fn(**{name: getattr(validated, name) for name in type(validated).model_fields})


def _result_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    dump = getattr(result, "model_dump_json", None)
    if callable(dump):
        return str(dump())
    return json.dumps(result, default=str, ensure_ascii=False)
