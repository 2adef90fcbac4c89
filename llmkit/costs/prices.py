"""Model prices (USD per million tokens) and the cost of a call's usage, live or in a provider batch.

See :mod:`llmkit.costs` for how a model id is matched.

**Batch prices.** Requests sent through a provider's batch API
(``client.batch(..., via="provider")``) cost a fraction of the list price:
the *batch multiplier*, applied to every rate (input, output, cache reads
and writes; Anthropic documents that its cache multipliers stack with the
batch discount). ``prices.json`` gives each provider's multiplier
(``batch_multipliers``: 0.5 for OpenAI, Anthropic and Gemini, as their
pricing pages say; Groq's batch page says 25% off, 0.75) and a model entry
may carry its own ``"batch"``. Your overrides may too:
``{"my-model": {"input": 1.0, "output": 2.0, "batch": 0.5}}``; an override
without one keeps the built-in multiplier of that model, else its
provider's. :meth:`PriceTable.batch_cost` is None when no multiplier is known.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmkit.errors import ConfigurationError

if TYPE_CHECKING:
    from llmkit.types import Usage

__all__ = ["ModelPrice", "PriceTable", "builtin_prices", "resolve_prices"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_PER_TOKEN = 1e-6  # prices are per million tokens
_VERSION_SUFFIX = re.compile(r"(?:[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{3,4}|latest|v\d+(?:[.:]\d+)*))+")
_MAX_RESOLVED = 4096
_warned_unpriced: set[str] = set()
_warned_lock = threading.Lock()


def _warn_unpriced_once(model: str) -> None:
    """Say once per process and model that its cost is unknown, and how to give a price."""
    with _warned_lock:
        if model in _warned_unpriced or len(_warned_unpriced) >= _MAX_RESOLVED:
            return
        _warned_unpriced.add(model)
    logger.warning(
        "No price is known for model %r: Response.cost is None and cost totals leave its calls out. "
        "Give its price in USD per million tokens, e.g. LLMClient(prices={%r: {'input': 0.15, "
        "'output': 0.6}}), or ignore this for a model that costs nothing (a local server).",
        model, model,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens.

    ``cached_input``: input read from the prompt cache; ``cache_write``: input
    written to it (Anthropic's 5-minute cache: 1.25x input); ``cache_write_1h``:
    input written to a one-hour cache (Anthropic: 2x input). None means the
    same as ``input`` (``cache_write_1h``: the same as ``cache_write``).
    """

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None

    def __post_init__(self) -> None:
        if self.cached_input is None:
            object.__setattr__(self, "cached_input", self.input)
        if self.cache_write is None:
            object.__setattr__(self, "cache_write", self.input)
        if self.cache_write_1h is None:
            object.__setattr__(self, "cache_write_1h", self.cache_write)

    def cost(self, usage: Usage) -> float:
        """Dollars for ``usage``: input read from or written to the cache (both part of
        ``input_tokens``) at their prices, the rest of the input and the output at theirs."""
        total_in = max(usage.input_tokens, 0)
        cached = min(max(usage.cached_input_tokens, 0), total_in)
        written = min(max(usage.cache_write_tokens, 0), total_in - cached)
        hour = min(max(usage.cache_write_1h_tokens, 0), written)
        return (
            (total_in - cached - written) * self.input
            + cached * _price(self.cached_input, self.input)
            + (written - hour) * _price(self.cache_write, self.input)
            + hour * _price(self.cache_write_1h, self.input)
            + usage.output_tokens * self.output
        ) * _PER_TOKEN


def _price(value: float | None, default: float) -> float:
    return default if value is None else value


_PRICE_FIELDS = ("input", "output", "cached_input", "cache_write", "cache_write_1h")
_BATCH_FIELD = "batch"  # the batch multiplier, beside the rates (see the module doc)
_OPTIONAL_FIELDS = ("cached_input", "cache_write", "cache_write_1h")


