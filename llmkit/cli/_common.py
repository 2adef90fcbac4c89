"""Pieces shared by the ``llmkit`` commands: exit codes, errors, clients, tables."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmkit.wording import plural

if TYPE_CHECKING:
    from llmkit.client import LLMClient
    from llmkit.types import Response

EXIT_OK = 0
EXIT_LLM_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell tool killed by a closed pipe reports

EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    the LLM call failed (provider, network, rate-limit or pool error)
  2    usage or configuration error (bad arguments, no API key, bad YAML)
  130  interrupted (Ctrl-C)
  141  the output pipe was closed early (e.g. | head)
"""

FAKE_KEY_PREFIX = "sk-fake-llmkit-demo-key-"


class CLIError(Exception):
    """A problem the user must fix; printed without a traceback, exit code 2."""


def fake_keys(count: int) -> list[str]:
    """``count`` made-up API keys for a FakeLLMServer."""
    return [f"{FAKE_KEY_PREFIX}{i:02d}" for i in range(count)]


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for an exception that ended a command."""
    from llmkit.errors import ConfigurationError, InvalidRequestError, LLMError

    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, (ConfigurationError, CLIError)):
        return EXIT_USAGE
    if isinstance(exc, InvalidRequestError) and exc.status_code is None:
        return EXIT_USAGE  # refused before anything was sent: the arguments were bad
    if isinstance(exc, LLMError):
        return EXIT_LLM_ERROR
    raise exc


def describe_error(exc: BaseException) -> str:
    """One or two lines for stderr: the error's kind and message, plus a hint."""
    from llmkit.errors import ConfigurationError, NetworkError

    if isinstance(exc, CLIError):
        return f"llmkit: error: {exc}"
    text = f"llmkit: {type(exc).__name__}: {exc}"
    if isinstance(exc, NetworkError):
        text += "\nhint: is the server reachable? Check --base-url (or the provider's base_url setting)."
    elif isinstance(exc, ConfigurationError):
        text += "\nhint: see `llmkit --help` and the configuration reference in the docs."
    return text


def number(kind: type, low: float | None = None, high: float | None = None, *, above: bool = False) -> Any:
    """An argparse ``type=``: a ``kind`` (int or float) in [low, high] (``above``: > low)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        too_low = low is not None and (value <= low if above else value < low)
        if too_low or (high is not None and value > high) or value != value:
            bounds = f"more than {low:g}" if above else f"at least {low:g}" if low is not None else ""
            if high is not None:
                bounds = f"from {low:g} to {high:g}" if low is not None else f"at most {high:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a number {bounds}")
        return value

    return parse


def add_client_options(parser: argparse.ArgumentParser, *, model: bool = True) -> None:
    """--provider, --model, --base-url, --config and friends."""
    add = parser.add_argument
    add("--provider", help="openai, anthropic, google, groq or local; default: the configured one")
    if model:
        add("--model", help="model name; default: the configured one, else the provider's default")
    add("--base-url", help="another server for the provider's API (a proxy, a local server, a fake)")
    add("--config", dest="config_path", metavar="YAML",
        help="the YAML settings file (else $LLM_CONFIG_PATH, else config/llm.yaml)")
    add("--timeout", type=number(float, 0, above=True), help="seconds to wait for one reply (> 0)")
    add("--max-retries", type=number(int, 0), help="retries after the first attempt (0: never retry)")


def client_from_args(args: argparse.Namespace, **extra: Any) -> LLMClient:
    """An LLMClient from the common options (settings fill in the rest).

    A missing provider or key is a CLIError phrased for the command line.
    """
    from llmkit.client import LLMClient
    from llmkit.config import load_settings

    settings = load_settings(args.config_path)
    provider = args.provider or settings.default_provider()
    _check_provider_and_key(provider, settings, has_key="api_keys" in extra)
    options: dict[str, Any] = {
        "model": getattr(args, "model", None),
        "base_url": args.base_url,
        "timeout": args.timeout,
        "max_retries": args.max_retries,
    }
    options.update(extra)
    return LLMClient(provider, settings=settings, **{k: v for k, v in options.items() if v is not None})


_TRY_WITHOUT_KEY = "to try llmkit without a key: llmkit chat --fake, or llmkit demo"


def _check_provider_and_key(provider: str | None, settings: Any, *, has_key: bool) -> None:
    from llmkit.config import KEY_ENV_VARS
    from llmkit.providers import normalize_provider

    if provider is None:
        raise CLIError(
            "no provider is configured and no API key is set: give --provider NAME and set its key "
            f"(e.g. export OPENAI_API_KEY=...), or set LLM_DEFAULT_PROVIDER; {_TRY_WITHOUT_KEY}")
    name = normalize_provider(provider)
    variables = KEY_ENV_VARS[name]
    if variables and not has_key and not settings.api_keys(name):
        single = next(v for v in variables if v.endswith("_KEY"))
        pool = next(v for v in variables if v.endswith("_KEYS"))
        raise CLIError(
            f"no API key for {name}: export {single}=... (or {pool}=key1,key2 for a pool), or list "
            f"them under providers.{name}.api_keys in config/llm.yaml (or --config FILE); "
            + _TRY_WITHOUT_KEY)


def response_dict(response: Response) -> dict[str, Any]:
    """A Response as plain JSON-able data (``raw`` and ``parsed`` left out)."""
    usage = response.usage
    return {
        "content": response.content,
        "model": response.model,
        "provider": response.provider,
        "finish_reason": response.finish_reason,
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "total_tokens": usage.total_tokens,
        },
        "cost": response.cost,
        "key_id": response.key_id,
        "latency": round(response.latency, 4),
        "request_id": response.request_id,
        "attempts": response.attempts,
        "cached": response.cached,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls],
    }


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """A plain-text table; columns whose index is in ``right`` are right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def status_table(status: dict[str, Any]) -> str:
    """The pool status of ``client.status()`` as a summary line and a per-key table."""
    head = (
        f"{status['provider']}: {plural(status['total_clients'], 'key')}, "
        f"{status['available_clients']} available, "
        f"{status['in_use_clients']} in use, {status['waiting_requests']} waiting"
        + (" (closed)" if status.get("closed") else "")
    )
    rows = []
    for s in status["client_statuses"]:
        remaining = _limits_text(s.get("limits") or {})
        rows.append(
            [
                s["client_id"],
                s["state"],
                s["requests"],
                s["in_flight"],
                s["error_count"],
                f"{s['cooldown_remaining']:g}s",
                remaining,
            ]
        )
    headers = ["key", "state", "requests", "in flight", "errors", "cooldown", "limits per minute"]
    return head + "\n" + table(headers, rows, right=(2, 3, 4, 5))


def _limits_text(limits: dict[str, Any]) -> str:
    """``requests=60 (learned)``: each limit, and where it came from when it was not configured."""
    parts = []
    for name, info in limits.items():
        learned = "" if info.get("source") == "configured" else " (learned)"
        parts.append(f"{name}={info.get('per_minute') or 0:g}{learned}")
    return ", ".join(parts) or "no limits"


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def kv_table(rows: Sequence[Sequence[Any]]) -> str:
    """Two columns, label and value."""
    width = max((len(str(r[0])) for r in rows), default=0)
    return "\n".join(f"  {str(label).ljust(width)}  {value}" for label, value in rows)


def plain(doc: str | None) -> str:
    """A module docstring as --help text (reST literals and ``::`` made plain)."""
    return (doc or "").replace("``", "").replace("::\n", ":\n")
