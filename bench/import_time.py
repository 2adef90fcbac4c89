"""How long ``import llmkit`` takes in a fresh interpreter (median of repeated runs).

    python bench/import_time.py            # 15 runs
    python bench/import_time.py --runs 30

Target (issue 2): under 150 ms. For scale, the same measurement of the SDKs'
own imports is printed beside it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys


def import_ms(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print((time.perf_counter() - t) * 1000)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    results = {}
    for module in ("llmkit", "openai", "anthropic"):
        results[module] = statistics.median(import_ms(module) for _ in range(args.runs))
        print(f"import {module:10} median {results[module]:8.1f} ms over {args.runs} runs")
    ok = results["llmkit"] < 150
    print(f"target: import llmkit under 150 ms: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
