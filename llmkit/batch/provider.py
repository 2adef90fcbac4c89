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
whose ``batch_requests`` counts them) and recorded. A batch the provider
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

import functools
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from llmkit.batch.checkpoint import (
    CheckpointError,
    _check_inputs,
    _CheckpointFile,
    _error_record,
    _loaded,
    _ok_record,
    _reason,
    checkpoint_path,
)
from llmkit.batch.digest import InputDigest
from llmkit.batch.items import _Item, _plan
from llmkit.batch.progress import _sigint_to_flag
from llmkit.batch.provider_errors import UNFINISHED, ProviderBatchError
from llmkit.batch.provider_plan import Line, build_lines, split
from llmkit.batch.provider_progress import _ProviderProgress
from llmkit.batch.provider_records import Submission, created_record, read_submissions, submit_record, waiting
from llmkit.batch.result import BatchInterrupted, BatchResult, ItemError
from llmkit.batch.runner import _check_options
from llmkit.errors import (
    InvalidRequestError,
    LLMError,
    NetworkError,
    ProviderError,
    RateLimitError,
    StructuredOutputError,
)
from llmkit.providers._batch import BatchCounts, BatchState, LineOutcome, ProviderBatchAPI, batch_api_for
from llmkit.types import Response

__all__ = ["run_provider_batch"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

T = TypeVar("T")
_SLICE = 0.2  # seconds between looks at Ctrl-C while waiting
_TRIES = 5  # tries of a batch API call that failed transiently
_BACKOFF = 1.0  # seconds before the second try, doubling


@dataclass(frozen=True, slots=True)
class _Options:
    response_model: Any
    on_error: str
    retry_failed: bool
    concurrency: int
    kwargs: dict[str, Any]
    client_defaults: dict[str, Any]
    progress: bool
    poll_interval: float
    batch_size: int | None
    retry_failed_live: bool
    on_interrupt: str


@dataclass
class _Open:
    """A provider batch this run waits for."""

    submission: Submission
    items: dict[str, _Item]  # custom_id -> item
    slot: Any
    next_poll: float
    state: BatchState | None = None
    requests: dict[str, Any] = field(default_factory=dict)  # custom_id -> Request (for parsing)

    @property
    def batch_id(self) -> str:
        assert self.submission.batch_id is not None
        return self.submission.batch_id


class _ProviderRun:
    """One provider-batch run: resume, submit, poll, collect, record."""

    def __init__(self, client: Any, api: ProviderBatchAPI, plan: list[_Item], options: _Options) -> None:
        self.client, self.api, self.plan, self.options = client, api, plan, options
        self.provider = api.provider.name
        self.values: list[Any] = [None] * len(plan)
        self.responses: list[Response | None] = [None] * len(plan)
        self.skipped = 0
        self.by_key = {item.key: item for item in plan}
        self.digests: dict[str, str] = {}
        self.store: _CheckpointFile | None = None
        self.submissions: list[Submission] = []
        self.waiting: dict[str, tuple[Submission, str]] = {}
        self.chunks: deque[list[Line]] = deque()
        self.open: list[_Open] = []
        self.reserved: dict[str, float] = {}  # item key -> dollars of the budget held for it
        self.hold_until = 0.0  # no submission before (the provider's queue is full)
        self.first_error: BaseException | None = None
        self.interrupted = threading.Event()
        self.progress: _ProviderProgress | None = None

    def result(self) -> BatchResult:
        return BatchResult([item.id for item in self.plan], self.values, self.responses, self.skipped)

    # -- resume ----------------------------------------------------------------------------

    def resume(self, store: _CheckpointFile | None) -> None:
        """Read the checkpoint: answered items, provider batches still open, and check their inputs."""
        options = self.options
        inputs = InputDigest(options.kwargs, options.response_model, options.client_defaults)
        if store is None:
            self.digests = {item.key: inputs.of(item) for item in self.plan}
            return
        records, end, size = store.open()
        self.submissions = read_submissions(store.side_records, store.path)
        self.waiting = waiting(self.submissions, records)
        listed = {key: {"id": sub_item_id(owner, key), "hash": _digest_in(owner, key), "status": "submitted"}
                  for key, owner in self.waiting.items()}  # fmt: skip
        self.digests = _check_inputs(self.plan, {**listed, **records}, store.path, inputs)
        if end < size:
            store.cut(end)
        self.store = store
        for item in self.plan:
            rec = records.get(item.key)
            if rec is None or (rec["status"] != "ok" and options.retry_failed):
                continue
            self.values[item.pos], self.responses[item.pos] = _loaded(rec, options.response_model, store.path)
            self.skipped += 1
        self.waiting = {k: v for k, v in self.waiting.items() if self.values[self.by_key[k].pos] is None}

    def reopen(self) -> None:
        """The provider batches that items still wait for; a create whose answer was lost is looked up."""
        by_tag: dict[str, list[str]] = {}
        for key, (submission, _) in self.waiting.items():
            by_tag.setdefault(submission.tag, []).append(key)
        for submission in self.submissions:
            keys = by_tag.get(submission.tag)
            if not keys:
                continue
            slot = self._slot(submission.key_id)
            if submission.batch_id is None and not self._found(submission, slot):
                for key in keys:
                    del self.waiting[key]
                continue
            items = {self.waiting[key][1]: self.by_key[key] for key in keys}
            self.open.append(_Open(submission, items, slot, next_poll=0.0))

    def _found(self, submission: Submission, slot: Any) -> bool:
        found = self._retried(
            f"looking up batch {submission.tag}", lambda: self.api.find(slot.client, submission.tag)
        )
        if found is None:
            logger.warning(
                "a %s batch (tag %s) was being created when the last run stopped and the provider has no "
                "batch of that tag (or cannot say): its %d items are submitted again; if it was created "
                "after all, they are paid twice",
                self.provider, submission.tag, len(submission.items),
            )  # fmt: skip
            return False
        submission.batch_id = found
        self._save(created_record(submission.tag, found))
        return True

    # -- preparing -----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Build and check the lines of the items to submit, reserve the budget, cut them into batches."""
        todo = [item for item in self.plan if self.values[item.pos] is None and item.key not in self.waiting]
        build = self.client._request  # the client's own: defaults and checks as in complete()
        lines = build_lines(build, self.api, todo, self.options.kwargs, self.options.response_model)
        held = self.client._cost.reserve_batch([line.request for line in lines], self.provider)
        self.reserved = {line.item.key: amount for line, amount in zip(lines, held)}
        self.chunks.extend(split(lines, self.api.limits, self.options.batch_size, self.api.line_overhead))
        for batch in self.open:  # resumed batches are parsed with the requests rebuilt now
            for custom_id, item in batch.items.items():
                batch.requests[custom_id] = self._request_of(item)

    def _request_of(self, item: _Item) -> Any:
        arguments = {**self.options.kwargs, **item.kwargs}
        if self.options.response_model is not None:
            arguments["response_model"] = self.options.response_model
        return self.client._request(item.messages, arguments)

    # -- the loop --------------------------------------------------------------------------------

    def execute(self) -> None:
        self.progress = _ProviderProgress(self.options.progress, len(self.plan), self.values, self.responses)
        try:
            with _sigint_to_flag(self.interrupted):
                try:
                    self._loop()
                except KeyboardInterrupt:
                    self.interrupted.set()
            if self.interrupted.is_set():
                self._stop()
                raise BatchInterrupted(self.result()) from None
            self._retry_live()
        finally:
            self.progress.close()
            self._release_budget()

    def _loop(self) -> None:
        while (self.chunks or self.open) and not self.interrupted.is_set():
            if self.chunks and self.first_error is not None:
                self.chunks.clear()  # on_error="raise": nothing more is submitted
                continue
            now = time.monotonic()
            if self.chunks and now >= self.hold_until:
                self._submit(self.chunks[0])
                continue
            self._poll_due(now)
            self._wait()

    def _wait(self) -> None:
        """Sleep until the next poll (or submission), a slice at a time, watching for Ctrl-C."""
        due = [batch.next_poll for batch in self.open]
        if self.chunks:
            due.append(self.hold_until)
        wake = min(due, default=time.monotonic())
        while not self.interrupted.is_set() and (left := wake - time.monotonic()) > 0:
            time.sleep(min(_SLICE, left))
            assert self.progress is not None
            self.progress.refresh()

    # -- submitting -------------------------------------------------------------------------------

    def _submit(self, chunk: list[Line]) -> None:
        slot = self._slot(None)
        model = chunk[0].request.model
        entries = [(line.custom_id, line.item.id, self.digests[line.item.key]) for line in chunk]
        submission = Submission(
            uuid.uuid4().hex[:16], self.provider, slot.key_id, model, time.time(), entries
        )
        self._save(submit_record(submission), sync=True)  # before the create: a kill is then looked up
        try:
            batch_id = self._create(slot, chunk, submission)
        except RateLimitError as exc:
            self._hold(exc)
            return
        submission.batch_id = batch_id
        self._save(created_record(submission.tag, batch_id), sync=True)
        self.chunks.popleft()
        items = {line.custom_id: line.item for line in chunk}
        requests = {line.custom_id: line.request for line in chunk}
        self.open.append(_Open(submission, items, slot, time.monotonic() + self.options.poll_interval,
                               requests=requests))  # fmt: skip
        logger.info("%s batch %s created: %d items", self.provider, batch_id, len(chunk))

    def _create(self, slot: Any, chunk: list[Line], submission: Submission) -> str:
        """Create the batch; a create whose answer was lost on the way is looked up by its tag."""
        lines = [line.data for line in chunk]
        delay = _BACKOFF
        for attempt in range(_TRIES):
            try:
                return self.api.submit(slot.client, lines, submission.model, submission.tag)
            except NetworkError:  # it may have been created all the same
                found = self.api.find(slot.client, submission.tag)
                if found is not None:
                    return found
                if attempt == _TRIES - 1:
                    raise
            except (RateLimitError, InvalidRequestError):
                raise
            except ProviderError:
                if attempt == _TRIES - 1:
                    raise
            self._sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _hold(self, error: RateLimitError) -> None:
        """The provider takes no more batches now: wait for an open one to end, or a while."""
        wait = error.retry_after or self.options.poll_interval
        self.hold_until = time.monotonic() + wait
        logger.info("%s refused a new batch (%s): waiting %.1f s or for an open batch to end",
                    self.provider, error.message, wait)  # fmt: skip
        assert self.progress is not None
        self.progress.say("waiting for room in the provider's queue")

    # -- polling and collecting ---------------------------------------------------------------------

    def _poll_due(self, now: float) -> None:
        for batch in [b for b in self.open if b.next_poll <= now]:
            batch.state = self._retried(f"polling {batch.batch_id}", functools.partial(
                self.api.poll, batch.slot.client, batch.batch_id))  # fmt: skip
            batch.next_poll = time.monotonic() + self.options.poll_interval
            if batch.state.ended:
                self._collect(batch)
        counts = sum((b.state.counts for b in self.open if b.state is not None), BatchCounts())
        assert self.progress is not None
        self.progress.show(counts, len(self.open))

    def _collect(self, batch: _Open) -> None:
        state = batch.state
        assert state is not None
        self.open.remove(batch)
        self.hold_until = 0.0  # a batch ended: the provider's queue has room again
        if state.outcome == "failed" and state.queue_full:
            logger.info("%s batch %s was refused for the work queued (%s): submitted again later",
                        self.provider, state.batch_id, state.reason)  # fmt: skip
            self.chunks.appendleft([self._line_again(batch, custom_id) for custom_id in batch.items])
            self.hold_until = time.monotonic() + self.options.poll_interval
            return
        outcomes: list[LineOutcome] = []
        if state.outcome != "failed":
            outcomes = self._retried(f"downloading the results of {state.batch_id}",
                                     lambda: list(self.api.outcomes(batch.slot.client, state)))  # fmt: skip
        seen: set[str] = set()
        for outcome in outcomes:
            item = batch.items.get(outcome.custom_id)
            if item is not None and outcome.custom_id not in seen:
                seen.add(outcome.custom_id)
                self._record_outcome(batch, item, outcome)
        for custom_id, item in batch.items.items():
            if custom_id not in seen:
                self._record_error(item, _no_answer(state, self.provider))

    def _line_again(self, batch: _Open, custom_id: str) -> Line:
        item = batch.items[custom_id]
        request = batch.requests.get(custom_id) or self._request_of(item)
        return Line(item, custom_id, self.api.line(custom_id, request), request)

    def _record_outcome(self, batch: _Open, item: _Item, outcome: LineOutcome) -> None:
        if outcome.error is not None:
            self._record_error(item, outcome.error)
            return
        if outcome.unfinished is not None:
            error_class = UNFINISHED.get(outcome.unfinished, ProviderBatchError)
            self._record_error(
                item, error_class(f"{outcome.unfinished}: {outcome.reason}", provider=self.provider)
            )
            return
        request = batch.requests.get(outcome.custom_id) or self._request_of(item)
        try:
            response = self.api.parse(outcome.payload, request)
            parsed = _validated(response, self.options.response_model, self.provider)
        except LLMError as exc:
            self._record_error(item, exc)
            return
        waited = max(time.time() - batch.submission.time, 0.0)
        content = response.content if parsed is None else parsed.model_dump_json()  # as live
        response = replace(response, key_id=batch.slot.key_id, latency=waited, raw=None, parsed=parsed,
                           request_id=response.request_id or outcome.request_id, content=content)  # fmt: skip
        response = self.client._cost.price_batch(response, self.provider, request.model)
        self.client._cost.settle_batch(self.reserved.pop(item.key, 0.0), response.cost)
        self._record_ok(item, response, parsed)

    def _record_ok(self, item: _Item, response: Response, parsed: Any) -> None:
        self.values[item.pos] = response if parsed is None else parsed
        self.responses[item.pos] = response
        self._save(_ok_record(item, self.digests[item.key], response, parsed))
        assert self.progress is not None
        self.progress.advance(response)

    def _record_error(self, item: _Item, exc: LLMError) -> None:
        self.client._cost.settle_batch(self.reserved.pop(item.key, 0.0), 0.0)
        error = ItemError(item.id, item.index, type(exc).__name__, str(exc), exc.status_code, exc)
        self.values[item.pos] = error
        self._save(_error_record(item, self.digests[item.key], error))
        assert self.progress is not None
        self.progress.advance(None)
        if self.options.on_error == "raise" and self.first_error is None:
            self.first_error = exc

    # -- the end --------------------------------------------------------------------------------------

    def _stop(self) -> None:
        """After Ctrl-C: leave the open provider batches running (or cancel them), say where they are."""
        ids = [batch.batch_id for batch in self.open]
        if not ids:
            return
        if self.options.on_interrupt == "cancel":
            for batch in self.open:
                try:  # once: after Ctrl-C nothing waits for a retry
                    self.api.cancel(batch.slot.client, batch.batch_id)
                except LLMError as exc:
                    logger.warning("could not cancel %s batch %s: %s", self.provider, batch.batch_id, exc)
            logger.warning("Interrupted: cancelled %s batches %s; a rerun collects what they finished",
                           self.provider, ", ".join(ids))  # fmt: skip
            return
        where = (
            f"rerun with the checkpoint {self.store.path}"
            if self.store
            else "they cannot be resumed: no checkpoint"
        )
        logger.warning("Interrupted: %s batches %s keep running (%s)", self.provider, ", ".join(ids), where)

    def _retry_live(self) -> None:
        """Send the failed items again through the live pool (``retry_failed_live=True``)."""
        failed = [item for item in self.plan if isinstance(self.values[item.pos], ItemError)]
        if not failed or not self.options.retry_failed_live:
            return
        from llmkit.batch.runner import _Options as LiveOptions
        from llmkit.batch.runner import _Runner

        options = self.options
        live = LiveOptions(options.response_model, options.on_error, True, options.concurrency,
                           options.kwargs, options.client_defaults)  # fmt: skip
        runner = _Runner(self.client.submit, self.plan, live)
        runner.values, runner.responses, runner.skipped = self.values, self.responses, self.skipped
        runner.store, runner.digests = self.store, self.digests
        assert self.progress is not None
        self.progress.retrying(len(failed))
        runner.progress = self.progress
        self.first_error = None
        for item in failed:
            self.values[item.pos] = None
        runner.queue.extend(failed)
        logger.info("retrying %d failed items through the live pool", len(failed))
        runner.run()

    def _release_budget(self) -> None:
        for amount in self.reserved.values():
            self.client._cost.settle_batch(amount, 0.0)
        self.reserved.clear()

    # -- helpers -----------------------------------------------------------------------------------

    def _slot(self, key_id: str | None) -> Any:
        slots = self.client._pool.slots
        if key_id is not None:
            for slot in slots:
                if slot.key_id == key_id:
                    return slot
            logger.warning("the key that created a %s batch (%s) is not in this client: using another",
                           self.provider, key_id)  # fmt: skip
        return next((slot for slot in slots if not slot.health.disabled), slots[0])

    def _save(self, record: dict[str, Any], sync: bool = False) -> None:
        if self.store is None:
            return
        try:
            self.store.append(record, sync=sync)
        except OSError as exc:
            ids = ", ".join(b.submission.batch_id or "?" for b in self.open) or "none"
            if record.get("type") == "batch_created":
                ids += f", {record['batch_id']} (created just now, not recorded)"
            raise CheckpointError(
                f"Could not write to the checkpoint {self.store.path}: {_reason(exc)}. The provider "
                f"batches keep running (open: {ids}); free the disk and rerun with the same file to "
                "collect them. This error's .result holds every answer received so far.",
                result=self.result(),
            ) from exc

    def _retried(self, what: str, call: Callable[[], T]) -> T:
        """``call()``, tried again with backoff after a transient failure (5xx, 429, network)."""
        delay = _BACKOFF
        for attempt in range(_TRIES):
            try:
                return call()
            except (ProviderError, NetworkError, RateLimitError) as exc:
                if attempt == _TRIES - 1:
                    raise
                wait = max(delay, exc.retry_after or 0.0)
                logger.info("%s failed (%s): trying again in %.1f s", what, exc.message, wait)
                self._sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.interrupted.is_set() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(_SLICE, left))
        if self.interrupted.is_set():
            raise KeyboardInterrupt