def _price_from(model: str, value: Any) -> ModelPrice:
    if isinstance(value, ModelPrice):
        return value
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"The price of {model!r} must be a mapping like "
            '{"input": 1.0, "output": 2.0, "cached_input": 0.5} (USD per million tokens), '
            f"got {value!r}."
        )
    unknown = set(value) - set(_PRICE_FIELDS) - {_BATCH_FIELD}
    if unknown or "input" not in value or "output" not in value:
        raise ConfigurationError(
            f"The price of {model!r} needs 'input' and 'output' (and optionally 'cached_input', "
            f"'cache_write', 'cache_write_1h', in USD per million tokens, and 'batch', the multiplier "
            f"of batch requests); got the fields {sorted(value)}."
        )
    for field_name in _PRICE_FIELDS:
        number = value.get(field_name)
        if field_name in _OPTIONAL_FIELDS and number is None:
            continue
        if (
            isinstance(number, bool)
            or not isinstance(number, (int, float))
            or not (math.isfinite(number) and number >= 0)
        ):
            raise ConfigurationError(
                f"The {field_name} price of {model!r} must be a number >= 0 (USD per million tokens), "
                f"got {number!r}."
            )
    return ModelPrice(
        float(value["input"]), float(value["output"]),
        *(None if value.get(name) is None else float(value[name]) for name in _OPTIONAL_FIELDS),
    )  # fmt: skip


def _batch_from(model: str, value: Any) -> float | None:
    """The ``"batch"`` multiplier of a price mapping (None: not given)."""
    number = value.get(_BATCH_FIELD) if isinstance(value, Mapping) else None
    if number is None:
        return None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not (0 <= number <= 1):
        raise ConfigurationError(
            f"The batch multiplier of {model!r} must be a number from 0 to 1 (0.5: half the list "
            f"price), got {number!r}."
        )
    return float(number)


@dataclass(frozen=True, slots=True)
class _Builtin:
    """What ``prices.json`` holds, read once: prices, batch multipliers, each model's provider."""

    prices: dict[str, ModelPrice]
    batch: dict[str, float]  # by model, where a model entry gives its own
    providers: dict[str, str]  # model -> the provider it is listed under
    provider_batch: dict[str, float]  # by provider


_builtin_lock = threading.Lock()
_builtin: _Builtin | None = None


def _read_builtin() -> _Builtin:
    global _builtin
    with _builtin_lock:
        if _builtin is None:
            import json
            from importlib import resources

            data = json.loads(resources.files("llmkit").joinpath("data/prices.json").read_text("utf-8"))
            found = _Builtin({}, {}, {}, {k: float(v) for k, v in data.get("batch_multipliers", {}).items()})
            for provider, models in data["models"].items():
                for model, price in models.items():
                    name = model.lower()
                    found.prices[name] = _price_from(model, price)
                    found.providers[name] = provider
                    batch = _batch_from(model, price)
                    if batch is not None:
                        found.batch[name] = batch
            for alias, target in data.get("aliases", {}).items():
                for table in (found.prices, found.providers, found.batch):
                    _alias(table, alias.lower(), target.lower())
            _builtin = found
        return _builtin


def _alias(table: dict[str, Any], alias: str, target: str) -> None:
    if target in table:
        table[alias] = table[target]


def builtin_prices() -> dict[str, ModelPrice]:
    """The prices shipped in ``llmkit/data/prices.json`` (read once, on first use)."""
    return _read_builtin().prices


