"""The engine: which key serves a request, when it may be sent, and what happens after.

Rooms: :mod:`~llmkit.engine.pool` (the key pool and its FIFO queue),
:mod:`~llmkit.engine.slot` (one key), :mod:`~llmkit.engine.health` (cooldowns,
the circuit breaker), :mod:`~llmkit.engine.limiter` (rate limits),
:mod:`~llmkit.engine.loop` (the retry loop), :mod:`~llmkit.engine.backoff`
(what is retryable, backoff delays, Retry-After), :mod:`~llmkit.engine.estimate`
(token estimates) and :mod:`~llmkit.engine.clock` (injected time).
"""
