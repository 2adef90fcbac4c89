"""Batch checkpoints: the JSON-lines file that makes ``client.batch`` resumable.

A JSON-lines file, locked for the batch's lifetime: one line per finished
item (id, input hash, status, then the error's type and message, or the
answer and the parsed model), appended with one ``write`` and ``fsync``-ed.
``fsync="line"`` (the default) costs about 2 ms a line on an ext4 VM disk,
which caps a batch near 500 items/s; ``fsync="batch"`` (about 50 us a line)
syncs with the first line written a second or more after the last sync,
and at the end: a killed *process* still loses nothing (the lines are in
the kernel), a power cut may lose the lines since the last sync. A rerun
with the same file skips the items that succeeded and retries the failed
ones (``retry_failed=False`` keeps them).

**What a line keeps of an answer**: all of it, as :mod:`llmkit.response_json`
writes it (content, model, provider, finish reason, every usage count,
tool calls, request id, and when set the refusal, the parts: thinking blocks
with their signatures, server tool blocks, and ``fallback_index``), with
the call's cost, key fingerprint, latency (to 0.1 ms) and attempts; not
the SDK's ``raw`` object. A resumed batch gives back the Responses the live
calls gave. Lines of the older form (three usage counts, no refusal or
parts) load with the other counts at 0 and no parts.

**Other inputs.** Each line carries the digest of everything that changes
its answer (:mod:`llmkit.batch.digest`): the item's messages (images by
their bytes or URL), every keyword argument of the batch, the item and the
client's defaults (model, system prompt, temperature, max_tokens, tools,
json_mode, provider parameters; not timeouts or retries), and the
response_model's schema. If the file holds an id whose digest differs, or an
id not in the batch, :class:`CheckpointMismatchError` names the items and
what differs, and nothing is written or sent: run with the old inputs, or
use a new file. Lines written by an older llmkit carry a hash of the
messages and the item's own arguments only: they are reused when that still
matches, with a warning that the batch-wide arguments could not be checked.
With ``response_model``, loaded answers are validated into the model again;
one that no longer validates raises CheckpointMismatchError too.

**Disk faults.** A checkpoint that cannot be opened (a missing or read-only
folder) raises :class:`CheckpointError` before anything is sent. A write or
sync that fails mid-batch (a full disk, a read-only remount, an I/O error)
stops the batch from starting items; those in flight finish; then
CheckpointError is raised with ``.result``, the :class:`BatchResult` holding
every answer received, those the file could not take included. A line the
disk took only part of is cut off again, so the file keeps whole lines and
a rerun resumes from it.

**The lock.** The file is locked while a batch uses it (``flock`` on POSIX,
``LockFileEx`` on Windows, through ``filelock``); a second batch on the same
file, in this process or another, gets CheckpointError "in use by another
running batch" before anything is sent. (On Windows the lock bars other
handles from reading the file while the batch runs, so merge after it ends.)

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

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from llmkit.batch.digest import InputDigest, changed_parts, is_current
from llmkit.batch.items import _Item, plain_json
from llmkit.batch.result import BatchResult, ItemError
from llmkit.errors import LLMError
from llmkit.response_json import answer_from_json, answer_to_json
from llmkit.types import Response
from llmkit.wording import plural

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "checkpoint_path",
    "merge_checkpoints",
]

# The torn-line warning was logged as "llmkit.batch" before the split; it keeps that name.
logger = logging.getLogger("llmkit.batch")

_BATCH_FSYNC_INTERVAL = 1.0


class CheckpointError(LLMError, ValueError):
    """The checkpoint file cannot be used: corrupt, in use by another batch, or the disk failed.

    ``result`` is the :class:`BatchResult` so far when the batch had started
    (a disk that filled up or failed mid-batch): every answer received is in
    it, those the file could not take included. None when raised before
    anything was sent.
    """

    result: BatchResult | None = None

    def __init__(self, message: str, *, result: BatchResult | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.result = result


class CheckpointMismatchError(CheckpointError):
    """The checkpoint was written for other inputs. Nothing in it was changed."""


# -- record encoding ---------------------------------------------------------------------


def _ok_record(item: _Item, digest: str, response: Response, parsed: Any) -> dict[str, Any]:
    return {
        "id": item.id,
        "index": item.index,
        "hash": digest,
        "status": "ok",
        **_answer_of(response),
        "cost": response.cost,
        "key_id": response.key_id,
        "latency": round(response.latency, 4),
        "attempts": response.attempts,
        "parsed": None if parsed is None else json.loads(json.dumps(parsed, default=plain_json)),
        "time": round(time.time(), 3),
    }


def _answer_of(response: Response) -> dict[str, Any]:
    """The answer's fields; a part that cannot be written is left out (the answer is never lost)."""
    try:
        return answer_to_json(response)
    except ValueError as exc:
        logger.warning("the checkpoint keeps the answer without its parts: %s", exc)
        return answer_to_json(replace(response, parts=()))


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
    return Response(
        **answer_from_json(rec),
        latency=float(rec.get("latency") or 0.0),
        key_id=rec.get("key_id"),
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


def _parse_records(
    data: bytes, where: str, side: list[dict[str, Any]] | None = None
) -> tuple[dict[str, dict[str, Any]], int]:
    """Records by id (an ok one wins over errors) and the length of the whole lines.

    Lines with a ``"type"`` are not items' records but provider batches'
    (:mod:`llmkit.batch.provider_records`): appended to ``side``, in file order.
    """
    end = data.rfind(b"\n") + 1
    records: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if isinstance(rec, dict) and "type" in rec:
                if side is not None:
                    side.append(rec)
                continue
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
    """A JSONL file, locked for one batch and appended to one whole line per write.

    ``append`` and ``close`` raise ``OSError`` when the disk fails (full,
    read-only, I/O error); a line cut short is cut back off first, so the
    file keeps whole lines for the rerun.
    """

    def __init__(self, path: str, fsync: str) -> None:
        self.path = path
        self._each_line = fsync == "line"
        self._lock = threading.Lock()
        self._fd = -1
        self._synced_at = time.monotonic()
        self.unsynced = 0  # lines written since the last fsync
        self.side_records: list[dict[str, Any]] = []  # provider batches' lines, read by open()

    def open(self) -> tuple[dict[str, dict[str, Any]], int, int]:
        """Lock the file and read it: (records, length of whole lines, file length)."""
        created = not os.path.exists(self.path)
        fd = _open_for_append(self.path)
        try:
            _lock_exclusive(fd, self.path)
            data = _read_all(fd, self.path)
        except BaseException:
            os.close(fd)  # the one close of this fd: self._fd was never set
            raise
        self._fd = fd
        if created:
            _fsync_dir(self.path)
        records, end = _parse_records(data, self.path, self.side_records)
        return records, end, len(data)

    def cut(self, length: int) -> None:
        """Drop a torn last line (a write killed halfway)."""
        torn = os.fstat(self._fd).st_size - length
        logger.warning("%s: ignoring a torn last line (%s)", self.path, plural(torn, "byte"))
        try:
            os.ftruncate(self._fd, length)
            os.fsync(self._fd)
        except OSError as exc:
            raise CheckpointError(f"Cannot cut the torn last line of {self.path}: {_reason(exc)}.") from exc

    def append(self, record: dict[str, Any], *, sync: bool = False) -> None:
        """Append one line; ``sync``: fsync it now, whatever ``fsync`` says (what must survive a kill)."""
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=plain_json)
        data = (line + "\n").encode()
        with self._lock:
            size = os.fstat(self._fd).st_size
            try:
                self._write(data, sync)
            except OSError:
                _truncate_quietly(self._fd, size)
                raise

    def _write(self, data: bytes, sync: bool = False) -> None:
        while data:
            data = data[os.write(self._fd, data) :]
        now = time.monotonic()
        if sync or self._each_line or now - self._synced_at >= _BATCH_FSYNC_INTERVAL:
            os.fsync(self._fd)
            self._synced_at, self.unsynced = now, 0
        else:
            self.unsynced += 1

    def sync(self) -> None:
        """Sync the lines written since the last sync; OSError if it fails."""
        with self._lock:
            if self.unsynced and self._fd >= 0:
                os.fsync(self._fd)
                self._synced_at, self.unsynced = time.monotonic(), 0

    def close(self) -> None:
        """Sync what is not synced yet and close (releasing the lock); OSError if the sync fails."""
        with self._lock:
            fd, self._fd = self._fd, -1
            if fd < 0:
                return
            try:
                if self.unsynced:
                    os.fsync(fd)
                    self.unsynced = 0
            finally:
                os.close(fd)  # also releases the lock


