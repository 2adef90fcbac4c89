"""The engine: which key serves a request, when it may be sent, and what happens after.

Rooms, from the call inward:

* :mod:`~llmkit.engine.loop` (blocking) and :mod:`~llmkit.engine.aloop`
  (asyncio): the retry loop. Acquire a key, send, release, and go round again
  when :mod:`~llmkit.engine.calls` says so (with :mod:`~llmkit.engine.backoff`'s
  delays); :mod:`~llmkit.engine.stream_state` is what a streamed attempt keeps.
* :mod:`~llmkit.engine.pool`: the key pool, its one FIFO queue of
  :mod:`~llmkit.engine.waiters`, and the books; :mod:`~llmkit.engine.refusals`
  are the errors it raises when no key can be had, :mod:`~llmkit.engine.outcomes`
  what an attempt's end does to its key.
* :mod:`~llmkit.engine.slot` (one key), :mod:`~llmkit.engine.health`
  (cooldowns, the circuit breaker), :mod:`~llmkit.engine.limiter` (a key's
  limits) with its :mod:`~llmkit.engine.lanes` and :mod:`~llmkit.engine.bucket`.
* :mod:`~llmkit.engine.shared` (the seam to Redis-shared limits),
  :mod:`~llmkit.engine.estimate` (token estimates), :mod:`~llmkit.engine.clock`
  (injected time), :mod:`~llmkit.engine.lifetime` (exit and fork).

The lock rule:

* ``KeyPool._lock`` guards all of a pool's mutable state: its queue of
  waiters, and every slot's limiter (lanes, buckets, in-flight counts, what
  was learned), health and counters. ``KeyLimiter``, ``Lane``, ``TokenBucket``
  and ``KeyHealth`` have no lock of their own: only the pool calls them, with
  its lock held. Waiters are woken under it (setting an event, no I/O).
* **No lock is held across network I/O**, to a provider or to Redis. A call
  takes a key under the lock, lets go, then sends. Shared limits go to Redis
  outside the lock (:func:`~llmkit.engine.shared.confirm_outside_lock`,
  :func:`~llmkit.engine.shared.push_outside_lock`): changes are queued under
  the lock in the limiter's outbox and sent after it is released; a take that
  Redis refuses is given back under the lock again.
* Smaller locks, each guarding one thing and never held while waiting on
  another lock: ``KeySlot._client_lock`` (building the key's SDK client once),
  ``RedisLimits._lock`` (whether Redis is considered down), the transport's
  endpoint lock (making its HTTP clients), the watchdog's heap lock.
* Bookkeeping after a reply never raises into the caller: a reply the
  provider answered (and billed) reaches the caller even if the books fail.
"""
