"""Goodput at a provider's rate limit, however the provider enforces it: llmkit against the raw SDK.

FakeLLMServer (a child process) enforces per-key limits in one of its
enforcement styles and answers 429 past them, as the real APIs do. 16 threads
send 400+ requests over 4 keys. llmkit is given only the per-minute numbers a
dashboard shows (``llmkit``), or nothing at all (``llmkit-learned``: it learns
from the headers); ``llmkit-batch`` sends them all with ``client.batch`` on the
pool's default threads (64 a key: as many threads as a batch really runs, which
is where a request granted near a window's end is written late); the raw SDK
goes round robin over the keys with its own 5 retries; LiteLLM's Router is
measured where it is installed (never a dependency). For each we report
successes, lost requests, the capacity used and the 429s the server sent::

    capacity used = (what was admitted / the enforced per-minute rate) / wall time

    python bench/goodput.py --matrix                  # styles (a)-(g) x contenders, 3 runs, medians
    python bench/goodput.py --style leaky             # one style, both scenarios' default contenders
    python bench/goodput.py --matrix --runs 1 --requests 200
    python bench/goodput.py --rows c,g                # some rows of the matrix
    python bench/goodput.py --matrix --contenders llmkit,llmkit-learned,llmkit-batch --threads 64

The styles (the issue's letters): (a) minute_bucket, (b) second_bucket,
(c) per_second, (d) leaky (nginx limit_req burst=1), (e) fixed_minute,
(f) sliding_minute, all at 1,200 requests a minute per key; (g) per_second on
Anthropic-style input and output token limits, prompts of 40 to 2,400 characters.

Targets (issue 12): with dashboard numbers every request succeeds, >= 95% of
the capacity is used, <= 1% of requests draw a 429 (the batch too); with no
limits given, 0 lost, >= 90% capacity, <= 2% 429s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass

from llmkit.cli._common import table
from llmkit.cli.bench import CONTENDERS, LABELS, Outcome, Scenario, make_prompts, measure, scenarios

ROWS = [  # (label, scenario, style)
    ("(a) bucket holding a minute", "requests", "minute_bucket"),
    ("(b) bucket holding 1 s", "requests", "second_bucket"),
    ("(c) per-second windows", "requests", "per_second"),
    ("(d) leaky, burst 1 (nginx)", "requests", "leaky"),
    ("(e) fixed minute windows", "requests", "fixed_minute"),
    ("(f) sliding 60 s log", "requests", "sliding_minute"),
    ("(g) tokens per second", "tokens", "per_second"),
]
TARGETS = {"llmkit": (0.95, 0.01), "llmkit-learned": (0.90, 0.02), "llmkit-batch": (0.95, 0.01)}


@dataclass
class Cell:
    """The medians of several runs of one contender on one row."""

    ok: float
    lost: float
    capacity: float
    rate_limited: float
    share_429: float

    @classmethod
    def of(cls, outcomes: list[Outcome], requests: int) -> Cell:
        def med(values: list[float]) -> float:
            return float(statistics.median(values))

        return cls(
            med([o.ok for o in outcomes]), med([o.failed for o in outcomes]),
            med([o.capacity_used for o in outcomes]), med([o.server_429 for o in outcomes]),
            med([o.server_429 / requests for o in outcomes]),
        )  # fmt: skip

    def meets(self, contender: str) -> bool | None:
        target = TARGETS.get(contender)
        if target is None:
            return None
        capacity, share = target
        return self.lost == 0 and self.capacity >= capacity and self.share_429 <= share


def run_row(scenario: Scenario, contenders: list[str], args: argparse.Namespace) -> dict[str, Cell | None]:
    prompts = make_prompts(args.requests, scenario.prompt_chars)
    runs: dict[str, list[Outcome]] = {name: [] for name in contenders}
    for round_ in range(args.runs):  # contenders interleaved round by round
        for name in contenders:
            outcome = measure(scenario, name, prompts, args.threads, args.keys, args.latency)
            if outcome is not None:
                runs[name].append(outcome)
                print(f"  {scenario.limits.style} {scenario.name} round {round_ + 1}: {LABELS[name]}: "
                      f"{outcome.ok} ok, {100 * outcome.capacity_used:.1f}%, {outcome.server_429} 429s",
                      file=sys.stderr, flush=True)  # fmt: skip
    return {name: Cell.of(found, args.requests) if found else None for name, found in runs.items()}


def matrix_table(results: list[tuple[str, dict[str, Cell | None]]], contenders: list[str]) -> str:
    headers = ["enforced as", *[LABELS[name] for name in contenders]]
    rows = []
    for label, cells in results:
        row = [label]
        for name in contenders:
            cell = cells.get(name)
            if cell is None:
                row.append("not installed")
                continue
            verdict = {True: " ok", False: " MISSED", None: ""}[cell.meets(name)]
            row.append(f"{cell.ok:.0f} ok, {cell.lost:.0f} lost, {100 * cell.capacity:.0f}%, "
                       f"{cell.rate_limited:.0f} 429s{verdict}")  # fmt: skip
        rows.append(row)
    return table(headers, rows)


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--matrix", action="store_true", help="every style (a)-(g), every contender")
    parser.add_argument("--style", default=None, help="one style of the matrix (default: all with --matrix)")
    parser.add_argument("--rows", default=None, help="some rows of the matrix by letter, e.g. 'c,g'")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated contenders")
    parser.add_argument("--runs", type=int, default=3, help="runs per cell; the table shows medians")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--keys", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.05, help="server reply latency, seconds")
    args = parser.parse_args()
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    rows = [r for r in ROWS if args.style is None or r[2] == args.style]
    if args.rows:
        letters = {f"({letter.strip()})" for letter in args.rows.split(",")}
        rows = [r for r in ROWS if r[0].split()[0] in letters]
    elif not args.matrix and args.style is None:
        rows = [r for r in ROWS if r[2] == "per_second"]
    table_of = scenarios()
    results = []
    for label, scenario_name, style in rows:
        results.append((label, run_row(table_of[scenario_name].styled(style), contenders, args)))
    print(f"\n{args.requests} requests, {args.threads} threads, {args.keys} keys, latency "
          f"{args.latency:g} s; medians of {args.runs} runs: ok, lost, capacity used, 429s")  # fmt: skip
    print(matrix_table(results, contenders))
    verdicts = [c.meets(name) for _, cells in results for name, c in cells.items() if c is not None]
    return 0 if all(v is not False for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
