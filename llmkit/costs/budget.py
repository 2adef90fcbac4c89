"""``CostMiddleware``: prices responses, records usage, enforces ``max_cost``.

See :mod:`llmkit.costs` for the budget's rules and the middleware order.
"""

from __future__ import annotations

import logging
import math
import operator
import threading
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import TYPE_CHECKING

from llmkit.costs.prices import _PER_TOKEN, PriceTable
from llmkit.costs.usage import UsageTracker
from llmkit.engine.estimate import estimate_input_tokens, heuristic_tokens
from llmkit.errors import BudgetExceededError, ConfigurationError
from llmkit.request import DEFAULT_MAX_TOKENS
from llmkit.types import Response, Usage

if TYPE_CHECKING:
    from llmkit.middleware import AsyncHandler, Handler
    from llmkit.request import Request

__all__ = ["DEFAULT_OUTPUT_TOKENS", "CostMiddleware", "StreamBudget"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

DEFAULT_OUTPUT_TOKENS = DEFAULT_MAX_TOKENS  # one number for the limiter, the budget and Anthropic


class CostMiddleware:
    """Prices each response, records it, and keeps the client under ``max_cost`` (USD).

    Args:
        prices: the price table.
        tracker: where usage is recorded (a new one if None).
        max_cost: the budget in dollars for everything sent through this
            middleware; None: no budget. 0 refuses every priced call.
        default_output_tokens: the output tokens assumed for a call without
            ``max_tokens`` when checking the budget.
        unknown_price: with a budget, what to do with a model of unknown price:
            ``"refuse"`` (raise :class:`BudgetExceededError`) or ``"allow"``
            (send it uncounted, with a warning once per model).
        cache_lookup: ``fn(request) -> Response | None``; asked only when a call
            is refused, so that a cached answer is still served.
    """

    def __init__(
        self,
        prices: PriceTable,
        tracker: UsageTracker | None = None,
        max_cost: float | None = None,
        *,
        default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
        unknown_price: str = "refuse",
        cache_lookup: Callable[[Request], Response | None] | None = None,
    ) -> None:
        if max_cost is not None and (
            isinstance(max_cost, bool) or not isinstance(max_cost, (int, float)) or not max_cost >= 0
        ):
            raise ConfigurationError(
                f"max_cost must be a number of dollars >= 0 (or None), got {max_cost!r}."
            )
        if unknown_price not in ("refuse", "allow"):
            raise ConfigurationError(f"unknown_price must be 'refuse' or 'allow', got {unknown_price!r}.")
        self.prices = prices
        self.tracker = tracker if tracker is not None else UsageTracker()
        self.max_cost = None if max_cost is None else float(max_cost)
        self.default_output_tokens = default_output_tokens
        self.unknown_price = unknown_price
        self.cache_lookup = cache_lookup
        self._lock = threading.Lock()
        self._spent = 0.0
        self._reserved = 0.0
        self._warned: set[str] = set()

    @property
    def spent(self) -> float:
        """Dollars spent by calls that went through this middleware."""
        return self._spent

    @property
    def reserved(self) -> float:
        """Dollars reserved by calls in flight."""
        return self._reserved

    def __call__(self, request: Request, call_next: Handler) -> Response:
        held = self._hold(request)
        if isinstance(held, Response):  # refused, but the cache has the answer
            return self._finish(request, held)
        try:
            response = call_next(request)
        except BaseException:
            self._drop(held)
            raise
        return self._charge(request, response, held)

    async def acall(self, request: Request, call_next: AsyncHandler) -> Response:
        """:meth:`__call__` in asyncio (the same books: they are in memory, under a short lock)."""
        held = self._hold(request)
        if isinstance(held, Response):
            return self._finish(request, held)
        try:
            response = await call_next(request)
        except BaseException:
            self._drop(held)
            raise
        return self._charge(request, response, held)

    def _hold(self, request: Request) -> float | Response | None:
        """The call's reservation (None: no budget), or the cached answer when it is refused."""
        return None if self.max_cost is None else self._reserve(request)

    def _drop(self, held: float | None) -> None:
        if held is not None:
            self._settle(held, 0.0)

    def _charge(self, request: Request, response: Response, held: float | None) -> Response:
        """Price and record the answer; settle its reservation with what it cost."""
        if held is None:
            return self._finish(request, response)
        response = self._price(request, response)
        self._settle(held, response.cost or 0.0)
        self.tracker.record(response)
        return response

    def budget_stream(self, request: Request, provider: str) -> StreamBudget:
        """A stream's place in the budget: checked now, before anything is sent
        (BudgetExceededError if it would not fit), and reserved only once the stream starts."""
        budget = StreamBudget(self, request, provider)
        if self.max_cost is not None:
            budget.start()  # the check: reserved and freed at once
            budget.settle(None)
        return budget

    # -- provider batches (llmkit.batch.provider) ------------------------------------------

    def reserve_batch(self, requests: Sequence[Request], provider: str) -> list[float]:
        """Reserve the worst case of ``requests`` sent together in a provider batch, at batch
        prices (one reply each: a batch asks no validation re-asks); the dollars reserved for
        each (settle each with :meth:`settle_batch`).

        Raises :class:`BudgetExceededError` before anything is uploaded when they would
        not fit in ``max_cost`` (or a model's batch price is unknown and
        ``unknown_price="refuse"``). All 0.0 without a budget.
        """
        if self.max_cost is None or not requests:
            return [0.0] * len(requests)
        each = []
        for request in requests:
            worst = self._batch_estimate(request, provider)
            if worst is None and self.unknown_price != "allow":
                raise BudgetExceededError(
                    f"No batch price is known for model {request.model!r}, so max_cost cannot be "
                    "enforced; nothing was uploaded. Give its price (and 'batch', the multiplier of "
                    f'batch requests) with LLMClient(prices={{"{request.model}": {{"input": ..., '
                    '"output": ..., "batch": 0.5}}), or drop max_cost.'
                )
            each.append(worst or 0.0)
        total = sum(each)
        with self._lock:
            if self._spent + self._reserved + total > self.max_cost * (1 + 1e-12):
                spent, reserved = self._spent, self._reserved
            else:
                self._reserved += total
                return each
        raise BudgetExceededError(
            f"Budget exceeded: these {len(requests)} batch requests could cost up to ${total:.6f} at "
            f"batch prices; ${spent:.6f} is spent and ${reserved:.6f} reserved, of max_cost="
            f"${self.max_cost:.6f}. Nothing was uploaded. Raise the budget, lower max_tokens, or "
            "send fewer items."
        )

    def _batch_estimate(self, request: Request, provider: str) -> float | None:
        once = request.with_changes(extra={**request.extra, "max_reasks": 0})
        worst = self.estimate(once)
        multiplier = self.prices.batch_multiplier(request.model, provider)
        return None if worst is None or multiplier is None else worst * multiplier

    def settle_batch(self, reserved: float, cost: float | None) -> None:
        """Give back ``reserved`` dollars of a batch's reservation and charge ``cost`` instead."""
        if self.max_cost is not None:
            self._settle(reserved, cost or 0.0)

    def price_batch(self, response: Response, provider: str, model: str | None = None) -> Response:
        """``response`` (of a provider batch request) with its cost at batch prices, recorded
        in the usage totals as a batch request; ``model``: the one asked for, priced when the
        model the reply names is not (a dated version)."""
        if response.cost is None:
            cost = self.prices.batch_cost(response.model, response.usage, provider)
            if cost is None and model is not None and model != response.model:
                cost = self.prices.batch_cost(model, response.usage, provider)
            response = response if cost is None else _with_cost(response, cost)
        self.tracker.record(response, batch=True)
        return response

    def estimate(self, request: Request) -> float | None:
        """The worst-case dollars of ``request`` that the budget reserves; None if unpriced.

        Input: the messages' estimated tokens plus tool definitions and the
        response schema; output: ``max_tokens`` (else ``default_output_tokens``).
        A structured call may be asked again ``max_reasks`` times, each time
        with the previous reply in its input: all those replies are reserved.
        """
        price = self.prices.lookup(request.model)
        if price is None:
            return None
        prompt = estimate_input_tokens(request) + _definition_tokens(request)
        output = request.max_tokens or self.default_output_tokens
        calls = _structured_calls(request)
        input_tokens = calls * prompt + output * calls * (calls - 1) // 2
        return (input_tokens * price.input + calls * output * price.output) * _PER_TOKEN

    def _reserve(self, request: Request, use_cache: bool = True) -> float | Response:
        """Reserve the worst case; a cached answer if refused but cached; else raise."""
        estimate = self.estimate(request)
        if estimate is None:
            return self._unpriced(request, use_cache)
        assert self.max_cost is not None
        with self._lock:
            total = self._spent + self._reserved + estimate
            if total <= self.max_cost or math.isclose(total, self.max_cost, rel_tol=1e-12, abs_tol=1e-15):
                self._reserved += estimate
                return estimate
            spent, reserved = self._spent, self._reserved
        return self._refuse(
            request,
            use_cache,
            f"Budget exceeded: this call to {request.model} could cost up to ${estimate:.6f}; "
            f"${spent:.6f} is spent and ${reserved:.6f} reserved by calls in flight, of max_cost="
            f"${self.max_cost:.6f}. Nothing was sent. Raise the budget (LLMClient(max_cost=...)), "
            "lower max_tokens, or shorten the prompt.",
        )

    def _unpriced(self, request: Request, use_cache: bool = True) -> float | Response:
        if self.unknown_price == "allow":
            if request.model not in self._warned:
                self._warned.add(request.model)
                logger.warning(
                    "no price known for %r: its calls are not counted against max_cost", request.model
                )
            return 0.0
        return self._refuse(
            request,
            use_cache,
            f"No price is known for model {request.model!r}, so max_cost cannot be enforced; "
            "nothing was sent. Give its price with LLMClient(prices={"
            f'"{request.model}": {{"input": ..., "output": ...}}}}) (USD per million tokens), '
            "or drop max_cost.",
        )

    def _refuse(self, request: Request, use_cache: bool, message: str) -> Response:
        hit = self.cache_lookup(request) if use_cache and self.cache_lookup is not None else None
        if hit is None:
            raise BudgetExceededError(message)
        logger.debug("budget refused a call to %r, but the cache answered it", request.model)
        return hit

    def _settle(self, reservation: float, cost: float) -> None:
        with self._lock:
            self._reserved = max(self._reserved - reservation, 0.0)
            self._spent += cost

    def _finish(self, request: Request, response: Response) -> Response:
        response = self._price(request, response)
        if self.max_cost is not None and response.cost:
            self._settle(0.0, response.cost)
        self.tracker.record(response)
        return response

    def _price(self, request: Request, response: Response) -> Response:
        if response.cached:
            return response if response.cost == 0.0 else _with_cost(response, 0.0)
        if response.cost is not None:  # priced already (by a provider or a test double)
            return response
        cost = self.prices.cost(response.model, response.usage)
        if cost is None and response.model != request.model:
            cost = self.prices.cost(request.model, response.usage)
        return response if cost is None else _with_cost(response, cost)


_DEFINITION_FIELDS = ("tools", "functions", "response_format", "tool_choice")


def _definition_tokens(request: Request) -> int:
    """Tokens of tool definitions and schemas sent with the messages (a heuristic)."""
    extra = request.extra
    tools = request.tools
    if request.response_model is None and not tools and not any(name in extra for name in _DEFINITION_FIELDS):
        return 0
    import json

    parts: list[object] = [extra[name] for name in _DEFINITION_FIELDS if name in extra]
    parts += [[t.name, t.description, t.parameters] for t in tools]
    if request.response_model is not None:
        schema = getattr(request.response_model, "model_json_schema", None)
        parts.append(schema() if schema else repr(request.response_model))
    return heuristic_tokens(json.dumps(parts, default=repr))


def _structured_calls(request: Request) -> int:
    """How many replies a call may take: 1, or 1 + max_reasks for a structured call."""
    if request.response_model is None:
        return 1
    from llmkit.structured import DEFAULT_MAX_REASKS

    reasks = request.extra.get("max_reasks", DEFAULT_MAX_REASKS)
    return 1 + reasks if isinstance(reasks, int) and reasks >= 0 else 1 + DEFAULT_MAX_REASKS


_FIELDS = fields(Response)
_COST_AT = [f.name for f in _FIELDS].index("cost")
_FIELD_VALUES = operator.attrgetter(*(f.name for f in _FIELDS))
_POSITIONAL = all(f.init for f in _FIELDS)


def _with_cost(response: Response, cost: float) -> Response:
    """``replace(response, cost=cost)``, about twice as fast (this runs on every call)."""
    if not _POSITIONAL or type(response) is not Response:
        return replace(response, cost=cost)
    values = _FIELD_VALUES(response)
    return Response(*values[:_COST_AT], cost, *values[_COST_AT + 1 :])  # type: ignore[call-arg]


class StreamBudget:
    """The budget of one stream: :meth:`start` reserves its worst case when it starts (an
    unstarted stream holds nothing), :meth:`settle` charges its real usage however it ended."""

    def __init__(self, owner: CostMiddleware, request: Request, provider: str) -> None:
        self._owner, self._request, self._provider = owner, request, provider
        self._reservation = 0.0
        self._started = False

    def start(self) -> None:
        """Reserve the stream's worst case (BudgetExceededError when it no longer fits)."""
        owner = self._owner
        if owner.max_cost is not None and not self._started:
            reserved = owner._reserve(self._request, use_cache=False)
            self._reservation = reserved if isinstance(reserved, float) else 0.0
        self._started = True

    def settle(self, usage: Usage | None) -> float | None:
        """Charge the real usage (None: unknown) and free the reservation; the stream's cost."""
        owner, cost = self._owner, None
        if usage is not None:
            answer = Response("", self._request.model, self._provider, usage=usage)
            response = owner._price(self._request, answer)
            cost = response.cost
            owner.tracker.record(response)
        if owner.max_cost is not None and self._started:
            owner._settle(self._reservation, cost or 0.0)
        self._reservation, self._started = 0.0, False
        return cost
