"""Prices, the cost of a call, usage totals, and the ``max_cost`` budget.

* :class:`PriceTable` knows the list price of each model (USD per million
  tokens: input, output, cached input), from ``llmkit/data/prices.json`` plus
  your overrides::

      PriceTable(overrides={"my-model": {"input": 1.0, "output": 2.0, "cached_input": 0.5}})

  A model is looked up by its exact id (case-insensitive, a leading
  ``models/`` dropped), then by its longest known prefix when the rest of the
  id is only a version: a date (``claude-3-5-haiku-20241022``,
  ``gpt-4o-2024-08-06``, ``gpt-4-0613``), a build number
  (``gemini-1.5-flash-002``), ``-latest`` or ``-vN``. Anything else is
  unknown and costs ``None``: a price is never guessed from a look-alike
  (``gpt-4-32k`` is not ``gpt-4``).
* :class:`UsageTracker` adds up requests, tokens and cost by provider, model
  and key; ``LLMClient.usage()`` returns its :meth:`~UsageTracker.snapshot`.
* :class:`CostMiddleware` sets ``response.cost``, records usage and enforces
  ``max_cost``.

Where it sits in the client's middleware chain, outermost first::

    your middleware -> logging -> metrics -> cost/budget -> cache -> pool

Cost sits outside the cache, so a cache hit is counted (``cache_hits``) at
``cost=0.0`` and no tokens; it sits inside logging and metrics, so they see
the priced response.

The budget: before a call is sent, its worst case is reserved under a lock:
estimated input tokens (tool definitions and the response schema included)
at the input price, plus ``max_tokens`` (else ``default_output_tokens``) at
the output price, times ``1 + max_reasks`` for a structured call. When
``spent + reserved + worst case`` would pass ``max_cost``, the call raises
:class:`BudgetExceededError` and nothing is sent. After the call the
reservation is settled with the real cost (or released on error), so
concurrent calls never overshoot together, as long as the real usage stays
within the estimate: set ``max_tokens`` for a hard bound on output. A call
that the cache can answer is served even when the budget is spent. A model
without a known price cannot be budgeted: with ``max_cost`` set it is
refused (``unknown_price="refuse"``, the default), or sent uncounted with a
warning (``unknown_price="allow"``). Streams do not pass through middleware,
so they are neither priced nor budgeted.
"""

from __future__ import annotations

from llmkit.costs.budget import DEFAULT_OUTPUT_TOKENS, CostMiddleware
from llmkit.costs.prices import ModelPrice, PriceTable, builtin_prices, resolve_prices
from llmkit.costs.usage import UsageTracker

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "CostMiddleware",
    "ModelPrice",
    "PriceTable",
    "UsageTracker",
    "builtin_prices",
    "resolve_prices",
]
