"""HTTP statuses as llmkit errors: the one table adapters share, and what marks an empty account.

Out of credit or quota is not a rate limit (waiting does not help): OpenAI's
429 ``insufficient_quota``, Anthropic's 402 ``billing_error`` (and its 400
"credit balance is too low"), Gemini's 429 "prepayment credits are depleted"
all become :class:`~llmkit.errors.QuotaExceededError`, which disables the key.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmkit.errors import (
    AuthenticationError,
    InvalidRequestError,
    LLMError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
)
from llmkit.providers._headers import parse_retry_after

__all__ = ["error_for_status", "is_out_of_credit"]

# The error types / codes providers give an account with no credit or quota left.
_QUOTA_KINDS = frozenset({"insufficient_quota", "billing_error", "billing_hard_limit_reached"})
# ... and what they say when they give no type for it (lower case).
_QUOTA_PHRASES = ("credit balance is too low", "prepayment credits are depleted")

_STATUS_ERRORS: dict[int, type[LLMError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    408: RequestTimeoutError,
    409: ProviderError,
    429: RateLimitError,
    529: OverloadedError,
}


def is_out_of_credit(status: int, message: str, kind: str | None) -> bool:
    """Whether an error means the account has no credit or quota left (see the module)."""
    if status not in (400, 402, 403, 429):
        return False
    if kind is not None and kind in _QUOTA_KINDS:
        return True
    text = message.lower()
    return any(phrase in text for phrase in _QUOTA_PHRASES)


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    headers: Mapping[str, str] | None = None,
    request_id: str | None = None,
    kind: str | None = None,
) -> LLMError:
    """The llmkit error for an HTTP status, carrying the server's Retry-After.

    ``kind`` is the provider's own error type or code (``"insufficient_quota"``).
    """
    cls = _STATUS_ERRORS.get(status)
    if is_out_of_credit(status, message, kind):
        cls = QuotaExceededError
    elif cls is None:
        cls = ProviderError if status >= 500 else InvalidRequestError
    return cls(
        message,
        provider=provider,
        status_code=status,
        request_id=request_id,
        retry_after=parse_retry_after(headers),
    )
