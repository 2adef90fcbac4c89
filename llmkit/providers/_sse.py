"""A small incremental parser of server-sent events (the WHATWG ``text/event-stream`` format).

Feed it bytes as they arrive, in chunks cut anywhere (inside a line, inside a
``\\r\\n`` pair, inside a UTF-8 character); it returns the events completed so
far. Lines end with ``\\n``, ``\\r\\n`` or ``\\r``; ``data:`` lines of one event
are joined with ``\\n``; ``:`` lines are comments; a blank line ends an event.

It works on bytes and decodes a line only once it is whole (a ``\\n`` never
falls inside a UTF-8 character), invalid UTF-8 replaced: a chunk without a
``\\r`` in it (the usual case) is one ``split``, and an event a tuple.

One leniency beyond the standard: :meth:`SSEParser.close` also returns an
event whose closing blank line never came (the standard drops it). A caller
that must tell a cut stream from a complete one checks the payload itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from llmkit.errors import LLMError

if TYPE_CHECKING:
    from llmkit.providers.base import StreamDelta

__all__ = ["SSEEvent", "SSEParser", "json_data"]

_BOM = b"\xef\xbb\xbf"
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_SPACE = " \t\n\r"


def json_data(text: str) -> Any:
    """``json.loads(text)`` for an event's data, without its generic preamble (half the time on the
    small objects of a stream); the same ValueError (JSONDecodeError) when it is not JSON."""
    if text[:1] in _SPACE or not text:
        text = text.strip(_SPACE)
    try:
        value, end = _scan(text, 0)
    except StopIteration as exc:
        raise json.JSONDecodeError("Expecting value", text, exc.value) from None
    if end != len(text) and text[end:].strip(_SPACE):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


class SSEEvent(NamedTuple):
    """One dispatched event: its joined data, its type and the last event id seen."""

    data: str
    event: str = "message"
    id: str | None = None


class SSEParser:
    """Incremental SSE parser: ``feed(chunk) -> events``, then ``close() -> events``."""

    def __init__(self) -> None:
        self._pending = b""  # the bytes after the last line end (a "\r" there may be half of "\r\n")
        self._started = False
        self._data: list[bytes] = []
        self._event = b""
        self._last_id: str | None = None

    def feed(self, chunk: bytes | str) -> list[SSEEvent]:
        """Add a chunk; return the events it completed (often none)."""
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8", "surrogatepass")
        buffer = self._pending + chunk if self._pending else chunk
        if not self._started:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._pending = buffer  # maybe the first bytes of a byte order mark
                return []
            self._started = True
            buffer = buffer.removeprefix(_BOM)
        if b"\r" in buffer:
            buffer, held = _unix_lines(buffer, final=False)
        else:
            held = b""
        lines = buffer.split(b"\n")
        self._pending = lines.pop() + held
        return self._lines(lines) if lines else []

    def close(self) -> list[SSEEvent]:
        """The stream ended: return what is left (see the module doc on leniency)."""
        buffer, self._pending = self._pending, b""
        if not self._started:
            buffer = buffer.removeprefix(_BOM)
        lines = _unix_lines(buffer, final=True)[0].split(b"\n") if buffer else []
        return self._lines([*lines, b""])

    def _lines(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(self._dispatch())
                    data = self._data
                else:
                    self._event = b""
                continue
            name, sep, value = line.partition(b":")
            if sep and value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                self._event = value
            elif name == b"id" and b"\0" not in value:
                self._last_id = value.decode("utf-8", "replace")
            # "" (a comment), "retry" and unknown fields: ignored
        return events

    def _dispatch(self) -> SSEEvent:
        data = self._data
        joined = data[0] if len(data) == 1 else b"\n".join(data)
        event = self._event.decode("utf-8", "replace") if self._event else "message"
        self._data, self._event = [], b""
        return SSEEvent(joined.decode("utf-8", "replace"), event, self._last_id)


def _unix_lines(buffer: bytes, final: bool) -> tuple[bytes, bytes]:
    """``buffer`` with every line end made ``\\n``, and a last ``\\r`` held back unless ``final``
    (the next chunk may start with its ``\\n``)."""
    held = b""
    if buffer.endswith(b"\r") and not final:
        buffer, held = buffer[:-1], b"\r"
    return buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n"), held


class EventStream:
    """A provider's stream read from its SSE bytes: ``feed(chunk) -> deltas``, then ``end()``.

    A subclass reads one event (:meth:`_event`, adding the deltas it makes to a list) and
    says what the end of the body means (:meth:`_ending`: the last delta, or the error of a
    cut stream). An error event raised by :meth:`_event` comes after the deltas of the same
    chunk that came before it: they are the caller's first, the error is raised next.
    """

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._failed: LLMError | None = None  # raised by the next feed() or end()

    def deltas(self, chunks: Iterable[bytes]) -> Iterator[StreamDelta]:
        for chunk in chunks:  # read to the end, so that the connection can be reused
            yield from self.feed(chunk)
        yield from self.end()

    def feed(self, chunk: bytes) -> list[StreamDelta]:
        """The deltas a chunk of the body completes (often none)."""
        if self._failed is not None:
            raise self._failed
        out: list[StreamDelta] = []
        try:
            for event in self._parser.feed(chunk):
                self._event(event, out)
        except LLMError as error:
            if not out:
                raise
            self._failed = error
        return out

    def end(self) -> Iterator[StreamDelta]:
        """The body ended: the last deltas, or NetworkError when the stream was cut."""
        if self._failed is not None:
            raise self._failed
        for event in self._parser.close():
            out: list[StreamDelta] = []
            self._event(event, out)
            yield from out
        yield from self._ending()

    def _event(self, event: SSEEvent, out: list[StreamDelta]) -> None:
        raise NotImplementedError

    def _ending(self) -> Iterator[StreamDelta]:
        raise NotImplementedError
