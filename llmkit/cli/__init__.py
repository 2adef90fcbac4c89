"""The ``llmkit`` command: ``demo``, ``chat``, ``complete``, ``status``, ``serve-fake``, ``bench``.

Each command lives in its own module, imported only when it runs, so that
``llmkit --help`` is quick. Exit codes (see :data:`EXIT_CODES_HELP`): 0 ok,
1 the LLM call failed, 2 usage or configuration error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from llmkit.cli._common import (
    EXIT_BROKEN_PIPE,
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    describe_error,
    err,
    exit_code_for,
)

__all__ = ["build_parser", "main"]

# command -> module holding add_parser(subparsers) and main(args)
COMMANDS = {
    "demo": "llmkit.cli.demo",
    "chat": "llmkit.cli.chat",
    "complete": "llmkit.cli.complete",
    "status": "llmkit.cli.status",
    "serve-fake": "llmkit.cli.serve_fake",
    "bench": "llmkit.cli.bench",
}

DESCRIPTION = """\
llmkit: a pooled, rate-limited, retrying LLM client.

Try `llmkit demo` first: it needs no API key and no network.
"""


def build_parser() -> argparse.ArgumentParser:
    from llmkit import __version__

    parser = argparse.ArgumentParser(
        prog="llmkit", description=DESCRIPTION, epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"llmkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    for action in sub.choices.values():
        if not action.epilog:
            action.epilog = EXIT_CODES_HELP
            action.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``llmkit`` command; returns its exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args.handler(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _pipe_closed()
    except KeyboardInterrupt:
        err("llmkit: interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        code = exit_code_for(exc)  # re-raises what is not ours: a bug deserves a traceback
        err(describe_error(exc))
        return code


def _pipe_closed() -> int:
    """The reader of stdout went away (``| head``): stop quietly, as shell tools do.

    stdout is pointed at /dev/null so that the interpreter's last flush at exit
    does not print a second BrokenPipeError.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE
