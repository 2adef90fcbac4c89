"""Resumable batches: ``client.batch(items, checkpoint="run.jsonl")``.

Items are prompts, message lists, or dicts ``{"id", "messages" or "prompt",
...per-item keyword arguments}``. Each has a stable id (the given one, else
its index) and, when a checkpoint is used, a hash of its input. They run on
the pool's executor with at most ``concurrency`` in flight (never more
futures than that); the pool waits for rate-limit capacity, so a batch slows
down rather than fails, and an item that timed out waiting for a key is
queued again. Results come back in input order as a :class:`BatchResult`.
Responses in it carry no ``raw`` SDK object, fresh or loaded alike (100,000
of them would take hundreds of MB).

**Checkpoint.** ``checkpoint="run.jsonl"`` records each finished item as it
finishes, so a rerun with the same file skips what succeeded and a kill loses
at most the ``concurrency`` answers in flight; the file, its records and its
guarantees are :mod:`llmkit.batch.checkpoint`. A checkpoint write that fails
(a full disk) stops new items, lets those in flight finish, and raises
:class:`~llmkit.batch.CheckpointError` whose ``.result`` holds every answer.

**Ctrl-C.** No new item starts, queued ones are cancelled, the items in
flight finish and are recorded (a second Ctrl-C abandons them: they are
then not in the checkpoint and are sent again on resume), the progress bar
closes, and :class:`BatchInterrupted` is raised: a ``KeyboardInterrupt``
(so scripts still stop, and ``except KeyboardInterrupt`` still works)
carrying the partial result. In the main thread llmkit turns the first
SIGINT into a flag it checks between items, so nothing is cut in half; if
another SIGINT handler is installed it is left alone, and a
KeyboardInterrupt it raises is caught wherever it lands (an item submitted
at that very moment may then go unrecorded).

**Errors.** ``on_error="record"`` puts an :class:`ItemError` in the item's
slot and goes on; ``"raise"`` starts nothing new after the first error,
waits for the items in flight (recording them) and raises that error.
:class:`~llmkit.errors.PoolClosedError` always ends the batch.

**Shards.** ``shard=(index, count)`` keeps the items whose id's sha256 falls
in that shard (:func:`~llmkit.batch.items.shard_of`, the same on every machine), with its own
checkpoint file (:func:`~llmkit.batch.checkpoint.checkpoint_path`:
``run.shard-0-of-3.jsonl``). :func:`~llmkit.batch.checkpoint.merge_checkpoints`
reads the shards' files back into one result.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, replace
from typing import Any, Protocol

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
from llmkit.batch.progress import _Progress, _sigint_to_flag
from llmkit.batch.provider_records import refuse_open_batches
from llmkit.batch.result import BatchInterrupted, BatchResult, ItemError
from llmkit.errors import CapacityTimeoutError, InvalidRequestError, LLMError, PoolClosedError
from llmkit.types import Response
from llmkit.wording import plural

__all__ = ["Submit", "run_batch"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

_POLL = 0.2  # seconds between checks for Ctrl-C while waiting for answers
_CAPACITY_REQUEUES = 10  # times an item that timed out waiting for a key goes back in the queue


# -- running ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Options:
    response_model: Any
    on_error: str
    retry_failed: bool
    concurrency: int
    kwargs: dict[str, Any]
    client_defaults: dict[str, Any]


class _Runner:
    """Feeds items to the executor, at most ``concurrency`` at a time, and records answers."""

    def __init__(self, submit: Callable[..., Future[Any]], plan: list[_Item], options: _Options):
        self._submit = submit
        self.options = options
        self.ids = [item.id for item in plan]
        self.values: list[Any] = [None] * len(plan)
        self.responses: list[Response | None] = [None] * len(plan)
        self.skipped = 0
        self.queue: deque[_Item] = deque()
        self.pending: dict[Future[Any], _Item] = {}
        self.done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.requeued: dict[int, int] = {}
        self.interrupted = threading.Event()
        self.first_error: BaseException | None = None
        self.digests: dict[str, str] = {}
        self.store: _CheckpointFile | None = None
        self.disk_error: OSError | None = None  # the checkpoint could not take a line
        self.unsaved = 0  # finished items the checkpoint does not hold (after a disk error)
        self.progress: _Progress | None = None

    def run(self) -> None:
        abandon = False
        with _sigint_to_flag(self.interrupted):
            try:
                self._loop()
            except KeyboardInterrupt:
                abandon = self.interrupted.is_set()  # a second Ctrl-C before the drain began
                self.interrupted.set()
            except BaseException:
                self._cancel_queued()
                raise
            if self.interrupted.is_set():
                self._drain_after_interrupt(abandon)
                raise BatchInterrupted(self.result()) from None
        if self.disk_error is not None:
            raise self.disk_fault(self.disk_error) from self.disk_error
        if self.first_error is not None:
            raise self.first_error

    def disk_fault(self, error: OSError) -> CheckpointError:
        """The CheckpointError for a disk that failed, carrying every answer received."""
        assert self.store is not None
        result = self.result()
        return CheckpointError(
            f"Could not write to the checkpoint {self.store.path}: {_reason(error)}. The batch stopped "
            f"starting items and finished those in flight; this error's .result holds every answer "
            f"received ({result.succeeded}), {self.unsaved} of them not in the file. Free disk space "
            "(or make the file writable) and run again with the same file to send the rest; items "
            "not in the file are sent again, so keep what .result holds.",
            result=result,
        )

    def result(self) -> BatchResult:
        return BatchResult(self.ids, self.values, self.responses, self.skipped)

    def _loop(self) -> None:
        while not self.interrupted.is_set():
            while self.queue and len(self.pending) < self.options.concurrency and self._may_start():
                self._start(self.queue.popleft())
            if not self.pending:
                return
            self._collect()

    def _may_start(self) -> bool:
        return self.first_error is None and self.disk_error is None and not self.interrupted.is_set()

    def _cancel_queued(self) -> None:
        for future in list(self.pending):
            if future.cancel():
                del self.pending[future]

    def _drain_after_interrupt(self, abandon: bool) -> None:
        self._cancel_queued()
        if abandon:
            self._abandon()
        if not self.pending:
            return
        logger.warning("Interrupted: finishing %d in flight (Ctrl-C again abandons them)", len(self.pending))
        assert self.progress is not None
        self.progress.say(f"stopping: {len(self.pending)} in flight (Ctrl-C again to abandon)")
        try:
            while self.pending:
                self._collect()
        except KeyboardInterrupt:
            self._abandon()

    def _abandon(self) -> None:
        if self.pending:
            logger.warning("Abandoned %s in flight: not in the checkpoint", plural(len(self.pending), "item"))
            self.pending.clear()

    def _start(self, item: _Item) -> None:
        kwargs = {**self.options.kwargs, **item.kwargs}
        if self.options.response_model is not None:
            kwargs.update(response_model=self.options.response_model, include_response=True)
        try:
            future = self._submit(item.messages, **kwargs)
        except PoolClosedError:
            raise
        except LLMError as exc:  # refused before sending, e.g. an empty prompt
            self._record_error(item, exc)
            return
        self.pending[future] = item
        future.add_done_callback(self.done.put)

    def _collect(self) -> None:
        """Wait for an answer (or ``_POLL`` s), then record every finished item.

        The queue only wakes us: the futures' own state decides what is done,
        so a KeyboardInterrupt that lands between a wake-up and its handling
        loses nothing.
        """
        try:
            self.done.get(timeout=_POLL)
            while True:
                self.done.get_nowait()
        except queue.Empty:
            pass
        for future in [f for f in self.pending if f.done()]:
            self._finish(future)

    def _finish(self, future: Future[Any]) -> None:
        item = self.pending.get(future)
        if item is None:  # cancelled, or abandoned
            return
        try:
            value = future.result()
        except CancelledError:
            pass
        except PoolClosedError:
            raise
        except CapacityTimeoutError as exc:
            if self.requeued.get(item.pos, 0) < _CAPACITY_REQUEUES:
                self.requeued[item.pos] = self.requeued.get(item.pos, 0) + 1
                self.queue.appendleft(item)
                logger.info("item %r waited too long for a key; queued again", item.id)
            else:
                self._record_error(item, exc)
        except Exception as exc:
            self._record_error(item, exc)
        else:
            self._record_ok(item, value)
        del self.pending[future]

    def _record_ok(self, item: _Item, value: Any) -> None:
        parsed, response = value if self.options.response_model is not None else (None, value)
        response = replace(response, raw=None)  # as when loaded; 100,000 SDK objects add up
        self.values[item.pos] = response if parsed is None else parsed
        self.responses[item.pos] = response
        if self.store is not None:
            self._save(_ok_record(item, self.digests[item.key], response, parsed))
        assert self.progress is not None
        self.progress.advance(response)

    def _save(self, record: dict[str, Any]) -> None:
        """Append a finished item to the checkpoint; once the disk failed, keep it in memory only."""
        assert self.store is not None
        if self.disk_error is None:
            try:
                self.store.append(record)
                return
            except OSError as exc:
                self.disk_error = exc
                logger.warning(
                    "checkpoint %s: %s; starting no more items, keeping the answers in memory",
                    self.store.path, _reason(exc),
                )  # fmt: skip
        self.unsaved += 1

    def _record_error(self, item: _Item, exc: BaseException) -> None:
        status = getattr(exc, "status_code", None)
        error = ItemError(item.id, item.index, type(exc).__name__, str(exc), status, exc)
        self.values[item.pos] = error
        if self.store is not None:
            self._save(_error_record(item, self.digests[item.key], error))
        assert self.progress is not None
        self.progress.advance(None)
        if self.options.on_error == "raise" and self.first_error is None:
            self.first_error = exc


# -- entry point --------------------------------------------------------------------------


def _check_options(on_error: str, fsync: str, concurrency: int | None, shard: tuple[int, int] | None) -> None:
    if on_error not in ("record", "raise"):
        raise InvalidRequestError(f"on_error must be 'record' or 'raise', got {on_error!r}.")
    if fsync not in ("line", "batch"):
        raise InvalidRequestError(f"fsync must be 'line' or 'batch', got {fsync!r}.")
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise InvalidRequestError(f"concurrency must be an integer >= 1 (or None), got {concurrency!r}.")
    if shard is not None:
        index, count = shard
        if not (isinstance(count, int) and count >= 1 and isinstance(index, int) and 0 <= index < count):
            raise InvalidRequestError(f"shard must be (index, count) with 0 <= index < count, got {shard!r}.")


def _resume(runner: _Runner, plan: list[_Item], store: _CheckpointFile) -> None:
    """Check the checkpoint belongs to ``plan`` and load its finished items into ``runner``."""
    records, end, size = store.open()
    refuse_open_batches(store.side_records, records, store.path)  # items paid for in a provider batch
    options = runner.options
    inputs = InputDigest(options.kwargs, options.response_model, options.client_defaults)
    runner.digests = _check_inputs(plan, records, store.path, inputs)
    if end < size:
        store.cut(end)
    for item in plan:
        rec = records.get(item.key)
        if rec is None or (rec["status"] != "ok" and runner.options.retry_failed):
            continue
        slot = _loaded(rec, runner.options.response_model, store.path)
        runner.values[item.pos], runner.responses[item.pos] = slot
        runner.skipped += 1


class Submit(Protocol):
    """What a batch runs on: start one call, get a Future (``LLMClient.submit`` is one)."""

    def __call__(self, messages: Any, **kwargs: Any) -> Future[Any]: ...


def run_batch(
    submit: Submit,
    items: Iterable[Any],
    *,
    response_model: Any = None,
    progress: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
    on_error: str = "record",
    concurrency: int | None = None,
    shard: tuple[int, int] | None = None,
    retry_failed: bool = True,
    fsync: str = "line",
    client_defaults: Mapping[str, Any] | None = None,
    **complete_kwargs: Any,
) -> BatchResult:
    """Run ``items`` through ``submit``, at most ``concurrency`` at a time; see :meth:`LLMClient.batch`.

    ``client_defaults``: what the client fills in where the batch and the item
    say nothing (``{"provider", "model", "system_prompt", "temperature",
    "max_tokens"}``); part of each item's checkpoint digest, so a checkpoint
    is not reused after the client's model changed.
    """
    _check_options(on_error, fsync, concurrency, shard)
    plan = _plan(items, shard)
    concurrency = concurrency or 8
    options = _Options(
        response_model, on_error, retry_failed, concurrency, complete_kwargs, dict(client_defaults or {})
    )
    runner = _Runner(submit, plan, options)
    store = None if checkpoint is None else _CheckpointFile(checkpoint_path(checkpoint, shard), fsync)
    try:
        _resume_and_run(runner, plan, store, progress)
    except BaseException:
        _close_quietly(store)
        raise
    if store is not None:
        try:
            store.close()
        except OSError as exc:
            runner.unsaved = store.unsynced  # written, but perhaps not on disk
            raise runner.disk_fault(exc) from exc
    return runner.result()


def _resume_and_run(
    runner: _Runner, plan: list[_Item], store: _CheckpointFile | None, progress: bool
) -> None:
    if store is not None:
        _resume(runner, plan, store)
        runner.store = store
    runner.queue.extend(item for item in plan if runner.values[item.pos] is None)
    logger.info(
        "batch: %s, %d from the checkpoint, concurrency %d",
        plural(len(plan), "item"), runner.skipped, runner.options.concurrency,
    )  # fmt: skip
    runner.progress = _Progress(progress, len(plan), runner.values, runner.responses)
    try:
        runner.run()
    finally:
        runner.progress.close()


def _close_quietly(store: _CheckpointFile | None) -> None:
    """Close on the way out of an error, which stays the one raised."""
    if store is None:
        return
    try:
        store.close()
    except OSError as exc:
        logger.warning("checkpoint %s: the last lines may not be on disk: %s", store.path, _reason(exc))
