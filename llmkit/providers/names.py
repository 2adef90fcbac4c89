"""``LLMProvider``: the spec's enum of provider names (each compares equal to its string)."""

from __future__ import annotations

import enum

__all__ = ["LLMProvider"]


class LLMProvider(str, enum.Enum):
    """The providers of the spec. Compares equal to its string value.

    One member per adapter of :mod:`llmkit.providers` (its ``name``, upper case);
    tests/test_providers_registry.py checks that they agree. Written out, not
    derived, so that type checkers know ``LLMProvider.ANTHROPIC``.
    """

    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    GOOGLE = "google"
    GROQ = "groq"
    LOCAL = "local"

    def __str__(self) -> str:
        return self.value
