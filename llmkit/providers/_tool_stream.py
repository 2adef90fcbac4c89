"""Tool calls that arrive in pieces in a stream, put back together.

OpenAI and Anthropic stream a call as its id and name first, then the JSON of
its arguments in fragments, each piece tagged with the index of its call (or
content block). :class:`ToolCallAssembler` collects the pieces and gives the
finished :class:`~llmkit.types.ToolCall` objects, in index order, when the
stream says the turn is over.
"""

from __future__ import annotations

import json

from llmkit.types import ToolCall

__all__ = ["ToolCallAssembler", "parse_arguments"]


def parse_arguments(text: str | None) -> dict[str, object]:
    """The arguments of a call from their JSON; ``{"_raw": text}`` when it is not a JSON object."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}


class ToolCallAssembler:
    """The tool calls of one streamed turn, by index, as their pieces arrive."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, tuple[list[str], list[str]]] = {}  # index -> ([id, name], fragments)

    def add(
        self, index: int, call_id: str | None = None, name: str | None = None, arguments: str = ""
    ) -> None:
        head, fragments = self._calls.setdefault(index, (["", ""], []))
        if call_id:
            head[0] = call_id
        if name:
            head[1] = name
        if arguments:
            fragments.append(arguments)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def take(self) -> tuple[ToolCall, ...]:
        """The calls so far, complete, in index order; the assembler is empty afterwards."""
        calls = tuple(
            ToolCall(head[0], head[1], parse_arguments("".join(fragments)))
            for _, (head, fragments) in sorted(self._calls.items())
        )
        self._calls.clear()
        return calls