def _reason(exc: OSError) -> str:
    return f"{exc.strerror or exc} (errno {exc.errno})" if exc.errno else str(exc)


def _open_for_append(path: str) -> int:
    try:
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0)  # Windows: no \r\n
        return os.open(path, flags, 0o644)
    except OSError as exc:
        hint = ""
        if os.path.isfile(path) and os.access(path, os.R_OK):
            hint = f" Its answers can still be read: llmkit.batch.merge_checkpoints([{path!r}])."
        raise CheckpointError(
            f"Cannot open the checkpoint {path} for writing: {_reason(exc)}. Nothing was sent; "
            f"pass a checkpoint path in a folder that exists and is writable.{hint}"
        ) from exc


def _lock_exclusive(fd: int, path: str) -> None:
    """Lock ``fd`` for this batch (flock on POSIX, LockFileEx on Windows, through filelock)."""
    from filelock import lock_descriptor

    try:
        locked = lock_descriptor(fd, blocking=False)
    except OSError as exc:
        raise CheckpointError(
            f"Cannot lock the checkpoint {path}: {_reason(exc)}. Put it on a local disk."
        ) from exc
    if not locked:
        raise CheckpointError(
            f"{path} is in use by another running batch. Wait for it to end, or pass another checkpoint file."
        )


