"""``python -m llmkit.testing.fake_server``: serve until SIGTERM/SIGINT.

Prints one line, ``READY http://HOST:PORT``, once it listens. Flags cover the
common settings; ``--config JSON`` takes any ``FakeLLMServer`` keyword argument
(``limits`` and ``key_limits`` as dicts of ``ServerLimits`` fields), and flags
given on top override it. ``--style`` chooses how the per-minute limits are
enforced (default ``per_second``: ``max(1, L/60)`` per whole second; also
``minute_bucket``, ``second_bucket``, ``leaky`` (nginx ``limit_req`` with
``--leaky-burst``), ``fixed_minute``, ``sliding_minute``); ``--burst-seconds S``
instead makes every limit a continuous bucket holding ``S`` seconds of its rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from .buckets import ServerLimits
from .enforcement import STYLES
from .spawn import kwargs_from_config

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llmkit.testing.fake_server",
                                     description="A fake OpenAI/Anthropic API server.")
    add = parser.add_argument
    add("--host", default=None, help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, default=None, help="port (default 0: a free one)")
    add("--rpm", type=float, help="requests per minute per key")
    add("--itpm", type=float, help="input tokens per minute per key")
    add("--otpm", type=float, help="output tokens per minute per key")
    add("--tpm", type=float, help="combined tokens per minute per key (OpenAI style)")
    add("--style", choices=STYLES, default=None,
        help="how the limits are enforced (default per_second; see the module doc)")
    add("--burst-seconds", type=float, default=None,
        help="instead of --style: a continuous bucket holding this many seconds of the rate")
    add("--leaky-burst", type=float, default=None, help="nginx burst of --style leaky (default 1)")
    add("--latency", type=float, help="seconds before every reply")
    add("--stream-interval", type=float, help="seconds between streamed deltas")
    add("--valid-key", action="append", dest="valid_keys", help="accepted key (repeatable)")
    add("--forbidden-key", action="append", dest="forbidden_keys", help="key answered 403")
    add("--out-of-credit-key", action="append", dest="out_of_credit_keys",
        help="key whose account is out of credit (the provider's billing error; repeatable)")
    add("--fault-rate", action="append", default=[], metavar="KIND=P",
        help="random fault, e.g. 500=0.05 or drop=0.01 (repeatable)")
    add("--seed", type=int, help="seed of the random faults")
    add("--slow-seconds", type=float, help="delay of a 'slow' random fault")
    add("--config", default="{}", help="JSON object of FakeLLMServer keyword arguments")
    return parser


def _enforcement(args: argparse.Namespace) -> dict[str, Any]:
    """The ServerLimits fields the enforcement flags set."""
    fields: dict[str, Any] = {}
    if args.style is not None or args.burst_seconds is not None:
        fields.update(style=args.style, burst_seconds=args.burst_seconds)
    if args.leaky_burst is not None:
        fields["leaky_burst"] = args.leaky_burst
    return fields


def build_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs = kwargs_from_config(json.loads(args.config))
    limits = (args.rpm, args.itpm, args.otpm, args.tpm)
    enforcement = _enforcement(args)
    if any(v is not None for v in limits):
        kwargs["limits"] = ServerLimits(*limits, **enforcement)
    elif enforcement and kwargs.get("limits") is not None:  # restyle the --config limits
        kwargs["limits"] = dataclasses.replace(kwargs["limits"], **enforcement)
    for name in ("host", "port", "latency", "stream_interval", "valid_keys", "forbidden_keys",
                 "out_of_credit_keys", "seed", "slow_seconds"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    if args.fault_rate:
        rates = dict(item.split("=", 1) for item in args.fault_rate)
        kwargs["fault_rates"] = {int(k) if k.isdigit() else k: float(v) for k, v in rates.items()}
    return kwargs


def main(argv: Sequence[str] | None = None) -> int:
    from .server import FakeLLMServer

    args = _parser().parse_args(argv)
    stop = threading.Event()
    for name in ("SIGTERM", "SIGINT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda *_: stop.set())
    with FakeLLMServer(**build_kwargs(args)) as server:
        print(f"READY {server.url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
