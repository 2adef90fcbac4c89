"""``client.stream(...)``: text as it arrives, and the usage once it is done (sync and asyncio)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any

from llmkit.providers.base import StreamDelta
from llmkit.types import Response, ServerToolPart, TextPart, ToolCall, Usage

__all__ = ["AsyncTextStream", "StreamObserver", "TextStream"]

# Called once when a stream ends: its Response, and the error it ended with (None if none).
StreamObserver = Callable[[Response, "BaseException | None"], None]


class _StreamBase:
    """What a stream knows so far (every delta absorbed); shared by the sync and async streams.

    Tool calls are not yielded: they are put together as their pieces arrive
    and appear in ``tool_calls`` (and ``response.tool_calls``) when the model's
    turn ends. Neither are thinking and refusals: ``thinking`` is the thinking
    text so far, ``refusal`` the refusal message (and ``finish_reason`` is
    ``"refusal"``), ``server_tool_calls`` the tools the provider ran itself;
    ``response.parts`` holds the turn's thinking and server tool blocks in
    order, to be sent back (see :meth:`~llmkit.types.Message.assistant_tool_calls`).
    A stream retried before its first text starts its thinking afresh.
    """

    def __init__(self, *, provider: str, model: str, on_end: StreamObserver | None = None) -> None:
        self._on_end = on_end
        self._parts: list[str] = []
        self._started = time.monotonic()
        self.provider = provider
        self.model = model
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.request_id: str | None = None
        self.tool_calls: tuple[ToolCall, ...] = ()
        self.cost: float | None = None
        self.key_id: str | None = None
        self.attempts = 1
        self.done = False
        self.refusal: str | None = None
        self._thinking: list[str] = []
        self._blocks: list[Any] | None = None  # the turn's blocks in order, once a non-text one came

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider!r}, model={self.model!r}, done={self.done})"

    def _take(self, delta: StreamDelta) -> str:
        """Absorb one delta; its text ("" when it carries none)."""
        self._absorb(delta)
        text = delta.text
        if text:
            self._parts.append(text)
            if self._blocks is not None:
                self._add_text(text)
        return text

    def _absorb(self, delta: StreamDelta) -> None:
        if delta.usage is not None:
            self.usage = delta.usage
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
        if delta.model:
            self.model = delta.model
        if delta.request_id:
            self.request_id = delta.request_id
        if delta.tool_calls:
            self.tool_calls += delta.tool_calls
        if delta.thinking:
            self._thinking.append(delta.thinking)
        if delta.refusal:
            self.refusal = (self.refusal or "") + delta.refusal
        if delta.parts:
            if self._blocks is None:
                self._blocks = [[self.text]] if self._parts else []
            self._blocks.extend(delta.parts)
        if delta.key_id:  # a new try: what an earlier one thought is not this answer's
            self.key_id, self.attempts = delta.key_id, delta.attempts
            self._thinking, self._blocks = [], None

    def _add_text(self, text: str) -> None:
        assert self._blocks is not None
        if self._blocks and isinstance(self._blocks[-1], list):
            self._blocks[-1].append(text)
        else:
            self._blocks.append([text])

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    @property
    def thinking(self) -> str:
        """The thinking text received so far ("" when the model showed none)."""
        return "".join(self._thinking)

    @property
    def parts(self) -> tuple[Any, ...]:
        """The turn so far in order, when it held more than text (as ``Response.parts``)."""
        if self._blocks is None:
            return ()
        return tuple(TextPart("".join(b)) if isinstance(b, list) else b for b in self._blocks)

    @property
    def server_tool_calls(self) -> tuple[ServerToolPart, ...]:
        """The calls of tools the provider ran itself (web search...), never in ``tool_calls``."""
        return tuple(p for p in self.parts if isinstance(p, ServerToolPart) and p.is_call)

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
            key_id=self.key_id,
            tool_calls=self.tool_calls,
            cost=self.cost,
            attempts=self.attempts,
            refusal=self.refusal,
            parts=self.parts,
        )

    def _ended(self, error: BaseException | None) -> None:
        """Tell the observer, once, how the stream ended."""
        on_end, self._on_end = self._on_end, None
        if on_end is not None and (error is not None or self.key_id is not None):  # not: closed unsent
            on_end(self.response, error)


class TextStream(_StreamBase):
    """An iterator of text pieces. After it ends, ``usage``, ``finish_reason``,
    ``tool_calls``, ``cost`` and ``response`` (the whole text as a :class:`Response`)
    are set; ``key_id`` and ``attempts`` say which key serves it, on which try.
    Thinking, refusals and server tools: see the attributes of the same names.

    Nothing is sent until it is first iterated. The key stays held while the
    stream is open and is released when it ends, fails, or is closed early
    with :meth:`close` (or by leaving a ``with`` block). An error after some
    text was yielded raises :class:`~llmkit.errors.StreamError`; the text
    yielded so far stays yours.
    """

    def __init__(self, deltas: Iterator[StreamDelta], *, provider: str, model: str,
                 on_end: StreamObserver | None = None) -> None:  # fmt: skip
        super().__init__(provider=provider, model=model, on_end=on_end)
        self._deltas = deltas

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            for delta in self._deltas:
                text = self._take(delta)
                if text:
                    return text
        except Exception as error:
            self._ended(error)
            raise
        self.done = True
        self._ended(None)
        raise StopIteration

    def close(self) -> None:
        """Stop early and release the key. Idempotent."""
        close = getattr(self._deltas, "close", None)
        if close is not None:
            close()
        self._ended(None)

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()


class AsyncTextStream(_StreamBase):
    """``async for text in stream``: :class:`TextStream` in asyncio, holding no thread.

    The same attributes once it ends (``usage``, ``finish_reason``, ``tool_calls``,
    ``refusal``, ``thinking``, ``cost``, ``response``...). Nothing is sent until
    it is first iterated. The key is released when it ends, fails, is closed
    (``await stream.aclose()``, ``async with``) or its task is cancelled.
    """

    def __init__(self, deltas: AsyncIterator[StreamDelta], *, provider: str, model: str,
                 on_end: StreamObserver | None = None) -> None:  # fmt: skip
        super().__init__(provider=provider, model=model, on_end=on_end)
        self._deltas = deltas

    def __aiter__(self) -> AsyncTextStream:
        return self

    async def __anext__(self) -> str:
        try:
            async for delta in self._deltas:
                text = self._take(delta)
                if text:
                    return text
        except Exception as error:
            self._ended(error)
            raise
        self.done = True
        self._ended(None)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop early and release the key. Idempotent."""
        close = getattr(self._deltas, "aclose", None)
        if close is not None:
            await close()
        self._ended(None)

    def close(self) -> None:
        """Forget the stream without awaiting (its key is released when the generator is collected)."""
        self._ended(None)

    async def __aenter__(self) -> AsyncTextStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:  # fmt: skip
        await self.aclose()
