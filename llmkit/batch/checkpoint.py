"""Batch checkpoints: the JSON-lines file that makes ``client.batch`` resumable.

A JSON-lines file, locked for the batch's lifetime: one line per finished
item (id, input hash, status, content, usage, cost, model, key fingerprint,
finish reason, parsed model, or error type and message), appended with one
``write`` and ``fsync``-ed. ``fsync="line"`` (the default) costs about 2 ms a
line on an ext4 VM disk, which caps a batch near 500 items/s;
``fsync="batch"`` (about 50 us a line) syncs with the first line written a
second or more after the last sync, and at the end: a killed *process* still
loses nothing (the lines are in the kernel), a power cut may lose the lines
since the last sync. A rerun with the same file skips the items that
succeeded and retries the failed ones (``retry_failed=False`` keeps them). If
the file holds an id whose input hash differs, or an id not in the batch,
:class:`CheckpointMismatchError` is raised and nothing is written. With
``response_model``, loaded answers are validated into the model again; one
that no longer validates raises CheckpointMismatchError too.

**What a kill costs.** Each line is written as soon as its answer is in, so
``kill -9`` loses only the answers in flight: at most ``concurrency``
requests that were sent (and may be billed) but not recorded. The rerun
sends those again; every other item is sent exactly once over both runs. A
line torn by the kill is ignored and cut off by the next run.

**Shards.** Each shard has its own file (:func:`checkpoint_path`:
``run.shard-0-of-3.jsonl``); :func:`merge_checkpoints` reads the shards'
files back into one result.

The runner (:mod:`llmkit.batch.runner`) writes and reads it; it knows items
(:mod:`llmkit.batch.items`) and results (:mod:`llmkit.batch.result`), not the runner.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from llmkit.batch.items import _Item, plain_json
from llmkit.batch.result import BatchResult, ItemError
from llmkit.errors import LLMError
from llmkit.types import Response, ToolCall, Usage

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "checkpoint_path",
    "merge_checkpoints",
]

# The torn-line warning was logged as "llmkit.batch" before the split; it keeps that name.
logger = logging.getLogger("llmkit.batch")

_BATCH_FSYNC_INTERVAL = 1.0
_USAGE_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens")


class CheckpointError(LLMError, ValueError):
    """The checkpoint file cannot be used: corrupt, or in use by another batch."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint was written for other inputs. Nothing in it was changed."""


# -- record encoding ---------------------------------------------------------------------


def _ok_record(item: _Item, digest: str, response: Response, parsed: Any) -> dict[str, Any]:
    return {
        "id": item.id,
        "index": item.index,
        "hash": digest,
        "status": "ok",
        "content": response.content,
        "model": response.model,
        "provider": response.provider,
        "finish_reason": response.finish_reason,
        "usage": {name: getattr(response.usage, name) for name in _USAGE_FIELDS},
        "cost": response.cost,
        "key_id": response.key_id,
        "request_id": response.request_id,
        "latency": round(response.latency, 4),
        "attempts": response.attempts,
        "tool_calls": [call.to_dict() for call in response.tool_calls],
        "parsed": None if parsed is None else json.loads(json.dumps(parsed, default=plain_json)),
        "time": round(time.time(), 3),
    }


def _error_record(item: _Item, digest: str, error: ItemError) -> dict[str, Any]:
    return {
        "id": item.id,
        "index": item.index,
        "hash": digest,
        "status": "error",
        "error": {"type": error.type, "message": error.message, "status_code": error.status_code},
        "time": round(time.time(), 3),
    }


def _response_from(rec: Mapping[str, Any]) -> Response:
    usage = rec.get("usage") or {}
    return Response(
        content=rec.get("content") or "",
        model=rec.get("model") or "",
        provider=rec.get("provider") or "",
        finish_reason=rec.get("finish_reason"),
        usage=Usage(**{name: int(usage.get(name) or 0) for name in _USAGE_FIELDS}),
        latency=float(rec.get("latency") or 0.0),
        request_id=rec.get("request_id"),
        key_id=rec.get("key_id"),
        tool_calls=tuple(ToolCall.from_dict(c) for c in rec.get("tool_calls") or ()),
        cost=rec.get("cost"),
        attempts=int(rec.get("attempts") or 1),
    )


def _loaded(rec: Mapping[str, Any], response_model: Any, where: str) -> tuple[Any, Response | None]:
    """A checkpoint record as (result slot, Response or None)."""
    if rec["status"] != "ok":
        err = rec.get("error") or {}
        item_error = ItemError(
            rec["id"],
            int(rec.get("index", -1)),
            str(err.get("type")),
            str(err.get("message")),
            err.get("status_code"),
        )
        return item_error, None
    response = _response_from(rec)
    if response_model is None:
        return response, response
    try:
        parsed = response_model.model_validate(rec.get("parsed"))
    except Exception as exc:
        raise CheckpointMismatchError(
            f"{where}: the answer of item {rec['id']!r} does not validate against "
            f"{response_model.__name__} ({exc.__class__.__name__}); was it written for another "
            "response_model? Use another checkpoint file."
        ) from exc
    return parsed, replace(response, parsed=parsed)


