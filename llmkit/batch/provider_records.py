"""What a checkpoint records of provider batches, so a killed run resumes without paying twice.

Two lines per provider batch, beside the items' own records (:mod:`llmkit.batch.checkpoint`):

* ``{"type": "batch_submit", "tag", "provider", "key_id", "model", "time",
  "items": [[custom_id, item id, input digest], ...]}``, written and synced
  *before* the batch is created, the ``tag`` travelling with it (OpenAI
  metadata, Gemini's display name);
* ``{"type": "batch_created", "tag", "batch_id", "time"}``, written and synced
  as soon as the provider answers, before anything else happens.

On resume, an item without a record of its own waits for the last provider
batch that lists it: that batch is polled and downloaded, never submitted
again. A ``batch_submit`` without its ``batch_created`` (killed during the
create) is looked up by its tag; if the provider cannot say (Anthropic keeps
no metadata) or has no such batch, its items are submitted again, with a
warning. Items whose answers are recorded are done, whatever their batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llmkit.batch.checkpoint import CheckpointError

__all__ = [
    "Submission",
    "Waiting",
    "created_record",
    "read_submissions",
    "refuse_open_batches",
    "submit_record",
    "waiting",
]

SUBMIT, CREATED = "batch_submit", "batch_created"


@dataclass
class Submission:
    """One provider batch of this checkpoint: what it holds, and its id once created."""

    tag: str
    provider: str
    key_id: str | None
    model: str
    time: float
    items: list[tuple[str, Any, str]]  # (custom_id, item id, input digest)
    batch_id: str | None = None


def submit_record(submission: Submission) -> dict[str, Any]:
    return {
        "type": SUBMIT, "tag": submission.tag, "provider": submission.provider, "key_id": submission.key_id,
        "model": submission.model, "time": round(submission.time, 3),
        "items": [list(entry) for entry in submission.items],
    }  # fmt: skip


def created_record(tag: str, batch_id: str) -> dict[str, Any]:
    return {"type": CREATED, "tag": tag, "batch_id": batch_id, "time": round(time.time(), 3)}


def read_submissions(side: Iterable[Mapping[str, Any]], where: str) -> list[Submission]:
    """The provider batches of a checkpoint's side records, in the order they were submitted."""
    by_tag: dict[str, Submission] = {}
    for record in side:
        try:
            kind, tag = record["type"], str(record["tag"])
            if kind == SUBMIT:
                items = [(str(c), i, str(h)) for c, i, h in record["items"]]
                by_tag[tag] = Submission(tag, str(record["provider"]), record.get("key_id"),
                                         str(record["model"]), float(record["time"]), items)  # fmt: skip
            elif kind == CREATED and tag in by_tag:
                by_tag[tag].batch_id = str(record["batch_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: a provider batch record is damaged ({exc!r}).") from exc
    return list(by_tag.values())


@dataclass(frozen=True, slots=True)
class Waiting:
    """An item without a record, in the last provider batch that lists it."""

    submission: Submission
    custom_id: str
    item_id: Any
    digest: str


def waiting(submissions: list[Submission], records: Mapping[str, Any]) -> dict[str, Waiting]:
    """Item key -> where it waits, for the items of these provider batches without a record."""
    owners: dict[str, Waiting] = {}
    for submission in submissions:
        for custom_id, item_id, digest in submission.items:
            owners[str(item_id)] = Waiting(submission, custom_id, item_id, digest)
    return {key: owner for key, owner in owners.items() if key not in records}


def refuse_open_batches(side: Iterable[Mapping[str, Any]], records: Mapping[str, Any], where: str) -> None:
    """CheckpointError when items of this checkpoint wait in provider batches (for a live run:
    sending them again would pay for them twice)."""
    open_items = waiting(read_submissions(side, where), records)
    if not open_items:
        return
    subs = {w.submission.tag: w.submission for w in open_items.values()}.values()
    batches = sorted(s.batch_id or f"(being created, tag {s.tag})" for s in subs)
    raise CheckpointError(
        f"{where}: {len(open_items)} items wait in provider batches still to be collected "
        f"({', '.join(batches[:3])}{' ...' if len(batches) > 3 else ''}). Nothing was sent. Run the batch "
        "with via='provider' to collect them (they are paid for already), or pass another checkpoint file."
    )
