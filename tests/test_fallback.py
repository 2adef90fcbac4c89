"""Fallbacks: which failures move a call to the next provider, and which do not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llmkit import (
    ConfigurationError,
    InvalidRequestError,
    LLMClient,
    PoolExhaustedError,
    ProviderError,
    RateLimit,
)
from llmkit.config import load_settings
from llmkit.errors import AuthenticationError, RateLimitError, StructuredOutputError
from llmkit.fallback import should_fall_back
from llmkit.testing import FakeLLMServer, Fault

NO_ENV = load_settings(environ={})


@pytest.fixture
def srv() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def primary(srv: FakeLLMServer, fallbacks: list[Any], **kw: Any) -> LLMClient:
    return LLMClient(
        "openai", api_keys=["sk-primary"], base_url=srv.openai_base_url, settings=NO_ENV,
        max_retries=1, retry_delay=0.001, metrics=False, fallbacks=fallbacks, **kw,
    )


def anthropic_fallback(srv: FakeLLMServer) -> tuple[str, str, dict[str, Any]]:
    return ("anthropic", "claude-3-5-haiku-latest",
            {"api_keys": ["sk-ant-fallback"], "base_url": srv.anthropic_base_url, "max_retries": 0})


def providers_called(srv: FakeLLMServer) -> list[str | None]:
    return [r.provider for r in srv.requests]


def test_5xx_until_retries_run_out_falls_back(srv: FakeLLMServer) -> None:
    srv.add_fault(Fault(status=500, provider="openai"))
    with primary(srv, [anthropic_fallback(srv)]) as client:
        r = client.complete("hello")
    assert (r.content, r.provider, r.model, r.fallback_index) == (
        "hello", "anthropic", "claude-3-5-haiku-latest", 1)
    assert providers_called(srv) == ["openai", "openai", "anthropic"]  # 1 try + 1 retry, then fallback


def test_pool_exhausted_falls_back(srv: FakeLLMServer) -> None:
    with primary(srv, [anthropic_fallback(srv)], rate_limit=RateLimit(requests_per_minute=1),
                 acquire_timeout=0.05) as client:
        assert client.complete("one").fallback_index == 0
        r = client.complete("two")
    assert (r.provider, r.fallback_index) == ("anthropic", 1)


def test_fallback_chain_in_order_with_clients(srv: FakeLLMServer) -> None:
    srv.add_fault(Fault(status=503, key="sk-primary"))  # groq shares the OpenAI dialect, not the key
    srv.add_fault(Fault(status=529, provider="anthropic"))
    groq = LLMClient("groq", api_keys=["gsk_f"], base_url=srv.openai_base_url, settings=NO_ENV,
                     model="llama-3.1-8b-instant", max_retries=0)
    with groq:
        with primary(srv, [anthropic_fallback(srv), groq]) as client:
            r = client.complete("hi")
        assert not groq.closed  # a client that was passed in is not closed with the primary
    assert (r.provider, r.model, r.fallback_index) == ("groq", "llama-3.1-8b-instant", 2)


def test_all_failing_raises_the_last_error_chained(srv: FakeLLMServer) -> None:
    srv.add_fault(Fault(status=500))
    with primary(srv, [anthropic_fallback(srv)]) as client, pytest.raises(ProviderError) as info:
        client.complete("hi")
    assert info.value.provider == "anthropic"
    assert isinstance(info.value.__cause__, ProviderError) and info.value.__cause__.provider == "openai"


def test_invalid_request_does_not_fall_back(srv: FakeLLMServer) -> None:
    srv.add_fault(Fault(status=400, provider="openai"))
    with primary(srv, [anthropic_fallback(srv)]) as client, pytest.raises(InvalidRequestError):
        client.complete("hi")
    assert providers_called(srv) == ["openai"]


def test_success_never_touches_the_fallback(srv: FakeLLMServer) -> None:
    with primary(srv, [anthropic_fallback(srv)]) as client:
        r = client.complete("hi")
    assert (r.provider, r.fallback_index) == ("openai", 0)
    assert providers_called(srv) == ["openai"]


def test_primary_middleware_counts_the_fallback_answer_once(srv: FakeLLMServer) -> None:
    srv.add_fault(Fault(status=500, provider="openai"))
    with primary(srv, [anthropic_fallback(srv)]) as client:
        client.complete("hi")
        usage = client.usage()
    assert usage["requests"] == 1 and "anthropic" in usage["by_provider"]


def test_fallback_needs_its_keys_at_construction(srv: FakeLLMServer) -> None:
    with pytest.raises(ConfigurationError, match="No API key for anthropic"):
        primary(srv, [("anthropic", "claude-3-5-haiku-latest")])
    with pytest.raises(ConfigurationError, match="fallbacks"):
        primary(srv, [("anthropic",)])


def test_which_errors_fall_back() -> None:
    assert should_fall_back(ProviderError("x"))
    assert should_fall_back(RateLimitError("x"))
    assert should_fall_back(PoolExhaustedError("x"))
    assert should_fall_back(AuthenticationError("x"))
    assert not should_fall_back(InvalidRequestError("x"))
    assert not should_fall_back(StructuredOutputError("x"))
    assert not should_fall_back(ValueError("x"))
