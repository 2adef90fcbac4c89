"""What the official openai and anthropic SDKs share: their exception shapes.

Both SDKs (anthropic 0.x and 2.x alike) expose ``APIStatusError`` (with
``status_code``, ``response`` and ``request_id``), ``APITimeoutError`` and
``APIConnectionError`` at the top of the package; more specific subclasses
differ between versions, so mapping goes by status code, not by class name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from llmkit.errors import (
    InvalidRequestError,
    LLMError,
    NetworkError,
    ProviderError,
    RequestTimeoutError,
)
from llmkit.providers._errors import error_for_status

__all__ = ["endpoint_of", "map_sdk_error"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint_of(url: Any) -> str | None:
    """``host:port`` of a URL (a string, httpx.URL or similar), the scheme's port when none is given."""
    from urllib.parse import urlsplit

    if url is None:
        return None
    try:
        parts = urlsplit(str(url))
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}" if port else host


def _endpoint(exc: BaseException) -> str:
    """`` to host:port`` for an SDK error carrying its request, else ``""``."""
    request = getattr(exc, "request", None)
    where = endpoint_of(getattr(request, "url", None))
    return f" to {where}" if where else ""


def _error_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
    return str(getattr(exc, "message", None) or exc)


def map_sdk_error(exc: BaseException, sdk: ModuleType, provider: str) -> LLMError:
    """The llmkit error for an exception raised by an SDK call (or its parsing)."""
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, sdk.APIStatusError):
        response = exc.response
        return error_for_status(
            exc.status_code,
            _error_message(exc),
            provider=provider,
            headers=response.headers if response is not None else None,
            request_id=getattr(exc, "request_id", None),
        )
    if isinstance(exc, sdk.APITimeoutError):
        return RequestTimeoutError(f"The request{_endpoint(exc)} timed out", provider=provider)
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc
        return NetworkError(f"Connection{_endpoint(exc)} failed: {type(cause).__name__}: {cause}",
                            provider=provider)  # fmt: skip
    transport = _transport_error(exc, provider)
    if transport is not None:
        return transport
    if isinstance(exc, (sdk.APIResponseValidationError, json.JSONDecodeError, KeyError, IndexError)):
        return ProviderError(f"Malformed reply from {provider}: {exc}", provider=provider)
    if isinstance(exc, TypeError):
        return InvalidRequestError(f"The {provider} SDK refused the request: {exc}", provider=provider)
    if isinstance(exc, ValueError):
        return ProviderError(f"Malformed reply from {provider}: {exc}", provider=provider)
    return ProviderError(f"{provider} call failed: {type(exc).__name__}: {exc}", provider=provider)


def _transport_error(exc: BaseException, provider: str) -> LLMError | None:
    """httpx / httpx2 / httpcore errors that reach us unwrapped (mid-stream drops do)."""
    module = type(exc).__module__
    if not module.startswith(("httpx", "httpcore", "h11")):
        return None
    name = type(exc).__name__
    try:
        where = _endpoint(exc)  # httpx errors raise RuntimeError for .request when they have none
    except RuntimeError:
        where = ""
    if "Timeout" in name:
        return RequestTimeoutError(f"The request{where} timed out ({name})", provider=provider)
    return NetworkError(f"Connection{where} failed: {name}: {exc}", provider=provider)
