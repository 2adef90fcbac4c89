"""What the official openai and anthropic SDKs share: their exception shapes.

Both SDKs (anthropic 0.x and 2.x alike) expose ``APIStatusError`` (with
``status_code``, ``response`` and ``request_id``), ``APITimeoutError`` and
``APIConnectionError`` at the top of the package; more specific subclasses
differ between versions, so mapping goes by status code, not by class name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from llmkit.errors import (
    InvalidRequestError,
    LLMError,
    MalformedResponseError,
    NetworkError,
    RateLimitError,
    RequestTimeoutError,
)
from llmkit.providers._anthropic_reply import ERROR_STATUS
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


def map_sdk_error(exc: BaseException, sdk: ModuleType, provider: str,
                  limit_state: LimitReader | None = None) -> LLMError:  # fmt: skip
    """The llmkit error for an exception an SDK call (or the reading of its reply) raised.

    Only the exceptions an SDK call is known to raise are mapped: its status,
    timeout and connection errors, the transports' own errors, and a reply
    that cannot be read (:class:`MalformedResponseError`: the provider billed
    it). Anything else is raised again as it is (a bug is not a provider error).
    ``limit_state`` reads a 429's rate-limit headers into the error's ``limits``.
    """
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, sdk.APIStatusError):
        return _status_error(exc, provider, limit_state)
    if isinstance(exc, sdk.APITimeoutError):
        return RequestTimeoutError(f"The request{_endpoint(exc)} timed out", provider=provider)
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc
        return NetworkError(f"Connection{_endpoint(exc)} failed: {type(cause).__name__}: {cause}",
                            provider=provider)  # fmt: skip
    transport = _transport_error(exc, provider)
    if transport is not None:
        return transport
    if isinstance(exc, (sdk.APIResponseValidationError, *_UNREADABLE)):
        return MalformedResponseError(f"Malformed reply from {provider}: {exc}", provider=provider)
    if isinstance(exc, TypeError):
        return InvalidRequestError(f"The {provider} SDK refused the request: {exc}", provider=provider)
    raise exc


LimitReader = Callable[[Mapping[str, str]], Any]
# What reading a reply that is not what the API documents raises (json.JSONDecodeError is a ValueError).
_UNREADABLE = (KeyError, IndexError, ValueError)


def _status_error(exc: Any, provider: str, limit_state: LimitReader | None) -> LLMError:
    response = exc.response
    headers = response.headers if response is not None else None
    error = error_for_status(
        _status_of(exc),
        _error_message(exc),
        provider=provider,
        headers=headers,
        request_id=getattr(exc, "request_id", None),
        kind=_error_kind(exc),
    )
    if isinstance(error, RateLimitError) and limit_state is not None and headers is not None:
        error.limits = limit_state(headers)  # what the 429's own headers say
    return error


def _error_kind(exc: Any) -> str | None:
    """The provider's error type or code (``insufficient_quota``, ``billing_error``...)."""
    body = getattr(exc, "body", None)
    for part in (body.get("error") if isinstance(body, Mapping) else None, body):
        if isinstance(part, Mapping):
            for field in ("code", "type"):
                value = part.get(field)
                if isinstance(value, str) and value != "error":
                    return value
    return None


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
    try:
        where = _endpoint(exc)  # httpx errors raise RuntimeError for .request when they have none
    except RuntimeError:
        where = ""
    if "Timeout" in name:
        return RequestTimeoutError(f"The request{where} timed out ({name})", provider=provider)
    return NetworkError(f"Connection{where} failed: {name}: {exc}", provider=provider)
