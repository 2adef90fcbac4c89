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
from llmkit.providers._anthropic_reply import ERROR_STATUS
from llmkit.providers._errors import error_for_status

__all__ = ["map_sdk_error"]


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
            _status_of(exc),
            _error_message(exc),
            provider=provider,
            headers=response.headers if response is not None else None,
            request_id=getattr(exc, "request_id", None),
        )
    if isinstance(exc, sdk.APITimeoutError):
        return RequestTimeoutError("The request timed out", provider=provider)
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc
        return NetworkError(f"Connection failed: {type(cause).__name__}: {cause}", provider=provider)
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


def _status_of(exc: Any) -> int:
    """The HTTP status of a status error; for an error event inside a 200 stream (Anthropic
    ``event: error``, which the SDK raises with the stream's 200), the status of its error type."""
    status = int(exc.status_code)
    if status < 400:
        body = getattr(exc, "body", None)
        error = body.get("error") if isinstance(body, Mapping) else None
        kind = error.get("type") if isinstance(error, Mapping) else None
        return ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500
    return status


def _transport_error(exc: BaseException, provider: str) -> LLMError | None:
    """httpx / httpx2 / httpcore errors that reach us unwrapped (mid-stream drops do)."""
    module = type(exc).__module__
    if not module.startswith(("httpx", "httpcore", "h11")):
        return None
    name = type(exc).__name__
    if "Timeout" in name:
        return RequestTimeoutError(f"The request timed out ({name})", provider=provider)
    return NetworkError(f"Connection failed: {name}: {exc}", provider=provider)
