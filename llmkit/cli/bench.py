"""``llmkit bench``: goodput at a provider's rate limit, against an embedded fake server.

The measurement of ``bench/goodput.py``, packaged so that an installed llmkit
can run it: FakeLLMServer (in a child process, so it does not share this
process's GIL) enforces per-key limits in one of its enforcement styles and
answers 429 past them, as the providers do; threads send the prompts through
each contender; the table shows successes, failures, the 429s the server sent,
the wall time and the capacity used::

    capacity used = ideal time / wall time
    ideal time    = max over the limited resources of demand / rate

where demand is what the server admitted (requests, input tokens, output
tokens) and rate is the keys' combined per-minute limit, per second. llmkit
is given only the per-minute numbers a dashboard shows (or nothing at all, for
``llmkit-learned``); how the server enforces them is its own business.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from llmkit.cli._common import fake_keys, plain, plural, table

if TYPE_CHECKING:
    from llmkit.config import RateLimit
    from llmkit.testing import ServerLimits

__all__ = ["CONTENDERS", "Outcome", "Scenario", "add_parser", "drive", "ideal_seconds", "make_prompts",
           "measure", "run"]  # fmt: skip

_WORDS = "rate limits keep every key just under the provider's ceiling while the pool waits"
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest"}


@dataclass(frozen=True)
class Scenario:
    """What to send, to which provider, under which per-key limits (and enforced how)."""

    name: str
    provider: str
    limits: ServerLimits
    prompt_chars: tuple[int, int]
    max_tokens: int

    def styled(self, style: str) -> Scenario:
        """The same scenario with the server enforcing its limits in ``style``."""
        return replace(self, limits=replace(self.limits, style=style, burst_seconds=None))


def rate_limit_for(limits: ServerLimits) -> RateLimit:
    """What a user types from the dashboard: the per-minute numbers, nothing else."""
    from llmkit.config import RateLimit

    def whole(value: float | None) -> int | None:
        return None if value is None else max(1, int(value))

    return RateLimit(
        requests_per_minute=whole(limits.requests_per_minute),
        input_tokens_per_minute=whole(limits.input_tokens_per_minute),
        output_tokens_per_minute=whole(limits.output_tokens_per_minute),
        tokens_per_minute=whole(limits.tokens_per_minute),
    )


def scenarios() -> dict[str, Scenario]:
    from llmkit.testing import ServerLimits

    return {
        # 20 requests/s per key (1,200 a minute), OpenAI's API.
        "requests": Scenario("requests", "openai", ServerLimits(requests_per_minute=1200), (20, 200), 16),
        # Anthropic-style input and output token limits bind (prompts of 40 to 2,400 characters).
        "tokens": Scenario(
            "tokens",
            "anthropic",
            ServerLimits(requests_per_minute=6000, input_tokens_per_minute=90_000,
                         output_tokens_per_minute=24_000),
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
    """The shortest time the server's per-minute limits allow for what it admitted."""
    admitted_in, admitted_out = stats.get("input_tokens", 0), stats.get("output_tokens", 0)
    demands = [
        (limits.requests_per_minute, stats["by_status"].get(200, 0)),
        (limits.input_tokens_per_minute, admitted_in),
        (limits.output_tokens_per_minute, admitted_out),
        (limits.tokens_per_minute, admitted_in + admitted_out),
    ]
    return max([demand / (keys * per_minute / 60.0) for per_minute, demand in demands if per_minute] or [0.0])


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


def _run_all(call: Callable[[str], object], prompts: list[str], threads: int) -> tuple[int, int, float, str]:
    """``drive``, or the contender's own way of sending every prompt (``call.run_all``)."""
    run_all = getattr(call, "run_all", None)
    if run_all is None:
        return drive(call, prompts, threads)
    started = time.perf_counter()
    result = run_all(prompts)
    wall = time.perf_counter() - started
    kinds: dict[str, int] = {}
    for error in result.errors:
        kinds[error.type] = kinds.get(error.type, 0) + 1
    return result.succeeded, result.failed, wall, ", ".join(f"{n} x {name}" for name, n in kinds.items())


