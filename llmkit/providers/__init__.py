"""Provider adapters: translation between llmkit requests and each provider API.

:func:`provider_class` maps a provider's name (or an alias) to its adapter,
importing the adapter (and so its SDK) only when asked for.
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
}
_ALIASES: dict[str, str] = {"claude": "anthropic"}

PROVIDER_NAMES = tuple(_ADAPTERS)


def canonical_name(name: str) -> str:
    """The provider's canonical name for a name or alias (case-insensitive)."""
    if not isinstance(name, str):
        raise ConfigurationError(f"provider must be a string such as 'openai', got {name!r}.")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _ADAPTERS:
        known = ", ".join(sorted(_ADAPTERS))
        raise ConfigurationError(f"Unknown provider {name!r}: use one of {known}.")
    return key


def provider_class(name: str) -> type[Provider]:
    """The adapter class for a provider name or alias."""
    module_name, class_name = _ADAPTERS[canonical_name(name)]
    module = importlib.import_module(module_name)
    cls: type[Provider] = getattr(module, class_name)
    return cls
