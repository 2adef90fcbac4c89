"""The spec's ConnectionPool: per-key concurrency, and how long a failed key rests before a probe."""

from __future__ import annotations

import pytest

from llmkit import ConfigurationError, ConnectionPool, LLMClient, PoolConfig, ProviderError, RateLimit
from llmkit.config import load_settings
from llmkit.engine.clock import FakeClock
from llmkit.testing import FakeLLMServer, Fault

KEYS = ["sk-test-pool-key-1", "sk-test-pool-key-2"]


def make(server: FakeLLMServer, **kw) -> ConnectionPool:
    kw.setdefault("settings", load_settings(environ={}))
    return ConnectionPool(api_keys=KEYS, provider="openai", base_url=server.openai_base_url, **kw)


def test_the_specs_parameters_mean_what_they_say(fake_server: FakeLLMServer) -> None:
    with make(fake_server, max_connections_per_key=5, health_check_interval=60) as pool:
        assert isinstance(pool, LLMClient)
        statuses = pool.status()["client_statuses"]
        assert [s["max_concurrent"] for s in statuses] == [5, 5]
        assert pool.complete("hello").content == "hello"
        assert "max_connections_per_key=5, health_check_interval=60" in repr(pool)


def test_other_limits_are_kept(fake_server: FakeLLMServer) -> None:
    settings = load_settings(environ={"LLM_PROVIDERS__OPENAI__RATE_LIMITS__REQUESTS_PER_MINUTE": "30"})
    with make(fake_server, max_connections_per_key=2, settings=settings) as pool:
        statuses = pool.status()["client_statuses"]
        limits = [(s["max_concurrent"], s["limits"]["requests"]["per_minute"]) for s in statuses]
        assert limits == [(2, 30), (2, 30)]
    limit = RateLimit(requests_per_minute=7)
    with make(fake_server, max_connections_per_key=3, rate_limit=limit) as pool:
        statuses = pool.status()["client_statuses"]
        assert [s["limits"]["requests"]["per_minute"] for s in statuses] == [7, 7]


def test_a_failed_key_is_probed_after_the_health_check_interval(fake_server: FakeLLMServer) -> None:
    clock = FakeClock()
    pool = make(fake_server, health_check_interval=60, pool=PoolConfig(failure_threshold=1), clock=clock,
                max_retries=0)  # fmt: skip
    with pool:
        fake_server.script(Fault(status=500))
        with pytest.raises(ProviderError):
            pool.complete("fails")
        def failed_state() -> str:
            return next(s["state"] for s in pool.status()["client_statuses"] if s["error_count"])

        assert failed_state() == "open"
        clock.advance(59.9)
        assert failed_state() == "open"
        clock.advance(0.2)
        assert failed_state() == "half-open"  # the next request to it is the probe


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_connections_per_key": 0}, "max_connections_per_key must be a whole number >= 1"),
     ({"max_connections_per_key": True}, "max_connections_per_key"),
     ({"health_check_interval": -1}, "health_check_interval must be a number of seconds >= 0")],
)
def test_bad_parameters_are_refused(fake_server: FakeLLMServer, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make(fake_server, **kwargs)
