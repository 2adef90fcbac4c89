"""Provider adapters: the registry of adapter modules, and lookups by name or alias.

Each adapter declares what it is called once, on its class (``name``,
``aliases``, ``key_env_vars``, ``requires_key``: see
:class:`llmkit.providers.base.Provider`); the registry is the list of adapter
modules below, in the order a default provider is looked for. Everything else
that needs provider names (settings, the manager's ``LLMProvider``, error
messages) reads them from :func:`adapters`. Adding a provider: write its module
and add it to :data:`ADAPTER_MODULES`.

Adapters import their SDK only when a client first needs one, so reading the
registry is cheap; it is still read on first use only, so that ``import
llmkit`` loads none of it.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any

from llmkit.errors import ConfigurationError

if TYPE_CHECKING:
    from llmkit.providers.base import Provider

__all__ = [
    "ADAPTER_MODULES", "PROVIDER_NAMES", "adapters", "canonical_name", "known_providers",
    "normalize_provider", "provider_class",
]  # fmt: skip

ADAPTER_MODULES: tuple[str, ...] = (
    "llmkit.providers.openai",
    "llmkit.providers.anthropic",
    "llmkit.providers.gemini",
    "llmkit.providers.groq",
    "llmkit.providers.local",
)
"""The adapter modules, in the order a default provider is looked for (see Settings.default_provider)."""


def _adapter_of(module_name: str) -> type[Provider]:
    """The one Provider subclass defined in ``module_name`` (classes it imports do not count)."""
    from llmkit.providers.base import Provider

    module = importlib.import_module(module_name)
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Provider) and value.__module__ == module_name
        and not getattr(value, "__abstractmethods__", None)
    ]  # fmt: skip
    if len(found) != 1:
        raise RuntimeError(f"{module_name} must define exactly one Provider subclass, found {len(found)}")
    return found[0]


@functools.cache
def adapters() -> tuple[type[Provider], ...]:
    """Every adapter class, in registry order (imports the adapter modules, not their SDKs)."""
    return tuple(_adapter_of(name) for name in ADAPTER_MODULES)


@functools.cache
def _by_name() -> dict[str, type[Provider]]:
    table: dict[str, type[Provider]] = {}
    for adapter in adapters():
        for name in (adapter.name, *adapter.aliases):
            if name in table:
                raise RuntimeError(f"provider name {name!r} is declared by two adapters")
            table[name] = adapter
    return table


def known_providers() -> str:
    """The provider names for an error message: ``openai, anthropic (alias claude), ...``."""
    return ", ".join(
        f"{a.name} (alias {', '.join(a.aliases)})" if a.aliases else a.name for a in adapters()
    )


def normalize_provider(name: object) -> str:
    """Return the canonical provider name for ``name`` (a str or a str enum member).

    Case and surrounding spaces are ignored; aliases map to their provider
    ("gemini" -> "google", "ollama" -> "local"). An unknown name raises
    ConfigurationError listing the known ones.
    """
    from llmkit.config.models import closest, safe_repr

    raw = getattr(name, "value", name)
    key = raw.strip().lower() if isinstance(raw, str) else ""
    adapter = _by_name().get(key)
    if adapter is not None:
        return adapter.name
    raise ConfigurationError(
        f"Unknown provider {safe_repr(raw)}. Known providers: {known_providers()}."
        + closest(key, list(_by_name()))
    )


def canonical_name(name: str) -> str:
    """The provider's canonical name for a name or alias (case-insensitive)."""
    if not isinstance(name, str):
        raise ConfigurationError(f"provider must be a string such as 'openai', got {name!r}.")
    return normalize_provider(name)


def provider_class(name: str) -> type[Provider]:
    """The adapter class for a provider name or alias."""
    return _by_name()[canonical_name(name)]


def __getattr__(name: str) -> Any:
    if name == "PROVIDER_NAMES":  # read on first use: it imports the adapter modules
        return tuple(adapter.name for adapter in adapters())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
