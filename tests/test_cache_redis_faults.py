"""A RedisCache whose Redis is frozen or dead never makes a call slower than no cache would (issue 14, 12).

Each test runs its own private redis-server (tests/redis_server.py) and then
freezes it (SIGSTOP: connections open, nothing answers) or kills it
(SIGKILL: connections refused). Each Redis operation is bounded by the
cache's ``timeout``; after a failure the cache skips Redis for
``recheck_interval`` seconds (logging once), so the calls go straight to the
provider. Every test carries a pytest-timeout: with Redis's own 5 s socket
timeout for each read and write, a frozen Redis used to cost 10 s a call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from llmkit import ConfigurationError, LLMClient
from llmkit.cache import RedisCache
from llmkit.config import load_settings
from llmkit.testing import FakeLLMServer


class Clock:
    """An injected clock: the cache's expiry and its recheck interval both read it."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def private_redis() -> Iterator[tuple[str, int]]:
    """A redis-server of this test's own, its URL and process id (to freeze or kill it)."""
    import redis
    from redis_server import redis_server

    with redis_server() as url:
        probe = redis.Redis.from_url(url)
        pid = int(probe.info("server")["process_id"])
        probe.close()
        try:
            yield url, pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)  # so that it can be stopped


def count_commands(cache: RedisCache) -> list[Any]:
    """Every command the cache sends from now on (sent, whether Redis answers or not)."""
    client = cache._client
    sent: list[Any] = []
    real = client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        return real(*args, **kwargs)

    client.execute_command = counting
    return sent


def openai_client(server: FakeLLMServer, cache: Any) -> LLMClient:
    return LLMClient("openai", api_keys=["sk-test-redis-cache-1"], base_url=server.openai_base_url,
                     model="gpt-4o-mini", cache=cache, timeout=5.0, settings=load_settings(environ={}),
                     metrics=False)  # fmt: skip


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("llmkit.cache") and r.levelno >= logging.WARNING]  # fmt: skip


@pytest.mark.timeout(20)
def test_with_a_frozen_redis_calls_go_straight_to_the_provider(
    private_redis: tuple[str, int], fake_server: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    url, pid = private_redis
    clock = Clock()
    cache = RedisCache(url, timeout=0.5, recheck_interval=30.0, clock=clock)
    caplog.set_level(logging.DEBUG, logger="llmkit.cache")
    with openai_client(fake_server, cache) as client:
        client.complete("warm")
        assert client.complete("warm").cached is True
        sent = count_commands(cache)
        os.kill(pid, signal.SIGSTOP)
        answers = [client.complete(f"frozen {i}") for i in range(5)]
        assert [a.content for a in answers] == [f"frozen {i}" for i in range(5)]
        assert not any(a.cached for a in answers)
        assert sent == ["GET"], "one read timed out; Redis was skipped until the recheck"
        (warning,) = cache_warnings(caplog)
        assert "Redis" in warning and "30" in warning

        os.kill(pid, signal.SIGCONT)
        assert client.complete("frozen 0").cached is False and sent == ["GET"]  # not yet time to recheck
        clock.now += 31
        assert client.complete("frozen 0").cached is False  # Redis tried again: a miss, then stored
        assert client.complete("frozen 0").cached is True
        assert sent == ["GET", "GET", "SET", "GET"]
    assert any("again" in r.getMessage() for r in caplog.records if r.name.startswith("llmkit.cache"))
    assert len(cache_warnings(caplog)) == 1
    cache.close()


@pytest.mark.timeout(20)
def test_with_a_dead_redis_calls_go_straight_to_the_provider(
    private_redis: tuple[str, int], fake_server: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    url, pid = private_redis
    cache = RedisCache(url, recheck_interval=30.0, clock=Clock())
    caplog.set_level(logging.DEBUG, logger="llmkit.cache")
    with openai_client(fake_server, cache) as client:
        client.complete("warm")
        sent = count_commands(cache)
        os.kill(pid, signal.SIGKILL)
        answers = [client.complete(f"dead {i}") for i in range(5)]
    assert [a.content for a in answers] == [f"dead {i}" for i in range(5)]
    assert sent == ["GET"]
    assert len(cache_warnings(caplog)) == 1
    cache.close()


@pytest.mark.timeout(15)
def test_the_defaults_bound_a_frozen_redis(
    private_redis: tuple[str, int], fake_server: FakeLLMServer
) -> None:
    """Without any option: 6 calls with Redis frozen end well within the test's timeout (once 60 s)."""
    url, pid = private_redis
    cache = RedisCache(url)
    with openai_client(fake_server, cache) as client:
        sent = count_commands(cache)
        os.kill(pid, signal.SIGSTOP)
        answers = [client.complete(f"frozen {i}") for i in range(6)]
    assert [a.content for a in answers] == [f"frozen {i}" for i in range(6)]
    assert sent == ["GET"]
    cache.close()


@pytest.mark.timeout(20)
def test_a_client_given_to_the_cache_is_skipped_too_after_a_failure(
    private_redis: tuple[str, int], fake_server: FakeLLMServer
) -> None:
    import redis

    url, pid = private_redis
    given = redis.Redis.from_url(url, socket_timeout=0.5)
    cache = RedisCache(given, recheck_interval=30.0)
    with openai_client(fake_server, cache) as client:
        sent = count_commands(cache)
        os.kill(pid, signal.SIGSTOP)
        answers = [client.complete(f"frozen {i}") for i in range(4)]
    assert [a.content for a in answers] == [f"frozen {i}" for i in range(4)]
    assert sent == ["GET"]
    cache.close()
    os.kill(pid, signal.SIGCONT)
    assert given.ping() is True  # a client the cache was given is not closed by it
    given.close()


@pytest.mark.parametrize(
    "kwargs", [{"timeout": 0}, {"timeout": -1}, {"timeout": "1"}, {"recheck_interval": -1},
               {"recheck_interval": True}],
)  # fmt: skip
def test_bad_timeouts_are_configuration_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RedisCache("redis://127.0.0.1:9/0", **kwargs)

