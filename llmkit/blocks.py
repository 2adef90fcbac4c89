"""The blocks of an assistant turn besides its text: thinking, and tools the provider ran itself.

They live in ``Response.parts`` (with :class:`~llmkit.types.TextPart` for
the text, in the turn's order) and go back as content parts of the assistant
message (:meth:`~llmkit.types.Message.assistant_tool_calls`); each adapter
sends them where its provider wants them and leaves them out elsewhere.
Re-exported by :mod:`llmkit.types`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ServerToolPart", "ThinkingPart", "is_server_tool_block"]


@dataclass(frozen=True, slots=True)
class ThinkingPart:
    """A block of the model's thinking (extended thinking, reasoning), kept to be sent back.

    ``thinking`` is its readable text (a summary on some models; empty for a
    redacted block). ``signature`` is the provider's opaque proof that the
    block is the model's own (Anthropic ``signature``, Gemini
    ``thoughtSignature``); ``redacted`` is Anthropic's encrypted
    ``redacted_thinking`` data. Adapters send thinking back where their
    provider requires it (Anthropic, during tool use) and leave it out
    elsewhere; it never counts as the answer's text.
    """

    thinking: str = ""
    signature: str | None = field(default=None, repr=False)
    redacted: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Anthropic's block shape: ``thinking`` or ``redacted_thinking`` (how sessions save it)."""
        if self.redacted is not None:
            return {"type": "redacted_thinking", "data": self.redacted}
        data: dict[str, Any] = {"type": "thinking", "thinking": self.thinking}
        if self.signature is not None:
            data["signature"] = self.signature
        return data


@dataclass(frozen=True, slots=True)
class ServerToolPart:
    """A tool the provider ran itself (Anthropic web search, web fetch, code execution...).

    ``block`` is the provider's own content block, kept whole so that it can be
    sent back as it came (Anthropic requires that to continue such a turn):
    the call (``server_tool_use``) with its ``id``, ``name`` and ``input``, or
    its result (``web_search_tool_result`` ...) with the ``tool_use_id`` it
    answers. These are not tool calls (:class:`ToolCall`): nothing on the caller's side
    is to run them.
    """

    block: Mapping[str, Any]

    @property
    def type(self) -> str:
        return str(self.block.get("type", ""))

    @property
    def is_call(self) -> bool:
        """True for the call, False for its result."""
        return self.type.endswith("tool_use")

    @property
    def id(self) -> str:
        """The call's id (for a result: the id of the call it answers)."""
        return str(self.block.get("id") or self.block.get("tool_use_id") or "")

    @property
    def name(self) -> str:
        return str(self.block.get("name", ""))

    @property
    def input(self) -> dict[str, Any]:
        value = self.block.get("input")
        return dict(value) if isinstance(value, Mapping) else {}

    def to_dict(self) -> dict[str, Any]:
        return dict(self.block)


_SERVER_TOOL_TYPES = ("server_tool_use", "mcp_tool_use", "mcp_tool_result", "container_upload")


def is_server_tool_block(kind: Any) -> bool:
    """Whether an Anthropic content block type is a server tool's call or result."""
    return isinstance(kind, str) and (kind in _SERVER_TOOL_TYPES or kind.endswith("_tool_result"))
