"""A small incremental parser of server-sent events (the WHATWG ``text/event-stream`` format).

Feed it bytes as they arrive, in chunks cut anywhere (inside a line, inside a
``\\r\\n`` pair, inside a UTF-8 character); it returns the events completed so
far. Lines end with ``\\n``, ``\\r\\n`` or ``\\r``; ``data:`` lines of one event
are joined with ``\\n``; ``:`` lines are comments; a blank line ends an event.

One leniency beyond the standard: :meth:`SSEParser.close` also returns an
event whose closing blank line never came (the standard drops it). A caller
that must tell a cut stream from a complete one checks the payload itself.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEParser"]

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its joined data, its type and the last event id seen."""

    data: str
    event: str = "message"
    id: str | None = None


class SSEParser:
    """Incremental SSE parser: ``feed(chunk) -> events``, then ``close() -> events``."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None

    def feed(self, chunk: bytes | str) -> list[SSEEvent]:
        """Add a chunk; return the events it completed (often none)."""
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        self._buffer += text
        return self._drain(final=False)

    def close(self) -> list[SSEEvent]:
        """The stream ended: return what is left (see the module doc on leniency)."""
        self._buffer += self._decoder.decode(b"", final=True)
        events = self._drain(final=True)
        if self._buffer:
            events += self._line(self._buffer)
            self._buffer = ""
        events += self._line("")
        return events

    def _drain(self, final: bool) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        start = 0
        buffer = self._buffer
        for match in _LINE_END.finditer(buffer):
            if match.group() == "\r" and match.end() == len(buffer) and not final:
                break  # maybe the first half of "\r\n": wait for the next chunk
            events += self._line(buffer[start : match.start()])
            start = match.end()
        self._buffer = buffer[start:]
        return events

    def _line(self, line: str) -> list[SSEEvent]:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return []
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        return []

    def _dispatch(self) -> list[SSEEvent]:
        if not self._data:
            self._event = ""
            return []
        event = SSEEvent("\n".join(self._data), self._event or "message", self._last_id)
        self._data, self._event = [], ""
        return [event]
