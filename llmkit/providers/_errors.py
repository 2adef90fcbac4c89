"""HTTP statuses as llmkit errors: the one table adapters share."""

from __future__ import annotations

from collections.abc import Mapping

from llmkit.errors import (
    AuthenticationError,
    InvalidRequestError,
    LLMError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    RequestTimeoutError,
)
from llmkit.providers._headers import parse_retry_after

__all__ = ["error_for_status"]

_STATUS_ERRORS: dict[int, type[LLMError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    408: RequestTimeoutError,
    409: ProviderError,
    429: RateLimitError,
    529: OverloadedError,
}


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    headers: Mapping[str, str] | None = None,
    request_id: str | None = None,
) -> LLMError:
    """The llmkit error for an HTTP status, carrying the server's Retry-After."""
    cls = _STATUS_ERRORS.get(status)
    if cls is None:
        cls = ProviderError if status >= 500 else InvalidRequestError
    return cls(
        message,
        provider=provider,
        status_code=status,
        request_id=request_id,
        retry_after=parse_retry_after(headers),
    )
