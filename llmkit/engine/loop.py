"""The retry loop: acquire a key, send, release, and go round again when it is worth it.

One :class:`Dispatcher` per client. ``execute`` runs a whole call in the
caller's thread; ``stream`` does the same for a stream, retrying only before
its first token.

Waiting between attempts:

* a 429 cools its key down for the server's Retry-After (plus jitter, never
  less) and drains its buckets; the next attempt goes straight to the pool,
  which hands out another key at once if one is free, or waits for the first
  key to cool down;
* a 5xx, a network error or a timeout backs off exponentially with full
  jitter (``backoff``'s generators) before the next attempt, which prefers
  another key;
* a 401/403 disables the key; the request moves to another key without
  spending its retry budget (the key count bounds these).
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from llmkit.engine.backoff import backoff_delays, is_retryable, retry_after_wait, retry_details
from llmkit.engine.estimate import estimate_input_tokens
from llmkit.engine.limiter import Cost
from llmkit.engine.pool import KeyPool, Lease
from llmkit.errors import (
    AuthenticationError,
    LLMError,
    PermissionDeniedError,
    PoolClosedError,
    RateLimitError,
    StreamError,
)
from llmkit.providers.base import ProviderReply, StreamDelta
from llmkit.redaction import redact
from llmkit.types import Response, Usage

if TYPE_CHECKING:
    from llmkit.config import RetryPolicy
    from llmkit.request import Request

__all__ = ["Dispatcher"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

Hook = Callable[[dict[str, Any]], None]

# The cancel event of the call running in this thread (set by llmkit.aio's workers), so a
# cancelled asyncio task stops waiting for a key without a parameter through the middleware.
current_cancel: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "llmkit_cancel", default=None
)

# Output tokens reserved when neither the call nor the settings say how many.
DEFAULT_OUTPUT_RESERVATION = 1024


class _Attempts:
    """Counts one call's attempts and decides whether another is allowed."""

    def __init__(self, dispatcher: Dispatcher, policy: RetryPolicy) -> None:
        self.dispatcher = dispatcher
        self.policy = policy
        self.tries = 0
        self.started = dispatcher.pool.clock.now()
        self.delays: Iterator[float] | None = None
        self.avoid: int | None = None

    def after_failure(self, lease: Lease, error: LLMError) -> None:
        """Release the key, then return to retry or re-raise ``error`` to give up."""
        d = self.dispatcher
        cooldown = 0.0
        if isinstance(error, RateLimitError):
            cooldown = retry_after_wait(error.retry_after, d.rng) if error.retry_after else self._next_delay()
        d.pool.release_failure(lease, error, cooldown)
        self.avoid = lease.slot.index
        if isinstance(error, (AuthenticationError, PermissionDeniedError)):
            if d.pool.all_disabled():
                d.hook(d.on_giveup, tries=self.tries, elapsed=0.0, wait=0.0, error=error)
                raise error
            self.tries -= 1  # moving off a dead key is not a retry
            return
        elapsed = d.pool.clock.now() - self.started
        policy = self.policy
        out_of_time = policy.max_time is not None and elapsed >= policy.max_time
        if not is_retryable(error, policy) or self.tries > policy.max_retries or out_of_time:
            d.hook(d.on_giveup, tries=self.tries, elapsed=elapsed, wait=0.0, error=error)
            raise error
        wait = 0.0
        if not isinstance(error, RateLimitError):
            wait = self._next_delay()
            if error.retry_after is not None:
                wait = max(wait, retry_after_wait(error.retry_after, d.rng))
        d.hook(d.on_retry, tries=self.tries, elapsed=elapsed, wait=wait, error=error)
        logger.info(
            "retrying %s after %s (try %d, wait %.2f s)", d.pool.provider.name, error, self.tries, wait
        )
        d.pool.clock.sleep(wait)

    def _next_delay(self) -> float:
        if self.delays is None:
            self.delays = backoff_delays(self.policy, self.dispatcher.rng)
        return next(self.delays)


