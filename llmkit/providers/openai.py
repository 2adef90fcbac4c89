"""OpenAI's chat completions API through the official SDK (also Groq and local servers)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from llmkit.errors import LLMError
from llmkit.providers._headers import header_number, parse_duration
from llmkit.providers._openai_format import message_dict, system_prompt, tool_params
from llmkit.providers._reply import LazySDKObject, field, reply_json
from llmkit.providers._sdk import map_sdk_error
from llmkit.providers._tool_stream import ToolCallAssembler, parse_arguments
from llmkit.providers.base import Capabilities, Provider, ProviderReply, ServerLimitState, StreamDelta
from llmkit.request import Request
from llmkit.types import Response, ToolCall, Usage

__all__ = ["OpenAIProvider"]


class OpenAIProvider(Provider):
    """Translation for OpenAI-compatible chat completions."""

    name = "openai"
    key_env_vars: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEYS", "OPENAI_API_KEY")
    default_model = "gpt-4o-mini"
    capabilities = Capabilities(
        streaming=True, tools=True, images=True, structured_outputs=True, json_mode=True,
        rate_limit_headers=True,
    )
    structured_backend = "llmkit.structured.backends:OpenAIBackend"

    def create_client(self, api_key: str) -> Any:
        import openai

        return openai.OpenAI(api_key=api_key, **self.sdk_options())

    def warm_client(self, client: Any) -> None:
        _ = client.chat.completions.with_raw_response  # imports the chat resources (~0.8 s)

    def build_params(self, request: Request) -> dict[str, Any]:
        messages = [message_dict(m) for m in request.messages]
        system = system_prompt(request)
        if system:
            messages.insert(0, {"role": "system", "content": system})
        params: dict[str, Any] = {"model": request.model, "messages": messages}
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.max_tokens is not None:
            params["max_tokens"] = request.max_tokens
        if request.stop:
            params["stop"] = list(request.stop)
        if request.timeout is not None:
            params["timeout"] = request.timeout
        params.update(tool_params(request))
        params.update(request.extra)
        return params

    def complete(self, client: Any, request: Request) -> ProviderReply:
        import openai

        try:
            raw = client.chat.completions.with_raw_response.create(**self.build_params(request))
            response = self.parse_completion(reply_json(raw), raw.headers, LazySDKObject(raw.parse))
            return ProviderReply(response, self.limit_state(raw.headers))
        except Exception as exc:
            raise map_sdk_error(exc, openai, self.name) from exc

    def parse_completion(self, completion: Any, headers: Mapping[str, str], raw: Any = None) -> Response:
        """A Response from a chat completion: its JSON (a dict) or the SDK's object."""
        choices = field(completion, "choices")
        if not choices:
            raise ValueError("the reply has no choices")
        choice = choices[0]
        message = field(choice, "message")
        return Response(
            content=field(message, "content") or "",
            model=field(completion, "model"),
            provider=self.name,
            finish_reason=field(choice, "finish_reason"),
            usage=self.usage_of(field(completion, "usage")),
            request_id=headers.get("x-request-id"),
            tool_calls=tuple(_tool_call(c) for c in (field(message, "tool_calls") or ())),
            raw=completion if raw is None else raw,
        )

    def map_error(self, exc: BaseException) -> LLMError:
        import openai

        return map_sdk_error(exc, openai, self.name)

    @staticmethod
    def usage_of(usage: Any) -> Usage:
        """llmkit's Usage of an OpenAI ``usage`` object or dict (zero when None)."""
        if usage is None:
            return Usage()
        details = field(usage, "prompt_tokens_details")
        cached = (field(details, "cached_tokens") if details is not None else None) or 0
        return Usage(field(usage, "prompt_tokens") or 0, field(usage, "completion_tokens") or 0, cached)

    def limit_state(self, headers: Mapping[str, str]) -> ServerLimitState | None:
        """OpenAI's ``x-ratelimit-*`` headers (tokens are input and output combined)."""
        remaining_requests = header_number(headers, "x-ratelimit-remaining-requests")
        remaining_tokens = header_number(headers, "x-ratelimit-remaining-tokens")
        if remaining_requests is None and remaining_tokens is None:
            return None
        return ServerLimitState(
            remaining_requests=remaining_requests,
            remaining_tokens=remaining_tokens,
            limit_requests=header_number(headers, "x-ratelimit-limit-requests"),
            limit_tokens=header_number(headers, "x-ratelimit-limit-tokens"),
            reset_requests=parse_duration(headers.get("x-ratelimit-reset-requests")),
            reset_tokens=parse_duration(headers.get("x-ratelimit-reset-tokens")),
        )

    def stream(self, client: Any, request: Request) -> Iterator[StreamDelta]:
        import openai

        params = self.build_params(request)
        params["stream"] = True
        params.setdefault("stream_options", {"include_usage": True})
        try:
            raw = client.chat.completions.with_raw_response.create(**params)
            stream = raw.parse()
        except Exception as exc:
            raise map_sdk_error(exc, openai, self.name) from exc
        yield from self._deltas(stream, raw.headers)

    def _deltas(self, stream: Any, headers: Mapping[str, str]) -> Iterator[StreamDelta]:
        import openai

        request_id = headers.get("x-request-id")
        yield StreamDelta(request_id=request_id, limits=self.limit_state(headers))
        calls = ToolCallAssembler()
        try:
            with stream:
                for chunk in stream:
                    usage = self.usage_of(chunk.usage) if chunk.usage is not None else None
                    text, finish = "", None
                    if chunk.choices:
                        choice = chunk.choices[0]
                        text = choice.delta.content or "" if choice.delta else ""
                        _add_call_pieces(calls, choice.delta)
                        finish = choice.finish_reason
                    if text or usage is not None or finish is not None:
                        done = calls.take() if finish is not None else ()
                        yield StreamDelta(text, usage, finish, chunk.model, tool_calls=done)
                if calls:  # a stream that ended without its finish_reason
                    yield StreamDelta(tool_calls=calls.take())
        except Exception as exc:
            raise map_sdk_error(exc, openai, self.name) from exc


def _add_call_pieces(calls: ToolCallAssembler, delta: Any) -> None:
    for piece in (getattr(delta, "tool_calls", None) or ()) if delta else ():
        function = piece.function
        name = function.name if function else None
        calls.add(piece.index, piece.id, name, (function.arguments or "") if function else "")


def _tool_call(call: Any) -> ToolCall:
    function = field(call, "function")
    arguments = parse_arguments(field(function, "arguments"))
    return ToolCall(id=field(call, "id"), name=field(function, "name"), arguments=arguments)
