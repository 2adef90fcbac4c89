"""What a running batch shows and hears on the terminal: its progress bar and Ctrl-C.

Private to :mod:`llmkit.batch`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llmkit.batch.result import ItemError
from llmkit.types import Response


class _Progress:
    """A tqdm bar (``tqdm.auto``: works in notebooks) with tokens and cost; or nothing."""

    def __init__(self, enabled: bool, total: int, values: list[Any], responses: list[Response | None]):
        self._bar: Any = None
        done = sum(1 for v in values if v is not None)
        self.tokens = sum(r.usage.total_tokens for r in responses if r is not None)
        self.cost = sum(r.cost or 0.0 for r in responses if r is not None)
        self.errors = sum(1 for v in values if isinstance(v, ItemError))
        if enabled:
            from tqdm.auto import tqdm  # lazily: import llmkit stays fast

            self._bar = tqdm(total=total, initial=done, desc="llmkit batch", unit="item", dynamic_ncols=True)
            self._bar.set_postfix_str(self._postfix(), refresh=False)

    def _postfix(self) -> str:
        text = f"tokens={self.tokens:,}, cost=${self.cost:.4f}"
        return text + (f", errors={self.errors}" if self.errors else "")

    def advance(self, response: Response | None) -> None:
        if response is None:
            self.errors += 1
        else:
            self.tokens += response.usage.total_tokens
            self.cost += response.cost or 0.0
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(1)

    def say(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# -- Ctrl-C -----------------------------------------------------------------------------


@contextmanager
def _sigint_to_flag(flag: threading.Event) -> Iterator[None]:
    """Turn the first Ctrl-C into ``flag`` (a second one raises KeyboardInterrupt at once).

    Only in the main thread and when Python's default handler is in place;
    otherwise a KeyboardInterrupt is caught where it lands.
    """
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return

    def on_sigint(signum: int, frame: Any) -> None:
        flag.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
