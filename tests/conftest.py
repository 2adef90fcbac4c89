"""Shared fixtures."""

from __future__ import annotations

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
