"""What the end of an attempt does to its key: the books and the health, by the kind of outcome.

Called by the pool under its lock (see :mod:`llmkit.engine`), after the
attempt's network I/O is over.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from llmkit.errors import (
    AuthenticationError,
    LLMError,
    MalformedResponseError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
)

if TYPE_CHECKING:
    from llmkit.engine.slot import Lease

__all__ = ["apply_failure", "disables_key"]

logger = logging.getLogger("llmkit.engine.pool")
logger.addHandler(logging.NullHandler())

_DISABLING = (AuthenticationError, PermissionDeniedError, QuotaExceededError)


def disables_key(error: BaseException) -> bool:
    """Whether ``error`` takes its key out of service (401, 403, out of credit or quota)."""
    return isinstance(error, _DISABLING)


def apply_failure(lease: Lease, error: LLMError, cooldown: float, now: float) -> None:
    """Reconcile ``lease`` after ``error`` and tell the key's health (see the module)."""
    slot, reservation = lease.slot, lease.reservation
    limiter, health = slot.limiter, slot.health
    description = f"{type(error).__name__} ({error.status_code or 'no status'})"
    if isinstance(error, RateLimitError):  # a wait, not a failure: the server counted nothing
        limiter.refund(reservation, now)
        limiter.observe(
            getattr(error, "limits", None), reservation.sent_at, now, granted_at=reservation.granted_at
        )
        limiter.on_rate_limited(now, error)
        health.on_rate_limited(now, cooldown, description)
    elif disables_key(error):
        limiter.refund(reservation, now)
        reason = f"{error.status_code or ''} {type(error).__name__}".strip()
        if isinstance(error, QuotaExceededError):
            reason += f": {error.message[:120]}"
        health.disable(reason)
        logger.warning("disabled %s of %s: %s", slot.key_id, slot.provider_name, reason)
    elif isinstance(error, MalformedResponseError):  # billed: its tokens stay spent
        limiter.finish(reservation, None, None, now)
        health.on_released_unjudged()
    elif error.retryable:
        limiter.finish(reservation, None, 0, now)
        health.on_failure(now, description)
    else:
        limiter.finish(reservation, None, 0, now)
        health.on_released_unjudged()
