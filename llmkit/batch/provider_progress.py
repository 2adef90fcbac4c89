"""The progress bar of a provider batch: items answered, and what the provider says meanwhile.

The bar counts items whose answers are in (downloaded, or loaded from the
checkpoint); its postfix adds the provider's own counts over the batches still
open (processing, succeeded, errored, expired, cancelled), how many there are,
and the time spent waiting for them. Private to :mod:`llmkit.batch`.
"""

from __future__ import annotations

import time
from typing import Any

from llmkit.batch.progress import _Progress
from llmkit.providers._batch import BatchCounts
from llmkit.types import Response

__all__: list[str] = []


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class _ProviderProgress(_Progress):
    """:class:`_Progress` with the provider's counts; ``advance`` and ``say`` as there."""

    def __init__(self, enabled: bool, total: int, values: list[Any], responses: list[Response | None]):
        self.counts = BatchCounts()
        self.open_batches = 0
        self.started = time.monotonic()
        super().__init__(enabled, total, values, responses)
        if self._bar is not None:
            self._bar.set_description_str("llmkit provider batch")

    def _postfix(self) -> str:
        text = super()._postfix()
        if not self.open_batches:
            return text
        c = self.counts
        provider = (f"batches={self.open_batches}, processing={c.processing:,}, succeeded={c.succeeded:,}, "
                    f"errored={c.errored:,}")  # fmt: skip
        if c.expired or c.cancelled:
            provider += f", expired={c.expired:,}, cancelled={c.cancelled:,}"
        return f"{provider}, waited {_duration(time.monotonic() - self.started)}, {text}"

    def show(self, counts: BatchCounts, open_batches: int) -> None:
        """What the provider said at the last polls of the batches still open."""
        self.counts, self.open_batches = counts, open_batches
        self.refresh()

    def refresh(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=True)

    def retrying(self, count: int) -> None:
        """``count`` failed items go again (through the live pool): they are not done any more."""
        self.errors = max(self.errors - count, 0)
        if self._bar is not None:
            self._bar.n = max(self._bar.n - count, 0)
            self.refresh()
