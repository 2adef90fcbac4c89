"""Groq through the OpenAI SDK and Groq's OpenAI-compatible endpoint.

Groq's rate-limit headers differ from OpenAI's in one way that matters:
``x-ratelimit-{limit,remaining,reset}-requests`` count requests per **day**
(RPD), while ``x-ratelimit-*-tokens`` count tokens per minute (TPM). A
per-day remaining count must never cap the per-minute requests bucket (a key
with 14,000 requests left today is not limited to 14,000 this minute, and one
with 5 left today would otherwise look like it has 5 per minute), so only the
token headers reach the limiter; the daily count is ignored, and a key that
runs out of its day gets a 429 with ``retry-after``, handled as any 429.

Groq's OpenAI-compatibility page lists fields its API answers with a 400:
``logprobs``, ``logit_bias``, ``top_logprobs`` (refused here before sending),
``messages[].name`` (left out, with a warning, from every request the SDK
client sends, instructor's re-asks included) and ``n`` other than 1 (refused,
as on every OpenAI-compatible adapter).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from llmkit.providers._headers import header_number, parse_duration
from llmkit.providers._openai_format import warn_dropped_name
from llmkit.providers.base import Capabilities, ServerLimitState
from llmkit.providers.openai import OpenAIProvider

__all__ = ["GroqProvider"]


class GroqProvider(OpenAIProvider):
    """Groq's chat completions (OpenAI-compatible)."""

    name = "groq"
    aliases = ()
    key_env_vars = ("GROQ_API_KEYS", "GROQ_API_KEY")
    default_model = "llama-3.1-8b-instant"
    default_base_url = "https://api.groq.com/openai/v1"
    capabilities = Capabilities(
        streaming=True, tools=True, images=True, structured_outputs=True, json_mode=True,
        rate_limit_headers=True, prompt_caching=True,
    )
    completion_tokens_models = None
    rejected_fields = ("logprobs", "logit_bias", "top_logprobs")
    message_names = False

    def create_client(self, api_key: str) -> Any:
        return _groq_sdk_class()(api_key=api_key, **self.sdk_options())

    def limit_state(self, headers: Mapping[str, str]) -> ServerLimitState | None:
        """Groq's per-minute token headers (its request headers are per day: ignored)."""
        remaining_tokens = header_number(headers, "x-ratelimit-remaining-tokens")
        if remaining_tokens is None:
            return None
        return ServerLimitState(
            remaining_tokens=remaining_tokens,
            limit_tokens=header_number(headers, "x-ratelimit-limit-tokens"),
            reset_tokens=parse_duration(headers.get("x-ratelimit-reset-tokens")),
        )


def _without_names(body: Any) -> Any:
    """``body`` with no ``name`` in its messages (the same object when none had one)."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not any(isinstance(m, dict) and "name" in m for m in messages):
        return body
    warn_dropped_name("groq")
    stripped = [{k: v for k, v in m.items() if k != "name"} if isinstance(m, dict) else m for m in messages]
    return {**body, "messages": stripped}


@functools.lru_cache(maxsize=1)
def _groq_sdk_class() -> type:
    """The openai SDK client, with every request body cleaned of ``messages[].name``.

    ``_prepare_options`` is the SDK's own hook for changing a request's options
    before it is built (its Azure client uses it); it sees instructor's calls too.
    """
    import openai

    class GroqOpenAI(openai.OpenAI):
        def _prepare_options(self, options: Any) -> Any:
            options = super()._prepare_options(options)
            options.json_data = _without_names(options.json_data)
            return options

    return GroqOpenAI
