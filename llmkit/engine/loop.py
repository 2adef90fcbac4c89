"""The retry loop: acquire a key, send, release, and go round again when it is worth it.

One :class:`RetryLoop` per client. :meth:`RetryLoop.execute` runs a whole
call in the caller's thread; :meth:`RetryLoop.stream` does the same for a
stream, retrying only before the stream has handed over any output. What
comes after a failure (wait on the pool, back off, give up) is decided by
:class:`~llmkit.engine.calls.CallState`; this module does the waiting and
the I/O.

``send`` (what one attempt does with its key) defaults to the provider's
``complete``; structured outputs pass their own, which may take more capacity
on the same key for a re-ask through :meth:`RetryLoop.extend`.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from llmkit.engine.aloop import AsyncRetry
from llmkit.engine.backoff import retry_details
from llmkit.engine.calls import CallState, Decision
from llmkit.engine.estimate import estimate_input_tokens
from llmkit.engine.limiter import Cost
from llmkit.engine.outcomes import disables_key
from llmkit.engine.slot import Lease
from llmkit.engine.stream_state import StreamState, broken, usage_counts
from llmkit.errors import LLMError, PoolClosedError, RateLimitError
from llmkit.redaction import scrub_exception
from llmkit.request import DEFAULT_MAX_TOKENS

if TYPE_CHECKING:
    from llmkit.config import RetryPolicy
    from llmkit.engine.pool import KeyPool
    from llmkit.providers.base import ProviderReply, StreamDelta
    from llmkit.request import Request
    from llmkit.types import Response, Usage

__all__ = ["RetryLoop", "Send"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

Hook = Callable[[dict[str, Any]], None]
Send = Callable[[Lease, "Request"], "ProviderReply"]


class RetryLoop(AsyncRetry):
    """Runs calls through a :class:`~llmkit.engine.pool.KeyPool` with retries (see the module).

    Its async twins (``execute_async``, ``stream_async``) are :class:`~llmkit.engine.aloop.AsyncRetry`'s.
    """

    def __init__(self, pool: KeyPool, retry: RetryPolicy, *, acquire_timeout: float | None,
                 default_output_tokens: int | None = None, on_retry: Hook | None = None,
                 on_giveup: Hook | None = None, rng: random.Random | None = None) -> None:  # fmt: skip
        self.pool = pool
        self.retry = retry
        self.acquire_timeout = acquire_timeout
        self.default_output_tokens = default_output_tokens or DEFAULT_MAX_TOKENS
        self.on_retry = on_retry
        self.on_giveup = on_giveup
        self.rng = rng or random.Random()

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

    # -- one call -----------------------------------------------------------------------------

    def execute(self, request: Request, send: Send | None = None,
                cancel: threading.Event | None = None) -> Response:  # fmt: skip
        """Run ``send`` (default: the provider's ``complete``) with a key, as the policy says.

        ``cancel``, once set, stops a wait for a key or a backoff sleep.
        """
        send = send or self._send_plain
        call = self.start(request)
        cost = self.estimate(request)
        self.pool.check_fits(cost)
        clock = self.pool.clock
        while True:
            lease = self._acquire(call, cost, cancel)
            call.tries += 1
            started = clock.now()
            lease.sending(started)
            try:
                reply = send(lease, request)
            except LLMError as error:
                self._after_failure(call, lease, self._tag(error, lease), cost, cancel)
                continue
            except BaseException as exc:
                self.pool.release_unjudged(lease)
                scrub_exception(exc, (lease.slot.secret,))
                raise
            return self._after_success(call, lease, reply, clock.now() - started)

    def start(self, request: Request) -> CallState:
        return CallState(self.policy_for(request), self.acquire_timeout, self.pool.clock.now(), self.rng)

    def _send_plain(self, lease: Lease, request: Request) -> ProviderReply:
        return self.pool.provider.call(lease.slot, request, lease.deadline)

    def _acquire(self, call: CallState, cost: Cost, cancel: threading.Event | None) -> Lease:
        clock = self.pool.clock
        now = clock.now()
        try:
            lease = self.pool.acquire(
                cost, deadline=call.acquire_deadline(now), avoid=call.avoid, cancel=cancel, note=call.note()
            )
        finally:
            call.waited += clock.now() - now
        lease.deadline = call.wall_deadline(clock.now())
        return lease

    def _after_failure(self, call: CallState, lease: Lease, error: LLMError, cost: Cost,
                       cancel: threading.Event | None) -> None:  # fmt: skip
        """Release the key, then return to go round again, or raise ``error`` to give up."""
        decision = self._judge(call, lease, error, cost)
        if decision.sleep and self.pool.clock.sleep(decision.sleep, cancel):
            raise CancelledError("cancelled during a backoff wait")

    def _judge(self, call: CallState, lease: Lease, error: LLMError, cost: Cost) -> Decision:
        """Release the key after ``error`` and decide: raise it (giving up), or the sleep before
        the next attempt. The same for sync and async calls; the caller does the sleeping."""
        now = self.pool.clock.now()
        decision = call.after_failure(error, now)
        self.pool.release_failure(lease, error, decision.cooldown)
        if disables_key(error) and self.pool.all_disabled():
            decision = Decision(give_up=True)  # the last key went: the caller gets its own error
        elif isinstance(error, RateLimitError) and not decision.give_up:
            decision = self._wait_or_give_up(call, error, cost, decision, now)
        call.avoid = lease.slot.index
        elapsed = now - call.started
        if decision.give_up:
            self._hook(self.on_giveup, call, elapsed, 0.0, error)
            raise error
        if not disables_key(error):  # moving off a refused key is not a retry
            self._hook(self.on_retry, call, elapsed, decision.sleep, error)
        logger.info(
            "%s %s: %s; %s", self.pool.provider.name, lease.slot.key_id, error.message[:200],
            f"retry {call.retries} in {decision.sleep:.2f} s" if decision.sleep else
            f"the key rests {decision.cooldown:.2f} s, the call waits for a key" if decision.cooldown else
            "trying another key",
        )  # fmt: skip
        return decision

    def _wait_or_give_up(self, call: CallState, error: RateLimitError, cost: Cost, decision: Decision,
                         now: float) -> Decision:  # fmt: skip
        """After a 429: give up at once, with the server's own error, when no key can be had
        before the call's deadline (rather than wait that long to say so)."""
        wait, certain = self.pool.wait_estimate(cost)
        deadline = call.acquire_deadline(now)
        left = math.inf if deadline is None else deadline - now
        if not certain or wait <= left:
            return decision
        error.message += (
            f" (the server asks to wait {wait:.1f} s, more than the {max(0.0, left):.1f} s this "
            f"call has left; {call.note()})"
        )
        error.args = (error.message,)
        error.retry_after = max(error.retry_after or 0.0, wait)
        return Decision(give_up=True)

    def _after_success(self, call: CallState, lease: Lease, reply: ProviderReply, latency: float) -> Response:
        response = reply.response
        counted = getattr(reply, "limit_input_tokens", None)
        input_tokens, output_tokens = usage_counts(response.usage, counted)
        self.pool.release_success(lease, input_tokens, output_tokens, reply.limits)
        self._check_not_abandoned(lease)
        # The adapter built this response for us alone: stamping it in place is safe,
        # and far cheaper than dataclasses.replace on the hot path.
        stamp = object.__setattr__
        stamp(response, "latency", latency)
        stamp(response, "key_id", lease.slot.key_id)
        stamp(response, "attempts", call.tries)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s %s: %.3f s, tokens %d/%d, attempt %d, waited %.3f s for a key",
                self.pool.provider.name, lease.slot.key_id, response.model, latency,
                response.usage.input_tokens, response.usage.output_tokens, call.tries, call.waited,
            )  # fmt: skip
        return response

    def _check_not_abandoned(self, lease: Lease) -> None:
        if self.pool.abandoned:
            raise PoolClosedError(
                "The client was closed while this call was in flight and close() stopped "
                "waiting for it: the reply was discarded.",
                provider=self.pool.provider.name,
                key_id=lease.slot.key_id,
            )

    def _hook(self, hook: Hook | None, call: CallState, elapsed: float, wait: float, error: LLMError) -> None:
        if hook is not None:
            details = retry_details(tries=call.tries, elapsed=elapsed, wait=wait, exception=error,
                                    key_id=error.key_id)  # fmt: skip
            hook(details)

    def _tag(self, error: LLMError, lease: Lease) -> LLMError:
        """Say which key an error came from, and scrub that key from it and its whole chain."""
        error.key_id = lease.slot.key_id
        error.provider = error.provider or self.pool.provider.name
        scrub_exception(error, (lease.slot.secret,))
        return error

    def extend(self, lease: Lease, cost: Cost, cancel: threading.Event | None = None) -> bool:
        """Take ``cost`` more on ``lease``'s key, waiting up to the acquire timeout (see KeyPool.extend)."""
        now = self.pool.clock.now()
        deadline = None if self.acquire_timeout is None else now + self.acquire_timeout
        return self.pool.extend(lease, cost, deadline, cancel)

    # -- streams -------------------------------------------------------------------------------

    def stream(self, request: Request, cancel: threading.Event | None = None) -> Iterator[StreamDelta]:
        """Stream with a key held for the whole stream; retried only before any output.

        The key is released when the stream ends, fails, or is closed early
        (``GeneratorExit``); the reservation is reconciled with the final usage.
        """
        call = self.start(request)
        cost = self.estimate(request)
        self.pool.check_fits(cost)
        while True:
            lease = self._acquire(call, cost, cancel)
            call.tries += 1
            state = StreamState(call.tries)
            try:
                yield from self._stream_once(lease, request, state)
                return
            except LLMError as error:
                error = self._tag(error, lease)
                if state.delivered:
                    self.pool.release_failure(lease, error, 0.0)
                    raise broken(error, state) from error
                self._after_failure(call, lease, error, cost, cancel)
            except BaseException as exc:
                self.pool.release_unjudged(lease)
                scrub_exception(exc, (lease.slot.secret,))
                raise

    def _stream_once(self, lease: Lease, request: Request, state: StreamState) -> Iterator[StreamDelta]:
        from llmkit.providers.base import StreamDelta

        usage: Usage | None = None
        counted = None
        opened = False
        yield StreamDelta(key_id=lease.slot.key_id, attempts=state.attempts)
        lease.sending(self.pool.clock.now())
        for delta in self.pool.provider.call_stream(lease.slot, request, lease.deadline):
            if not opened or delta.limits is not None:  # the reply's headers: heard now, not at the end
                self.pool.headers_in(lease, delta.limits)
                opened = True
            if delta.request_id:
                state.request_id = delta.request_id
            if delta.usage is not None:
                usage = delta.usage
                counted = getattr(delta, "limit_input_tokens", None)
            if delta.delivers_output():  # output the caller has: a retry would repeat it
                state.delivered = True
                state.chars += len(delta.text)
            yield replace(delta, limits=None) if delta.limits is not None else delta
        input_tokens, output_tokens = (None, None) if usage is None else usage_counts(usage, counted)
        self.pool.release_success(lease, input_tokens, output_tokens, None)