def sub_item_id(owner: tuple[Submission, str], key: str) -> Any:
    submission, custom_id = owner
    return next((item_id for cid, item_id, _ in submission.items if cid == custom_id), key)


def _digest_in(owner: tuple[Submission, str], key: str) -> str:
    submission, custom_id = owner
    return next((digest for cid, _, digest in submission.items if cid == custom_id), "")


def _no_answer(state: BatchState, provider: str) -> LLMError:
    """The error of an item its ended batch reports nothing about."""
    if state.outcome == "failed":
        return UNFINISHED["failed"](
            f"the {provider} batch {state.batch_id} failed: {state.reason}", provider=provider
        )
    error_class = UNFINISHED.get(state.outcome or "", ProviderBatchError)
    message = f"the {provider} batch {state.batch_id} ended ({state.status}) without an answer for this item"
    return error_class(message, provider=provider)


def _validated(response: Response, response_model: Any, provider: str) -> Any:
    """The item's model, validated from the forced tool call's arguments or the JSON text."""
    if response_model is None:
        return None
    from pydantic import ValidationError

    try:
        if response.tool_calls:
            return response_model.model_validate(response.tool_calls[0].arguments)
        return response_model.model_validate_json(response.content)
    except ValidationError as exc:
        errors = [dict(e) for e in exc.errors(include_url=False)]
        raise StructuredOutputError(
            f"The reply did not validate as {response_model.__name__} (a batch asks no re-asks: "
            f"retry_failed_live=True asks again live): {exc.error_count()} errors",
            errors=errors, provider=provider, request_id=response.request_id,
        ) from exc  # fmt: skip


# -- entry point ---------------------------------------------------------------------------------------


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
    options = _Options(response_model, on_error, retry_failed, concurrency or 8, kwargs,
                       client._batch_defaults(), progress, float(poll_interval), batch_size,
                       bool(retry_failed_live), on_interrupt)  # fmt: skip
    if checkpoint is None:
        logger.warning(
            "a provider batch without a checkpoint cannot be resumed: if this process dies, its provider "
            "batches run on (and are billed) with no way to collect them here"
        )
    store = None if checkpoint is None else _CheckpointFile(checkpoint_path(checkpoint, shard), fsync)
    run = _ProviderRun(client, api, plan, options)
    try:
        run.resume(store)
        run.reopen()
        run.prepare()
        run.execute()
    except BaseException:
        _close_quietly(store)
        raise
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
