"""A provider batch's calls to the batch API: which key makes them, and retries with backoff.

One key of the pool does them (the first not disabled; a resumed batch, the
key that created it when it is still in the pool): batches belong to the
account, and can only be read with a key of the account that made them. They
do not go through the pool's limiter: they are a handful per batch, and the
providers limit batches by the work queued, not by the per-minute limits of
live calls. Transient failures (5xx, 429, a dropped connection or download)
are tried again with backoff; a create that failed on the network is first
looked up by its tag (it may have been created all the same). Waits watch the
Ctrl-C flag and raise KeyboardInterrupt once it is set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from llmkit.errors import InvalidRequestError, NetworkError, ProviderError, RateLimitError
from llmkit.providers._batch import ProviderBatchAPI

__all__: list[str] = []

logger = logging.getLogger("llmkit.batch.provider")

T = TypeVar("T")
SLICE = 0.2  # seconds between looks at Ctrl-C while waiting
_TRIES = 5  # tries of a batch API call that failed transiently
_BACKOFF = 1.0  # seconds before the second try, doubling


class _Calls:
    """The batch API calls of one run, over the pool's keys, watching ``interrupted``."""

    def __init__(self, api: ProviderBatchAPI, slots: Sequence[Any], interrupted: threading.Event) -> None:
        self.api = api
        self.slots = slots
        self.interrupted = interrupted
        self.provider = api.provider.name

    def slot(self, key_id: str | None) -> Any:
        """The slot of ``key_id`` (the key that made a batch), else the first not disabled."""
        if key_id is not None:
            for slot in self.slots:
                if slot.key_id == key_id:
                    return slot
            logger.warning("the key that created a %s batch (%s) is not in this client: using another",
                           self.provider, key_id)  # fmt: skip
        return next((slot for slot in self.slots if not slot.health.disabled), self.slots[0])

    def create(self, slot: Any, lines: list[bytes], model: str, tag: str) -> str:
        """Create a batch; RateLimitError (no room now) and InvalidRequestError are raised at once."""
        delay = _BACKOFF
        for attempt in range(_TRIES):
            try:
                return self.api.submit(slot.client, lines, model, tag)
            except NetworkError:  # it may have been created all the same
                found = self.api.find(slot.client, tag)
                if found is not None:
                    return found
                if attempt == _TRIES - 1:
                    raise
            except (RateLimitError, InvalidRequestError):
                raise
            except ProviderError:
                if attempt == _TRIES - 1:
                    raise
            self.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def retried(self, what: str, call: Callable[[], T]) -> T:
        """``call()``, tried again with backoff after a transient failure (5xx, 429, network)."""
        delay = _BACKOFF
        for attempt in range(_TRIES):
            try:
                return call()
            except (ProviderError, NetworkError, RateLimitError) as exc:
                if attempt == _TRIES - 1:
                    raise
                wait = max(delay, exc.retry_after or 0.0)
                logger.info("%s failed (%s): trying again in %.1f s", what, exc.message, wait)
                self.sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")

    def sleep(self, seconds: float, tick: Callable[[], None] | None = None) -> None:
        """Wait ``seconds``, a slice at a time; KeyboardInterrupt once Ctrl-C was pressed."""
        deadline = time.monotonic() + seconds
        while not self.interrupted.is_set() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(SLICE, left))
            if tick is not None:
                tick()
        if self.interrupted.is_set():
            raise KeyboardInterrupt
