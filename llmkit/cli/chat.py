"""``llmkit chat``: an interactive session with the configured provider (or a fake one).

Type a line to send it; the conversation is kept, so the model sees the
earlier turns. Commands:

  hello       send a test message (outside the conversation)
  status      show the key pool
  stress N    send N requests at once; progress every 2 s, then successes, latency
              (queueing included) and throughput; Ctrl-C stops it
  reset       forget the conversation
  help        this list
  quit        leave (so does exit, or end of input: Ctrl-D)

Lines can also be piped in: ``printf 'hello\\nstatus\\nquit\\n' | llmkit chat --fake``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from llmkit.cli._common import (
    CLIError,
    add_client_options,
    client_from_args,
    fake_keys,
    number,
    plain,
    plural,
    status_table,
)
from llmkit.engine.finished import Finished

if TYPE_CHECKING:
    from llmkit.client import LLMClient

__all__ = ["add_parser", "main"]

HELP = __doc__.split("Commands:", 1)[1].split("Lines can", 1)[0].rstrip()


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "chat",
        help="interactive session: messages, hello, status, stress N, quit",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_client_options(p)
    p.add_argument("--system", help="a system prompt for the conversation")
    p.add_argument(
        "--fake",
        action="store_true",
        help="talk to a FakeLLMServer started for the session (no key, no network)",
    )
    p.add_argument("--keys", type=number(int, 1), default=2, help="fake keys with --fake (default 2)")
    p.add_argument(
        "--rpm", type=number(int, 1), default=600, help="requests/min per fake key with --fake (default 600)"
    )
    p.set_defaults(handler=main)


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator[LLMClient]:
    if not args.fake:
        with client_from_args(args) as client:
            yield client
        return
    from llmkit.client import LLMClient
    from llmkit.config import RateLimit, Settings
    from llmkit.testing import FakeLLMServer, ServerLimits

    if args.keys < 1 or args.rpm < 1:
        raise CLIError("--keys and --rpm must be at least 1")
    provider = args.provider or "openai"
    with FakeLLMServer(limits=ServerLimits(requests_per_minute=args.rpm, burst_seconds=1)) as server:
        url = server.openai_base_url if provider == "openai" else server.anthropic_base_url
        with LLMClient(
            provider,
            api_keys=fake_keys(args.keys),
            base_url=url,
            model=args.model,
            rate_limit=RateLimit(requests_per_minute=args.rpm, burst_seconds=1),
            settings=Settings(),
        ) as client:
            print(f"(fake {provider} server at {url}: {plural(args.keys, 'key')} x {args.rpm} requests/min)")
            yield client


def _lines(interactive: bool) -> Iterator[str]:
    while True:
        try:
            line = input("you> ") if interactive else sys.stdin.readline()
        except EOFError:
            return
        if not interactive and not line:
            return
        yield line.strip()


class _StressRun:
    """The requests of one ``stress N``: when each was submitted and finished, and how."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.latencies: list[float] = []  # submit to answer: time queued for capacity included
        self.errors: dict[str, int] = {}
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def finished(self, submitted: float, future: Future[Any]) -> None:
        """A future's done callback (runs in a worker thread)."""
        if future.cancelled():
            return
        error = future.exception()
        with self._lock:
            if error is None:
                self.latencies.append(time.monotonic() - submitted)
            else:
                self.errors[type(error).__name__] = self.errors.get(type(error).__name__, 0) + 1

    @property
    def done(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    def progress(self) -> str:
        wall = time.monotonic() - self.started
        return (f"stress: {self.done}/{self.count} done, {sum(self.errors.values())} failed, "
                f"{wall:.0f} s ...")  # fmt: skip

    def summary(self, interrupted: bool = False) -> str:
        wall = time.monotonic() - self.started
        rate = len(self.latencies) / wall if wall else 0.0
        verb = "interrupted:" if interrupted else "stress:"
        text = (f"{verb} {len(self.latencies)}/{self.count} succeeded in {wall:.2f} s "
                f"({rate:.1f} requests/s)")  # fmt: skip
        if self.latencies:
            text += (
                f"; latency (queueing included) mean {statistics.fmean(self.latencies):.3f} s, "
                f"p50 {statistics.median(self.latencies):.3f} s, max {max(self.latencies):.3f} s"
            )
        if self.errors:
            text += "; errors: " + ", ".join(f"{n} x {name}" for name, n in self.errors.items())
        return text


def stress(client: LLMClient, count: int, every: float = 2.0) -> str:
    """Send ``count`` requests at once through the pool; a progress line every ``every`` seconds.

    Ctrl-C stops it as it stops a ``map``: requests not sent yet are never sent, those waiting
    for a key stop waiting (else the chat's next message would queue behind up to a pool's
    worth of them), and the summary covers what finished (the chat goes on).
    """
    run = _StressRun(count)
    futures: list[Future[Any]] = []
    cancel = threading.Event()
    try:
        for i in range(count):
            future = client.submit(f"Stress test message {i + 1} of {count}: reply briefly.", _cancel=cancel)
            future.add_done_callback(functools.partial(run.finished, time.monotonic()))
            futures.append(future)
        finished = Finished(futures)
        deadline = time.monotonic() + every
        while finished.pending:
            finished.next(timeout=max(0.0, deadline - time.monotonic()))
            if finished.pending and time.monotonic() >= deadline:
                print(run.progress(), flush=True)
                deadline = time.monotonic() + every
    except KeyboardInterrupt:
        waiting = sum(1 for f in futures if not f.done())
        client._stop(futures, cancel)
        cancelled = sum(1 for f in futures if f.cancelled())
        text = run.summary(interrupted=True)
        return text + f"; {cancelled} not sent (cancelled), {waiting - cancelled} stopped or finishing"
    return run.summary()


def _handle(line: str, client: LLMClient, session: Any) -> bool:
    """Act on one input line; False to stop."""
    from llmkit.errors import LLMError

    word, _, rest = line.partition(" ")
    command = word.lower()
    try:
        if command in ("quit", "exit"):
            return False
        if command == "help":
            print(HELP)
        elif command == "status":
            print(status_table(client.status()))
        elif command == "reset":
            session.clear()
            print("(conversation cleared)")
        elif command == "hello":
            r = client.complete("Hello! This is a test message from llmkit chat.")
            print(f"assistant> {r.content}\n({_about(r)})")
        elif command == "stress":
            count = int(rest) if rest.strip().isdigit() and int(rest) > 0 else None
            print(stress(client, count) if count else "usage: stress N   (N a whole number >= 1)")
        else:
            r = session.complete(line)
            print(f"assistant> {r.content}\n({_about(r)})")
    except LLMError as exc:
        print(f"error: {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        print("(interrupted; type quit to leave)")
    sys.stdout.flush()
    return True


def _about(r: Any) -> str:
    cost = f", ${r.cost:.6f}" if r.cost is not None else ""
    tokens = f"{r.usage.input_tokens} in / {r.usage.output_tokens} out tokens"
    return f"{tokens}, {r.latency:.2f} s, {r.key_id}{cost}"


def main(args: argparse.Namespace) -> int:
    from llmkit.session import Session

    interactive = sys.stdin.isatty()
    with _client(args) as client:
        session = Session(args.system, client=client)
        keys = client.status()["total_clients"]
        print(
            f"llmkit chat: {client.provider}, model {client.model}, {plural(keys, 'key')}. "
            "Type a message, or help, hello, status, stress N, quit.",
            flush=True,
        )
        for line in _lines(interactive):
            if line and not _handle(line, client, session):
                break
    print("bye")
    return 0
