"""Anthropic's Messages API through the official SDK."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from llmkit.errors import LLMError
from llmkit.providers import _anthropic_format as fmt
from llmkit.providers._headers import header_number
from llmkit.providers._reply import LazySDKObject, field, reply_json
from llmkit.providers._sdk import map_sdk_error
from llmkit.providers._tool_stream import ToolCallAssembler
from llmkit.providers.base import Capabilities, Provider, ProviderReply, ServerLimitState, StreamDelta
from llmkit.request import Request
from llmkit.types import Response, ToolCall, Usage

__all__ = ["AnthropicProvider"]

# Anthropic requires max_tokens on every request; this is used when neither
# the call nor the client's settings give one.
DEFAULT_MAX_TOKENS = 1024


# anthropic>=1.0 dropped the sampling parameters from the method signatures;
# the API still takes them, so they travel in extra_body (0.x accepts that too).
_SAMPLING_PARAMS = ("temperature", "top_p", "top_k")


def _move_sampling_to_body(params: dict[str, Any], temperature: float | None) -> None:
    body = dict(params.pop("extra_body", None) or {})
    if temperature is not None:
        body["temperature"] = temperature
    for name in _SAMPLING_PARAMS:
        if name in params:
            body[name] = params.pop(name)
    if body:
        params["extra_body"] = body


class AnthropicProvider(Provider):
    """Translation for the Anthropic Messages API. The system prompt goes top-level.

    ``json_mode=True`` is best-effort here (see :mod:`llmkit.providers._anthropic_format`).
    """

    name = "anthropic"
    aliases = ("claude",)
    key_env_vars = ("ANTHROPIC_API_KEYS", "ANTHROPIC_API_KEY")
    default_model = "claude-3-5-haiku-latest"
    capabilities = Capabilities(
        streaming=True, tools=True, images=True, structured_outputs=True, json_mode=True,
        rate_limit_headers=True,
    )
    structured_backend = "llmkit.structured.backends:AnthropicBackend"

    def create_client(self, api_key: str) -> Any:
        import anthropic

        return anthropic.Anthropic(api_key=api_key, **self.sdk_options())

    def warm_client(self, client: Any) -> None:
        _ = client.messages.with_raw_response  # imports the messages resources

    def build_params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": request.model,
            "messages": fmt.messages(request),
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        }
        system = fmt.system_prompt(request)
        if system:
            params["system"] = system
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        if request.timeout is not None:
            params["timeout"] = request.timeout
        params.update(fmt.tool_params(request))
        params.update(request.extra)
        _move_sampling_to_body(params, request.temperature)
        return params

    def complete(self, client: Any, request: Request) -> ProviderReply:
        import anthropic

        try:
            raw = client.messages.with_raw_response.create(**self.build_params(request))
            response = self.parse_message(reply_json(raw), raw.headers, LazySDKObject(raw.parse))
            if fmt.json_prefill(request):  # put the prefilled "{" back in front
                object.__setattr__(response, "content", fmt.JSON_PREFILL + response.content)
            return ProviderReply(response, self.limit_state(raw.headers))
        except Exception as exc:
            raise map_sdk_error(exc, anthropic, self.name) from exc

    def parse_message(self, message: Any, headers: Mapping[str, str], raw: Any = None) -> Response:
        """A Response from a Messages reply: its JSON (a dict) or the SDK's object."""
        texts, calls = [], []
        for block in field(message, "content") or ():
            kind = field(block, "type")
            if kind == "text":
                texts.append(field(block, "text"))
            elif kind == "tool_use":
                arguments = dict(field(block, "input") or {})
                calls.append(ToolCall(id=field(block, "id"), name=field(block, "name"), arguments=arguments))
        return Response(
            content="".join(texts),
            model=field(message, "model"),
            provider=self.name,
            finish_reason=field(message, "stop_reason"),
            usage=self.usage_of(field(message, "usage")),
            request_id=headers.get("request-id"),
            tool_calls=tuple(calls),
            raw=message if raw is None else raw,
        )

    def map_error(self, exc: BaseException) -> LLMError:
        import anthropic

        return map_sdk_error(exc, anthropic, self.name)

    @staticmethod
    def usage_of(usage: Any) -> Usage:
        """Anthropic counts cache reads and writes apart from ``input_tokens``; llmkit
        counts every input token in ``input_tokens``, cache reads also in ``cached_input_tokens``."""
        if usage is None:
            return Usage()
        cached = field(usage, "cache_read_input_tokens") or 0
        written = field(usage, "cache_creation_input_tokens") or 0
        total_in = (field(usage, "input_tokens") or 0) + cached + written
        return Usage(total_in, field(usage, "output_tokens") or 0, cached)

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
        if fmt.json_prefill(request):
            yield StreamDelta(text=fmt.JSON_PREFILL)
        try:
            yield from self._deltas(events)
        except Exception as exc:
            raise map_sdk_error(exc, anthropic, self.name) from exc

    def _deltas(self, events: Any) -> Iterator[StreamDelta]:
        input_tokens = cached = 0
        model = None
        calls = ToolCallAssembler()
        with events:
            for event in events:
                kind = event.type
                if kind == "message_start":
                    model = event.message.model
                    usage = self.usage_of(event.message.usage)
                    input_tokens, cached = usage.input_tokens, usage.cached_input_tokens
                elif kind == "content_block_start" and event.content_block.type == "tool_use":
                    calls.add(event.index, event.content_block.id, event.content_block.name)
                elif kind == "content_block_delta" and event.delta.type == "text_delta":
                    yield StreamDelta(text=event.delta.text)
                elif kind == "content_block_delta" and event.delta.type == "input_json_delta":
                    calls.add(event.index, arguments=event.delta.partial_json)
                elif kind == "message_delta":
                    output = event.usage.output_tokens or 0
                    yield StreamDelta(
                        usage=Usage(input_tokens, output, cached),
                        finish_reason=event.delta.stop_reason,
                        model=model,
                        tool_calls=calls.take(),
                    )
