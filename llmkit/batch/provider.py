"""Provider batches: ``client.batch(items, via="provider")`` through the provider's own batch API.

OpenAI's Batch API, Anthropic's Message Batches and Gemini's Batch Mode answer
within 24 hours (most batches far sooner) at half the list price (Groq: 25%
off). ``via="provider"`` sends a batch's items there and returns the same
:class:`~llmkit.batch.BatchResult` as the live pool: results in input order,
per-item errors recorded or raised as ``on_error`` says, ``response_model=``
validated with the same models.

**What happens.** Every item's request is built and checked first (bad input
is refused, naming the items, before anything is uploaded: see
:mod:`llmkit.batch.provider_plan`); with ``max_cost`` the batch's worst case at
batch prices is reserved. The lines are cut into provider batches by the
provider's limits (and ``batch_size=``); each is recorded in the checkpoint,
created, and its id recorded (synced) before anything else happens
(:mod:`llmkit.batch.provider_records`). Then every ``poll_interval`` seconds
(default 30) each open batch is polled, the progress bar showing the
provider's counts and the time waited; an ended batch's results are
downloaded, matched to the items by ``custom_id``, parsed by the adapter's own
reply parser, priced at batch rates (``Response.cost``, ``client.usage()``,
whose ``batch_requests`` counts them) and recorded; ``Response.latency`` is
the time from the batch's submission to its answer, ``key_id`` the key that
submitted it. A batch the provider
refuses for work already queued (a 429 on create, OpenAI's enqueued-token
limit) is not a failure: the next submission waits for one of the open
batches to end, or ``poll_interval``, and goes again.

**Failures per item.** An item the provider answered with an error gets that
error, mapped (``InvalidRequestError``...); one never run gets
:class:`~llmkit.batch.BatchExpiredError` or
:class:`~llmkit.batch.BatchCancelledError`; a batch refused whole gives its
items :class:`~llmkit.batch.BatchFailedError` with the provider's reason.
``retry_failed_live=True`` sends every failed item again through the live
pool (at list price) once the provider batches have ended. With
``on_error="raise"``, no provider batch is submitted after the first failed
item; those submitted already are collected (they are paid for), then the
error is raised.

**Resume.** Rerun with the same checkpoint: items answered are skipped, items
of provider batches still open wait for those batches (polled and downloaded,
never submitted again), the rest are submitted. A live run (``via="live"``) on
a checkpoint with items in open provider batches is refused. **Ctrl-C** stops
waiting: the provider batches keep running (``BatchInterrupted`` is raised with
what is in), and a rerun collects them; ``on_interrupt="cancel"`` cancels them
instead (what they finished is kept; a rerun collects it and sends the rest
again).

**Keys and limits.** One key of the pool does the batch API calls (the first
that is not disabled; a resumed batch uses the key that created it when it is
still in the pool): the providers charge batches to the account, and a batch
can only be read with a key of the account that made it. These calls do not
go through the pool's limiter: they are a handful per batch, and the
providers limit batches by the work queued, not by the per-minute limits of
live calls, which they would only take capacity from. Transient failures
(5xx, a dropped download) are retried with backoff.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from llmkit.batch.checkpoint import CheckpointError, _CheckpointFile, _reason, checkpoint_path
from llmkit.batch.items import _plan
from llmkit.batch.provider_run import _Options, _ProviderRun
from llmkit.batch.result import BatchResult
from llmkit.batch.runner import _check_options
from llmkit.errors import InvalidRequestError
from llmkit.providers._batch import batch_api_for

__all__ = ["run_provider_batch"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())


def _check_provider_options(via: Any, poll_interval: Any, batch_size: Any, on_interrupt: Any) -> None:
    if via != "provider":
        raise InvalidRequestError(f"via must be 'live' (the pool, the default) or 'provider', got {via!r}.")
    if (
        isinstance(poll_interval, bool)
        or not isinstance(poll_interval, (int, float))
        or not poll_interval > 0
    ):
        raise InvalidRequestError(f"poll_interval must be a number of seconds > 0, got {poll_interval!r}.")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise InvalidRequestError(f"batch_size must be a whole number >= 1 (or None), got {batch_size!r}.")
    if on_interrupt not in ("leave", "cancel"):
        raise InvalidRequestError(f"on_interrupt must be 'leave' or 'cancel', got {on_interrupt!r}.")


def run_provider_batch(
    client: Any,
    items: Iterable[Any],
    *,
    via: str = "provider",
    response_model: Any = None,
    progress: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
    on_error: str = "record",
    concurrency: int | None = None,
    shard: tuple[int, int] | None = None,
    retry_failed: bool = True,
    fsync: str = "line",
    poll_interval: float = 30.0,
    batch_size: int | None = None,
    retry_failed_live: bool = False,
    on_interrupt: str = "leave",
    **kwargs: Any,
) -> BatchResult:
    """Run ``items`` through ``client``'s provider batch API; see :meth:`LLMClient.batch` and the module.

    ``poll_interval``: seconds between polls of each open provider batch;
    ``batch_size``: at most this many items per provider batch (default: the
    provider's limit); ``retry_failed_live``: send failed items again through
    the live pool; ``on_interrupt``: ``"leave"`` (Ctrl-C leaves the provider
    batches running, resumable) or ``"cancel"``.
    """
    _check_provider_options(via, poll_interval, batch_size, on_interrupt)
    _check_options(on_error, fsync, concurrency, shard)
    api = batch_api_for(client._adapter)
    plan = _plan(items, shard)
    if concurrency is None:  # for retry_failed_live: the live pool's own default
        concurrency = client._pool.workers()
    options = _Options(response_model, on_error, retry_failed, concurrency, kwargs,
                       client._batch_defaults(), progress, float(poll_interval), batch_size,
                       bool(retry_failed_live), on_interrupt, fsync)  # fmt: skip
    if checkpoint is None:
        logger.warning(
            "a provider batch without a checkpoint cannot be resumed: if this process dies, its provider "
            "batches run on (and are billed) with no way to collect them here"
        )
    # Answers are synced once per provider batch, whatever fsync= says: a line a kill loses is
    # downloaded again on resume, never paid again; the batch records are synced one by one.
    store = None if checkpoint is None else _CheckpointFile(checkpoint_path(checkpoint, shard), "batch")
    run = _ProviderRun(client, api, plan, options)
    try:
        run.resume(store)
        run.reopen()
        run.prepare()
        run.execute()
    except BaseException:
        _close_quietly(store)
        raise
    return _finish(run, store)


def _finish(run: _ProviderRun, store: _CheckpointFile | None) -> BatchResult:
    """Close the checkpoint; the result, or the first error with ``on_error="raise"``."""
    if store is not None:
        try:
            store.close()
        except OSError as exc:
            raise CheckpointError(f"Could not sync the checkpoint {store.path}: {_reason(exc)}.",
                                  result=run.result()) from exc  # fmt: skip
    if run.first_error is not None:
        raise run.first_error
    return run.result()


def _close_quietly(store: _CheckpointFile | None) -> None:
    if store is None:
        return
    try:
        store.close()
    except OSError as exc:
        logger.warning("checkpoint %s: the last lines may not be on disk: %s", store.path, _reason(exc))
