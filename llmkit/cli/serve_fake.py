"""``llmkit serve-fake``: run FakeLLMServer in the foreground until Ctrl-C or SIGTERM.

Point an SDK or an LLMClient at the URLs it prints: no real API is called.
The flags are those of ``python -m llmkit.testing.fake_server``; limits are
per key and per minute, enforced the way providers do: ``--style per_second``
(the default: max(1, L/60) per whole second), ``minute_bucket``,
``second_bucket``, ``leaky`` (nginx limit_req, ``--leaky-burst``),
``fixed_minute`` or ``sliding_minute``; ``--burst-seconds S`` instead holds
S seconds of the rate in a continuous bucket. For example::

    llmkit serve-fake --port 8080 --rpm 600 --style leaky --latency 0.05 \\
        --fault-rate 500=0.05 --fault-rate drop=0.01 --out-of-credit-key sk-test-broke
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

__all__ = ["add_parser", "main"]

PROG = "llmkit serve-fake"


def add_parser(sub: Any) -> None:
    # The flags belong to llmkit.testing's command line and are parsed in main():
    # importing it here would slow every other command down.
    p = sub.add_parser(
        "serve-fake", help="run a fake OpenAI/Anthropic server (for tests and demos)", add_help=False
    )
    p.set_defaults(handler=main, passthrough=True)


def full_parser() -> argparse.ArgumentParser:
    from llmkit.cli._common import plain
    from llmkit.testing._fake.cli import _parser

    return argparse.ArgumentParser(
        prog=PROG, description=plain(__doc__), parents=[_parser()], conflict_handler="resolve",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip


def main(args: argparse.Namespace) -> int:
    from llmkit.cli._common import EXIT_CODES_HELP, CLIError
    from llmkit.testing._fake.cli import build_kwargs
    from llmkit.testing.fake_server import FakeLLMServer

    parser = full_parser()
    parser.epilog = EXIT_CODES_HELP
    options = parser.parse_args(args.extra)
    try:
        kwargs = build_kwargs(options)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"bad serve-fake option: {exc}") from None
    stop = threading.Event()
    for name in ("SIGTERM", "SIGINT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda *_: stop.set())
    with FakeLLMServer(**kwargs) as server:
        print(f"READY {server.url}", flush=True)
        print(f"  OpenAI base URL:    {server.openai_base_url}", flush=True)
        print(f"  Anthropic base URL: {server.anthropic_base_url}", flush=True)
        print(f"  stats:              {server.url}/_fake/stats", flush=True)
        print(
            "  try: llmkit complete --provider openai --base-url "
            f"{server.openai_base_url} 'Hello'   (with OPENAI_API_KEY=sk-anything)",
            flush=True,
        )
        print("Ctrl-C or SIGTERM stops it.", flush=True)
        while not stop.wait(0.5):
            pass
    print("stopped", flush=True)
    return 0
