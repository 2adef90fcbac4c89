"""Tools for testing code that uses llmkit: a fake provider server and mock clients.

Names are imported on first use, so ``import llmkit.testing`` stays cheap and
``python -m llmkit.testing.fake_server`` runs without a double import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fake_server import (
        ENFORCEMENT_STYLES,
        BatchFault,
        Enforcer,
        FakeLLMServer,
        Fault,
        Reply,
        RequestInfo,
        RequestRecord,
        ServerLimits,
        SpawnedFakeServer,
        ToolCallReply,
        count_tokens,
        make_enforcer,
        spawn_fake_server,
    )
    from .mock import AsyncMockLLMClient, MockLLMClient

_LAZY = {
    "AsyncMockLLMClient": ".mock",
    "BatchFault": ".fake_server",
    "ENFORCEMENT_STYLES": ".fake_server",
    "Enforcer": ".fake_server",
    "MockLLMClient": ".mock",
    "FakeLLMServer": ".fake_server",
    "Fault": ".fake_server",
    "Reply": ".fake_server",
    "RequestInfo": ".fake_server",
    "RequestRecord": ".fake_server",
    "ServerLimits": ".fake_server",
    "SpawnedFakeServer": ".fake_server",
    "ToolCallReply": ".fake_server",
    "count_tokens": ".fake_server",
    "make_enforcer": ".fake_server",
    "spawn_fake_server": ".fake_server",
}

__all__ = [
    "ENFORCEMENT_STYLES",
    "AsyncMockLLMClient",
    "BatchFault",
    "Enforcer",
    "FakeLLMServer",
    "Fault",
    "MockLLMClient",
    "Reply",
    "RequestInfo",
    "RequestRecord",
    "ServerLimits",
    "SpawnedFakeServer",
    "ToolCallReply",
    "count_tokens",
    "make_enforcer",
    "spawn_fake_server",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
