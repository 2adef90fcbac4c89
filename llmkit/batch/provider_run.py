"""The run of a provider batch: resume, submit, poll, collect, record (see :mod:`llmkit.batch.provider`)."""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from llmkit.batch.checkpoint import (
    CheckpointError,
    _check_inputs,
    _CheckpointFile,
    _error_record,
    _loaded,
    _ok_record,
    _reason,
)
from llmkit.batch.digest import InputDigest
from llmkit.batch.items import _Item
from llmkit.batch.progress import _sigint_to_flag
from llmkit.batch.provider_calls import _Calls
from llmkit.batch.provider_plan import Line, build_lines, item_request, split
from llmkit.batch.provider_progress import _ProviderProgress
from llmkit.batch.provider_records import (
    Submission,
    Waiting,
    created_record,
    read_submissions,
    submit_record,
    waiting,
)
from llmkit.batch.provider_results import no_answer, unfinished_error, validated
from llmkit.batch.result import BatchInterrupted, BatchResult, ItemError
from llmkit.errors import LLMError, RateLimitError
from llmkit.providers._batch import BatchCounts, BatchState, LineOutcome, ProviderBatchAPI
from llmkit.types import Response

__all__: list[str] = []

logger = logging.getLogger("llmkit.batch.provider")


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
    fsync: str = "line"  # for the answers of the live retry (provider answers are synced per batch)


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
        self.waiting: dict[str, Waiting] = {}
        self.chunks: deque[list[Line]] = deque()
        self.open: list[_Open] = []
        self.reserved: dict[str, float] = {}  # item key -> dollars of the budget held for it
        self.hold_until = 0.0  # no submission before (the provider's queue is full)
        self.first_error: BaseException | None = None
        self.interrupted = threading.Event()
        self.calls = _Calls(api, client._pool.slots, self.interrupted)
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
        listed = {key: {"id": w.item_id, "hash": w.digest, "status": "submitted"}
                  for key, w in self.waiting.items()}  # fmt: skip
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
        for key, where in self.waiting.items():
            by_tag.setdefault(where.submission.tag, []).append(key)
        for submission in self.submissions:
            keys = by_tag.get(submission.tag)
            if not keys:
                continue
            slot = self.calls.slot(submission.key_id)
            if submission.batch_id is None and not self._found(submission, slot):
                for key in keys:
                    del self.waiting[key]
                continue
            items = {self.waiting[key].custom_id: self.by_key[key] for key in keys}
            self.open.append(_Open(submission, items, slot, next_poll=0.0))

    def _found(self, submission: Submission, slot: Any) -> bool:
        found = self.calls.retried(
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
        self._save(created_record(submission.tag, found), sync=True)
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
        return item_request(self.client._request, item, self.options.kwargs, self.options.response_model)

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
        wake = min(min(due, default=0.0), time.monotonic() + self.options.poll_interval)
        assert self.progress is not None
        self.calls.sleep(wake - time.monotonic(), tick=self.progress.refresh)

    # -- submitting -------------------------------------------------------------------------------

    def _submit(self, chunk: list[Line]) -> None:
        slot = self.calls.slot(None)
        model = chunk[0].request.model
        entries = [(line.custom_id, line.item.id, self.digests[line.item.key]) for line in chunk]
        submission = Submission(
            uuid.uuid4().hex[:16], self.provider, slot.key_id, model, time.time(), entries
        )
        self._save(submit_record(submission), sync=True)  # before the create: a kill is then looked up
        try:
            batch_id = self.calls.create(slot, [line.data for line in chunk], model, submission.tag)
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
            batch.state = self.calls.retried(f"polling {batch.batch_id}", functools.partial(
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
            # Until one of the open batches ends (that makes room), or a while when none is open.
            self.hold_until = math.inf if self.open else time.monotonic() + self.options.poll_interval
            return
        outcomes: list[LineOutcome] = []
        if state.outcome != "failed":
            outcomes = self.calls.retried(f"downloading the results of {state.batch_id}",
                                     lambda: list(self.api.outcomes(batch.slot.client, state)))  # fmt: skip
        seen: set[str] = set()
        for outcome in outcomes:
            item = batch.items.get(outcome.custom_id)
            if item is not None and outcome.custom_id not in seen:
                seen.add(outcome.custom_id)
                self._record_outcome(batch, item, outcome)
        for custom_id, item in batch.items.items():
            if custom_id not in seen:
                self._record_error(item, no_answer(state, self.provider))
        self._save(None, sync=True)  # one sync per batch: lost lines are only downloaded again

    def _line_again(self, batch: _Open, custom_id: str) -> Line:
        item = batch.items[custom_id]
        request = batch.requests.get(custom_id) or self._request_of(item)
        return Line(item, custom_id, self.api.line(custom_id, request), request)

    def _record_outcome(self, batch: _Open, item: _Item, outcome: LineOutcome) -> None:
        if outcome.error is not None:
            self._record_error(item, outcome.error)
            return
        if outcome.unfinished is not None:
            self._record_error(item, unfinished_error(outcome, self.provider))
            return
        request = batch.requests.get(outcome.custom_id) or self._request_of(item)
        try:
            response = self.api.parse(outcome.payload, request)
            parsed = validated(response, self.options.response_model, self.provider)
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
        if self.store is not None:  # live answers are paid again when lost: synced as fsync= says
            self.store._each_line = options.fsync == "line"
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

    def _save(self, record: dict[str, Any] | None, sync: bool = False) -> None:
        """Append ``record`` to the checkpoint (None: nothing), synced now if ``sync``."""
        if self.store is None:
            return
        try:
            if record is not None:
                self.store.append(record, sync=sync)
            elif sync:
                self.store.sync()
        except OSError as exc:
            ids = ", ".join(b.submission.batch_id or "?" for b in self.open) or "none"
            if record is not None and record.get("type") == "batch_created":
                ids += f", {record['batch_id']} (created just now, not recorded)"
            raise CheckpointError(
                f"Could not write to the checkpoint {self.store.path}: {_reason(exc)}. The provider "
                f"batches keep running (open: {ids}); free the disk and rerun with the same file to "
                "collect them. This error's .result holds every answer received so far.",
                result=self.result(),
            ) from exc
