"""Anthropic's streaming events (``text/event-stream``), read from the raw bytes into StreamDeltas.

A stream is ``message_start``, then per content block ``content_block_start``,
its deltas and ``content_block_stop``, then ``message_delta`` (stop reason and
the final, cumulative usage) and ``message_stop``; ``ping`` may come anywhere,
and ``event: error`` replaces the rest when the API fails mid-stream.

What comes out: text as it arrives; thinking text as it arrives (``thinking``)
and each finished thinking or server tool block as a part (``parts``); the
caller's tool calls, usage and finish reason in one last delta once
``message_stop`` arrives. A body that ends before ``message_stop`` (a clean
end or a closed connection) raises NetworkError: a cut stream never passes
for a whole one. An error event raises the error of its type
(:func:`llmkit.providers._anthropic_reply.error_from_event`).

Usage follows the SDK's own stream helper: ``message_start`` gives the first
counts, and the cumulative counts in ``message_delta`` replace them where given
(with server tools, ``message_delta`` carries the real input total).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llmkit.errors import NetworkError, ProviderError
from llmkit.providers._anthropic_reply import error_from_event, itpm_input_tokens, usage_of
from llmkit.providers._sse import EventStream, SSEEvent, json_data
from llmkit.providers._tool_stream import ToolCallAssembler, parse_arguments
from llmkit.providers.base import StreamDelta
from llmkit.types import ServerToolPart, ThinkingPart, is_server_tool_block

__all__ = ["AnthropicStream"]

PROVIDER = "anthropic"
_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
                 "cache_creation", "output_tokens_details")  # fmt: skip


class _Block:
    """A content block that is not text or a tool call, as its pieces arrive."""

    __slots__ = ("data", "json", "kind", "signature", "thinking")

    def __init__(self, data: dict[str, Any]) -> None:
        self.kind = str(data.get("type"))
        self.data = data
        self.thinking: list[str] = [data["thinking"]] if isinstance(data.get("thinking"), str) else []
        self.signature = data.get("signature") or None
        self.json: list[str] = []

    def part(self) -> Any:
        if self.kind == "thinking":
            return ThinkingPart("".join(self.thinking), self.signature)
        if self.kind == "redacted_thinking":
            return ThinkingPart(redacted=str(self.data.get("data", "")))
        block = dict(self.data)
        if self.json:
            block["input"] = parse_arguments("".join(self.json))
        return ServerToolPart(block)


class AnthropicStream(EventStream):
    """The state of one stream; :meth:`deltas` reads its bytes."""

    def __init__(self, model: str | None, request_id: str | None) -> None:
        self.model = model
        self.request_id = request_id
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.stop_details: Any = None
        self.finished = False
        self._calls = ToolCallAssembler()
        self._blocks: dict[int, _Block] = {}
        super().__init__()

    def _ending(self) -> Iterator[StreamDelta]:
        """Nothing more (the last delta came with ``message_stop``), or the error of a cut stream."""
        if not self.finished:
            raise NetworkError("The Anthropic stream ended before its message_stop event", provider=PROVIDER)
        yield from ()

    def _event(self, event: SSEEvent, out: list[StreamDelta]) -> None:
        """Read one event, adding the deltas it makes to ``out``."""
        if self.finished or event.event == "ping":
            return
        try:
            data = json_data(event.data)
        except ValueError as exc:
            raise ProviderError(f"Malformed stream event from Anthropic: {exc}", provider=PROVIDER) from exc
        kind = data.get("type", event.event) if isinstance(data, dict) else None
        if kind == "content_block_delta" and event.event != "error":  # most events
            self._delta(data, out)
            return
        if event.event == "error" or kind == "error":
            raise error_from_event(data, self.request_id)
        if not isinstance(data, dict):
            raise ProviderError("Malformed stream event from Anthropic: not a JSON object", provider=PROVIDER)
        if kind == "content_block_start":
            self._start(data)
        elif kind == "content_block_stop":
            block = self._blocks.pop(data.get("index", -1), None)
            if block is not None:
                out.append(StreamDelta(parts=(block.part(),)))
        elif kind == "message_start":
            message = data.get("message") or {}
            self.model = message.get("model") or self.model
            self._take_usage(message.get("usage"))
        elif kind == "message_delta":
            delta = data.get("delta") or {}
            self.stop_reason = delta.get("stop_reason") or self.stop_reason
            self.stop_details = delta.get("stop_details") or self.stop_details
            self._take_usage(data.get("usage"))
        elif kind == "message_stop":
            self.finished = True
            out.append(self._final())

    def _start(self, data: dict[str, Any]) -> None:
        block = data.get("content_block") or {}
        index = data.get("index")
        kind = block.get("type")
        if kind == "tool_use":
            self._calls.add(index, block.get("id"), block.get("name"))
        elif kind in ("thinking", "redacted_thinking") or is_server_tool_block(kind):
            self._blocks[index if isinstance(index, int) else -1] = _Block(dict(block))

    def _delta(self, data: dict[str, Any], out: list[StreamDelta]) -> None:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":  # most deltas
            if delta.get("text"):
                out.append(StreamDelta(text=delta["text"]))
            return
        block = self._blocks.get(data.get("index", -1))
        if kind == "thinking_delta" and block is not None:
            block.thinking.append(delta.get("thinking") or "")
            if delta.get("thinking"):
                out.append(StreamDelta(thinking=delta["thinking"]))
        elif kind == "signature_delta" and block is not None:
            block.signature = delta.get("signature") or block.signature
        elif kind == "input_json_delta":
            if block is not None:
                block.json.append(delta.get("partial_json") or "")
            else:
                self._calls.add(data.get("index"), arguments=delta.get("partial_json") or "")

    def _take_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.usage.update((k, usage[k]) for k in _USAGE_FIELDS if usage.get(k) is not None)

    def _final(self) -> StreamDelta:
        usage = usage_of(self.usage)
        refusal = ""
        if self.stop_reason == "refusal" and isinstance(self.stop_details, dict):
            refusal = self.stop_details.get("explanation") or ""
        return StreamDelta(
            usage=usage,
            finish_reason=self.stop_reason,
            model=self.model,
            tool_calls=self._calls.take(),
            refusal=refusal,
            limit_input_tokens=itpm_input_tokens(self.model, usage),
        )
