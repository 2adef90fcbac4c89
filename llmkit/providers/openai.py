"""OpenAI's chat completions API (also Groq and local servers), over llmkit's own HTTP.

Calls go over the endpoint every key shares (:mod:`llmkit.providers._http`,
:mod:`llmkit.transport`): the body is what the SDK would send, the reply is read
from its JSON, streams from the raw SSE bytes (:mod:`llmkit.providers._openai_stream`);
the SDK's object is ``Response.raw``, built on first use, and each key's SDK
client (for instructor) shares the same connections. Messages and tools are
built in :mod:`llmkit.providers._openai_format`.

* **The output limit** (``max_tokens=``) goes in ``max_completion_tokens`` for
  OpenAI's reasoning families (``o1``, ``o3``, ``o4-mini``..., ``gpt-5``...,
  ``codex-``: :attr:`OpenAIProvider.completion_tokens_models`), where
  ``max_tokens`` is refused, and in ``max_tokens`` elsewhere (Groq and local
  servers always, unless told). ``max_tokens_param="max_completion_tokens"``
  (or ``"max_tokens"``) on a call chooses. Either way it is ``max_tokens=``
  that is sent, so the limiter reserves what the provider may produce
  (reasoning tokens included); ``max_completion_tokens=`` itself is refused.
* **Thinking** (``thinking=``, OpenAI's reasoning models only): an effort
  (``"minimal"``, ``"low"``, ``"medium"``, ``"high"``, ...) is sent as
  ``reasoning_effort``; ``True``/``False`` send nothing (these models always
  reason; their own default applies). Budgets and dicts are refused: OpenAI
  takes no token budget. The reasoning text is not returned by chat
  completions; ``Usage.reasoning_tokens`` counts it (inside ``output_tokens``).
* **Refusals**: ``message.refusal`` (and streamed ``delta.refusal``) become
  ``Response.refusal`` with ``finish_reason="refusal"``.
* **One answer per call**: ``n`` other than 1 is refused before sending (see
  :meth:`OpenAIProvider.check_request`).
* **Prompt caching** is automatic at OpenAI: ``prompt_tokens_details.cached_tokens``
  is ``Usage.cached_input_tokens`` (priced at the cached rate);
  ``cache_control=`` is accepted and not sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from llmkit.errors import InvalidRequestError, LLMError
from llmkit.providers._http import HttpProvider, OpeningEvents
from llmkit.providers._limits import openai_limits
from llmkit.providers._openai_format import message_dicts, system_prompt, tool_params
from llmkit.providers._openai_stream import OpenAIStream
from llmkit.providers._options import CallOptions, call_options
from llmkit.providers._reply import LazySDKObject, field, reply_json
from llmkit.providers._sdk import map_sdk_error
from llmkit.providers._tool_stream import parse_arguments
from llmkit.providers.base import Capabilities, ProviderReply, ServerLimitState, StreamDelta
from llmkit.request import Request
from llmkit.types import Response, ToolCall, Usage

__all__ = ["OpenAIProvider"]

_REASONING_FAMILIES = re.compile(r"^(?:o\d|gpt-5|codex-)")


class OpenAIProvider(HttpProvider):
    """Translation for OpenAI-compatible chat completions."""

    name = "openai"
    path = "/chat/completions"
    key_env_vars: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEYS", "OPENAI_API_KEY")
    default_model = "gpt-4o-mini"
    capabilities = Capabilities(
        streaming=True, tools=True, images=True, structured_outputs=True, json_mode=True,
        rate_limit_headers=True, thinking=True, refusals=True, prompt_caching=True,
    )
    structured_backend = "llmkit.structured.backends:OpenAIBackend"
    batch_api: ClassVar[str | None] = "llmkit.providers._openai_batch:OpenAIBatch"  # Groq's is the same
    completion_tokens_models: ClassVar[re.Pattern[str] | None] = _REASONING_FAMILIES
    """Models whose output limit goes in ``max_completion_tokens`` (None: none) and that take
    ``reasoning_effort``; a subclass (or ``max_tokens_param=`` on a call) may say otherwise."""
    rejected_fields: ClassVar[tuple[str, ...]] = ()
    """Request fields the API answers with a 400: refused before sending."""
    message_names: ClassVar[bool] = True
    """Whether the API takes ``messages[].name`` (never on tool messages: the spec has none there)."""

    def create_client(self, api_key: str) -> Any:
        """The key's SDK client (for instructor), over the endpoint's shared connections."""
        import openai

        return openai.OpenAI(api_key=api_key, http_client=self.endpoint().client, **self.sdk_options())

    def warm_client(self, client: Any) -> None:
        _ = client.chat.completions.with_raw_response  # imports the chat resources (~0.8 s)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"}

    def stream_params(self, params: dict[str, Any]) -> None:
        params["stream"] = True
        params.setdefault("stream_options", {"include_usage": True})

    def read_json(self, data: dict[str, Any], headers: Mapping[str, str], request: Request) -> ProviderReply:
        response = self.parse_completion(data, headers, LazySDKObject(lambda: _sdk_completion(data)))
        return ProviderReply(response, self.limit_state(headers))

    def read_events(self, headers: Mapping[str, str], request: Request) -> OpeningEvents:
        params = request.extra.get("stream_options")
        wants_usage = bool((params if isinstance(params, Mapping) else {"include_usage": True}).get(
            "include_usage"))  # fmt: skip
        request_id = headers.get("x-request-id")
        stream = OpenAIStream(self.name, request.model, request_id, wants_usage, self.usage_of)
        return OpeningEvents(StreamDelta(request_id=request_id, limits=self.limit_state(headers)), stream)

    # -- requests ------------------------------------------------------------------------

    def build_params(self, request: Request) -> dict[str, Any]:
        options = call_options(request, self.name)
        messages = message_dicts(request.messages, self.name, names=self.message_names)
        system = system_prompt(request)
        if system:
            messages.insert(0, {"role": "system", "content": system})
        params: dict[str, Any] = {"model": request.model, "messages": messages}
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.max_tokens is not None:
            params[self.max_tokens_field(request.model, options)] = request.max_tokens
        if request.stop:
            params["stop"] = list(request.stop)
        if request.timeout is not None:
            params["timeout"] = request.timeout
        if isinstance(options.thinking, str) and (options.thinking != "none" or self._reasons(request.model)):
            params["reasoning_effort"] = options.thinking
        params.update(tool_params(request))
        params.update(options.rest)
        return params

    def max_tokens_field(self, model: str, options: CallOptions) -> str:
        """``max_completion_tokens`` for the reasoning families, else ``max_tokens`` (see the module doc)."""
        if options.max_tokens_param is not None:
            return options.max_tokens_param
        return "max_completion_tokens" if self._reasons(model) else "max_tokens"

    def _reasons(self, model: str) -> bool:
        pattern = self.completion_tokens_models
        return pattern is not None and pattern.match(model.lower()) is not None

    def check_request(self, request: Request) -> None:
        """Also refused here: ``n`` other than 1, ``max_completion_tokens=``, fields the API
        rejects, and ``thinking=`` or ``server_tools=`` it cannot take."""
        super().check_request(request)
        options = call_options(request, self.name)
        rest = options.rest
        n = rest.get("n")
        if n is not None and n != 1:
            raise self._refuse(
                f"n={n!r}: llmkit returns one answer per call (and reserves rate-limit capacity for one). "
                f"For several answers make several calls, e.g. client.map([prompt] * {n})."
            )
        if "max_completion_tokens" in rest:
            raise self._refuse(
                "Pass the output limit as max_tokens=: llmkit sends it as max_completion_tokens where the "
                "model needs it (or as max_tokens_param= says) and reserves rate-limit capacity by it."
            )
        for name in self.rejected_fields:
            if name in rest:
                raise self._refuse(f"{self.name} does not take {name!r} (its API answers it with a 400).")
        if options.server_tools:
            raise self._refuse(f"{self.name} has no server tools in llmkit: leave server_tools= out.")
        self._check_thinking(options.thinking, request.model)

    def _check_thinking(self, thinking: Any, model: str) -> None:
        if thinking is None or thinking is False or (thinking == "none" and not self._reasons(model)):
            return
        if not self.capabilities.thinking:
            raise self._refuse(
                f"{self.name} does not support thinking= in llmkit: pass the server's own reasoning "
                "parameters (e.g. reasoning_effort=) by name instead."
            )
        if not isinstance(thinking, (str, bool)):
            raise self._refuse(
                f"thinking={thinking!r}: OpenAI takes a reasoning effort ('minimal', 'low', 'medium', "
                "'high'), not a token budget or a dict."
            )
        if thinking is not False and not self._reasons(model):
            raise self._refuse(
                f"{model!r} is not one of OpenAI's reasoning models (o-series, gpt-5): it takes no "
                "thinking=. To send reasoning_effort anyway, pass reasoning_effort= itself."
            )

    def _refuse(self, message: str) -> InvalidRequestError:
        return InvalidRequestError(message, provider=self.name)

    # -- replies -------------------------------------------------------------------------

    def complete(self, client: Any, request: Request) -> ProviderReply:
        import openai

        try:
            raw = client.chat.completions.with_raw_response.create(**self.build_params(request))
            response = self.parse_completion(reply_json(raw), raw.headers, LazySDKObject(raw.parse))
            return ProviderReply(response, self.limit_state(raw.headers))
        except Exception as exc:
            raise map_sdk_error(exc, openai, self.name, self.limit_state) from exc

    def parse_completion(self, completion: Any, headers: Mapping[str, str], raw: Any = None) -> Response:
        """A Response from a chat completion: its JSON (a dict) or the SDK's object."""
        choices = field(completion, "choices")
        if not choices:
            raise ValueError("the reply has no choices")
        choice = choices[0]
        message = field(choice, "message")
        refusal = field(message, "refusal") or None
        finish = field(choice, "finish_reason")
        return Response(
            content=field(message, "content") or "",
            model=field(completion, "model"),
            provider=self.name,
            finish_reason="refusal" if refusal and finish in ("stop", None) else finish,
            usage=self.usage_of(field(completion, "usage")),
            request_id=headers.get("x-request-id"),
            tool_calls=tuple(_tool_call(c) for c in (field(message, "tool_calls") or ())),
            raw=completion if raw is None else raw,
            refusal=refusal,
        )

    def map_error(self, exc: BaseException) -> LLMError:
        import openai

        return map_sdk_error(exc, openai, self.name, self.limit_state)

    @staticmethod
    def usage_of(usage: Any) -> Usage:
        """llmkit's Usage of an OpenAI ``usage`` object or dict (zero when None)."""
        if usage is None:
            return Usage()
        prompt = field(usage, "prompt_tokens_details")
        completion = field(usage, "completion_tokens_details")
        cached = (field(prompt, "cached_tokens") if prompt is not None else None) or 0
        written = (field(prompt, "cache_write_tokens") if prompt is not None else None) or 0
        reasoning = (field(completion, "reasoning_tokens") if completion is not None else None) or 0
        return Usage(field(usage, "prompt_tokens") or 0, field(usage, "completion_tokens") or 0,
                     cached, written, reasoning)  # fmt: skip

    def limit_state(self, headers: Mapping[str, str]) -> ServerLimitState | None:
        """OpenAI's ``x-ratelimit-*`` headers (see :mod:`llmkit.providers._limits`)."""
        return openai_limits(headers)

    def stream(self, client: Any, request: Request) -> Iterator[StreamDelta]:
        import openai

        params = self.build_params(request)
        params["stream"] = True
        params.setdefault("stream_options", {"include_usage": True})
        wants_usage = bool((params.get("stream_options") or {}).get("include_usage"))
        try:
            raw = client.chat.completions.with_raw_response.create(**params)
            http = raw.http_response
        except Exception as exc:
            raise map_sdk_error(exc, openai, self.name, self.limit_state) from exc
        request_id = raw.headers.get("x-request-id")
        state = OpenAIStream(self.name, request.model, request_id, wants_usage, self.usage_of)
        try:
            yield StreamDelta(request_id=request_id, limits=self.limit_state(raw.headers))
            yield from state.deltas(http.iter_bytes())
        except LLMError:
            raise
        except Exception as exc:
            raise map_sdk_error(exc, openai, self.name, self.limit_state) from exc
        finally:
            http.close()


def _sdk_completion(data: dict[str, Any]) -> Any:
    """The openai SDK's ChatCompletion of a reply's JSON (for ``Response.raw``)."""
    from openai.types.chat import ChatCompletion

    return ChatCompletion.construct(**data)


def _tool_call(call: Any) -> ToolCall:
    function = field(call, "function")
    arguments = parse_arguments(field(function, "arguments"))
    return ToolCall(id=field(call, "id"), name=field(function, "name"), arguments=arguments)
