"""Runs batches on a tiny tmpfs, for tests/test_batch_checkpoint.py: a full disk, a read-only one.

Started under ``unshare -rm`` (its own mount namespace, so the mount ends
with it) as ``disk_fault_child.py SCENARIO '{"disk", "base_url"}'``; prints
one JSON line of what happened.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from llmkit import LLMClient
from llmkit.batch import CheckpointError


def mount(disk: str, *options: str) -> None:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(("size=16k", *options)), "tmpfs", disk], check=True
    )


def client(base_url: str) -> LLMClient:
    return LLMClient(provider="openai", api_keys=["sk-test-1"], base_url=base_url, model="gpt-4o-mini")


def full(disk: str, base_url: str) -> dict[str, Any]:
    mount(disk)
    path = Path(disk) / "run.jsonl"
    total = 200
    with client(base_url) as c:
        try:
            c.batch([f"item {i}" for i in range(total)], checkpoint=path, concurrency=4, progress=False)
        except CheckpointError as exc:
            cause = exc.__cause__
            assert exc.result is not None
            data = path.read_bytes()
            rows = [json.loads(line) for line in data.splitlines()]
            return {
                "error": type(exc).__name__,
                "errno": getattr(cause, "errno", None),
                "total": total,
                "recorded": len(rows),
                "answers": [r.content for r in exc.result if r],
                "whole_lines": data.endswith(b"\n"),
            }
    return {"error": None}


def attempt(path: Path, base_url: str) -> tuple[list[Any], str, Any]:
    with client(base_url) as c:
        try:
            c.batch(["item 0"], checkpoint=path, progress=False)
        except Exception as exc:
            cause = exc.__cause__
            return [type(exc).__name__, getattr(cause, "errno", None)], str(exc), getattr(exc, "result", "-")
    return [None, None], "", "-"


def read_only(disk: str, base_url: str) -> dict[str, Any]:
    mount(disk)
    existing = Path(disk) / "old.jsonl"
    existing.write_bytes(b"")
    mount(disk, "remount", "ro")
    new, message, result = attempt(Path(disk) / "run.jsonl", base_url)
    old, old_message, _ = attempt(existing, base_url)
    return {"new": new, "existing": old, "message": message, "old_message": old_message, "result": result}


def main() -> None:
    scenario, args = sys.argv[1], json.loads(sys.argv[2])
    run = {"full": full, "read-only": read_only}[scenario]
    print(json.dumps(run(args["disk"], args["base_url"])), flush=True)


if __name__ == "__main__":
    main()
