"""``client.stream(...)``: text as it arrives, and the usage once it is done."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType

from llmkit.providers.base import StreamDelta
from llmkit.types import Response, Usage

__all__ = ["TextStream"]


class TextStream:
    """An iterator of text pieces. After it ends, ``usage``, ``finish_reason`` and
    ``response`` (the whole text as a :class:`Response`) are set.

    The key stays held while the stream is open and is released when it ends,
    fails, or is closed early with :meth:`close` (or by leaving a ``with``
    block). An error after some text was yielded raises
    :class:`~llmkit.errors.StreamError`; the text yielded so far stays yours.
    """

    def __init__(self, deltas: Iterator[StreamDelta], *, provider: str, model: str) -> None:
        self._deltas = deltas
        self._parts: list[str] = []
        self._started = time.monotonic()
        self.provider = provider
        self.model = model
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.request_id: str | None = None
        self.done = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        for delta in self._deltas:
            self._absorb(delta)
            if delta.text:
                self._parts.append(delta.text)
                return delta.text
        self.done = True
        raise StopIteration

    def _absorb(self, delta: StreamDelta) -> None:
        if delta.usage is not None:
            self.usage = delta.usage
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
        if delta.model:
            self.model = delta.model
        if delta.request_id:
            self.request_id = delta.request_id

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    @property
    def response(self) -> Response:
        """The stream so far as a Response (complete once ``done``)."""
        return Response(
            content=self.text,
            model=self.model,
            provider=self.provider,
            finish_reason=self.finish_reason,
            usage=self.usage or Usage(),
            latency=time.monotonic() - self._started,
            request_id=self.request_id,
        )

    def close(self) -> None:
        """Stop early and release the key. Idempotent."""
        close = getattr(self._deltas, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> TextStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
