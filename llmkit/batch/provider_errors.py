"""Why an item of a provider batch has no answer: the errors in its :class:`~llmkit.batch.ItemError`.

They sit under :class:`~llmkit.errors.LLMError` (catch them with
``on_error="raise"``); an item the provider answered with an error gets the
mapped error of that answer instead (``InvalidRequestError``, ``ProviderError``...)::

    ProviderBatchError        the provider batch gave this item no answer
    ├── BatchExpiredError     its window (24 h) ended before the item ran
    ├── BatchCancelledError   the batch was cancelled before the item ran
    └── BatchFailedError      the provider refused the whole batch (its reason says why)

``retry_failed_live=True`` sends such items again through the live pool.
"""

from __future__ import annotations

from llmkit.errors import LLMError

__all__ = ["BatchCancelledError", "BatchExpiredError", "BatchFailedError", "ProviderBatchError"]


class ProviderBatchError(LLMError):
    """The provider batch gave this item no answer (no result line came back for it)."""


class BatchExpiredError(ProviderBatchError):
    """The provider batch's completion window ended before this item was processed."""


class BatchCancelledError(ProviderBatchError):
    """The provider batch was cancelled before this item was processed."""


class BatchFailedError(ProviderBatchError):
    """The provider refused the whole batch (validation failed); nothing in it ran or was billed."""


UNFINISHED: dict[str, type[ProviderBatchError]] = {
    "expired": BatchExpiredError,
    "cancelled": BatchCancelledError,
    "failed": BatchFailedError,
}
"""The error of an item left unfinished, by how its batch ended."""
