"""Provider adapters: translation between llmkit requests and each provider API.

:func:`provider_class` maps a provider's name (or an alias) to its adapter,
importing the adapter (and so its SDK) only when asked for. Names and aliases
have one table, :data:`llmkit.config.settings.PROVIDER_ALIASES`; this module maps
canonical names to adapters.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from llmkit.errors import ConfigurationError

if TYPE_CHECKING:
    from llmkit.providers.base import Provider

__all__ = ["PROVIDER_NAMES", "canonical_name", "provider_class"]

_ADAPTERS: dict[str, tuple[str, str]] = {
    "openai": ("llmkit.providers.openai", "OpenAIProvider"),
    "anthropic": ("llmkit.providers.anthropic", "AnthropicProvider"),
    "google": ("llmkit.providers.gemini", "GeminiProvider"),
    "groq": ("llmkit.providers.groq", "GroqProvider"),
    "local": ("llmkit.providers.local", "LocalProvider"),
}

PROVIDER_NAMES = tuple(_ADAPTERS)


def canonical_name(name: str) -> str:
    """The provider's canonical name for a name or alias (case-insensitive)."""
    if not isinstance(name, str):
        raise ConfigurationError(f"provider must be a string such as 'openai', got {name!r}.")
    from llmkit.config.settings import normalize_provider  # the one table of names and aliases

    key = normalize_provider(name)
    if key not in _ADAPTERS:
        known = ", ".join(sorted(_ADAPTERS))
        raise ConfigurationError(f"Provider {key!r} has no adapter in this llmkit yet: use one of {known}.")
    return key


def provider_class(name: str) -> type[Provider]:
    """The adapter class for a provider name or alias."""
    module_name, class_name = _ADAPTERS[canonical_name(name)]
    module = importlib.import_module(module_name)
    cls: type[Provider] = getattr(module, class_name)
    return cls
