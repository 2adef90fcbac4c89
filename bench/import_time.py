"""Cold start: ``import llmkit``, and the first response of a new process, against the raw SDKs.

Each run is a fresh interpreter. ``import X`` times the import alone; ``first
response`` times, from before ``import llmkit`` (or the SDK's import), the
construction of a client to a FakeLLMServer that this script started
beforehand (in its own process) and one ``complete()`` (``create()`` for the
SDKs), to its reply. The child also says which of the SDKs, instructor and
pydantic it had loaded by then: the lean path needs no SDK. Runs are
interleaved (every contender once per run, in a rotating order); medians.

The children get a clean environment (no provider keys or llmkit settings from
this shell) and write their bytecode cache under a temporary directory
(``PYTHONPYCACHEPREFIX``), as an installed package has its ``.pyc`` files
(the first run, which compiles, is not counted).

    python bench/import_time.py            # 15 runs
    python bench/import_time.py --runs 30

Targets (issue 16): ``import llmkit`` under 150 ms (issue 2); a plain completion's
first response within 0.2 s of ``import llmkit``, with no SDK imported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from _common import Target, command, print_targets

KEY = "sk-bench-import-0000"
WATCHED = ("openai", "anthropic", "instructor", "pydantic", "httpx2", "httpx")

IMPORT_ONLY = """
import time
started = time.perf_counter()
import {module}
print(time.perf_counter() - started)
"""

REPORT = """
elapsed = time.perf_counter() - started
import json, sys
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({watched!r}))
print(json.dumps({{"seconds": elapsed, "loaded": loaded}}))
"""

FIRST_RESPONSE = {
    "llmkit": """
import time
started = time.perf_counter()
import llmkit
client = llmkit.LLMClient("openai", api_keys=[{key!r}], base_url={openai!r}, max_tokens=16)
assert client.complete("Say hi.").content
""",
    "openai sdk": """
import time
started = time.perf_counter()
import openai
client = openai.OpenAI(api_key={key!r}, base_url={openai!r}, max_retries=0)
assert client.chat.completions.create(model="gpt-4o-mini", max_tokens=16,
                                      messages=[{{"role": "user", "content": "Say hi."}}])
""",
    "anthropic sdk": """
import time
started = time.perf_counter()
import anthropic
client = anthropic.Anthropic(api_key={key!r}, base_url={anthropic!r}, max_retries=0)
assert client.messages.create(model="claude-3-5-haiku-latest", max_tokens=16,
                              messages=[{{"role": "user", "content": "Say hi."}}])
""",
}


def clean_env(cache: str) -> dict[str, str]:
    ours = ("LLM_", "LLMKIT_")
    env = {name: value for name, value in os.environ.items()
           if not name.endswith(("_API_KEY", "_API_KEYS")) and not name.startswith(ours)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = cache
    return env


def run_child(code: str, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    from llmkit.testing import FakeLLMServer

    with tempfile.TemporaryDirectory() as cache, FakeLLMServer.spawn() as server:
        env = clean_env(cache)
        urls = {"key": KEY, "openai": server.openai_base_url, "anthropic": server.anthropic_base_url}
        programs = {f"import {m}": IMPORT_ONLY.format(module=m) for m in ("llmkit", "openai", "anthropic")}
        for name, code in FIRST_RESPONSE.items():
            programs[f"{name} first response"] = code.format(**urls) + REPORT.format(watched=WATCHED)
        for code in programs.values():  # compile every module once (as an install does)
            run_child(code, env)
        seconds: dict[str, list[float]] = {name: [] for name in programs}
        loaded: dict[str, list[str]] = {}
        names = list(programs)
        for run_no in range(args.runs):
            for name in names[run_no % len(names) :] + names[: run_no % len(names)]:
                line = run_child(programs[name], env)
                if line.startswith("{"):
                    result = json.loads(line)
                    seconds[name].append(result["seconds"])
                    loaded[name] = result["loaded"]
                else:
                    seconds[name].append(float(line))
    print(f"$ {command()}")
    print(f"medians over {args.runs} fresh interpreters each, interleaved\n")
    for name, values in seconds.items():
        modules = f"   loaded: {', '.join(loaded[name]) or 'none of them'}" if name in loaded else ""
        print(f"{name:28} {statistics.median(values) * 1000:8.1f} ms{modules}")
    print(f"(loaded: which of {', '.join(WATCHED)} the process had imported by its first response)")
    sdk_loaded = [m for m in loaded["llmkit first response"] if m in ("openai", "anthropic", "instructor")]
    targets = [
        Target("import llmkit", statistics.median(seconds["import llmkit"]) * 1000, 150, unit=" ms"),
        Target("llmkit first response after import",
               statistics.median(seconds["llmkit first response"]), 0.2, unit=" s"),
        Target("SDK modules imported on the lean path", len(sdk_loaded), 0, unit=""),
    ]
    return 0 if print_targets(targets) else 1


if __name__ == "__main__":
    sys.exit(main())
