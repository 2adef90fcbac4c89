"""The HTTP layer of the fake server: a stdlib threading server with keep-alive.

Each connection gets a daemon thread; replies are written in one ``sendall``
(headers and body together, TCP_NODELAY set) and streams as chunked
transfer-encoding. The server tracks open connections so that ``stop()`` can
close idle keep-alive connections at once.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .engine import Engine, HttpReply

__all__ = ["FakeHTTPServer"]

logger = logging.getLogger("llmkit.testing.fake_server")

_MAX_LINE = 65536
_MAX_HEADERS = 100
_REASONS = {status.value: status.phrase for status in HTTPStatus}
_REASONS[529] = "Site Overloaded"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llmkit-fake"
    disable_nagle_algorithm = True
    server: FakeHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_one_request(self) -> None:
        """Read one request with a lean HTTP/1.1 parser (the stdlib's email-based
        header parser costs a third of the server's time) and answer it."""
        line = self.rfile.readline(_MAX_LINE + 1)
        if not line:
            self.close_connection = True
            return
        parts = line.decode("latin-1").split()
        if len(line) > _MAX_LINE or len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self.request_version = "HTTP/1.1"
            self.send_error(400, "Bad request line")
            self.close_connection = True
            return
        self.command, self.path, self.request_version = parts
        headers = self._read_headers()
        if headers is None:
            return
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive")
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self._read_body(headers)
        if body is not None:
            self._serve(headers, body)

    def _read_headers(self) -> dict[str, str] | None:
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            line = self.rfile.readline(_MAX_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                return headers
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep or len(line) > _MAX_LINE:
                break
            headers[name.strip().lower()] = value.strip()
        self.send_error(431 if len(headers) >= _MAX_HEADERS else 400, "Bad request headers")
        self.close_connection = True
        return None

    def _read_body(self, headers: dict[str, str]) -> bytes | None:
        try:
            if headers.get("transfer-encoding", "").lower() == "chunked":
                return self._read_chunked()
            length = int(headers.get("content-length") or 0)
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.send_error(400, "Invalid request body framing")
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline(_MAX_LINE).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(_MAX_LINE)

    def _serve(self, headers: dict[str, str], raw: bytes) -> None:
        engine = self.server.engine
        try:
            reply = engine.handle(self.command, self.path, headers, raw)
        except Exception as exc:  # answer, never leave the client hanging
            logger.exception("fake server: error while handling %s %s", self.command, self.path)
            reply = engine.crash_reply(exc)
        try:
            self._write(reply)
        finally:
            if reply.on_done is not None:
                reply.on_done()

    def _wait(self, seconds: float) -> bool:
        """Sleep, but wake when the server stops; return False if it did."""
        return seconds <= 0 or not self.server.stopping.wait(seconds)

    def _head(self, reply: HttpReply, extra: list[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Error')}"]
        lines += [f"{name}: {value}" for name, value in reply.headers + extra]
        if self.close_connection:
            lines.append("connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _write(self, reply: HttpReply) -> None:
        if not self._wait(reply.delay) or reply.drop:
            self._drop()
            return
        if reply.events is None:
            head = self._head(reply, [("content-length", str(len(reply.body)))])
            if reply.trickle:
                self._trickle(head, reply.body, reply.trickle)
            else:
                self.wfile.write(head + reply.body)
            return
        self.wfile.write(self._head(reply, [("transfer-encoding", "chunked")]))
        for index, event in enumerate(reply.events):
            if index == reply.cut_at:
                if reply.cut_event is None:
                    self._drop()
                else:
                    self.wfile.write(_chunk(reply.cut_event) + b"0\r\n\r\n")
                return
            if event.delta and reply.interval and not self._wait(reply.interval):
                self._drop()
                return
            self.wfile.write(_chunk(event.data))
        self.wfile.write(b"0\r\n\r\n")

    def _trickle(self, head: bytes, body: bytes, seconds: float) -> None:
        """The headers now, then the body one byte every ``seconds``."""
        self.wfile.write(head)
        self.wfile.flush()
        for index in range(len(body)):
            if not self._wait(seconds):
                self._drop()
                return
            self.wfile.write(body[index : index + 1])
            self.wfile.flush()

    def _drop(self) -> None:
        """Close the connection without (finishing) a reply."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class FakeHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its engine and its open connections."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], engine: Engine) -> None:
        self.engine = engine
        self.stopping = threading.Event()
        self._stopped = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._wake_read, self._wake_write = socket.socketpair()
        super().__init__(address, _Handler)

    def serve_until_stopped(self) -> None:
        """Accept connections until :meth:`stop_serving` (which wakes it at once,
        unlike ``serve_forever``'s polling)."""
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._wake_read, selectors.EVENT_READ)
                while not self.stopping.is_set():
                    for ready, _ in selector.select():
                        if ready.fileobj is self and not self.stopping.is_set():
                            self._accept()
        finally:
            self._stopped.set()

    def _accept(self) -> None:
        try:
            request, client_address = self.get_request()
        except OSError:
            return
        try:
            self.process_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def stop_serving(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection, release the port."""
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")
        self._stopped.wait(timeout)
        self.close_connections()
        self.server_close()
        self._wake_read.close()
        self._wake_write.close()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every connection thread (idle keep-alive ones included) by closing its socket."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (or stop() closing sockets) is normal for a test server.
        logger.debug("fake server: connection error", exc_info=True)
