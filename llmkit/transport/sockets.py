"""The sockets an endpoint opened: so that a deadline or ``close()`` can end a call stuck on the wire.

A blocked ``recv`` in one thread is not woken by closing its socket in another;
``shutdown`` is what wakes it. :class:`TrackingBackend` wraps httpcore2's own
network backend and remembers every socket it connects, and :func:`shut` ends
one. The sockets are held weakly: a closed connection's socket is forgotten.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref
from typing import Any

__all__ = ["TrackingBackend", "shut", "socket_of"]


def shut(sock: socket.socket | None) -> None:
    """End every read and write on ``sock`` at once (the call using it then fails)."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def socket_of(stream: Any) -> socket.socket | None:
    """The socket under an httpcore2 network stream (plain or TLS), if it has one."""
    try:
        sock = stream.get_extra_info("socket")
    except Exception:  # a stream of another kind: no socket to reach
        return None
    return sock if isinstance(sock, socket.socket) else None


class TrackingBackend:
    """httpcore2's sync network backend, remembering the sockets it opens (see the module)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._lock = threading.Lock()

    def _track(self, stream: Any) -> Any:
        sock = socket_of(stream)
        if sock is not None:
            with self._lock:
                self._sockets.add(sock)
        return stream

    def connect_tcp(self, *args: Any, **kwargs: Any) -> Any:
        return self._track(self._inner.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        return self._track(self._inner.connect_unix_socket(*args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)

    def shut_all(self) -> int:
        """Shut down every socket this backend opened that is still open; how many."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            shut(sock)
        return len(sockets)
