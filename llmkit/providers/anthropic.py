"""Anthropic's Messages API, over llmkit's own HTTP (:mod:`llmkit.providers._http`).

Replies are read from the JSON body and streams from the raw SSE bytes
(:mod:`llmkit.providers._anthropic_reply`, :mod:`llmkit.providers._anthropic_stream`);
requests are built in :mod:`llmkit.providers._anthropic_format`. llmkit's own
options (``thinking=``, ``cache_control=``, ``server_tools=``) are described in
:mod:`llmkit.providers._options`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from llmkit.errors import InvalidRequestError, LLMError
from llmkit.providers import _anthropic_format as fmt
from llmkit.providers import _anthropic_reply as reply
from llmkit.providers._anthropic_stream import AnthropicStream
from llmkit.providers._http import HttpProvider, OpeningEvents
from llmkit.providers._limits import anthropic_limits
from llmkit.providers._options import CallOptions, call_options, thinking_budget
from llmkit.providers._reply import LazySDKObject, field, reply_json
from llmkit.providers._sdk import map_sdk_error
from llmkit.providers.base import Capabilities, ProviderReply, ServerLimitState, StreamDelta
from llmkit.request import DEFAULT_MAX_TOKENS, Request
from llmkit.types import Response, Usage

__all__ = ["API_VERSION", "AnthropicProvider"]

API_VERSION = "2023-06-01"  # the anthropic-version header every request carries



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


class AnthropicProvider(HttpProvider):
    """Translation for the Anthropic Messages API. The system prompt goes top-level.

    ``json_mode=True`` is best-effort here (see :mod:`llmkit.providers._anthropic_format`).
    """

    name = "anthropic"
    path = "/v1/messages"
    request_id_header = "request-id"
    aliases = ("claude",)
    key_env_vars = ("ANTHROPIC_API_KEYS", "ANTHROPIC_API_KEY")
    default_model = "claude-3-5-haiku-latest"
    capabilities = Capabilities(
        streaming=True, tools=True, images=True, structured_outputs=True, json_mode=True,
        rate_limit_headers=True, thinking=True, refusals=True, server_tools=True, prompt_caching=True,
    )
    structured_backend = "llmkit.structured.backends:AnthropicBackend"
    batch_api = "llmkit.providers._anthropic_batch:AnthropicBatch"

    def create_client(self, api_key: str) -> Any:
        """The key's SDK client (for instructor), over the endpoint's shared connections."""
        import anthropic

        return anthropic.Anthropic(api_key=api_key, http_client=self.endpoint().client, **self.sdk_options())

    def warm_client(self, client: Any) -> None:
        _ = client.messages.with_raw_response  # imports the messages resources

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key, "anthropic-version": API_VERSION}

    def read_json(self, data: dict[str, Any], headers: Mapping[str, str], request: Request) -> ProviderReply:
        response = self.parse_message(data, headers, LazySDKObject(lambda: _sdk_message(data)))
        if fmt.json_prefill(request, call_options(request, self.name)):  # put the "{" back in front
            object.__setattr__(response, "content", fmt.JSON_PREFILL + response.content)
        limit = reply.itpm_input_tokens(response.model, response.usage)
        return ProviderReply(response, self.limit_state(headers), limit)

    def read_events(self, headers: Mapping[str, str], request: Request) -> OpeningEvents:
        request_id = headers.get("request-id")
        opening = StreamDelta(request_id=request_id, limits=self.limit_state(headers))
        prefill = fmt.json_prefill(request, call_options(request, self.name))
        prefix = (StreamDelta(text=fmt.JSON_PREFILL),) if prefill else ()
        return OpeningEvents(opening, AnthropicStream(request.model, request_id), prefix)

    def build_params(self, request: Request) -> dict[str, Any]:
        options = call_options(request, self.name)
        params: dict[str, Any] = {
            "model": request.model,
            "messages": fmt.messages(request, options),
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
        if options.server_tools:
            params["tools"] = [*params.get("tools", ()), *options.server_tools]
        thinking = fmt.thinking_param(options.thinking)
        if thinking is not None:
            params["thinking"] = thinking
        if options.cache_control is not None:
            fmt.mark_cache(params, options.cache_control, fmt.json_prefill(request, options))
        params.update(options.rest)
        _move_sampling_to_body(params, request.temperature)
        return params

    def check_request(self, request: Request) -> None:
        """Also: thinking that Anthropic would refuse (budget, temperature, forced tools)."""
        super().check_request(request)
        options = call_options(request, self.name)
        if options.thinking_on:
            _check_thinking(options, request)

    def complete(self, client: Any, request: Request) -> ProviderReply:
        import anthropic

        try:
            raw = client.messages.with_raw_response.create(**self.build_params(request))
            response = self.parse_message(reply_json(raw), raw.headers, LazySDKObject(raw.parse))
            if fmt.json_prefill(request, call_options(request, self.name)):  # put the "{" back in front
                object.__setattr__(response, "content", fmt.JSON_PREFILL + response.content)
            limit = reply.itpm_input_tokens(response.model, response.usage)
            return ProviderReply(response, self.limit_state(raw.headers), limit)
        except Exception as exc:
            raise map_sdk_error(exc, anthropic, self.name, self.limit_state) from exc

    def parse_message(self, message: Any, headers: Mapping[str, str], raw: Any = None) -> Response:
        """A Response from a Messages reply: its JSON (a dict) or the SDK's object."""
        text, calls, parts = reply.read_blocks(field(message, "content"))
        stop = field(message, "stop_reason")
        details = field(message, "stop_details")
        explanation = field(details, "explanation") if details is not None else None
        return Response(
            content=text,
            model=field(message, "model"),
            provider=self.name,
            finish_reason=stop,
            usage=self.usage_of(field(message, "usage")),
            request_id=headers.get("request-id"),
            tool_calls=calls,
            raw=message if raw is None else raw,
            refusal=explanation if stop == "refusal" and isinstance(explanation, str) else None,
            parts=parts,
        )

    def map_error(self, exc: BaseException) -> LLMError:
        import anthropic

        return map_sdk_error(exc, anthropic, self.name, self.limit_state)

    @staticmethod
    def usage_of(usage: Any) -> Usage:
        """Anthropic counts cache reads and writes apart from ``input_tokens``; llmkit
        counts every input token in ``input_tokens`` (see :mod:`llmkit.providers._anthropic_reply`)."""
        return reply.usage_of(usage)

    def limit_state(self, headers: Mapping[str, str]) -> ServerLimitState | None:
        """Anthropic's ``anthropic-ratelimit-*`` headers (see :mod:`llmkit.providers._limits`)."""
        return anthropic_limits(headers)

    def stream(self, client: Any, request: Request) -> Iterator[StreamDelta]:
        import anthropic

        params = self.build_params(request)
        params["stream"] = True
        try:
            raw = client.messages.with_raw_response.create(**params)
            http = raw.http_response
        except Exception as exc:
            raise map_sdk_error(exc, anthropic, self.name, self.limit_state) from exc
        request_id = raw.headers.get("request-id")
        try:
            yield StreamDelta(request_id=request_id, limits=self.limit_state(raw.headers))
            if fmt.json_prefill(request, call_options(request, self.name)):
                yield StreamDelta(text=fmt.JSON_PREFILL)
            yield from AnthropicStream(request.model, request_id).deltas(http.iter_bytes())
        except LLMError:
            raise
        except Exception as exc:
            raise map_sdk_error(exc, anthropic, self.name, self.limit_state) from exc
        finally:
            http.close()


