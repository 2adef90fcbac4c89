"""Batches: many items through one client, resumable, with progress and per-item errors.

``client.batch(items, checkpoint="run.jsonl")`` is the way in; the rooms:

* :mod:`llmkit.batch.items`: what an item is (id, messages, per-item arguments, shard);
* :mod:`llmkit.batch.digest`: what a checkpoint line was answered for (the inputs' digest);
* :mod:`llmkit.batch.runner`: running them on a ``submit`` function, at most
  ``concurrency`` at a time, Ctrl-C and errors;
* :mod:`llmkit.batch.checkpoint`: the JSON-lines file that makes a batch resumable;
* :mod:`llmkit.batch.result`: :class:`BatchResult`, :class:`ItemError`, :class:`BatchInterrupted`;
* :mod:`llmkit.batch.progress`: the tqdm bar and the Ctrl-C flag;
* :mod:`llmkit.batch.provider`: ``via="provider"``, the providers' own batch APIs at batch
  prices (:mod:`~llmkit.batch.provider_plan`, :mod:`~llmkit.batch.provider_records`,
  :mod:`~llmkit.batch.provider_progress`, :mod:`~llmkit.batch.provider_errors`).
"""

from llmkit.batch.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    checkpoint_path,
    merge_checkpoints,
)
from llmkit.batch.items import shard_of
from llmkit.batch.provider import run_provider_batch
from llmkit.batch.provider_errors import (
    BatchCancelledError,
    BatchExpiredError,
    BatchFailedError,
    ProviderBatchError,
)
from llmkit.batch.result import BatchInterrupted, BatchResult, ItemError
from llmkit.batch.runner import run_batch

__all__ = [
    "BatchCancelledError",
    "BatchExpiredError",
    "BatchFailedError",
    "BatchInterrupted",
    "BatchResult",
    "CheckpointError",
    "CheckpointMismatchError",
    "ItemError",
    "ProviderBatchError",
    "checkpoint_path",
    "merge_checkpoints",
    "run_batch",
    "run_provider_batch",
    "shard_of",
]
