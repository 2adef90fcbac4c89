"""llmkit: a dependable, synchronous-first client for large language models.

>>> from llmkit import LLMClient
>>> client = LLMClient()                                  # doctest: +SKIP
>>> client.complete("What is the capital of France?").content  # doctest: +SKIP

``import llmkit`` imports nothing heavy: every public name below is loaded on
first use (PEP 562), and provider SDKs only when a client first needs one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "LLMClient": "llmkit.client",
    "ConnectionPool": "llmkit.connection_pool",
    "AsyncLLMClient": "llmkit.aclient",
    "AsyncLLMManager": "llmkit.amanager",
    "LLMManager": "llmkit.manager",
    "LLMProvider": "llmkit.providers.names",
    "get_llm_manager": "llmkit.manager",
    "reset_llm_manager": "llmkit.manager",
    "TextStream": "llmkit.streaming",
    "AsyncTextStream": "llmkit.streaming",
    "Session": "llmkit.session",
    "SessionManager": "llmkit.session",
    "LoggingMiddleware": "llmkit.middleware",
    "MetricsMiddleware": "llmkit.metrics",
    "Message": "llmkit.types",
    "MessageRole": "llmkit.types",
    "Response": "llmkit.types",
    "Usage": "llmkit.types",
    "ToolCall": "llmkit.types",
    "TextPart": "llmkit.types",
    "ImagePart": "llmkit.types",
    "ThinkingPart": "llmkit.types",
    "ServerToolPart": "llmkit.types",
    "LLMConfig": "llmkit.config",
    "RateLimit": "llmkit.config",
    "RateLimitConfig": "llmkit.config",
    "RetryPolicy": "llmkit.config",
    "PoolConfig": "llmkit.config",
    "Settings": "llmkit.config",
    "load_settings": "llmkit.config",
    "LLMError": "llmkit.errors",
    "ConfigurationError": "llmkit.errors",
    "AuthenticationError": "llmkit.errors",
    "PermissionDeniedError": "llmkit.errors",
    "InvalidRequestError": "llmkit.errors",
    "RateLimitError": "llmkit.errors",
    "ProviderError": "llmkit.errors",
    "OverloadedError": "llmkit.errors",
    "NetworkError": "llmkit.errors",
    "RequestTimeoutError": "llmkit.errors",
    "StreamError": "llmkit.errors",
    "StructuredOutputError": "llmkit.errors",
    "BudgetExceededError": "llmkit.errors",
    "PoolError": "llmkit.errors",
    "PoolExhaustedError": "llmkit.errors",
    "PoolClosedError": "llmkit.errors",
    "CapacityTimeoutError": "llmkit.errors",
    "QuotaExceededError": "llmkit.errors",
    "MalformedResponseError": "llmkit.errors",
    "RequestTooLargeError": "llmkit.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llmkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from llmkit.aio import AsyncLLMClient, AsyncLLMManager, AsyncTextStream
    from llmkit.client import LLMClient
    from llmkit.config import (
        LLMConfig,
        PoolConfig,
        RateLimit,
        RateLimitConfig,
        RetryPolicy,
        Settings,
        load_settings,
    )
    from llmkit.connection_pool import ConnectionPool
    from llmkit.errors import (
        AuthenticationError,
        BudgetExceededError,
        CapacityTimeoutError,
        ConfigurationError,
        InvalidRequestError,
        LLMError,
        MalformedResponseError,
        NetworkError,
        OverloadedError,
        PermissionDeniedError,
        PoolClosedError,
        PoolError,
        PoolExhaustedError,
        ProviderError,
        QuotaExceededError,
        RateLimitError,
        RequestTimeoutError,
        RequestTooLargeError,
        StreamError,
        StructuredOutputError,
    )
    from llmkit.manager import LLMManager, LLMProvider, get_llm_manager, reset_llm_manager
    from llmkit.metrics import MetricsMiddleware
    from llmkit.middleware import LoggingMiddleware
    from llmkit.session import Session, SessionManager
    from llmkit.streaming import TextStream
    from llmkit.types import (
        ImagePart,
        Message,
        MessageRole,
        Response,
        ServerToolPart,
        TextPart,
        ThinkingPart,
        ToolCall,
        Usage,
    )
