"""``llmkit bench``: goodput at a provider's rate limit, against an embedded fake server.

The measurement of ``bench/goodput.py``, packaged so that an installed llmkit
can run it: FakeLLMServer (in a child process, so it does not share this
process's GIL) enforces per-key limits and answers 429 past them; threads send
the prompts through each contender; the table shows successes, failures, the
429s the server sent, the wall time and the capacity used::

    capacity used = ideal time / wall time
    ideal time    = max over the limited resources of (demand - burst) / rate

where demand is what the server admitted (requests, input tokens, output
tokens), burst is what the full buckets of every key hold at the start and
rate is the keys' combined refill. 100% means the limits alone set the pace.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmkit.cli._common import fake_keys, plain, plural, table

if TYPE_CHECKING:
    from llmkit.config import RateLimit
    from llmkit.testing import ServerLimits

__all__ = ["Outcome", "Scenario", "add_parser", "ideal_seconds", "make_prompts", "run"]

_WORDS = "rate limits keep every key just under the provider's ceiling while the pool waits"
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest"}


@dataclass(frozen=True)
class Scenario:
    """What to send, to which provider, under which per-key limits."""

    name: str
    provider: str
    limits: ServerLimits
    prompt_chars: tuple[int, int]
    max_tokens: int


def held_seconds(limits: ServerLimits) -> float:
    """Seconds of its rate the server lets go at once: ``burst_seconds`` for a bucket,
    else 1 (the per-second window of the default style)."""
    return limits.burst_seconds if limits.burst_seconds is not None else 1.0


def rate_limit_for(limits: ServerLimits) -> RateLimit:
    """The client-side RateLimit that matches the server's per-key limits."""
    from llmkit.config import RateLimit

    def whole(value: float | None) -> int | None:
        return None if value is None else max(1, int(value))

    return RateLimit(
        requests_per_minute=whole(limits.requests_per_minute),
        input_tokens_per_minute=whole(limits.input_tokens_per_minute),
        output_tokens_per_minute=whole(limits.output_tokens_per_minute),
        tokens_per_minute=whole(limits.tokens_per_minute),
        burst_seconds=held_seconds(limits),
    )


def scenarios() -> dict[str, Scenario]:
    from llmkit.testing import ServerLimits

    return {
        # 20 requests/s per key, smoothed per second.
        "requests": Scenario(
            "requests", "openai", ServerLimits(requests_per_minute=1200, burst_seconds=1), (20, 200), 16
        ),
        # Anthropic-style input and output token limits bind.
        "tokens": Scenario(
            "tokens",
            "anthropic",
            ServerLimits(requests_per_minute=6000, input_tokens_per_minute=90_000,
                         output_tokens_per_minute=24_000, burst_seconds=1),
            (40, 2400),
            24,
        ),
    }  # fmt: skip


def make_prompts(count: int, chars: tuple[int, int] = (20, 200), seed: int = 7) -> list[str]:
    """``count`` reproducible prompts of ``chars`` characters (a range)."""
    rng = random.Random(seed)
    words = _WORDS.split()
    prompts = []
    for i in range(count):
        size = rng.randint(*chars)
        text = f"request {i}: "
        while len(text) < size:
            text += rng.choice(words) + " "
        prompts.append(text[:size])
    return prompts


def ideal_seconds(limits: ServerLimits, keys: int, stats: Mapping[str, Any]) -> float:
    """The shortest time the server's limits allow for what it admitted (see the module doc)."""
    admitted_in, admitted_out = stats.get("input_tokens", 0), stats.get("output_tokens", 0)
    demands = [
        (limits.requests_per_minute, stats["by_status"].get(200, 0)),
        (limits.input_tokens_per_minute, admitted_in),
        (limits.output_tokens_per_minute, admitted_out),
        (limits.tokens_per_minute, admitted_in + admitted_out),
    ]
    times = [0.0]
    for per_minute, demand in demands:
        if per_minute:
            rate = keys * per_minute / 60.0
            burst = keys * per_minute * held_seconds(limits) / 60.0
            times.append(max(0.0, demand - burst) / rate)
    return max(times)


@dataclass
class Outcome:
    contender: str
    ok: int = 0
    failed: int = 0
    wall: float = 0.0
    server_429: int = 0
    capacity_used: float = 0.0
    server_requests: int = 0  # every request the server received, retries included
    note: str = ""


def drive(call: Callable[[str], object], prompts: list[str], threads: int) -> tuple[int, int, float, str]:
    """Send every prompt from ``threads`` threads; return (ok, failed, seconds, error summary)."""
    pending = list(reversed(prompts))
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}
    errors: dict[str, int] = {}

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                prompt = pending.pop()
            try:
                call(prompt)
                outcome = "ok"
            except Exception as exc:
                outcome = "failed"
                with lock:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            with lock:
                counts[outcome] += 1

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    note = ", ".join(f"{n} x {name}" for name, n in errors.items())
    return counts["ok"], counts["failed"], time.perf_counter() - started, note


def _base_url(server: Any, provider: str) -> str:
    return str(server.openai_base_url if provider == "openai" else server.anthropic_base_url)


def llmkit_contender(server: Any, scenario: Scenario, keys: list[str]) -> Callable[[str], object]:
    from llmkit.client import LLMClient
    from llmkit.config import Settings

    client = LLMClient(
        scenario.provider, api_keys=keys, base_url=_base_url(server, scenario.provider),
        model=MODELS[scenario.provider], rate_limit=rate_limit_for(scenario.limits),
        max_tokens=scenario.max_tokens, acquire_timeout=120, settings=Settings(), metrics=False,
    )  # fmt: skip
    return lambda prompt: client.complete(prompt)


