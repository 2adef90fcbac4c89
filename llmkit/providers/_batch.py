"""The contract of a provider's batch API translation, and what the three share.

``client.batch(items, via="provider")`` (:mod:`llmkit.batch.provider`) runs
items through the provider's own batch API. The orchestration (splitting,
recording, polling, matching) is the same for every provider; what differs is
here and beside each adapter (``_openai_batch``, ``_anthropic_batch``,
``_gemini_batch``), named by the adapter's ``batch_api`` (``"module:Class"``,
like ``structured_backend``):

* :meth:`ProviderBatchAPI.line`: one request as the batch API takes it, built
  from the adapter's own request builder (``build_params`` / ``build_body``),
  so a batch line is exactly what the live call sends;
* :meth:`~ProviderBatchAPI.submit`, :meth:`~ProviderBatchAPI.poll`,
  :meth:`~ProviderBatchAPI.outcomes`, :meth:`~ProviderBatchAPI.cancel`,
  :meth:`~ProviderBatchAPI.find`: the batch API's calls, over the key's SDK client;
* :meth:`~ProviderBatchAPI.parse`: a result line, read by the adapter's own
  reply parser, so it is read exactly as a live reply is.

Structured outputs (``response_model=``) travel as the live path sends them by
default: a tool forced to the model's schema (OpenAI, Anthropic: instructor's
tool mode) or the provider's JSON-schema mode (Gemini); a batch has no re-asks.
"""

from __future__ import annotations

import importlib
import json
import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from llmkit.errors import InvalidRequestError, LLMError
from llmkit.request import Request

if TYPE_CHECKING:
    from llmkit.providers.base import Provider
    from llmkit.types import Response

__all__ = [
    "BatchCounts",
    "BatchLimits",
    "BatchState",
    "LineOutcome",
    "ProviderBatchAPI",
    "batch_api_for",
    "dumps",
    "forced_tool_request",
    "mapping",
]

# Seconds an upload or a download may take (a 200 MB file on a slow link), whatever the client's timeout.
TRANSFER_TIMEOUT = 900.0


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """What one provider batch may hold (None: no limit of that kind)."""

    max_requests: int | None
    max_bytes: int | None


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """The provider's counts of a batch's requests (those it does not give stay 0)."""

    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    expired: int = 0
    cancelled: int = 0

    def __add__(self, other: BatchCounts) -> BatchCounts:
        return BatchCounts(*(a + b for a, b in zip(_astuple(self), _astuple(other))))


def _astuple(counts: BatchCounts) -> tuple[int, ...]:
    return (counts.processing, counts.succeeded, counts.errored, counts.expired, counts.cancelled)


@dataclass(frozen=True, slots=True)
class BatchState:
    """One poll of a provider batch, in common words.

    ``status`` is the provider's own word (``"in_progress"``, ``"BATCH_STATE_RUNNING"``);
    ``ended`` says results can be fetched. ``outcome``, once ended: ``"completed"``,
    ``"expired"``, ``"cancelled"`` or ``"failed"`` (the batch itself was refused;
    ``reason`` says why). ``queue_full``: it failed only because too much work was
    queued (OpenAI's enqueued-token limit): its requests may be submitted again.
    ``data`` is the provider's object, for :meth:`ProviderBatchAPI.outcomes`.
    """

    batch_id: str
    status: str
    ended: bool
    counts: BatchCounts = field(default_factory=BatchCounts)
    outcome: str | None = None
    reason: str | None = None
    queue_full: bool = False
    data: Any = None


@dataclass(frozen=True, slots=True)
class LineOutcome:
    """What the provider says about one request of an ended batch.

    Exactly one of: ``payload`` (its reply body, for :meth:`ProviderBatchAPI.parse`),
    ``error`` (the provider's error for it, mapped), or ``unfinished``
    (``"expired"`` / ``"cancelled"``: never processed) with the provider's ``reason``.
    """

    custom_id: str
    payload: Any = None
    error: LLMError | None = None
    unfinished: str | None = None
    reason: str | None = None
    request_id: str | None = None