class PriceTable:
    """Model prices: the built-in list under your ``overrides``.

    Args:
        overrides: ``{model id: {"input", "output", "cached_input", "cache_write",
            "cache_write_1h"}}`` in USD per million tokens (or :class:`ModelPrice`);
            they win over the built-in list, and their ids are matched by prefix the same way.
        builtin: False to use only ``overrides``.
    """

    def __init__(self, overrides: Mapping[str, Any] | None = None, *, builtin: bool = True) -> None:
        self._overrides = {m.lower(): _price_from(m, p) for m, p in (overrides or {}).items()}
        self._batch_overrides = {
            m.lower(): b for m, p in (overrides or {}).items() if (b := _batch_from(m, p)) is not None
        }
        self._given = dict(overrides or {})  # as given, for with_overrides
        self._builtin = builtin
        self._resolved: dict[str, ModelPrice | None] = {}

    def __repr__(self) -> str:
        return f"PriceTable(overrides={len(self._overrides)}, builtin={self._builtin})"

    def with_overrides(self, overrides: Mapping[str, Any]) -> PriceTable:
        """A new table with more overrides on top of these."""
        return PriceTable({**self._given, **overrides}, builtin=self._builtin)

    def models(self) -> dict[str, ModelPrice]:
        """Every model id with a price (aliases included)."""
        table = dict(builtin_prices()) if self._builtin else {}
        table.update(self._overrides)
        return table

    def lookup(self, model: str) -> ModelPrice | None:
        """The price of ``model``: exact id, then the longest prefix + a version suffix; else None."""
        try:
            return self._resolved[model]
        except KeyError:
            pass
        price = self._find(model)
        if price is None:
            _warn_unpriced_once(model)
        if len(self._resolved) < _MAX_RESOLVED:
            self._resolved[model] = price
        return price

    def _find(self, model: str) -> ModelPrice | None:
        name = model.lower().removeprefix("models/")
        tables = [self._overrides, builtin_prices()] if self._builtin else [self._overrides]
        for table in tables:  # an override (exact or prefix) beats the built-in list
            key = _match(name, table)
            if key is not None:
                return table[key]
        return None

    def cost(self, model: str, usage: Usage) -> float | None:
        """Dollars for ``usage`` on ``model``; None when its price is unknown."""
        price = self.lookup(model)
        return None if price is None else price.cost(usage)

    def batch_multiplier(self, model: str, provider: str | None = None) -> float | None:
        """What a provider batch request of ``model`` costs as a fraction of its list price.

        Your override's ``"batch"``, else the built-in one of that model, else that of the
        provider the model is listed under (or ``provider``, for a model only your
        overrides price); None when none is known.
        """
        name = model.lower().removeprefix("models/")
        key = _match(name, self._batch_overrides)
        if key is not None:
            return self._batch_overrides[key]
        if not self._builtin:
            return None
        builtin = _read_builtin()
        key = _match(name, builtin.prices)
        if key is not None and key in builtin.batch:
            return builtin.batch[key]
        listed = builtin.providers.get(key) if key is not None else None
        return builtin.provider_batch.get(listed or provider or "")

    def batch_cost(self, model: str, usage: Usage, provider: str | None = None) -> float | None:
        """Dollars for ``usage`` of a provider batch request; None when the price or the
        batch multiplier of ``model`` is unknown."""
        price = self.lookup(model)
        multiplier = self.batch_multiplier(model, provider)
        if price is None or multiplier is None:
            return None
        return price.cost(usage) * multiplier


def _match(name: str, table: Mapping[str, Any]) -> str | None:
    """The key of ``table`` for a lower-case model id: itself, or its longest prefix followed
    only by a version suffix (see :mod:`llmkit.costs`)."""
    if name in table:
        return name
    cut = len(name)
    while (cut := max(name.rfind("-", 0, cut), name.rfind("@", 0, cut))) > 0:
        if name[:cut] in table and _VERSION_SUFFIX.fullmatch(name, cut):
            return name[:cut]
    return None


def resolve_prices(
    prices: PriceTable | Mapping[str, Any] | None, settings_overrides: Mapping[str, Any] | None = None
) -> PriceTable:
    """The client's table: the built-in list < ``settings_overrides`` < ``prices``.

    ``prices`` may be a :class:`PriceTable` (used as it is), a mapping of
    overrides, or None. ``settings_overrides`` is the hook for prices from the
    YAML file / environment.
    """
    if isinstance(prices, PriceTable):
        return prices
    if prices is not None and not isinstance(prices, Mapping):
        raise ConfigurationError(
            f"prices must be a llmkit.costs.PriceTable or a mapping of model prices, got {prices!r}."
        )
    return PriceTable({**(settings_overrides or {}), **(prices or {})})
