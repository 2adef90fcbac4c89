"""Provider batches against the live pool: cost, requests sent, client CPU per item (issue 18).

``--items`` prompts (default 10,000) through one client (4 keys) against a
FakeLLMServer in a child process (so the client's CPU time is its own):

* ``live pool``: ``client.batch(prompts)``, one chat request per item;
* ``provider batch``: ``client.batch(prompts, via="provider")``, the items in
  provider batches (OpenAI's 50,000-request limit: one; ``--batch-size`` to cut
  it), at batch prices;
* ``provider batch, killed``: the same in a child process, SIGKILLed once its
  provider batches are created and it polls them, then resumed here from the
  checkpoint: the resume polls and downloads, it submits nothing again.

Reported: the cost (and its ratio to the live pool's; target 0.5x), requests
sent (chat requests for the live pool; provider-batch lines, the count of
items submitted more than once, and batch API calls), wall time, and the
client's CPU time per item (``time.process_time``: every thread of this
process; the server runs in its own).

    python bench/provider_batch.py                      # 10,000 items, OpenAI
    python bench/provider_batch.py --items 2000 --provider anthropic
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from llmkit import LLMClient
from llmkit.testing import FakeLLMServer

KEYS = [f"sk-bench-batch-{i}" for i in range(4)]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest", "google": "gemini-2.0-flash"}
ROOT = Path(__file__).resolve().parent.parent


def prompts(count: int) -> list[str]:
    return [f"Summarize document number {i} in one short line." for i in range(count)]


def base_url(server: Any, provider: str) -> str:
    urls = {"openai": server.openai_base_url, "anthropic": server.anthropic_base_url}
    return str(urls.get(provider, server.url))


def client_for(server: Any, provider: str) -> LLMClient:
    url = base_url(server, provider)
    return LLMClient(provider=provider, api_keys=KEYS, base_url=url, model=MODELS[provider])


def measure(run: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def live(server: Any, args: argparse.Namespace) -> dict[str, Any]:
    before = server.stats()["total"]
    with client_for(server, args.provider) as client:
        result, wall, cpu = measure(lambda: client.batch(prompts(args.items), max_tokens=32, progress=False))
    assert result.succeeded == args.items, result
    return {"name": "live pool", "cost": result.cost, "requests": server.stats()["total"] - before,
            "twice": 0, "wall": wall, "cpu": cpu}  # fmt: skip


def provider_batch(server: Any, args: argparse.Namespace, checkpoint: Path) -> dict[str, Any]:
    before, jobs_before = server.stats()["total"], len(server.batch_jobs())
    with client_for(server, args.provider) as client:
        result, wall, cpu = measure(lambda: client.batch(
            prompts(args.items), via="provider", max_tokens=32, progress=False, poll_interval=args.poll,
            checkpoint=checkpoint, batch_size=args.batch_size))  # fmt: skip
    assert result.succeeded == args.items, result
    return {"name": "provider batch", "cost": result.cost, **_sent(server, jobs_before, before),
            "wall": wall, "cpu": cpu}  # fmt: skip


def _sent(server: Any, jobs_before: int, requests_before: int) -> dict[str, Any]:
    """Lines submitted, items submitted more than once, and HTTP calls, since the marks."""
    jobs = server.batch_jobs()[jobs_before:]
    lines = Counter(cid for job in jobs if job["outcome"] != "failed" for cid in job["custom_ids"])
    return {"requests": sum(lines.values()), "twice": sum(1 for n in lines.values() if n > 1),
            "api_calls": server.stats()["total"] - requests_before, "batches": len(jobs)}  # fmt: skip


def killed_and_resumed(server: Any, args: argparse.Namespace, checkpoint: Path) -> dict[str, Any]:
    before, jobs_before = server.stats()["total"], len(server.batch_jobs())
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps({
            "base_url": base_url(server, args.provider), "provider": args.provider, "items": args.items,
            "checkpoint": str(checkpoint), "batch_size": args.batch_size, "poll": args.poll})],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (checkpoint.exists() and b'"batch_created"' in checkpoint.read_bytes()):
        if child.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the child ended or hung before it created its provider batch")
        time.sleep(0.01)
    time.sleep(2 * args.poll)  # it polls now
    child.send_signal(signal.SIGKILL)
    child.wait()
    with client_for(server, args.provider) as client:
        result, wall, cpu = measure(lambda: client.batch(
            prompts(args.items), via="provider", max_tokens=32, progress=False, poll_interval=args.poll,
            checkpoint=checkpoint, batch_size=args.batch_size))  # fmt: skip
    assert result.succeeded == args.items, result
    return {"name": "provider batch, killed, resumed", "cost": result.cost,
            **_sent(server, jobs_before, before), "wall": wall, "cpu": cpu}  # fmt: skip


def child(config: str) -> None:
    args = json.loads(config)
    with LLMClient(provider=args["provider"], api_keys=KEYS, base_url=args["base_url"],
                   model=MODELS[args["provider"]]) as client:  # fmt: skip
        client.batch(prompts(args["items"]), via="provider", max_tokens=32, progress=False,
                     poll_interval=args["poll"], checkpoint=args["checkpoint"], batch_size=args["batch_size"])


def report(rows: list[dict[str, Any]], items: int) -> None:
    base = rows[0]["cost"]
    print(f"{'':34} {'cost $':>10} {'ratio':>6} {'requests':>9} {'sent twice':>10} {'API calls':>9} "
          f"{'wall s':>7} {'CPU us/item':>11}")  # fmt: skip
    for row in rows:
        calls = row.get("api_calls", "-")
        per_item = 1e6 * row["cpu"] / items
        print(f"{row['name']:34} {row['cost']:10.4f} {row['cost'] / base:6.3f} {row['requests']:9,} "
              f"{row['twice']:10} {calls:>9} {row['wall']:7.2f} {per_item:11.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--provider", choices=sorted(MODELS), default="openai")
    parser.add_argument("--batch-size", type=int, default=None, help="items per provider batch")
    parser.add_argument("--poll", type=float, default=0.05, help="poll interval, seconds")
    parser.add_argument("--batch-seconds", type=float, default=2.0, help="real seconds a batch takes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    scale = 600.0 / args.batch_seconds  # a batch takes 600 s of batch time
    with FakeLLMServer.spawn(batch_seconds=600.0, batch_time_scale=scale) as server, \
            tempfile.TemporaryDirectory() as tmp:  # fmt: skip
        rows = [live(server, args), provider_batch(server, args, Path(tmp) / "a.jsonl"),
                killed_and_resumed(server, args, Path(tmp) / "b.jsonl")]  # fmt: skip
    size = args.batch_size or "the provider's limit"
    print(f"{args.items:,} items, {args.provider} ({MODELS[args.provider]}), 4 keys, fake server in a child "
          f"process, provider batches of {size} taking {args.batch_seconds} s")  # fmt: skip
    report(rows, args.items)


if __name__ == "__main__":
    main()