class Dispatcher:
    """Runs calls through a :class:`KeyPool` with retries."""

    def __init__(
        self,
        pool: KeyPool,
        retry: RetryPolicy,
        *,
        acquire_timeout: float | None,
        default_output_tokens: int | None = None,
        on_retry: Hook | None = None,
        on_giveup: Hook | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.pool = pool
        self.retry = retry
        self.acquire_timeout = acquire_timeout
        self.default_output_tokens = default_output_tokens or DEFAULT_OUTPUT_RESERVATION
        self.on_retry = on_retry
        self.on_giveup = on_giveup
        self.rng = rng or random.Random()

    def hook(self, hook: Hook | None, *, tries: int, elapsed: float, wait: float, error: LLMError) -> None:
        if hook is not None:
            hook(retry_details(tries=tries, elapsed=elapsed, wait=wait, exception=error, key_id=error.key_id))

    def policy_for(self, request: Request) -> RetryPolicy:
        changes: dict[str, Any] = {}
        if request.max_retries is not None:
            changes["max_retries"] = request.max_retries
        if request.retry_delay is not None:
            changes["base_delay"] = request.retry_delay
        return self.retry.new(**changes) if changes else self.retry

    def estimate(self, request: Request) -> Cost:
        """The capacity to reserve: one request, and tokens where keys limit them."""
        if not self.pool.counts_tokens:
            return Cost(1, 0, 0)
        output = request.max_tokens or self.default_output_tokens
        return Cost(1, estimate_input_tokens(request), output)

    def _tag(self, error: LLMError, lease: Lease) -> LLMError:
        error.key_id = lease.slot.key_id
        error.provider = error.provider or self.pool.provider.name
        error.message = redact(error.message, (lease.slot.secret,))
        error.args = (error.message,)
        return error

    def execute(
        self,
        request: Request,
        send: Callable[[Any, Request], ProviderReply] | None = None,
        cancel: threading.Event | None = None,
        on_lease: Callable[[Lease], None] | None = None,
    ) -> Response:
        """Run ``send`` (default: the provider's ``complete``) with a key, retrying as the policy says.

        ``cancel`` (default: :data:`current_cancel`), once set, stops a wait for a key.
        ``on_lease`` is told each attempt's lease before ``send`` runs (a ``send``
        that makes several requests takes more capacity on it with :meth:`extend`).
        """
        send = send or self.pool.provider.complete
        cancel = cancel if cancel is not None else current_cancel.get()
        attempts = _Attempts(self, self.policy_for(request))
        cost = self.estimate(request)
        clock = self.pool.clock
        while True:
            lease = self.pool.acquire(cost, self.acquire_timeout, attempts.avoid, cancel)
            attempts.tries += 1
            try:
                if on_lease is not None:
                    on_lease(lease)
                client = lease.slot.client
                started = clock.now()
                reply = send(client, request)
            except LLMError as error:
                attempts.after_failure(lease, self._tag(error, lease))
                continue
            except BaseException:
                self.pool.release_unknown(lease)
                raise
            response = reply.response
            latency = clock.now() - started
            self.pool.release_success(lease, response.usage, reply.limits, latency)
            if self.pool.abandoned:
                raise PoolClosedError(
                    "The client was closed while this call was in flight and close() stopped "
                    "waiting for it: the reply was discarded.",
                    provider=self.pool.provider.name,
                    key_id=lease.slot.key_id,
                )
            # The adapter built this response for us alone: stamping it in place
            # is safe, and far cheaper than dataclasses.replace on the hot path.
            stamp = object.__setattr__
            stamp(response, "latency", latency)
            stamp(response, "key_id", lease.slot.key_id)
            stamp(response, "attempts", attempts.tries)
            return response

    def extend(self, lease: Lease, cost: Cost) -> bool:
        """Take ``cost`` more on ``lease``'s key, waiting up to the acquire timeout (see KeyPool.extend)."""
        return self.pool.extend(lease, cost, self.acquire_timeout, current_cancel.get())

    def stream(self, request: Request, cancel: threading.Event | None = None) -> Iterator[StreamDelta]:
        """Stream with a key held for the whole stream; retried only before the first text.

        The key is released when the stream ends, fails, or is closed early
        (``GeneratorExit``); the reservation is reconciled with the final usage.
        ``cancel`` as in :meth:`execute` (read when the stream starts).
        """
        cancel = cancel if cancel is not None else current_cancel.get()
        attempts = _Attempts(self, self.policy_for(request))
        cost = self.estimate(request)
        while True:
            lease = self.pool.acquire(cost, self.acquire_timeout, attempts.avoid, cancel)
            attempts.tries += 1
            state = _StreamState(attempts.tries)
            try:
                yield from self._stream_once(lease, request, state)
                return
            except LLMError as error:
                error = self._tag(error, lease)
                if state.yielded_text:
                    self.pool.release_failure(lease, error, 0.0)
                    raise StreamError(
                        f"The stream broke after {state.chars} characters: {error.message}",
                        provider=error.provider,
                        status_code=error.status_code,
                        key_id=error.key_id,
                        request_id=state.request_id,
                    ) from error
                attempts.after_failure(lease, error)
            except BaseException:
                self.pool.release_unknown(lease)
                raise

    def _stream_once(self, lease: Lease, request: Request, state: _StreamState) -> Iterator[StreamDelta]:
        usage: Usage | None = None
        limits = None
        started = self.pool.clock.now()
        yield StreamDelta(key_id=lease.slot.key_id, attempts=state.attempts)
        for delta in self.pool.provider.stream(lease.slot.client, request):
            if delta.limits is not None:
                limits = delta.limits
            if delta.request_id:
                state.request_id = delta.request_id
            if delta.usage is not None:
                usage = delta.usage
            if delta.delivers_output():  # output the caller has: a retry would repeat it
                state.yielded_text = True
                state.chars += len(delta.text)
            yield replace(delta, limits=None) if delta.limits is not None else delta
        self.pool.release_success(lease, usage, limits, self.pool.clock.now() - started)


class _StreamState:
    __slots__ = ("attempts", "chars", "request_id", "yielded_text")

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts
        self.yielded_text = False
        self.chars = 0
        self.request_id: str | None = None
