"""Preparing a provider batch: each item's request and line, all checked before anything is uploaded,
and the split into provider batches by the provider's documented limits.

Each item's request is built by the client exactly as ``complete`` builds it
(its defaults, the batch's and the item's arguments, the adapter's checks),
then written as the provider's batch line by the adapter's own request builder.
An item that cannot go (bad input, a stream, an SDK-only option, a line larger
than a whole provider batch) stops the batch before anything is uploaded,
with every such item named. Lines are grouped by model (a provider batch holds
one model) and cut, in input order, into provider batches of at most the
provider's requests and bytes (OpenAI 50,000 requests or 200 MB a file;
Anthropic 100,000 or 256 MB; Gemini's 2 GB input file) and ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from llmkit.batch.items import _Item
from llmkit.errors import InvalidRequestError, LLMError
from llmkit.providers._batch import BatchLimits, ProviderBatchAPI
from llmkit.request import Request

__all__: list[str] = []

_LLMKIT_ONLY = ("cache", "max_reasks", "instructor_mode")  # options of llmkit's own, not the provider's
ENVELOPE = 4096  # bytes of each provider batch kept for what wraps its lines
_NAMED = 5  # bad items named in the error


class RequestBuilder(Protocol):
    """What builds an item's request: ``LLMClient._request`` (the client's defaults, the checks)."""

    def __call__(self, messages: Any, kwargs: dict[str, Any]) -> Request: ...


@dataclass(slots=True)
class Line:
    """One item as a line of a provider batch."""

    item: _Item
    custom_id: str
    data: bytes
    request: Request


def custom_id_of(item: _Item) -> str:
    """The item's id inside its provider batch (Anthropic takes only ``[a-zA-Z0-9_-]{1,64}``)."""
    return f"llmkit-{item.index}"


def build_lines(
    build: RequestBuilder, api: ProviderBatchAPI, items: Sequence[_Item], kwargs: Mapping[str, Any],
    response_model: Any,
) -> list[Line]:  # fmt: skip
    """Every item's line; InvalidRequestError naming the items that cannot go (nothing is sent)."""
    lines: list[Line] = []
    bad: list[tuple[_Item, LLMError]] = []
    budget = api.limits.max_bytes - ENVELOPE if api.limits.max_bytes else None
    for item in items:
        try:
            line = _line(build, api, item, kwargs, response_model)
            if budget is not None and len(line.data) > budget:
                raise InvalidRequestError(
                    f"it takes {len(line.data):,} bytes, more than a whole {api.provider.name} batch "
                    f"holds ({budget:,}): shorten it, or send it with via='live'"
                )
            lines.append(line)
        except LLMError as exc:
            bad.append((item, exc))
    if bad:
        raise _refusal(bad, api.provider.name)
    return lines


def item_request(
    build: RequestBuilder, item: _Item, kwargs: Mapping[str, Any], response_model: Any
) -> Request:
    """The item's request as ``complete`` builds it, less llmkit's own options (``cache=``...)."""
    arguments = {**kwargs, **item.kwargs}
    if response_model is not None:
        arguments["response_model"] = response_model
    request = build(item.messages, arguments)
    if any(name in request.extra for name in _LLMKIT_ONLY):
        extra = {k: v for k, v in request.extra.items() if k not in _LLMKIT_ONLY}
        request = request.with_changes(extra=extra)
    return request


def _line(build: RequestBuilder, api: ProviderBatchAPI, item: _Item, kwargs: Mapping[str, Any],
          response_model: Any) -> Line:  # fmt: skip
    request = item_request(build, item, kwargs, response_model)
    custom_id = custom_id_of(item)
    return Line(item, custom_id, api.line(custom_id, request), request)


def _refusal(bad: list[tuple[_Item, LLMError]], provider: str) -> InvalidRequestError:
    named = "; ".join(f"item {item.id!r}: {error.message}" for item, error in bad[:_NAMED])
    more = f" (and {len(bad) - _NAMED} more)" if len(bad) > _NAMED else ""
    return InvalidRequestError(
        f"{len(bad)} items cannot be sent in a {provider} batch, so nothing was uploaded: {named}{more}. "
        "Fix them (or leave them out) and run the batch again.",
        provider=provider,
    )


def split(
    lines: Sequence[Line], limits: BatchLimits, batch_size: int | None, overhead: int
) -> list[list[Line]]:
    """Provider batches of ``lines``: one model each, in input order, within the provider's
    limits (and ``batch_size`` requests)."""
    by_model: dict[str, list[Line]] = {}
    for line in lines:
        by_model.setdefault(line.request.model, []).append(line)
    most = min((n for n in (limits.max_requests, batch_size) if n), default=None)
    budget = limits.max_bytes - ENVELOPE if limits.max_bytes else None
    chunks: list[list[Line]] = []
    for group in by_model.values():
        current: list[Line] = []
        size = 0
        for line in group:
            cost = len(line.data) + overhead
            if current and ((most and len(current) >= most) or (budget is not None and size + cost > budget)):
                chunks.append(current)
                current, size = [], 0
            current.append(line)
            size += cost
        if current:
            chunks.append(current)
    return chunks