def _base_url(server: Any, provider: str) -> str:
    return str(server.openai_base_url if provider == "openai" else server.anthropic_base_url)


def _llmkit(server: Any, scenario: Scenario, keys: list[str], rate_limit: RateLimit | None) -> Any:
    from llmkit.client import LLMClient
    from llmkit.config import Settings

    return LLMClient(
        scenario.provider, api_keys=keys, base_url=_base_url(server, scenario.provider),
        model=MODELS[scenario.provider], rate_limit=rate_limit, max_tokens=scenario.max_tokens,
        acquire_timeout=120, settings=Settings(), metrics=False,
    )  # fmt: skip


def llmkit_contender(server: Any, scenario: Scenario, keys: list[str]) -> Callable[[str], object]:
    """llmkit given the dashboard's per-minute numbers."""
    client = _llmkit(server, scenario, keys, rate_limit_for(scenario.limits))
    return lambda prompt: client.complete(prompt)


def learned_contender(server: Any, scenario: Scenario, keys: list[str]) -> Callable[[str], object]:
    """llmkit given no limits at all: it learns them from the headers and 429s."""
    client = _llmkit(server, scenario, keys, None)
    return lambda prompt: client.complete(prompt)


def batch_contender(server: Any, scenario: Scenario, keys: list[str]) -> Callable[[str], object]:
    """llmkit's ``client.batch`` of every prompt (dashboard numbers), on the pool's own threads:
    as wide as the default pool runs (64 a key), not the threads the others are given."""
    client = _llmkit(server, scenario, keys, rate_limit_for(scenario.limits))

    def call(prompt: str) -> object:
        return client.complete(prompt)

    call.run_all = lambda prompts: client.batch(prompts, progress=False)  # type: ignore[attr-defined]
    return call


def sdk_contender(server: Any, scenario: Scenario, keys: list[str]) -> Callable[[str], object]:
    """The SDK as most code uses it: keys round robin, the SDK's own retries (5, with backoff)."""
    import itertools

    import anthropic
    import openai

    url = _base_url(server, scenario.provider)
    model, max_tokens = MODELS[scenario.provider], scenario.max_tokens
    lock = threading.Lock()
    sdk: Any = openai.OpenAI if scenario.provider == "openai" else anthropic.Anthropic
    clients = itertools.cycle([sdk(api_key=k, base_url=url, max_retries=5) for k in keys])

    def call(prompt: str) -> object:
        with lock:
            client = next(clients)
        messages: Any = [{"role": "user", "content": prompt}]
        if scenario.provider == "openai":
            return client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)
        return client.messages.create(model=model, messages=messages, max_tokens=max_tokens)

    return call


def litellm_contender(server: Any, scenario: Scenario, keys: list[str]) -> Callable[[str], object] | None:
    """LiteLLM's Router over the same keys, with the dashboard's numbers, where it is installed."""
    import os

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # nothing leaves this machine
    try:
        from litellm import Router  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    model = f"{scenario.provider}/{MODELS[scenario.provider]}"
    rpm = scenario.limits.requests_per_minute
    deployments = [
        {"model_name": "bench", "litellm_params": {"model": model, "api_key": key, "rpm": rpm,
                                                    "api_base": _base_url(server, scenario.provider)}}
        for key in keys
    ]  # fmt: skip
    router = Router(model_list=deployments, num_retries=5)
    return lambda prompt: router.completion(
        model="bench", messages=[{"role": "user", "content": prompt}], max_tokens=scenario.max_tokens
    )


CONTENDERS: dict[str, Callable[[Any, Scenario, list[str]], Callable[[str], object] | None]] = {
    "llmkit": llmkit_contender,
    "llmkit-learned": learned_contender,
    "llmkit-batch": batch_contender,
    "sdk": sdk_contender,
    "litellm": litellm_contender,
}
LABELS = {
    "llmkit": "llmkit (dashboard numbers)",
    "llmkit-learned": "llmkit (no limits given)",
    "llmkit-batch": "llmkit client.batch (default pool)",
    "sdk": "raw SDK (round robin, 5 retries)",
    "litellm": "LiteLLM Router",
}


