"""``AsyncLLMManager``: the async twin of :class:`~llmkit.LLMManager`, over its pooled clients.

It takes the sync manager it faces (``await manager`` makes one: see
:meth:`LLMManager.__await__ <llmkit.LLMManager.__await__>`), and imports
nothing of :mod:`llmkit.manager`: the manager comes to it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from llmkit.aclient import AsyncLLMClient

if TYPE_CHECKING:
    from llmkit.client import LLMClient
    from llmkit.config import RateLimit
    from llmkit.providers.names import LLMProvider

__all__ = ["AsyncLLMManager", "SyncManager"]


class SyncManager(Protocol):
    """What the async twin uses of an :class:`~llmkit.LLMManager`."""

    def get_client(self, provider: Any = None, **overrides: Any) -> LLMClient: ...

    def get_or_create_client(self, provider: Any = None, *, rate_limit_config: Any = None,
                             **kw: Any) -> LLMClient: ...  # fmt: skip

    def get_status(self, provider: Any = None) -> dict[str, Any]: ...

    def close_client(self, provider: Any) -> None: ...

    def close(self) -> None: ...


class AsyncLLMManager:
    """The async twin of :class:`~llmkit.LLMManager`, sharing its pooled clients.

    ``get_client`` and ``get_status`` stay plain calls, as the spec writes them
    (``client = manager.get_client(...)``); they build or read objects in memory.
    """

    def __init__(self, manager: SyncManager) -> None:
        self.sync_manager = manager

    def __repr__(self) -> str:
        return f"AsyncLLMManager({self.sync_manager!r})"

    def get_client(self, provider: LLMProvider | str | None = None, **overrides: Any) -> AsyncLLMClient:
        """The provider's pooled client (the sync manager's own), with an async face."""
        return AsyncLLMClient.wrap(self.sync_manager.get_client(provider, **overrides))

    async def get_or_create_client(
        self,
        provider: LLMProvider | str | None = None,
        *,
        rate_limit_config: RateLimit | None = None,
        **kw: Any,
    ) -> AsyncLLMClient:
        """The spec's spelling: ``await manager.get_or_create_client(provider, rate_limit_config=...)``."""
        client = self.sync_manager.get_or_create_client(provider, rate_limit_config=rate_limit_config, **kw)
        return AsyncLLMClient.wrap(client)

    def get_status(self, provider: LLMProvider | str | None = None) -> dict[str, Any]:
        """Pool status of a provider's client; creates no client (see :meth:`LLMManager.get_status`)."""
        return self.sync_manager.get_status(provider)

    async def close_client(self, provider: LLMProvider | str) -> None:
        await asyncio.to_thread(self.sync_manager.close_client, provider)

    async def close(self) -> None:
        """Close every client. Idempotent."""
        await asyncio.to_thread(self.sync_manager.close)

    async def __aenter__(self) -> AsyncLLMManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
