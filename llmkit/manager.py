"""The spec's manager API: one process-wide ``LLMManager`` handing out pooled clients.

>>> manager = get_llm_manager()                          # doctest: +SKIP
>>> client = manager.get_client(LLMProvider.ANTHROPIC)   # doctest: +SKIP
>>> manager.get_status(LLMProvider.ANTHROPIC)["total_clients"]  # doctest: +SKIP

The manager is the one piece of global state llmkit keeps, and only because
users ask for it by name; everything else is an explicit object.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from llmkit.errors import ConfigurationError
from llmkit.providers import canonical_name
from llmkit.providers.names import LLMProvider

if TYPE_CHECKING:
    from llmkit.amanager import AsyncLLMManager
    from llmkit.client import LLMClient
    from llmkit.config import RateLimit, Settings

__all__ = ["LLMManager", "LLMProvider", "get_llm_manager", "reset_llm_manager"]


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
    """Clients per provider, built from settings once and reused. Thread-safe.

    ``await manager`` (so ``manager = await get_llm_manager()``) gives its
    async twin, :class:`~llmkit.AsyncLLMManager`, over the same clients.
    """

    def __init__(self, settings: Settings | None = None, *, config_path: str | None = None) -> None:
        from llmkit.config import load_settings

        self.settings = settings if settings is not None else load_settings(config_path)
        self._clients: dict[str, LLMClient] = {}
        self._overrides: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"LLMManager(providers={sorted(self._clients)})"

    def __await__(self) -> Generator[Any, None, AsyncLLMManager]:
        """``await manager``: the async twin (the spec's ``manager = await get_llm_manager()``)."""
        return _async_twin(self).__await__()

    def get_client(self, provider: LLMProvider | str | None = None, **overrides: Any) -> LLMClient:
        """The pooled client of a provider, created on first use.

        ``overrides`` (any LLMClient argument) apply when the client is
        created; asking again with other overrides is a ConfigurationError
        (use :meth:`get_or_create_client`, which rebuilds an idle client),
        rather than silently returning a client built otherwise.
        """
        return self._client(_name(provider, self.settings), overrides, rebuild=False)

    def get_or_create_client(
        self,
        provider: LLMProvider | str | None = None,
        *,
        rate_limit_config: RateLimit | None = None,
        **kw: Any,
    ) -> LLMClient:
        """The spec's spelling: the provider's client, built with ``rate_limit_config`` (a RateLimit).

        When the provider's client exists with other settings, it is rebuilt
        with these if it is idle (nothing in flight or waiting): the old client
        is closed, so ask the manager again wherever you kept it. A busy client
        is not rebuilt: ConfigurationError says so and how to go on.
        """
        if rate_limit_config is not None:
            kw["rate_limit"] = rate_limit_config
        return self._client(_name(provider, self.settings), kw, rebuild=True)

    def _client(self, name: str, overrides: dict[str, Any], *, rebuild: bool) -> LLMClient:
        from llmkit.client import LLMClient

        replaced = None
        with self._lock:
            if self._closed:
                raise ConfigurationError("This manager was closed: call get_llm_manager() for a new one.")
            client = self._clients.get(name)
            if client is not None and overrides and overrides != self._overrides.get(name):
                _check_replaceable(name, client, rebuild)
                replaced, client = client, None
            if client is None:
                client = LLMClient(name, settings=self.settings, **overrides)
                self._clients[name] = client
                self._overrides[name] = overrides
        if replaced is not None:
            replaced.close()
        return client

    def get_status(self, provider: LLMProvider | str | None = None) -> dict[str, Any]:
        """Pool status of a provider's client (total/available/in-use clients, per-key).

        It creates no client: a provider not used yet is described by a client
        built from the settings for the purpose and closed again, so a later
        ``get_or_create_client(...)`` is free to choose its configuration.
        """
        from llmkit.client import LLMClient

        name = _name(provider, self.settings)
        with self._lock:
            client = self._clients.get(name)
        if client is not None:
            return client.status()
        with LLMClient(name, settings=self.settings) as probe:
            return probe.status()

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


def _check_replaceable(name: str, client: LLMClient, rebuild: bool) -> None:
    """ConfigurationError unless ``client`` may be rebuilt with other settings now."""
    if not rebuild:
        raise ConfigurationError(
            f"The {name} client already exists with other settings: use "
            "manager.get_or_create_client(...) to rebuild it with these, close it first "
            "(manager.close_client(...)), or build an LLMClient of your own.")
    status = client.status()
    busy = status.get("in_use_clients", 0) + status.get("waiting_requests", 0)
    if busy:
        raise ConfigurationError(
            f"The {name} client has {_count(busy, 'request')} in flight or waiting, so it is not "
            "rebuilt with the new settings: call again once they finish, close it first "
            "(manager.close_client(...)), or build an LLMClient of your own.")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


async def _async_twin(manager: LLMManager) -> AsyncLLMManager:
    from llmkit.amanager import AsyncLLMManager  # the async layer, loaded on first await

    return AsyncLLMManager(manager)


_manager: LLMManager | None = None
_manager_lock = threading.Lock()


_manager_kwargs: dict[str, Any] = {}


def get_llm_manager(**kwargs: Any) -> LLMManager:
    """The process-wide manager, built on first call (``settings=``, ``config_path=``).

    Later calls return the same manager; asking for it with other arguments
    than it was built with is a ConfigurationError (``reset_llm_manager()``
    first, or build an ``LLMManager(...)`` of your own). ``await
    get_llm_manager()`` gives its async twin (see :meth:`LLMManager.__await__`).
    """
    global _manager, _manager_kwargs
    with _manager_lock:
        if _manager is None or _manager._closed:
            _manager, _manager_kwargs = LLMManager(**kwargs), dict(kwargs)
        elif kwargs and kwargs != _manager_kwargs:
            raise ConfigurationError(
                f"The llmkit manager already exists (built with {_described(_manager_kwargs)}), "
                f"so {_described(kwargs)} would be ignored: call reset_llm_manager() first to "
                "build it anew, or build an LLMManager(...) of your own.")
        return _manager


def _described(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{name}=..." for name in sorted(kwargs)) or "no arguments"


def reset_llm_manager() -> None:
    """Close and forget the process-wide manager (for tests and reconfiguration)."""
    global _manager
    with _manager_lock:
        manager, _manager = _manager, None
    if manager is not None:
        manager.close()