def measure(scenario: Scenario, name: str, prompts: list[str], threads: int, keys: int,
            latency: float) -> Outcome | None:  # fmt: skip
    """One contender against a fresh spawned fake server (None: not installed)."""
    from llmkit.testing import FakeLLMServer

    key_list = fake_keys(keys)
    with FakeLLMServer.spawn(limits=scenario.limits, latency=latency) as server:
        call = CONTENDERS[name](server, scenario, key_list)
        if call is None:
            return None
        call("warm up")  # imports and connections; then let every limit fill again
        time.sleep(1.2)
        server.reset()
        ok, failed, wall, note = _run_all(call, prompts, threads)
        stats = server.stats()
    capacity = ideal_seconds(scenario.limits, keys, stats) / wall if wall else 0.0
    received = sum(stats["by_status"].values())
    return Outcome(LABELS[name], ok, failed, wall, stats["by_status"].get(429, 0), capacity,
                   server_requests=received, note=note)  # fmt: skip


def run(scenario: Scenario, contenders: list[str], requests: int, threads: int, keys: int,
        latency: float) -> list[Outcome]:  # fmt: skip
    """Measure each contender against a fresh spawned fake server."""
    prompts = make_prompts(requests, scenario.prompt_chars)
    outcomes = []
    for name in contenders:
        outcome = measure(scenario, name, prompts, threads, keys, latency)
        outcomes.append(outcome or Outcome(LABELS[name], note="not installed"))
        wall = outcome.wall if outcome else 0.0
        print(f"  {scenario.name}: {LABELS[name]} done in {wall:.1f} s", file=sys.stderr, flush=True)
    return outcomes


def report(scenario: Scenario, outcomes: list[Outcome], requests: int, threads: int, keys: int) -> str:
    lim = scenario.limits
    limits = ", ".join(f"{k}={v:g}/min" for k, v in lim.per_minute().items() if v)
    sent = f"{plural(requests, 'request')}, {plural(threads, 'thread')}, {plural(keys, 'key')}"
    head = (
        f"scenario '{scenario.name}' ({scenario.provider}): {sent}; "
        f"per key: {limits}, enforced {lim.style}"
    )
    rows = [
        [o.contender, o.ok, o.failed, f"{o.wall:.2f}", f"{100 * o.capacity_used:.1f}%", o.server_429,
         f"{100 * o.server_429 / max(1, o.server_requests):.1f}%", o.note]
        for o in outcomes
    ]  # fmt: skip
    headers = ["contender", "ok", "failed", "wall s", "capacity", "429s", "429 % of sent", "errors"]
    return head + "\n" + table(headers, rows, right=(1, 2, 3, 4, 5, 6))


def add_parser(sub: Any) -> None:
    from llmkit.testing import ENFORCEMENT_STYLES

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
    p.add_argument("--style", choices=ENFORCEMENT_STYLES, default=ENFORCEMENT_STYLES[0],
                   help="how the fake server enforces the limits (default: %(default)s, the strictest)")
    p.add_argument("--contenders", default="llmkit,sdk",
                   help=f"comma-separated: {', '.join(CONTENDERS)} (default: llmkit,sdk)")
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
        raise CLIError(f"--contenders takes {', '.join(CONTENDERS)}, got {args.contenders!r}")
    if args.requests < 1 or args.threads < 1 or args.keys < 1:
        raise CLIError("--requests, --threads and --keys must be at least 1")
    table_of = scenarios()
    names = list(table_of) if args.scenario == "all" else [args.scenario]
    for name in names:
        scenario = table_of[name].styled(args.style)
        outcomes = run(scenario, contenders, args.requests, args.threads, args.keys, args.latency)
        print(report(scenario, outcomes, args.requests, args.threads, args.keys) + "\n", flush=True)
    return 0