class ProviderBatchAPI:
    """One provider's batch API. One instance per adapter; stateless between calls.

    ``client`` arguments are the key's SDK client (``KeySlot.client``). Calls
    raise mapped :class:`~llmkit.errors.LLMError`\\ s; a
    :class:`~llmkit.errors.RateLimitError` from :meth:`submit` means the
    provider takes no more batches now (too much work queued, or the batch
    API's own rate limit): the orchestrator waits and submits again.
    """

    limits: ClassVar[BatchLimits] = BatchLimits(None, None)
    line_overhead: ClassVar[int] = 1
    """Bytes a line adds to the batch beyond its own (a newline, a comma)."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    # -- requests -------------------------------------------------------------------

    def line(self, custom_id: str, request: Request) -> bytes:
        """One request as the batch API takes it (JSON); InvalidRequestError if it cannot go."""
        raise NotImplementedError

    def check(self, request: Request) -> None:
        """InvalidRequestError for what no batch can carry: a stream, SDK-only options."""
        name = self.provider.name
        if request.stream or request.extra.get("stream"):
            raise InvalidRequestError("A provider batch does not stream: leave stream out.", provider=name)
        for option in ("extra_headers", "extra_query"):
            if option in request.extra:
                raise InvalidRequestError(
                    f"{option}= cannot travel in a provider batch (its requests carry only a body): "
                    "leave it out, or use via='live'.",
                    provider=name,
                )

    def _call(self, what: str, call: Any) -> Any:
        """``call()``, its exceptions mapped by the adapter and saying ``what`` failed."""
        try:
            return call()
        except Exception as exc:
            error = self.provider.map_error(exc)
            error.message = f"{what}: {error.message}"
            raise error from exc

    # -- the batch API -----------------------------------------------------------------

    def submit(self, client: Any, lines: list[bytes], model: str, tag: str) -> str:
        """Create one batch of ``lines`` (all for ``model``); its id. ``tag`` marks it for :meth:`find`."""
        raise NotImplementedError

    def poll(self, client: Any, batch_id: str) -> BatchState:
        raise NotImplementedError

    def outcomes(self, client: Any, state: BatchState) -> Iterator[LineOutcome]:
        """Every request the provider reports on, of an ended batch (downloaded as needed)."""
        raise NotImplementedError

    def parse(self, payload: Any, request: Request) -> Response:
        """The Response of one succeeded request, read by the adapter's own parser."""
        raise NotImplementedError

    def cancel(self, client: Any, batch_id: str) -> None:
        raise NotImplementedError

    def find(self, client: Any, tag: str) -> str | None:
        """The id of a batch created with ``tag`` (a create whose answer was lost), else None."""
        return None


# -- shared pieces ---------------------------------------------------------------------------


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one (replies are read defensively)."""
    return value if isinstance(value, Mapping) else {}


def dumps(data: Any) -> bytes:
    """Compact JSON (UTF-8), as batch lines are sent."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def forced_tool_request(request: Request) -> Request:
    """``request`` with its ``response_model`` as one forced tool (instructor's tool mode)."""
    if request.response_model is None:
        return request
    from llmkit.structured.models import check_response_model
    from llmkit.tools import ToolChoice, normalize_tools

    model = check_response_model(request.response_model)
    specs = normalize_tools([model])
    extra = {k: v for k, v in request.extra.items() if k not in ("max_reasks", "instructor_mode")}
    return request.with_changes(
        response_model=None, tools=specs, tool_choice=ToolChoice("tool", specs[0].name), extra=extra
    )


def body_of(params: Mapping[str, Any]) -> dict[str, Any]:
    """SDK keyword arguments as the JSON body they send: ``extra_body`` merged in, ``timeout`` dropped."""
    body = {k: v for k, v in params.items() if k not in ("timeout", "extra_body")}
    body.update(params.get("extra_body") or {})
    return body


def load_json(data: bytes, what: str, provider: str) -> Any:
    """Decoded JSON, or MalformedResponseError naming ``what`` could not be read."""
    from llmkit.errors import MalformedResponseError

    try:
        return json.loads(data)
    except ValueError as exc:
        raise MalformedResponseError(f"Malformed {what} from {provider}: {exc}", provider=provider) from exc


def jsonl(data: bytes, what: str, provider: str) -> Iterator[Any]:
    """The objects of a JSON-lines body (blank lines skipped)."""
    for line in data.splitlines():
        if line.strip():
            yield load_json(line, what, provider)


_APIS: weakref.WeakKeyDictionary[Provider, ProviderBatchAPI] = weakref.WeakKeyDictionary()
_APIS_LOCK = threading.Lock()


def batch_api_for(provider: Provider) -> ProviderBatchAPI:
    """The batch API translation of ``provider``, or InvalidRequestError when it has none."""
    spec = getattr(type(provider), "batch_api", None)
    if not spec:
        raise InvalidRequestError(
            f"{provider.name} has no batch API in llmkit: run the batch with via='live' (the default).",
            provider=provider.name,
        )
    with _APIS_LOCK:
        api = _APIS.get(provider)
        if api is None:
            module, _, name = spec.partition(":")
            api = _APIS[provider] = getattr(importlib.import_module(module), name)(provider)
    return api
