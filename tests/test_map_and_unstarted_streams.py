"""Two smaller promises: ``map`` stops paying for the others after its first error, and a
stream that is never started holds no budget."""

from __future__ import annotations

import asyncio
import signal
import threading

import pytest

from llmkit import AsyncLLMClient, LLMClient, RateLimit
from llmkit.config import load_settings
from llmkit.errors import BudgetExceededError, InvalidRequestError
from llmkit.testing import FakeLLMServer, Fault

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def clean(server):
    server.reset()
    server.latency = 0.0


def make(server: FakeLLMServer, **kw) -> LLMClient:
    kw.setdefault("retry_delay", 0.01)
    return LLMClient("openai", api_keys=["sk-map-1"], base_url=server.openai_base_url,
                     settings=load_settings(environ={}), **kw)  # fmt: skip


def test_map_stops_the_calls_not_sent_yet_after_the_first_error(server):
    server.add_fault(Fault(status=400), times=1)  # the first call sent fails for good
    with make(server, rate_limit=RateLimit(max_concurrent=1)) as client:
        with pytest.raises(InvalidRequestError):
            client.map([f"p{i}" for i in range(20)])
        threading.Event().wait(0.3)  # would the others still go out?
        # not twenty: at most the few that were granted the key before the error reached map
        # (each of the 4 worker threads may be granted it once while the caller's thread is busy)
        assert len(server.requests) <= 4
        assert client.status()["in_use_clients"] == 0
        assert client.complete("the client still works").content


def test_ctrl_c_stops_a_map_and_leaves_the_workers_free(server):
    server.latency = 0.05
    main = threading.main_thread().ident
    assert main is not None and threading.get_ident() == main
    with make(server, rate_limit=RateLimit(max_concurrent=1)) as client:
        timer = threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            client.map([f"p{i}" for i in range(40)])
        timer.join()
        sent = len(server.requests)
        threading.Event().wait(0.3)  # would the others still go out?
        assert len(server.requests) <= sent + 1 < 20  # the one on the wire may still finish
        assert client.complete("the client still works").content


def test_map_returns_results_in_input_order(server):
    with make(server) as client:
        results = client.map(["a", "b", "c"])
    assert [r.content for r in results] == ["a", "b", "c"]


PRICES = {"gpt-4o-mini": {"input": 1000.0, "output": 1000.0}}  # dollars per million tokens


def test_unstarted_streams_hold_no_budget(server):
    with make(server, prices=PRICES, max_cost=1.0, max_tokens=100) as client:
        streams = [client.stream("hello") for _ in range(16)]  # each would fit alone; none started
        assert client._cost.reserved == 0.0
        assert client.complete("still within budget").content
        text = "".join(streams[0])  # starting one reserves, ending it charges its real usage
        assert text and client._cost.reserved == 0.0 and streams[0].cost


def test_a_started_stream_reserves_until_it_ends(server):
    with make(server, prices=PRICES, max_cost=1.0, max_tokens=100) as client:
        stream = client.stream("hello")
        next(stream)
        assert client._cost.reserved > 0
        stream.close()
        assert client._cost.reserved == 0.0


def test_a_stream_that_no_longer_fits_is_refused_when_it_starts(server):
    with make(server, prices=PRICES, max_cost=0.15, max_tokens=100) as client:  # one fits, not two
        first, second = client.stream("hello"), client.stream("hello")
        next(first)  # holds most of the budget
        with pytest.raises(BudgetExceededError):
            next(second)
        first.close()
    assert len(server.requests) == 1


def test_unstarted_async_streams_hold_no_budget(server):
    async def run() -> None:
        async with AsyncLLMClient.wrap(make(server, prices=PRICES, max_cost=1.0, max_tokens=100)) as client:
            streams = [client.stream("hello") for _ in range(16)]
            assert client.sync_client._cost.reserved == 0.0
            assert (await client.complete("still within budget")).content
            assert "".join([t async for t in streams[0]])
            assert client.sync_client._cost.reserved == 0.0

    asyncio.run(run())
