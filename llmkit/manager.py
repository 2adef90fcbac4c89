"""The spec's manager API: one process-wide ``LLMManager`` handing out pooled clients.

>>> manager = get_llm_manager()                          # doctest: +SKIP
>>> client = manager.get_client(LLMProvider.ANTHROPIC)   # doctest: +SKIP
>>> manager.get_status(LLMProvider.ANTHROPIC)["total_clients"]  # doctest: +SKIP

The manager is the one piece of global state llmkit keeps, and only because
users ask for it by name; everything else is an explicit object.
"""

from __future__ import annotations

import enum
import threading
from typing import TYPE_CHECKING, Any

from llmkit.errors import ConfigurationError
from llmkit.providers import canonical_name

if TYPE_CHECKING:
    from llmkit.client import LLMClient
    from llmkit.config import RateLimit, Settings

__all__ = ["LLMManager", "LLMProvider", "get_llm_manager", "reset_llm_manager"]


class LLMProvider(str, enum.Enum):
    """The providers of the spec. Compares equal to its string value."""

    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    GOOGLE = "google"
    GROQ = "groq"
    LOCAL = "local"

    def __str__(self) -> str:
        return self.value


def _name(provider: LLMProvider | str | None, settings: Settings) -> str:
    if provider is None:
        provider = settings.default_provider()
        if provider is None:
            raise ConfigurationError(
                "No provider given and none configured: pass one, e.g. get_client(LLMProvider.OPENAI), "
                "or set global.default_provider in the YAML file or LLM_DEFAULT_PROVIDER."
            )
    return canonical_name(str(provider))


class LLMManager:
    """Clients per provider, built from settings once and reused. Thread-safe."""

    def __init__(self, settings: Settings | None = None, *, config_path: str | None = None) -> None:
        from llmkit.config import load_settings

        self.settings = settings if settings is not None else load_settings(config_path)
        self._clients: dict[str, LLMClient] = {}
        self._overrides: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"LLMManager(providers={sorted(self._clients)})"

    def get_client(self, provider: LLMProvider | str | None = None, **overrides: Any) -> LLMClient:
        """The pooled client of a provider, created on first use.

        ``overrides`` (any LLMClient argument) apply only when the client is
        first created; asking again with different overrides is an error,
        rather than silently returning a client built otherwise.
        """
        from llmkit.client import LLMClient

        name = _name(provider, self.settings)
        with self._lock:
            if self._closed:
                raise ConfigurationError("This manager was closed: call get_llm_manager() for a new one.")
            client = self._clients.get(name)
            if client is None:
                client = LLMClient(name, settings=self.settings, **overrides)
                self._clients[name] = client
                self._overrides[name] = overrides
            elif overrides and overrides != self._overrides.get(name):
                raise ConfigurationError(
                    f"A {name} client already exists with other settings: close it first "
                    "(manager.close_client(...)) or build an LLMClient of your own."
                )
            return client

    def get_or_create_client(
        self,
        provider: LLMProvider | str | None = None,
        *,
        rate_limit_config: RateLimit | None = None,
        **kw: Any,
    ) -> LLMClient:
        """The spec's spelling: ``get_client`` with an optional RateLimitConfig."""
        if rate_limit_config is not None:
            kw["rate_limit"] = rate_limit_config
        return self.get_client(provider, **kw)

    def get_status(self, provider: LLMProvider | str | None = None) -> dict[str, Any]:
        """Pool status of a provider's client (total/available/in-use clients, per-key)."""
        return self.get_client(provider).status()

    def close_client(self, provider: LLMProvider | str) -> None:
        name = canonical_name(str(provider))
        with self._lock:
            client = self._clients.pop(name, None)
            self._overrides.pop(name, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        """Close every client. Idempotent."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
            self._closed = True
        for client in clients:
            client.close()

    def __enter__(self) -> LLMManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_manager: LLMManager | None = None
_manager_lock = threading.Lock()


def get_llm_manager(**kwargs: Any) -> LLMManager:
    """The process-wide manager, built from settings on first call."""
    global _manager
    with _manager_lock:
        if _manager is None or _manager._closed:
            _manager = LLMManager(**kwargs)
        return _manager


def reset_llm_manager() -> None:
    """Close and forget the process-wide manager (for tests and reconfiguration)."""
    global _manager
    with _manager_lock:
        manager, _manager = _manager, None
    if manager is not None:
        manager.close()