def _parse_records(data: bytes, where: str) -> tuple[dict[str, dict[str, Any]], int]:
    """Records by id (an ok one wins over errors) and the length of the whole lines."""
    end = data.rfind(b"\n") + 1
    records: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            key, status = str(rec["id"]), rec["status"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"{where}: line {number} is not a batch record ({exc}); is this a batch checkpoint?"
            ) from exc
        old = records.get(key)
        if old is None or old["status"] != "ok" or status == "ok":
            records[key] = rec
    return records, end


# -- the checkpoint file -------------------------------------------------------------


def checkpoint_path(path: str | os.PathLike[str], shard: tuple[int, int] | None) -> str:
    """The file a shard uses: ``run.jsonl`` -> ``run.shard-0-of-3.jsonl``.

    A path with ``{index}``/``{count}`` in it is filled in instead.
    """
    text = os.fspath(path)
    if shard is None:
        return text
    index, count = shard
    if "{index}" in text or "{count}" in text:
        return text.replace("{index}", str(index)).replace("{count}", str(count))
    root, ext = os.path.splitext(text)
    return f"{root}.shard-{index}-of-{count}{ext}"


class _CheckpointFile:
    """A JSONL file, locked for one batch and appended to one whole line per write."""

    def __init__(self, path: str, fsync: str) -> None:
        self.path = path
        self._each_line = fsync == "line"
        self._lock = threading.Lock()
        self._fd = -1
        self._synced_at = time.monotonic()
        self._dirty = False

    def open(self) -> tuple[dict[str, dict[str, Any]], int, int]:
        """Lock the file and read it: (records, length of whole lines, file length)."""
        created = not os.path.exists(self.path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        _lock_exclusive(self._fd, self.path)
        if created:
            _fsync_dir(self.path)
        with open(self.path, "rb") as f:
            data = f.read()
        records, end = _parse_records(data, self.path)
        return records, end, len(data)

    def cut(self, length: int) -> None:
        """Drop a torn last line (a write killed halfway)."""
        torn = os.fstat(self._fd).st_size - length
        logger.warning("%s: ignoring a torn last line (%d bytes)", self.path, torn)
        os.ftruncate(self._fd, length)
        os.fsync(self._fd)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=plain_json)
        data = (line + "\n").encode()
        with self._lock:
            while data:
                data = data[os.write(self._fd, data) :]
            now = time.monotonic()
            if self._each_line or now - self._synced_at >= _BATCH_FSYNC_INTERVAL:
                os.fsync(self._fd)
                self._synced_at, self._dirty = now, False
            else:
                self._dirty = True

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, -1
            if fd < 0:
                return
            try:
                if self._dirty:
                    os.fsync(fd)
            finally:
                os.close(fd)  # also releases the lock


def _lock_exclusive(fd: int, path: str) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CheckpointError(f"{path} is in use by another running batch.") from None


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:  # not possible on every platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_inputs(plan: list[_Item], records: Mapping[str, Mapping[str, Any]], where: str) -> dict[str, str]:
    """Each item's hash, after checking the checkpoint's records were made from these inputs."""
    digests = {item.key: item.digest() for item in plan}
    unknown = [rec["id"] for key, rec in records.items() if key not in digests]
    changed = [rec["id"] for key, rec in records.items() if key in digests and rec["hash"] != digests[key]]
    if unknown or changed:
        raise CheckpointMismatchError(
            f"{where} was written for other inputs: {len(changed)} items changed "
            f"(ids {changed[:5]}), {len(unknown)} ids are not in this batch (ids {unknown[:5]}). "
            "Nothing was changed; pass another checkpoint file, or delete this one to start over."
        )
    return digests


def merge_checkpoints(paths: Iterable[str | os.PathLike[str]], *, response_model: Any = None) -> BatchResult:
    """The results of several checkpoints (e.g. of all shards) in input order.

    Raises :class:`CheckpointMismatchError` when two files disagree on an item's input.
    """
    merged: dict[str, dict[str, Any]] = {}
    for path in paths:
        with open(path, "rb") as f:
            records, _ = _parse_records(f.read(), os.fspath(path))
        for key, rec in records.items():
            old = merged.get(key)
            if old is not None and old.get("hash") != rec.get("hash"):
                raise CheckpointMismatchError(f"Item {rec['id']!r} has other inputs in {path} than before.")
            if old is None or old["status"] != "ok":
                merged[key] = rec
    ordered = sorted(merged.values(), key=lambda rec: int(rec.get("index", -1)))
    pairs = [_loaded(rec, response_model, "merge_checkpoints") for rec in ordered]
    values, responses = [p[0] for p in pairs], [p[1] for p in pairs]
    return BatchResult([rec["id"] for rec in ordered], values, responses, skipped=len(ordered))
