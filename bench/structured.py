"""Structured outputs: ``complete(..., response_model=)`` against raw instructor, per call and on 16 threads.

Raw instructor is ``instructor.from_openai(OpenAI(...))`` /
``instructor.from_anthropic(Anthropic(...))`` and ``create(response_model=...)``;
llmkit is ``LLMClient.complete(prompt, response_model=...)`` (instructor over
the key's SDK client, inside llmkit's pool and retry loop). The FakeLLMServer
(in a child process) answers the forced tool call with arguments built from
the model's JSON schema, so every reply validates at once. Contenders are
interleaved call by call for the per-call time and rotated for throughput;
ratios are medians of per-round ratios.

    python bench/structured.py                   # defaults: 5 rounds
    python bench/structured.py --rounds 9 --calls 400

Targets (issue 16): per call <= 1.0x raw instructor's time; 16-thread
throughput >= 1.0x raw instructor's.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from typing import Any

from _common import Target, command, median_ratio, print_targets
from overhead import Call, sequential, threaded
from pydantic import BaseModel

from llmkit import LLMClient
from llmkit.config import load_settings
from llmkit.testing import FakeLLMServer

KEY = "sk-bench-structured-0000"
PROMPT = "Tell me about Paris."
MESSAGES = [{"role": "user", "content": PROMPT}]


class Landmark(BaseModel):
    name: str
    year: int


class City(BaseModel):
    name: str
    country: str
    population: int
    landmarks: list[Landmark]


def raw_openai(server: Any) -> Call:
    import instructor
    import openai

    sdk = openai.OpenAI(api_key=KEY, base_url=server.openai_base_url, max_retries=0)
    client = instructor.from_openai(sdk)
    return lambda: client.chat.completions.create(model="gpt-4o-mini", response_model=City, max_tokens=256,
                                                  messages=MESSAGES)  # type: ignore[arg-type]  # fmt: skip


def raw_anthropic(server: Any) -> Call:
    import anthropic
    import instructor

    sdk = anthropic.Anthropic(api_key=KEY, base_url=server.anthropic_base_url, max_retries=0)
    client = instructor.from_anthropic(sdk)
    return lambda: client.messages.create(model="claude-3-5-haiku-latest", response_model=City,
                                          max_tokens=256, messages=MESSAGES)  # type: ignore[arg-type]


def llmkit_client(provider: str, base_url: str) -> Call:
    client = LLMClient(provider, api_keys=[KEY], base_url=base_url, max_tokens=256,
                       settings=load_settings(environ={}))  # fmt: skip
    return lambda: client.complete(PROMPT, response_model=City)


RAW_OF = {"llmkit openai": "instructor openai", "llmkit anthropic": "instructor anthropic"}


def run(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {}
    with FakeLLMServer.spawn() as server:
        calls = {
            "instructor openai": raw_openai(server),
            "llmkit openai": llmkit_client("openai", server.openai_base_url),
            "instructor anthropic": raw_anthropic(server),
            "llmkit anthropic": llmkit_client("anthropic", server.anthropic_base_url),
        }
        for name, call in calls.items():  # warm up, and check that each really gets a City
            assert isinstance(call(), City), name
            threaded(call, args.threads * 4, args.threads)
        names = list(calls)
        rng = random.Random(args.seed)
        for round_no in range(args.rounds):
            per_call = sequential(calls, args.calls, rng)
            for name in names[round_no % len(names) :] + names[: round_no % len(names)]:
                entry = results.setdefault(name, {"per_call": [], "throughput": []})
                entry["per_call"].append(per_call[name])
                entry["throughput"].append(threaded(calls[name], args.threaded_calls, args.threads))
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    return results


def report(results: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> bool:
    print(f"$ {command()}")
    print(f"medians over {args.rounds} rounds ({args.calls} interleaved sequential calls and "
          f"{args.threaded_calls} calls on {args.threads} threads per contender per round)\n")  # fmt: skip
    print(f"{'contender':22} {'per call':>10} {f'{args.threads} threads':>12}   {'vs instructor: time':>20} "
          f"{'throughput':>11}")  # fmt: skip
    targets = []
    for name, entry in results.items():
        line = (f"{name:22} {statistics.median(entry['per_call']) * 1e6:7.0f} µs "
                f"{statistics.median(entry['throughput']):9.0f} /s")  # fmt: skip
        raw = RAW_OF.get(name)
        if raw is not None:
            time_ratio = median_ratio(entry["per_call"], results[raw]["per_call"])
            throughput_ratio = median_ratio(entry["throughput"], results[raw]["throughput"])
            line += f"   {time_ratio:19.3f}x {throughput_ratio:10.3f}x"
            short = name.removeprefix("llmkit ")
            targets.append(Target(f"{short} per call", time_ratio, 1.0))
            targets.append(Target(f"{short} throughput", throughput_ratio, 1.0, at_most=False))
        print(line)
    return print_targets(targets)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per contender per round")
    parser.add_argument("--threaded-calls", type=int, default=1200, help="calls per round on the threads")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1, help="seed of the per-call order")
    args = parser.parse_args()
    return 0 if report(run(args), args) else 1


if __name__ == "__main__":
    sys.exit(main())
