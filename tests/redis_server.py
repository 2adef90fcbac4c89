"""A private, throwaway ``redis-server`` for tests.

:func:`redis_server` starts ``redis-server`` on 127.0.0.1 at a free port, in
a temporary directory, with persistence off; waits until it answers PING;
yields its URL; and stops it afterwards. When ``redis-server`` is not
installed the test is skipped, except under ``CI=true``, where that is a
failure: install it (``apt-get install redis-server``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["find_redis_server", "redis_server"]

START_TIMEOUT = 10.0


def find_redis_server() -> str | None:
    """The path of ``redis-server`` ($REDIS_SERVER, the PATH, or the usual sbin dirs)."""
    candidates = [os.environ.get("REDIS_SERVER"), shutil.which("redis-server")]
    candidates += ["/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _start(binary: str, directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    log = directory / "redis.log"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory), "--logfile", str(log), "--daemonize", "no"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if _answers_ping(port):
            return process, port
        time.sleep(0.02)
    _stop(process)
    detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"redis-server did not answer PING on port {port}:\n{detail}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextmanager
def redis_server() -> Iterator[str]:
    """Run a private redis-server; yields ``redis://127.0.0.1:<port>/0``."""
    binary = find_redis_server()
    if binary is None:
        message = "redis-server is not installed: install redis-server (apt-get install redis-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with tempfile.TemporaryDirectory(prefix="llmkit-redis-") as directory:
        for attempt in range(3):  # the free port may be taken between probe and bind
            try:
                process, port = _start(binary, Path(directory))
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            _stop(process)
