"""``llmkit demo``: a pooled batch against a local fake provider; no API key, no network.

It starts a FakeLLMServer on 127.0.0.1 that enforces per-key rate limits the
strict way a real API may (by default 20 requests in every whole second, 429
past that), gives an LLMClient only the per-minute number a dashboard shows
for a pool of made-up keys, runs a batch of prompts with a progress bar, and
prints what happened: how close the pool came to the limits without going
over them, how the work spread over the keys, tokens and cost.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from llmkit.cli._common import CLIError, fake_keys, kv_table, plain, plural

__all__ = ["add_parser", "main"]

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest"}


@dataclass
class DemoRun:
    """What one demo run measured."""

    ok: int
    failed: int
    wall: float
    server_stats: dict[str, Any]
    metrics: dict[str, Any]
    records: list[Any]
    started: float


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run a pooled, rate-limited batch against a local fake server",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--requests", type=int, default=300, help="prompts in the batch (default 300)")
    add("--keys", type=int, default=4, help="fake API keys in the pool (default 4)")
    add("--rps", type=float, default=20.0, help="requests per second each key may send (default 20)")
    add("--style", choices=_styles(), default=_styles()[0],
        help="how the fake server enforces the limit (default: %(default)s, the strictest)")
    add("--latency", type=float, default=0.02, help="the fake server's reply latency, seconds")
    add("--provider", choices=sorted(MODELS), default="openai", help="which API to speak (default openai)")
    add(
        "--in-process",
        action="store_true",
        help="run the fake server in this process (default: a child process, as a real API would be)",
    )
    add("--no-progress", action="store_true", help="no progress bar")
    add("--plot", metavar="FILE.png", help="chart requests/s per key against the limit (needs matplotlib)")
    p.set_defaults(handler=main)


def _styles() -> tuple[str, ...]:
    from llmkit.testing import ENFORCEMENT_STYLES

    return tuple(ENFORCEMENT_STYLES)


def _check(args: argparse.Namespace) -> None:
    if args.requests < 1 or args.keys < 1:
        raise CLIError("--requests and --keys must be at least 1")
    if args.rps <= 0 or args.latency < 0:
        raise CLIError("--rps must be > 0 and --latency >= 0")
    if args.plot:
        from llmkit.cli.plot import require_matplotlib

        require_matplotlib()  # fail now, not after the run


def _progress_wanted(args: argparse.Namespace) -> bool:
    if args.no_progress:
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        print("(no progress bar: pip install 'llmkit[progress]' for one)", file=sys.stderr)
        return False
    return True


def run_demo(args: argparse.Namespace) -> DemoRun:
    from llmkit.cli.bench import make_prompts, rate_limit_for
    from llmkit.client import LLMClient
    from llmkit.config import Settings
    from llmkit.testing import FakeLLMServer, ServerLimits

    limits = ServerLimits(requests_per_minute=args.rps * 60, style=args.style)
    prompts = make_prompts(args.requests, (20, 200))
    server_kwargs: dict[str, Any] = {"limits": limits, "latency": args.latency}
    serving = FakeLLMServer(**server_kwargs) if args.in_process else FakeLLMServer.spawn(**server_kwargs)
    with serving as server:
        url = server.openai_base_url if args.provider == "openai" else server.anthropic_base_url
        print(
            f"fake {args.provider} server at {url}: {plural(args.keys, 'key')} x {args.rps * 60:g} "
            f"requests a minute, enforced {args.style}; latency {args.latency:g} s",
            flush=True,
        )
        client = LLMClient(
            args.provider, api_keys=fake_keys(args.keys), base_url=url, model=MODELS[args.provider],
            rate_limit=rate_limit_for(limits), max_tokens=32, acquire_timeout=120,
            settings=Settings(),  # the demo ignores your YAML and environment
        )  # fmt: skip
        with client:
            client.complete("warm up")  # imports the SDK, opens connections
            time.sleep(1.1)  # let every limit fill again
            server.reset()
            client.metrics(reset=True)
            print(f"running a batch of {args.requests} prompts ...", flush=True)
            started = time.monotonic()
            result = client.batch(prompts, progress=_progress_wanted(args))
            wall = time.monotonic() - started
            records = [_record(r) for r in server.requests]
            return DemoRun(
                result.succeeded, result.failed, wall, server.stats(), client.metrics(), records, started
            )


def _record(raw: Any) -> SimpleNamespace:
    """A request-log entry (a RequestRecord in-process, a dict from a child) as attributes."""
    data = raw if isinstance(raw, dict) else raw.to_dict()
    return SimpleNamespace(time=data["time"], key=data["key"], status=data["status"])


def summary(args: argparse.Namespace, run: DemoRun) -> str:
    from llmkit.cli.bench import ideal_seconds
    from llmkit.testing import ServerLimits

    limits = ServerLimits(requests_per_minute=args.rps * 60, style=args.style)
    ideal = ideal_seconds(limits, args.keys, run.server_stats)
    m = run.metrics
    cost = m.get("cost") or 0.0
    rows: list[list[Any]] = [
        ["requests ok / failed", f"{run.ok} / {run.failed}"],
        ["wall time", f"{run.wall:.2f} s (ideal at the limit: {ideal:.2f} s)"],
        [
            "throughput",
            f"{run.ok / run.wall:.1f} requests/s (limit {args.keys * args.rps:g}/s = "
            f"{plural(args.keys, 'key')} x {args.rps:g}/s)",
        ],
        ["capacity used", _capacity(ideal, run.wall)],
        ["429s from the server", run.server_stats["by_status"].get(429, 0)],
        ["retries", m.get("retries", 0)],
        ["tokens in / out", f"{m.get('input_tokens', 0):,} / {m.get('output_tokens', 0):,}"],
        ["cost", f"${cost:.6f} ({MODELS[args.provider]} list prices)"],
    ]
    total = sum(k.get("requests", 0) for k in m.get("by_key", {}).values()) or 1
    for key_id, k in sorted(m.get("by_key", {}).items()):
        share = 100 * k.get("requests", 0) / total
        rows.append([f"share of {key_id}", f"{plural(k.get('requests', 0), 'request')} ({share:.1f}%)"])
    return "summary\n" + kv_table(rows)


def _capacity(ideal: float, wall: float) -> str:
    """The share of the per-minute rate used; above 100% when the server's windows let a
    short run through faster than that average (a per-second window admits its whole share
    at once), which llmkit then uses without drawing 429s."""
    if not wall:
        return "-"
    share = 100 * ideal / wall
    note = " (the server's per-second windows admit a short run faster than the per-minute rate)"
    return f"{share:.1f}% of the per-minute rate" + (note if share > 100.5 else "")


def main(args: argparse.Namespace) -> int:
    _check(args)
    run = run_demo(args)
    print(summary(args, run), flush=True)
    if args.plot:
        from llmkit.cli.plot import plot_rates

        plot_rates(run.records, run.started, args.rps, args.plot)
        print(f"plot written to {args.plot}")
    return 0 if run.failed == 0 else 1
