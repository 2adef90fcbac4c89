"""``llmkit complete "prompt"``: one completion from the configured provider.

Keys come from the environment or the YAML file, as for ``LLMClient()``
(``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``LLM_CONFIG_PATH``...). Use ``-``
as the prompt to read it from stdin.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from llmkit.cli._common import (
    CLIError,
    add_client_options,
    client_from_args,
    number,
    plain,
    print_json,
    response_dict,
)

__all__ = ["add_parser", "main"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "complete",
        help="complete one prompt and print the answer",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("prompt", help="the prompt ('-' reads it from stdin)")
    add_client_options(p)
    add = p.add_argument
    add("--system", help="a system prompt")
    add("--temperature", type=number(float, 0, 2), help="sampling temperature, 0 to 2")
    add("--max-tokens", type=number(int, 1), help="most tokens in the answer (>= 1)")
    add("--stream", action="store_true", help="print the answer as it arrives")
    add(
        "--json",
        action="store_true",
        help="print the Response as JSON (content, usage, cost, key_id, latency, ...)",
    )
    p.set_defaults(handler=main)


def _call_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {"system_prompt": args.system, "temperature": args.temperature, "max_tokens": args.max_tokens}
    return {k: v for k, v in options.items() if v is not None}


def main(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise CLIError("the prompt is empty")
    with client_from_args(args) as client:
        if args.stream:
            stream = client.stream(prompt, **_call_options(args))
            with stream:
                for text in stream:
                    if not args.json:
                        print(text, end="", flush=True)
            if args.json:
                data = response_dict(stream.response)
                data["key_id"] = None  # streams do not report their key
                print_json(data)
            else:
                print()
            return 0
        response = client.complete(prompt, **_call_options(args))
    if args.json:
        print_json(response_dict(response))
    else:
        print(response.content)
    return 0
