"""Shared fixtures."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from llmkit.testing import FakeLLMServer


@pytest.fixture
def fake_server() -> Iterator[FakeLLMServer]:
    """A started :class:`FakeLLMServer` with default settings (echo replies, no limits)."""
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a private redis-server for this test session (see tests/redis_server.py).

    Skipped when redis-server is not installed; under ``CI=true`` that fails instead.
    """
    from redis_server import redis_server

    with redis_server() as url:
        yield url


# Shapes of the keys tests use ("sk-test-...", "sk-bench-...", "test-key-..."): none may ever
# reach a log record of llmkit's, whatever the test did.
_KEY_SHAPES = re.compile(r"(?:sk-[A-Za-z0-9]+-[A-Za-z0-9-]{4,}|test-key-\d+)")


class _KeyLeakWatcher(logging.Handler):
    """Collects every llmkit log record of the session that looks like it holds a key."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a broken record is not our concern here
            return
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + str(record.exc_info[1])
        if _KEY_SHAPES.search(text):
            self.leaks.append(f"{record.name}: {text[:300]}")


@pytest.fixture(scope="session", autouse=True)
def no_key_in_any_log_record() -> Iterator[None]:
    """Watch llmkit's loggers at DEBUG for the whole run; fail the run if a key showed up."""
    watcher = _KeyLeakWatcher()
    package_logger = logging.getLogger("llmkit")
    previous = package_logger.level
    package_logger.addHandler(watcher)
    package_logger.setLevel(logging.DEBUG)
    yield
    package_logger.removeHandler(watcher)
    package_logger.setLevel(previous)
    assert not watcher.leaks, "API keys reached log records:\n" + "\n".join(watcher.leaks[:10])
