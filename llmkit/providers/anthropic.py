"""Anthropic's Messages API through the official SDK."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from llmkit.providers._sdk import map_sdk_error
from llmkit.providers.base import Provider, ProviderReply, StreamDelta, header_number
from llmkit.ratelimit import ServerLimitState
from llmkit.request import Request
from llmkit.types import Message, MessageRole, Response, ToolCall, Usage

__all__ = ["AnthropicProvider"]

# Anthropic requires max_tokens on every request; this is used when neither
# the call nor the client's settings give one.
DEFAULT_MAX_TOKENS = 1024


def _message_dict(message: Message) -> dict[str, Any]:
    if message.role is MessageRole.TOOL:
        block: dict[str, Any] = {"type": "tool_result", "content": message.content}
        if message.tool_call_id:
            block["tool_use_id"] = message.tool_call_id
            return {"role": "user", "content": [block]}
        return {"role": "user", "content": message.content}
    return {"role": message.role.value, "content": message.content}


class AnthropicProvider(Provider):
    """Translation for the Anthropic Messages API. The system prompt goes top-level."""

    name = "anthropic"
    default_model = "claude-3-5-haiku-latest"

    def create_client(self, api_key: str) -> Any:
        import anthropic

        return anthropic.Anthropic(
            api_key=api_key, base_url=self.base_url, max_retries=0, timeout=self.timeout
        )

    def build_params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [_message_dict(m) for m in request.messages],
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        }
        if request.system:
            params["system"] = request.system
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        if request.timeout is not None:
            params["timeout"] = request.timeout
        params.update(request.extra)
        return params

    def complete(self, client: Any, request: Request) -> ProviderReply:
        import anthropic

        try:
            raw = client.messages.with_raw_response.create(**self.build_params(request))
            message = raw.parse()
            return ProviderReply(self.parse_message(message, raw.headers), self.limit_state(raw.headers))
        except Exception as exc:
            raise map_sdk_error(exc, anthropic, self.name) from exc

    def parse_message(self, message: Any, headers: Mapping[str, str]) -> Response:
        texts, calls = [], []
        for block in message.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                calls.append(ToolCall(id=block.id, name=block.name, arguments=dict(block.input)))
        return Response(
            content="".join(texts),
            model=message.model,
            provider=self.name,
            finish_reason=message.stop_reason,
            usage=self._usage(message.usage),
            request_id=headers.get("request-id"),
            tool_calls=tuple(calls),
            raw=message,
        )

    @staticmethod
    def _usage(usage: Any) -> Usage:
        cached = getattr(usage, "cache_read_input_tokens", None) or 0
        return Usage(usage.input_tokens or 0, usage.output_tokens or 0, cached)

    def limit_state(self, headers: Mapping[str, str]) -> ServerLimitState | None:
        """Anthropic's ``anthropic-ratelimit-*`` headers."""
        remaining_requests = header_number(headers, "anthropic-ratelimit-requests-remaining")
        remaining_input = header_number(headers, "anthropic-ratelimit-input-tokens-remaining")
        remaining_output = header_number(headers, "anthropic-ratelimit-output-tokens-remaining")
        remaining_tokens = header_number(headers, "anthropic-ratelimit-tokens-remaining")
        if remaining_requests is None and remaining_input is None and remaining_output is None:
            return None
        return ServerLimitState(
            remaining_requests=remaining_requests,
            remaining_input_tokens=remaining_input,
            remaining_output_tokens=remaining_output,
            remaining_tokens=remaining_tokens,
            limit_requests=header_number(headers, "anthropic-ratelimit-requests-limit"),
            limit_tokens=header_number(headers, "anthropic-ratelimit-tokens-limit"),
        )

    def stream(self, client: Any, request: Request) -> Iterator[StreamDelta]:
        import anthropic

        params = self.build_params(request)
        params["stream"] = True
        try:
            raw = client.messages.with_raw_response.create(**params)
            events = raw.parse()
        except Exception as exc:
            raise map_sdk_error(exc, anthropic, self.name) from exc
        yield StreamDelta(request_id=raw.headers.get("request-id"), limits=self.limit_state(raw.headers))
        try:
            yield from self._deltas(events)
        except Exception as exc:
            raise map_sdk_error(exc, anthropic, self.name) from exc

    def _deltas(self, events: Any) -> Iterator[StreamDelta]:
        input_tokens = cached = 0
        model = None
        with events:
            for event in events:
                kind = event.type
                if kind == "message_start":
                    model = event.message.model
                    usage = self._usage(event.message.usage)
                    input_tokens, cached = usage.input_tokens, usage.cached_input_tokens
                elif kind == "content_block_delta" and event.delta.type == "text_delta":
                    yield StreamDelta(text=event.delta.text)
                elif kind == "message_delta":
                    output = event.usage.output_tokens or 0
                    yield StreamDelta(
                        usage=Usage(input_tokens, output, cached),
                        finish_reason=event.delta.stop_reason,
                        model=model,
                    )