def _read_all(fd: int, path: str) -> bytes:
    """The whole file, read through the locked descriptor (Windows locks bar other handles)."""
    chunks = []
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError as exc:
        message = f"Cannot read the checkpoint {path}: {_reason(exc)}. Nothing was sent."
        raise CheckpointError(message) from exc
    return b"".join(chunks)


def _truncate_quietly(fd: int, size: int) -> None:
    """Cut a line a failing disk took only part of; if even that fails, the next run drops it."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)


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


def _check_inputs(
    plan: list[_Item], records: Mapping[str, Mapping[str, Any]], where: str, inputs: InputDigest
) -> dict[str, str]:
    """Each item's digest, after checking the checkpoint's records were made from these inputs.

    A record an older llmkit wrote (its hash covers the messages and the item's
    own arguments only) is accepted when that hash still matches, with a warning.
    """
    digests = {item.key: inputs.of(item) for item in plan}
    unknown = [rec["id"] for key, rec in records.items() if key not in digests]
    changed: dict[str, list[Any]] = {}
    legacy = 0
    for item in plan:  # in input order, for the message
        rec = records.get(item.key)
        if rec is None:
            continue
        old = rec.get("hash")
        if isinstance(old, str) and is_current(old):
            reasons = changed_parts(old, digests[item.key])
        else:
            legacy += 1
            reasons = [] if old == item.legacy_digest() else ["legacy"]
        for reason in reasons:
            changed.setdefault(reason, []).append(item.id)
    if unknown or changed:
        raise CheckpointMismatchError(_mismatch_message(where, changed, unknown, inputs.model_name))
    if legacy:
        logger.warning(
            "%s: %s written by an older llmkit, whose hash covers only each item's "
            "messages and own arguments; they are reused as they are. If the batch's model=, "
            "system_prompt=, temperature= (or another argument) or an image's bytes changed since, "
            "pass a new checkpoint file.",
            where,
            plural(legacy, "record was", "records were"),
        )
    return digests


_REASONS = {
    "messages": "other messages",
    "arguments": "other arguments (model=, system_prompt=, temperature=, max_tokens=, tools, json_mode "
    "or another keyword argument of the batch or the item, or the client's defaults)",
    "response_model": "another response_model (this batch's is {model})",
    "legacy": "other messages or other arguments of the item",
}


def _some(ids: list[Any]) -> str:
    named = ", ".join(f"item {i!r}" for i in ids[:5])
    return named + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def _mismatch_message(where: str, changed: Mapping[str, list[Any]], unknown: list[Any], model: str) -> str:
    said = [
        f"{_some(ids)} {'was' if len(ids) == 1 else 'were'} answered for "
        + _REASONS[reason].format(model=model)
        for reason, ids in changed.items()
    ]
    if unknown:
        are = "is" if len(unknown) == 1 else "are"
        said.append(f"{plural(len(unknown), 'id')} {are} not in this batch ({_some(unknown)})")
    return (
        f"{where} was written for other inputs: {'; '.join(said)}. Nothing was changed or sent. "
        "Run with the inputs it was written for to resume it, or pass a new checkpoint file "
        "(or delete this one to start over)."
    )


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
