"""The spec's manager: both styles from the root import, status that locks nothing, reconfiguration."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Iterator

import pytest

from llmkit import (
    AsyncLLMClient,
    AsyncLLMManager,
    ConfigurationError,
    LLMClient,
    LLMManager,
    LLMProvider,
    RateLimitConfig,
    get_llm_manager,
    reset_llm_manager,
)
from llmkit.config import load_settings
from llmkit.testing import FakeLLMServer

KEYS = "sk-test-manager-1,sk-test-manager-2"


@pytest.fixture
def settings(fake_server: FakeLLMServer):
    return load_settings(environ={
        "ANTHROPIC_API_KEYS": KEYS,
        "LLM_PROVIDERS__ANTHROPIC__BASE_URL": fake_server.anthropic_base_url,
    })  # fmt: skip


@pytest.fixture
def manager(settings) -> Iterator[LLMManager]:
    reset_llm_manager()
    yield get_llm_manager(settings=settings)
    reset_llm_manager()


def test_the_root_getter_serves_both_styles(manager: LLMManager) -> None:
    assert isinstance(manager, LLMManager)
    assert manager.get_client(LLMProvider.ANTHROPIC).complete("sync").content == "sync"

    async def main() -> tuple[AsyncLLMManager, str]:
        twin = await get_llm_manager()
        client = twin.get_client(LLMProvider.ANTHROPIC)
        return twin, (await client.complete("async")).content

    twin, content = asyncio.run(main())
    assert isinstance(twin, AsyncLLMManager) and twin.sync_manager is manager
    assert content == "async"


def test_status_creates_no_client_and_locks_no_configuration(manager: LLMManager) -> None:
    status = manager.get_status(LLMProvider.ANTHROPIC)
    assert status["total_clients"] == 2 and "client_statuses" in status
    assert repr(manager) == "LLMManager(providers=[])"
    limit = RateLimitConfig(requests_per_minute=20, max_concurrent_requests=5)

    async def main() -> AsyncLLMClient:
        twin = await get_llm_manager()
        twin.get_status(LLMProvider.ANTHROPIC)
        return await twin.get_or_create_client(LLMProvider.ANTHROPIC, rate_limit_config=limit)

    client = asyncio.run(main())
    statuses = client.status()["client_statuses"]
    assert [s["limits"]["requests"]["per_minute"] for s in statuses] == [20, 20]


def test_a_new_rate_limit_rebuilds_an_idle_client(manager: LLMManager) -> None:
    first = manager.get_client(LLMProvider.ANTHROPIC)
    limit = RateLimitConfig(requests_per_minute=30)
    second = manager.get_or_create_client(LLMProvider.ANTHROPIC, rate_limit_config=limit)
    assert second is not first and first.closed and not second.closed
    assert second.status()["client_statuses"][0]["limits"]["requests"]["per_minute"] == 30
    assert manager.get_client(LLMProvider.ANTHROPIC) is second  # no overrides: the current one
    assert manager.get_or_create_client(LLMProvider.ANTHROPIC, rate_limit_config=limit) is second


def test_get_client_with_other_settings_says_how_to_go_on(manager: LLMManager) -> None:
    manager.get_client(LLMProvider.ANTHROPIC)
    with pytest.raises(ConfigurationError, match=r"get_or_create_client\(\.\.\.\) to rebuild"):
        manager.get_client(LLMProvider.ANTHROPIC, max_tokens=5)


@pytest.mark.timeout(20)
def test_a_busy_client_is_not_rebuilt(manager: LLMManager, fake_server: FakeLLMServer) -> None:
    client = manager.get_client(LLMProvider.ANTHROPIC)
    fake_server.latency = 1.0
    future = client.submit("slow")
    deadline = time.monotonic() + 5
    while client.status()["in_use_clients"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(ConfigurationError, match="1 request in flight or waiting") as info:
        limit = RateLimitConfig(max_concurrent=1)
        manager.get_or_create_client(LLMProvider.ANTHROPIC, rate_limit_config=limit)
    assert "manager.close_client" in str(info.value)
    assert future.result().content == "slow" and not client.closed


def test_get_llm_manager_refuses_arguments_it_would_ignore(settings) -> None:
    reset_llm_manager()
    try:
        manager = get_llm_manager(settings=settings)
        assert get_llm_manager() is manager and get_llm_manager(settings=settings) is manager
        with pytest.raises(ConfigurationError, match=r"already exists .*reset_llm_manager\(\)"):
            get_llm_manager(config_path="other.yaml")
        reset_llm_manager()
        assert get_llm_manager(settings=load_settings(environ={})) is not manager
    finally:
        reset_llm_manager()


def test_async_close_waits_as_long_as_sync_close_by_default() -> None:
    sync_default = inspect.signature(LLMClient.close).parameters["timeout"].default
    assert sync_default == 30.0
    for method in (AsyncLLMClient.aclose, AsyncLLMClient.close):
        assert inspect.signature(method).parameters["timeout"].default == sync_default
