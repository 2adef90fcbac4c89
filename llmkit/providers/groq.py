"""Groq through the OpenAI SDK and Groq's OpenAI-compatible endpoint.

Groq's rate-limit headers differ from OpenAI's in one way that matters:
``x-ratelimit-{limit,remaining,reset}-requests`` count requests per **day**
(RPD), while ``x-ratelimit-*-tokens`` count tokens per minute (TPM). A
per-day remaining count must never cap the per-minute requests bucket (a key
with 14,000 requests left today is not limited to 14,000 this minute, and one
with 5 left today would otherwise look like it has 5 per minute), so only the
token headers reach the limiter; the daily count is ignored, and a key that
runs out of its day gets a 429 with ``retry-after``, handled as any 429.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmkit.providers._headers import header_number, parse_duration
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
        rate_limit_headers=True,
    )

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