def sdk_contender(server: Any, scenario: Scenario, keys: list[str]) -> Callable[[str], object]:
    """The SDK as most code uses it: keys round robin, the SDK's own retries (2, with backoff)."""
    import itertools

    import anthropic
    import openai

    url = _base_url(server, scenario.provider)
    model, max_tokens = MODELS[scenario.provider], scenario.max_tokens
    lock = threading.Lock()
    if scenario.provider == "openai":
        oa = itertools.cycle([openai.OpenAI(api_key=k, base_url=url) for k in keys])

        def call_openai(prompt: str) -> object:
            with lock:
                client = next(oa)
            messages: Any = [{"role": "user", "content": prompt}]
            return client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)

        return call_openai
    an = itertools.cycle([anthropic.Anthropic(api_key=k, base_url=url) for k in keys])

    def call_anthropic(prompt: str) -> object:
        with lock:
            client = next(an)
        messages: Any = [{"role": "user", "content": prompt}]
        return client.messages.create(model=model, messages=messages, max_tokens=max_tokens)

    return call_anthropic


CONTENDERS: dict[str, Callable[[Any, Scenario, list[str]], Callable[[str], object]]] = {
    "llmkit": llmkit_contender,
    "sdk": sdk_contender,
}
LABELS = {"llmkit": "llmkit", "sdk": "raw SDK (round robin, own retries)"}


def run(
    scenario: Scenario, contenders: list[str], requests: int, threads: int, keys: int, latency: float
) -> list[Outcome]:
    """Measure each contender against a fresh spawned fake server."""
    from llmkit.testing import FakeLLMServer

    prompts = make_prompts(requests, scenario.prompt_chars)
    key_list = fake_keys(keys)
    outcomes = []
    for name in contenders:
        with FakeLLMServer.spawn(limits=scenario.limits, latency=latency) as server:
            call = CONTENDERS[name](server, scenario, key_list)
            call("warm up")  # imports and connections; then let every bucket fill again
            time.sleep(held_seconds(scenario.limits) + 0.2)
            server.reset()
            ok, failed, wall, note = drive(call, prompts, threads)
            stats = server.stats()
        capacity = ideal_seconds(scenario.limits, keys, stats) / wall if wall else 0.0
        rejected = stats["by_status"].get(429, 0)
        received = sum(stats["by_status"].values())
        outcomes.append(Outcome(LABELS[name], ok, failed, wall, rejected, capacity, note=note,
                                server_requests=received))
        print(f"  {scenario.name}: {LABELS[name]} done in {wall:.1f} s", file=sys.stderr, flush=True)
    return outcomes


def report(scenario: Scenario, outcomes: list[Outcome], requests: int, threads: int, keys: int) -> str:
    lim = scenario.limits
    limits = ", ".join(f"{k}={v:g}/min" for k, v in lim.per_minute().items() if v)
    sent = f"{plural(requests, 'request')}, {plural(threads, 'thread')}, {plural(keys, 'key')}"
    head = (
        f"scenario '{scenario.name}' ({scenario.provider}): {sent}; "
        f"per key: {limits}, burst {held_seconds(lim):g} s"
    )
    rows = [
        [
            o.contender,
            o.ok,
            o.failed,
            f"{o.wall:.2f}",
            f"{100 * o.capacity_used:.1f}%",
            o.server_429,
            f"{100 * o.server_429 / max(1, o.server_requests):.1f}%",
            o.note,
        ]
        for o in outcomes
    ]
    headers = ["contender", "ok", "failed", "wall s", "capacity", "429s", "429 % of sent", "errors"]
    return head + "\n" + table(headers, rows, right=(1, 2, 3, 4, 5, 6))


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure goodput at the rate limit against an embedded fake server",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scenario", choices=["requests", "tokens", "all"], default="requests",
        help="requests: OpenAI-style, 20 requests/s per key binds; tokens: Anthropic-style input and "
        "output tokens/min bind; all: both (default requests)",
    )  # fmt: skip
    p.add_argument("--contenders", default="llmkit,sdk", help="comma-separated: llmkit, sdk (default: both)")
    p.add_argument("--requests", type=int, default=400, help="requests per contender (default 400)")
    p.add_argument("--threads", type=int, default=16, help="sending threads (default 16)")
    p.add_argument("--keys", type=int, default=4, help="fake API keys (default 4)")
    p.add_argument("--latency", type=float, default=0.02, help="server reply latency, seconds")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from llmkit.cli._common import CLIError

    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = [c for c in contenders if c not in CONTENDERS]
    if unknown or not contenders:
        raise CLIError(f"--contenders takes llmkit and/or sdk, got {args.contenders!r}")
    if args.requests < 1 or args.threads < 1 or args.keys < 1:
        raise CLIError("--requests, --threads and --keys must be at least 1")
    table_of = scenarios()
    names = list(table_of) if args.scenario == "all" else [args.scenario]
    for name in names:
        scenario = table_of[name]
        outcomes = run(scenario, contenders, args.requests, args.threads, args.keys, args.latency)
        print(report(scenario, outcomes, args.requests, args.threads, args.keys) + "\n", flush=True)
    return 0
