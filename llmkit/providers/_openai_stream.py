"""OpenAI's chat-completion streams, read from the raw SSE bytes into StreamDeltas.

A stream is ``data: {chat.completion.chunk}`` events, the last choice chunk
carrying ``finish_reason``, then (with ``stream_options.include_usage``) one
chunk with ``choices: []`` and the ``usage``, then ``data: [DONE]``. An error
inside the stream is a ``data: {"error": {...}}`` event.

What comes out: text (``delta.content``) and refusal text (``delta.refusal``)
as they arrive, then one last delta with the finish reason (``"refusal"``
when the model refused), the usage and the finished tool calls. The stream is
whole when ``[DONE]`` came, or, for servers that leave it out, when the
finish reason and the usage asked for both came; a body that ends otherwise
(a clean end or a closed connection) raises NetworkError, so a cut stream
never passes for a whole one. Only the first choice is read: llmkit refuses
``n > 1`` before sending.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from llmkit.errors import LLMError, NetworkError, ProviderError
from llmkit.providers._errors import error_for_status
from llmkit.providers._sse import EventStream, SSEEvent, json_data
from llmkit.providers._tool_stream import ToolCallAssembler
from llmkit.providers.base import StreamDelta
from llmkit.types import Usage

__all__ = ["OpenAIStream", "error_from_payload"]

_RATE_LIMITED = frozenset({"rate_limit_exceeded", "requests", "tokens", "rate_limit_error"})


def error_from_payload(error: Any, provider: str, request_id: str | None = None) -> LLMError:
    """The llmkit error for an ``{"error": {"message", "type", "code"}}`` event in a stream."""
    error = error if isinstance(error, Mapping) else {}
    kind, code = error.get("type"), error.get("code")
    message = error.get("message") if isinstance(error.get("message"), str) else f"{provider} stream error"
    if kind in _RATE_LIMITED or code in _RATE_LIMITED:
        status = 429
    elif kind == "invalid_request_error":
        status = 400
    else:  # server_error and anything unnamed: the provider failed
        status = 500
    return error_for_status(status, message, provider=provider, request_id=request_id)


class OpenAIStream(EventStream):
    """The state of one stream; :meth:`deltas` reads its bytes."""

    def __init__(
        self, provider: str, model: str | None, request_id: str | None, wants_usage: bool,
        usage_of: Callable[[Any], Usage],
    ) -> None:  # fmt: skip
        self.provider = provider
        self.model = model
        self.request_id = request_id
        self.wants_usage = wants_usage
        self.usage_of = usage_of
        self.usage: Usage | None = None
        self.finish: str | None = None
        self.refused = False
        self.done = False
        self._calls = ToolCallAssembler()
        super().__init__()

    @property
    def whole(self) -> bool:
        """Whether everything the protocol promises has arrived."""
        return self.done or (self.finish is not None and (self.usage is not None or not self.wants_usage))

    def _ending(self) -> Iterator[StreamDelta]:
        """The last delta (finish reason, usage, tool calls), or the error of a cut stream."""
        if not self.whole:
            missing = "its finish_reason" if self.finish is None else "its usage and [DONE]"
            raise NetworkError(f"The {self.provider} stream ended before {missing}", provider=self.provider)
        finish = "refusal" if self.refused and self.finish in ("stop", None) else self.finish
        calls = self._calls.take()
        yield StreamDelta(usage=self.usage, finish_reason=finish, model=self.model, tool_calls=calls)

    def _event(self, event: SSEEvent, out: list[StreamDelta]) -> None:
        """Read one event's data, adding the delta it makes to ``out``."""
        if self.done:
            return
        data = event.data
        if data[:1] != "{" and data.strip() == "[DONE]":
            self.done = True
            return
        try:
            chunk = json_data(data)
        except ValueError as exc:
            raise ProviderError(f"Malformed stream event from {self.provider}: {exc}",
                                provider=self.provider) from exc  # fmt: skip
        if not isinstance(chunk, dict):
            raise ProviderError(f"Malformed stream event from {self.provider}: not a JSON object",
                                provider=self.provider)  # fmt: skip
        if chunk.get("error"):
            raise error_from_payload(chunk["error"], self.provider, self.request_id)
        if chunk.get("usage") is not None:
            self.usage = self.usage_of(chunk["usage"])
        model = chunk.get("model")
        if model and isinstance(model, str):
            self.model = model
        choices = chunk.get("choices")
        if choices and isinstance(choices, list) and isinstance(choices[0], dict):
            self._choice(choices[0], out)

    def _choice(self, choice: dict[str, Any], out: list[StreamDelta]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            pieces = delta.get("tool_calls")
            if pieces:
                for piece in pieces:
                    function = piece.get("function") or {}
                    self._calls.add(piece.get("index"), piece.get("id"), function.get("name"),
                                    function.get("arguments") or "")  # fmt: skip
            text, refusal = delta.get("content"), delta.get("refusal")
            if refusal:
                self.refused = True
                out.append(StreamDelta(text=text or "", refusal=refusal))
            elif text:
                out.append(StreamDelta(text=text))
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]
