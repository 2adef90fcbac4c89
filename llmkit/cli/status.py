"""``llmkit status``: the key pool of the configured provider.

Shows each key (by fingerprint, never the key), its state, and the capacity
left in its rate-limit buckets. It builds the client from your settings and
sends nothing.
"""

from __future__ import annotations

import argparse
from typing import Any

from llmkit.cli._common import add_client_options, client_from_args, plain, print_json, status_table

__all__ = ["add_parser", "main"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="show the key pool of the configured provider",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_client_options(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    with client_from_args(args) as client:
        status = client.status()
        if args.json:
            print_json(status)
        else:
            print(f"model: {client.model}")
            print(f"config file: {status.get('config_file') or 'none'}")
            print(status_table(status))
    return 0
