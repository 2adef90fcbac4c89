"""Limits shared with other processes (Redis): the seam, and its calls made outside the pool's lock.

A :class:`SharedLimits` backend (``llmkit.backends.redis.RedisLimits``) links
each local limiter to its twin elsewhere. The local limiter decides, under
the pool's lock, from its mirror of the shared state; the pool then asks the
twin outside the lock (:func:`confirm_outside_lock`), and sends the books'
changes after a release outside the lock too (:func:`push_outside_lock`).
A backend that cannot be reached decides its own policy (fail closed, or go
on locally); a push that fails is logged and kept for the next one: it never
replaces a reply.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from llmkit.config import RateLimit

__all__ = ["SharedLimits", "SharedLink", "confirm_outside_lock", "push_outside_lock"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())


# The seam imports nothing of the engine (the limiter holds its link): ``pool`` below is the
# KeyPool, ``lease`` a Lease of llmkit.engine.slot, ``limiter`` a KeyLimiter.


class SharedLink(Protocol):
    """One limiter's twin in the shared store."""

    def confirm(self, pool: Any, lease: Any) -> bool:
        """Take the lease's reservation in the shared store too (no pool lock held).

        False when the store refuses (other processes took the capacity): the
        link has given the reservation back and updated the mirror under the
        pool's lock; the caller asks for a key again.
        """

    def push(self, pool: Any, limiter: Any) -> None:
        """Send the changes ``limiter`` recorded in its outbox since the last push (no pool lock held)."""


class SharedLimits(Protocol):
    """Where limiters share their state with other processes (e.g. Redis)."""

    def link(self, name: str, rate_limit: RateLimit | None) -> SharedLink:
        """The twin of the limiter ``name`` (provider and key fingerprint or group, never a key)."""


def confirm_outside_lock(pool: Any, lease: Any) -> bool:
    shared = lease.slot.limiter.shared
    return True if shared is None else shared.confirm(pool, lease)


def push_outside_lock(pool: Any, lease: Any) -> None:
    shared = lease.slot.limiter.shared
    if shared is None:
        return
    try:
        shared.push(pool, lease.slot.limiter)
    except Exception:  # bookkeeping never replaces a reply
        logger.exception("llmkit could not send the limits' changes to the shared store (kept for later)")
