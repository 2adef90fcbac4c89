"""A loopback HTTP server that answers with scripted raw bytes, for the protocol tests.

FakeLLMServer speaks each provider the way llmkit's own authors understood it;
these tests need replies written from the providers' references instead, sent
byte for byte: a JSON body, or an SSE stream cut into pieces anywhere (inside a
line, inside a UTF-8 character), ended by the chunked terminator or by closing
the connection, whole or cut short. Each request is recorded (path, headers,
JSON body) so a test can check what the adapter sent.
"""

from __future__ import annotations

import json
import random
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "FIXTURES",
    "WireReply",
    "WireServer",
    "fixture",
    "json_reply",
    "pieces",
    "sse_reply",
    "wire_server",
]

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "protocol"


def fixture(name: str) -> bytes:
    """The bytes of ``tests/fixtures/protocol/<name>``."""
    return (FIXTURES / name).read_bytes()


def pieces(data: bytes, rng: random.Random | None) -> list[bytes]:
    """``data`` whole (``rng`` None), or cut at random points into pieces of 1 to 40 bytes."""
    if rng is None:
        return [data]
    out, start = [], 0
    while start < len(data):
        size = rng.randint(1, 40)
        out.append(data[start : start + size])
        start += size
    return out


@dataclass
class WireReply:
    """One scripted reply. ``chunks`` stream (chunked, or raw until close with ``end="close"``)."""

    status: int = 200
    body: bytes = b""
    chunks: Sequence[bytes] | None = None
    headers: Sequence[tuple[str, str]] = ()
    content_type: str = "application/json"
    end: str = "chunked"  # "chunked": the terminating chunk; "close": close the connection


def json_reply(data: Any, status: int = 200, headers: Sequence[tuple[str, str]] = ()) -> WireReply:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return WireReply(status, body, headers=headers)


def sse_reply(
    data: bytes, rng: random.Random | None = None, *, end: str = "chunked",
    headers: Sequence[tuple[str, str]] = (),
) -> WireReply:  # fmt: skip
    """An SSE stream of ``data``, cut into pieces by ``rng`` (see :func:`pieces`)."""
    return WireReply(
        200, chunks=pieces(data, rng), headers=headers, content_type="text/event-stream", end=end
    )


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any = field(default=None)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.wire.recorded.append(Recorded("POST", self.path, headers, body))
        self._answer(self.server.wire.next_reply())

    def _answer(self, reply: WireReply) -> None:
        self.send_response(reply.status)
        self.send_header("content-type", reply.content_type)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.chunks is None:
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            return
        if reply.end == "close":
            self.send_header("connection", "close")
            self.close_connection = True
        else:
            self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for piece in reply.chunks:
            if reply.end == "close":
                self.wfile.write(piece)
            else:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
        if reply.end == "close":
            self.connection.shutdown(socket.SHUT_WR)
        else:
            self.wfile.write(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    wire: WireServer


class WireServer:
    """Scripted replies in order (the last one repeats); every request recorded."""

    def __init__(self) -> None:
        self.recorded: list[Recorded] = []
        self._replies: list[WireReply] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.wire = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)  # fmt: skip
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *replies: WireReply) -> None:
        """Answer the next requests with ``replies``, in order (the last one then repeats)."""
        with self._lock:
            self._replies = list(replies)
            self.recorded.clear()

    def next_reply(self) -> WireReply:
        with self._lock:
            if not self._replies:
                return json_reply({"error": {"message": "nothing scripted"}}, status=500)
            return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]

    @property
    def bodies(self) -> list[Any]:
        return [r.body for r in self.recorded]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def wire_server() -> Iterator[WireServer]:
    server = WireServer()
    try:
        yield server
    finally:
        server.close()


# -- driving a client the same way sync and async ---------------------------------------------

MODES = ("sync", "async")
SPLITS = (None, 1, 2, 3)  # None: each stream whole; a number: the seed of its random cuts


def rng_for(split: int | None) -> random.Random | None:
    return None if split is None else random.Random(split)


def complete(client: Any, mode: str, prompt: Any = "Hi", **kw: Any) -> Any:
    """``client.complete`` (sync) or ``await AsyncLLMClient.wrap(client).complete`` (async)."""
    if mode == "sync":
        return client.complete(prompt, **kw)
    import asyncio

    from llmkit import AsyncLLMClient

    async def run() -> Any:
        return await AsyncLLMClient.wrap(client).complete(prompt, **kw)

    return asyncio.run(run())


def stream(
    client: Any, mode: str, prompt: Any = "Hi", **kw: Any
) -> tuple[list[str], Any, BaseException | None]:
    """Stream to the end: ``(pieces, stream, error)``; the error is caught, not raised."""
    if mode == "sync":
        got: list[str] = []
        text_stream = client.stream(prompt, **kw)
        try:
            for piece in text_stream:
                got.append(piece)
        except Exception as exc:
            return got, text_stream, exc
        return got, text_stream, None
    import asyncio

    from llmkit import AsyncLLMClient

    async def run() -> tuple[list[str], Any, BaseException | None]:
        got: list[str] = []
        async_stream = AsyncLLMClient.wrap(client).stream(prompt, **kw)
        try:
            async for piece in async_stream:
                got.append(piece)
        except Exception as exc:
            return got, async_stream, exc
        return got, async_stream, None

    return asyncio.run(run())