def _sdk_message(data: dict[str, Any]) -> Any:
    """The anthropic SDK's Message of a reply's JSON (for ``Response.raw``)."""
    from anthropic.types import Message

    return Message.construct(**data)


def _check_thinking(options: CallOptions, request: Request) -> None:
    """InvalidRequestError for thinking Anthropic refuses, said before anything is sent."""

    def refuse(message: str) -> InvalidRequestError:
        return InvalidRequestError(message, provider="anthropic")

    thinking = options.thinking
    budget = thinking.get("budget_tokens") if isinstance(thinking, Mapping) else thinking_budget(thinking)
    max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
    if isinstance(budget, int) and budget < fmt.MIN_THINKING_BUDGET:
        least = fmt.MIN_THINKING_BUDGET
        raise refuse(f"Anthropic's thinking budget is {least} tokens at least, got {budget}.")
    if isinstance(budget, int) and budget >= max_tokens:
        raise refuse(
            f"thinking={thinking!r} is a budget of {budget} tokens, which must be less than max_tokens "
            f"({max_tokens}; it counts thinking and answer together): pass a larger max_tokens=."
        )
    if request.temperature is not None or "top_k" in options.rest:
        raise refuse("Anthropic's extended thinking takes no temperature or top_k: leave both unset.")
    choice = request.tool_choice
    if choice is not None and choice.mode in ("required", "tool"):
        raise refuse(
            "Anthropic's extended thinking cannot be combined with a forced tool (tool_choice="
            f"{choice.name or choice.mode!r}): use tool_choice='auto' or leave it unset."
        )
