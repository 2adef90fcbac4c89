"""Goodput at a provider's rate limit: llmkit's pool against the raw SDK (and LiteLLM).

FakeLLMServer (a child process) enforces per-key limits with token buckets and
answers 429 past them, as the real APIs do. 16 threads send 400+ requests
spread over 4 keys. For each contender we report successes, failures, the
429s the server sent, the wall time, and the capacity used:

    capacity used = ideal time / wall time
    ideal time    = max over the limited resources of (demand - burst) / rate

where demand is what the server admitted (requests, input tokens, output
tokens), burst is what the 4 full buckets hold at the start, and rate is the
4 keys' combined refill. 100% means the limits were the only thing that
slowed the run down.

    python bench/goodput.py                       # both scenarios, all contenders
    python bench/goodput.py --scenario requests --requests 800

Targets (issue 3): every request succeeds; at least 95% of the capacity
used; 429s at most 1% of requests.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from llmkit import LLMClient, RateLimit
from llmkit.cli.bench import Outcome, drive, ideal_seconds  # the same measurement as `llmkit bench`
from llmkit.testing import FakeLLMServer, ServerLimits

KEYS = [f"sk-bench-key-{i}-0000000000" for i in range(4)]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest"}


@dataclass
class Scenario:
    name: str
    provider: str
    limits: ServerLimits
    prompt_chars: tuple[int, int]
    max_tokens: int

    def rate_limit(self) -> RateLimit:
        lim = self.limits
        return RateLimit(
            requests_per_minute=lim.requests_per_minute,
            input_tokens_per_minute=lim.input_tokens_per_minute,
            output_tokens_per_minute=lim.output_tokens_per_minute,
            burst_seconds=lim.burst_seconds,
        )


SCENARIOS = {
    # 20 requests/s per key, smoothed per second: 80 requests/s in all.
    "requests": Scenario(
        "requests", "openai", ServerLimits(requests_per_minute=1200, burst_seconds=1), (20, 200), 16
    ),
    # Anthropic-style input and output token limits bind: 1,500 input and 400
    # output tokens/s per key, prompts of varied sizes.
    "tokens": Scenario(
        "tokens",
        "anthropic",
        ServerLimits(
            requests_per_minute=6000,
            input_tokens_per_minute=90_000,
            output_tokens_per_minute=24_000,
            burst_seconds=1,
        ),
        (40, 2400),
        24,
    ),
}


def make_prompts(scenario: Scenario, count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    words = "rate limits keep every key just under the provider's ceiling while the pool waits".split()  # noqa: SIM905
    prompts = []
    for i in range(count):
        size = rng.randint(*scenario.prompt_chars)
        text = f"request {i}: "
        while len(text) < size:
            text += rng.choice(words) + " "
        prompts.append(text[:size])
    return prompts


def ideal_time(scenario: Scenario, stats: dict) -> float:
    return ideal_seconds(scenario.limits, len(KEYS), stats)


def base_url(server, scenario: Scenario) -> str:
    return server.openai_base_url if scenario.provider == "openai" else server.anthropic_base_url


def llmkit_contender(server, scenario: Scenario) -> Callable[[str], object]:
    client = LLMClient(
        scenario.provider,
        api_keys=KEYS,
        base_url=base_url(server, scenario),
        model=MODELS[scenario.provider],
        rate_limit=scenario.rate_limit(),
        max_tokens=scenario.max_tokens,
        acquire_timeout=120,
    )
    return lambda prompt: client.complete(prompt)


def raw_sdk_contender(server, scenario: Scenario) -> Callable[[str], object]:
    """The SDK as most code uses it: keys round robin, the SDK's own retries (2, with backoff)."""
    import anthropic
    import openai

    if scenario.provider == "openai":
        clients = [openai.OpenAI(api_key=k, base_url=server.openai_base_url) for k in KEYS]
    else:
        clients = [anthropic.Anthropic(api_key=k, base_url=server.anthropic_base_url) for k in KEYS]
    counter = iter(range(10**9))
    lock = threading.Lock()
    model = MODELS[scenario.provider]

    def call(prompt: str) -> object:
        with lock:
            client = clients[next(counter) % len(clients)]
        messages = [{"role": "user", "content": prompt}]
        if scenario.provider == "openai":
            return client.chat.completions.create(
                model=model, messages=messages, max_tokens=scenario.max_tokens
            )
        return client.messages.create(model=model, messages=messages, max_tokens=scenario.max_tokens)

    return call


def litellm_contender(server, scenario: Scenario) -> Callable[[str], object] | None:
    # LiteLLM fetches its price map from GitHub at import unless told to use its local copy:
    # a benchmark sends nothing beyond this machine.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        from litellm import Router  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    model = f"{scenario.provider}/{MODELS[scenario.provider]}"
    deployments = [
        {
            "model_name": "bench",
            "litellm_params": {"model": model, "api_key": key, "api_base": base_url(server, scenario)},
        }
        for key in KEYS
    ]
    router = Router(model_list=deployments)
    return lambda prompt: router.completion(
        model="bench", messages=[{"role": "user", "content": prompt}], max_tokens=scenario.max_tokens
    )


CONTENDERS = {
    "llmkit": llmkit_contender,
    "openai sdk (round robin, own retries)": raw_sdk_contender,
    "litellm Router": litellm_contender,
}


def run_scenario(scenario: Scenario, requests: int, threads: int, latency: float) -> list[Outcome]:
    prompts = make_prompts(scenario, requests)
    outcomes = []
    for name, factory in CONTENDERS.items():
        with FakeLLMServer.spawn(limits=scenario.limits, latency=latency) as server:
            call = factory(server, scenario)
            if call is None:
                outcomes.append(Outcome(name, note="not installed"))
                continue
            call("warm up")  # imports, connections; then let every bucket fill again
            time.sleep(scenario.limits.burst_seconds + 0.2)
            server.reset()
            ok, failed, wall, note = drive(call, prompts, threads)
            stats = server.stats()
            rejected = stats["by_status"].get(429, 0)
            capacity = ideal_time(scenario, stats) / wall
            outcomes.append(Outcome(name, ok, failed, wall, rejected, capacity, note))
        print(f"  {scenario.name}: {name} done in {wall:.1f} s", file=sys.stderr)
    return outcomes


def report(scenario: Scenario, outcomes: list[Outcome], requests: int) -> bool:
    print(
        f"\nscenario '{scenario.name}' ({scenario.provider}): {requests} requests, 16 threads, 4 keys, "
        "limits per key: "
        f"{scenario.limits}"
    )
    print(f"{'contender':40} {'ok':>5} {'lost':>5} {'wall s':>7} {'capacity':>9} {'429s':>6} {'429 %':>6}")
    passed = True
    for o in outcomes:
        if o.note == "not installed":
            print(f"{o.contender:40} (not installed)")
            continue
        share = 100.0 * o.server_429 / requests
        print(
            f"{o.contender:40} {o.ok:5d} {o.failed:5d} {o.wall:7.2f} {100 * o.capacity_used:8.1f}% "
            f"{o.server_429:6d} {share:5.1f}%  {o.note}"
        )
        if o.contender == "llmkit":
            passed = o.failed == 0 and o.capacity_used >= 0.95 and share <= 1.0
    print(f"llmkit targets (all succeed, >= 95% capacity, <= 1% 429s): {'met' if passed else 'MISSED'}")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.02, help="server reply latency, seconds")
    args = parser.parse_args()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    ok = True
    for name in names:
        scenario = SCENARIOS[name]
        outcomes = run_scenario(scenario, args.requests, args.threads, args.latency)
        ok = report(scenario, outcomes, args.requests) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
