"""The one exception tree of llmkit.

Every error a user can catch from llmkit is an :class:`LLMError`. Errors raised
by provider SDKs (openai, anthropic) and by ``requests`` are mapped into this
tree at the boundary, in ``llmkit.providers``, and chained with ``from exc``::

    LLMError
    ├── ConfigurationError          bad settings, YAML or arguments; no key
    ├── AuthenticationError         401: the key is wrong or revoked
    ├── PermissionDeniedError       403: the key may not do this
    ├── InvalidRequestError         400/404/413/422: fix the request, do not retry
    │   └── RequestTooLargeError    it could never fit in a key's per-minute limits
    ├── RateLimitError              429, carries ``retry_after``
    ├── QuotaExceededError          out of credit or quota: the key is disabled
    ├── ProviderError               5xx from the provider
    │   ├── OverloadedError         Anthropic's 529 "overloaded_error"
    │   └── MalformedResponseError  a 2xx reply that cannot be read (billed: not retried)
    ├── NetworkError                the connection failed or was dropped
    │   └── RequestTimeoutError     no complete answer within the timeout
    ├── StreamError                 a stream broke after text was yielded
    ├── StructuredOutputError       the reply never validated against the model
    ├── BudgetExceededError         the request would pass ``max_cost``
    ├── CheckpointError         a batch checkpoint is unreadable (llmkit.batch.checkpoint)
    │   └── CheckpointMismatchError  it belongs to other inputs
    └── PoolError
        ├── CapacityTimeoutError    a rate limiter could not grant capacity in time
        │   └── PoolExhaustedError  no key could be had within ``acquire_timeout``
        ├── SharedLimitsUnavailableError  Redis is down and limits fail closed
        │                               (llmkit.backends.redis)
        └── PoolClosedError         the client was closed

Each error carries, where known: ``provider``, ``status_code``, ``request_id``,
``key_id`` (a short fingerprint, never the key) and ``retry_after`` (seconds).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "BudgetExceededError",
    "CapacityTimeoutError",
    "ConfigurationError",
    "InvalidRequestError",
    "LLMError",
    "MalformedResponseError",
    "NetworkError",
    "OverloadedError",
    "PermissionDeniedError",
    "PoolClosedError",
    "PoolError",
    "PoolExhaustedError",
    "ProviderError",
    "QuotaExceededError",
    "RateLimitError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "StreamError",
    "StructuredOutputError",
]


class LLMError(Exception):
    """Base class of every error llmkit raises.

    ``retryable`` says whether trying again (normally on another key) may help.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        key_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status_code = status_code
        self.request_id = request_id
        self.key_id = key_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        details = [
            f"{name}={value}"
            for name, value in (
                ("provider", self.provider),
                ("status", self.status_code),
                ("key", self.key_id),
                ("request_id", self.request_id),
                ("retry_after", self.retry_after),
            )
            if value is not None
        ]
        if not details:
            return self.message
        return f"{self.message} ({', '.join(details)})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the fields when an error crosses a process boundary (pickle).
        return (_rebuild, (type(self), self.message, self._fields()))

    def _fields(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "status_code": self.status_code,
            "request_id": self.request_id,
            "key_id": self.key_id,
            "retry_after": self.retry_after,
        }


def _rebuild(cls: type[LLMError], message: str, fields: dict[str, Any]) -> LLMError:
    error = cls.__new__(cls)
    LLMError.__init__(error, message, **fields)
    return error


class ConfigurationError(LLMError, ValueError):
    """Settings, the YAML file, an environment variable or an argument is wrong.

    Raised before anything is sent. The message names the file or variable and
    the field, and says how to fix it.
    """


class AuthenticationError(LLMError):
    """401: the API key was refused. The key is disabled in the pool."""


class PermissionDeniedError(LLMError):
    """403: the key is valid but may not use this model or endpoint."""


class InvalidRequestError(LLMError, ValueError):
    """The request itself is wrong (400, 404, 413, 422, or caught locally)."""


class RequestTooLargeError(InvalidRequestError):
    """The request needs more than a key's per-minute limit allows: it could never be sent.

    Raised before anything is sent; the message names the numbers.
    """


class RateLimitError(LLMError):
    """429: the provider's limit was hit. ``retry_after`` says for how long.

    Inside llmkit a 429 is a wait, not a failure: the call waits (on another key
    or after ``retry_after``) until its deadline. Raised to the caller when that
    wait would pass the deadline. Adapters may also set ``limits`` (what the
    429's own rate-limit headers said) and ``limit`` (the per-minute limit the
    error names, as Gemini's QuotaFailure does).
    """

    retryable = True
    limits: Any = None
    limit: float | None = None
    limit_kind: str | None = None  # what ``limit`` counts: "requests", "input_tokens", ...


class QuotaExceededError(LLMError):
    """The key is out of credit or quota (OpenAI's 429 ``insufficient_quota``, a billing error).

    Not a rate limit: waiting does not help. The key is disabled, with the reason
    in ``status()``, and the call moves on to the other keys.
    """


class ProviderError(LLMError):
    """The provider failed (5xx). Worth retrying, preferably on another key."""

    retryable = True


class OverloadedError(ProviderError):
    """Anthropic's 529: the service is overloaded for everyone."""


class MalformedResponseError(ProviderError):
    """The provider answered 2xx but the reply cannot be read (no choices, broken JSON).

    The provider has billed it, so it is not retried by default
    (``RetryPolicy(retry_malformed=True)`` retries it); it is not counted
    against the key's health, and its tokens stay spent.
    """

    retryable = False


class NetworkError(LLMError):
    """The connection could not be made, or broke before a full reply."""

    retryable = True


class RequestTimeoutError(NetworkError):
    """No complete reply arrived within the timeout."""


class StreamError(LLMError):
    """A stream failed after some text was already yielded.

    Streams are only retried before their first token, so this is final; the
    text yielded so far stays with the caller. ``__cause__`` holds the mapped
    underlying error.
    """


class StructuredOutputError(LLMError):
    """The reply never validated against ``response_model``.

    ``errors`` holds the validation errors of the last attempt.
    """

    def __init__(self, message: str, *, errors: Any = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.errors = errors


class BudgetExceededError(LLMError):
    """Sending the request could pass the client's ``max_cost``."""


class PoolError(LLMError):
    """A problem of the key pool rather than of the provider."""


class CapacityTimeoutError(PoolError):
    """A rate limiter could not grant the capacity asked for within the timeout."""


class PoolExhaustedError(CapacityTimeoutError):
    """No key could admit the request within ``acquire_timeout``.

    The message says why: how many keys are cooling down (and until when),
    busy, or disabled.
    """


class PoolClosedError(PoolError):
    """The client (and its pool) was closed; it takes no new work."""
