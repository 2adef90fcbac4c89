"""Tool calls that arrive in pieces in a stream, put back together.

OpenAI and Anthropic stream a call as its id and name first, then the JSON of
its arguments in fragments, each piece tagged with the index of its call (or
content block). :class:`ToolCallAssembler` collects the pieces and gives the
finished :class:`~llmkit.types.ToolCall` objects, in index order, when the
stream says the turn is over. Some OpenAI-compatible servers (Ollama) give
every call of a turn the same index: a new call id at an index starts a new
call there rather than overwriting the one before.
"""

from __future__ import annotations

import json

from llmkit.types import ToolCall

__all__ = ["ToolCallAssembler", "parse_arguments"]

_NO_INDEX = 1 << 30  # pieces without an index sort after the numbered ones


def parse_arguments(text: str | None) -> dict[str, object]:
    """The arguments of a call from their JSON; ``{"_raw": text}`` when it is not a JSON object."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}


class _Pieces:
    __slots__ = ("fragments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.fragments: list[str] = []


class ToolCallAssembler:
    """The tool calls of one streamed turn, by index, as their pieces arrive."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, list[_Pieces]] = {}

    def add(
        self, index: int | None, call_id: str | None = None, name: str | None = None, arguments: str = ""
    ) -> None:
        calls = self._calls.setdefault(index if isinstance(index, int) else _NO_INDEX, [])
        if not calls or (call_id and calls[-1].id and calls[-1].id != call_id):
            calls.append(_Pieces())
        call = calls[-1]
        if call_id:
            call.id = call_id
        if name:
            call.name = name
        if arguments:
            call.fragments.append(arguments)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def take(self) -> tuple[ToolCall, ...]:
        """The calls so far, complete, in index order; the assembler is empty afterwards."""
        calls = tuple(
            ToolCall(call.id, call.name, parse_arguments("".join(call.fragments)))
            for _, pieces in sorted(self._calls.items())
            for call in pieces
        )
        self._calls.clear()
        return calls
