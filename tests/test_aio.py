"""AsyncLLMClient and the async manager: parity with the sync API, and cancellation.

Streaming through the async client is tested in tests/test_streaming.py, next
to the sync streams it must match.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time

import pytest
from pydantic import BaseModel

from llmkit import (
    AsyncLLMClient,
    AsyncLLMManager,
    AsyncTextStream,
    InvalidRequestError,
    LLMClient,
    LLMManager,
    LLMProvider,
    RateLimit,
    Response,
    Session,
    SessionManager,
)
from llmkit.aio import get_llm_manager
from llmkit.config import PoolConfig, load_settings
from llmkit.manager import reset_llm_manager
from llmkit.testing import FakeLLMServer, Fault, ToolCallReply

PROVIDERS = ["openai", "anthropic"]
KEY1, KEY2 = "sk-aio-1", "sk-aio-2"


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def clean(server):
    server.reset()
    server.latency = 0.0


def url_of(server: FakeLLMServer, provider: str) -> str:
    return server.openai_base_url if provider == "openai" else server.anthropic_base_url


def make(server: FakeLLMServer, provider: str = "openai", keys=(KEY1,), **kw) -> LLMClient:
    kw.setdefault("retry_delay", 0.01)
    settings = load_settings(environ={})
    return LLMClient(
        provider, api_keys=list(keys), base_url=url_of(server, provider), settings=settings, **kw
    )


def amake(server: FakeLLMServer, provider: str = "openai", keys=(KEY1,), **kw) -> AsyncLLMClient:
    return AsyncLLMClient.wrap(make(server, provider, keys, **kw))


async def until(predicate, timeout: float = 3.0) -> bool:
    """Poll ``predicate`` without blocking the loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.005)
    return bool(predicate())


# -- API parity ------------------------------------------------------------------------------

# Sync methods whose twin deliberately stays a plain call: they read or flip in-memory
# state (no I/O, no waiting), so awaiting them would only add ceremony.
SYNC_BY_DESIGN = {
    "status",  # the spec writes `client.get_status(...)`/`status()` without await
    "usage",
    "metrics",
    "enable_key",
    "close",  # kept for code outside the loop; `aclose()` is the awaitable twin
}
# Twins that return something async rather than being coroutine functions.
RETURNS_ASYNC_ITERATOR = {"stream", "stream_complete"}
RETURNS_TASK = {"submit"}  # an asyncio.Task, as the sync one returns a concurrent Future
RENAMED = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}
MANAGER_SYNC_BY_DESIGN = {
    "get_client",  # the spec: `client = manager.get_client(LLMProvider.ANTHROPIC)`, no await
    "get_status",  # the spec: `status = manager.get_status(LLMProvider.ANTHROPIC)`, no await
}


def public_methods(cls: type) -> list[str]:
    names = [n for n, v in inspect.getmembers(cls) if callable(v) and not n.startswith("_")]
    return [*names, "__enter__", "__exit__"]


@pytest.mark.parametrize("name", public_methods(LLMClient))
def test_every_client_method_has_an_async_twin(name):
    if name in SYNC_BY_DESIGN:
        assert callable(getattr(AsyncLLMClient, name))
        assert not inspect.iscoroutinefunction(getattr(AsyncLLMClient, name))
    twin_name = RENAMED.get(name, name)
    if name in SYNC_BY_DESIGN and name not in RENAMED:
        return
    twin = getattr(AsyncLLMClient, twin_name)
    if name in RETURNS_ASYNC_ITERATOR:
        assert inspect.signature(twin).return_annotation == "AsyncTextStream"
        assert hasattr(AsyncTextStream, "__anext__") and hasattr(AsyncTextStream, "aclose")
    elif name in RETURNS_TASK:
        assert "asyncio.Task" in str(inspect.signature(twin).return_annotation)
    else:
        assert inspect.iscoroutinefunction(twin), f"AsyncLLMClient.{twin_name} should be async"


def test_properties_and_attributes_match():
    for name, value in inspect.getmembers(LLMClient):
        if isinstance(value, property) and not name.startswith("_"):
            assert isinstance(getattr(AsyncLLMClient, name), property), name


@pytest.mark.parametrize("name", public_methods(LLMManager))
def test_every_manager_method_has_an_async_twin(name):
    twin = getattr(AsyncLLMManager, RENAMED.get(name, name) if name.startswith("__") else name)
    if name in MANAGER_SYNC_BY_DESIGN:
        assert not inspect.iscoroutinefunction(twin)
    else:
        assert inspect.iscoroutinefunction(twin), f"AsyncLLMManager.{name} should be async"


def test_the_stream_carries_what_the_sync_stream_carries():
    from llmkit import TextStream

    for name, value in inspect.getmembers(TextStream):
        if not name.startswith("_") and (isinstance(value, property) or name in ("close",)):
            assert hasattr(AsyncTextStream, name), name
    async def nothing():
        return
        yield

    sync_stream = TextStream(iter(()), provider="openai", model="m")
    async_stream = AsyncTextStream(nothing(), provider="openai", model="m")
    assert set(vars(sync_stream)) - {"_deltas"} <= set(vars(async_stream)), "attributes set in __init__"
    for name in ("usage", "finish_reason", "request_id", "done", "provider", "model", "cost", "key_id"):
        assert hasattr(async_stream, name)


# -- behaviour parity ----------------------------------------------------------------------


def essentials(response: Response) -> tuple:
    return (response.content, response.usage, response.finish_reason, response.model, response.provider)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_same_replies_give_the_same_responses(server, provider):
    replies = ["Paris.", "Two plus two is four.", "A" * 300]
    prompts = ["Capital of France?", "2+2?", "Shout."]
    server.script(*replies)
    with make(server, provider) as client:
        sync = [client.complete(p, max_tokens=50) for p in prompts]

    async def run():
        async with amake(server, provider) as aclient:
            return [await aclient.complete(p, max_tokens=50) for p in prompts]

    server.script(*replies)
    results = asyncio.run(run())
    assert [essentials(r) for r in results] == [essentials(r) for r in sync]
    assert sync[2].finish_reason in ("length", "max_tokens")  # max_tokens cut it, in both
    assert all(r.key_id and r.attempts == 1 and r.latency > 0 for r in results)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_retries_behave_the_same(server, provider):
    async def run():
        async with amake(server, provider, keys=(KEY1, KEY2)) as aclient:
            return await aclient.complete("hello")

    server.script(Fault(status=503), Fault(status=429, retry_after=30))
    response = asyncio.run(run())
    assert response.content == "hello" and response.attempts == 3
    assert [r.status for r in server.requests] == [503, 429, 200]


def test_errors_raise_the_same_exception(server):
    async def run():
        async with amake(server, max_retries=0) as aclient:
            await aclient.complete("x")

    server.script(Fault(status=400))
    with pytest.raises(InvalidRequestError):
        asyncio.run(run())


class City(BaseModel):
    name: str
    population: int


@pytest.mark.parametrize("provider", PROVIDERS)
def test_structured_outputs(server, provider):
    async def run():
        async with amake(server, provider) as aclient:
            city = await aclient.complete("Paris?", response_model=City)
            pair = await aclient.complete("Paris?", response_model=City, include_response=True)
            return city, pair

    server.script(*[ToolCallReply("City", {"name": "Paris", "population": 2_100_000})] * 2)
    city, (again, response) = asyncio.run(run())
    assert city == again == City(name="Paris", population=2_100_000)
    assert isinstance(response, Response) and response.usage.output_tokens > 0


# -- concurrency helpers -------------------------------------------------------------------------


class _AsyncAware:
    """A middleware with an ``acall``: async calls stay on the event loop."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def __call__(self, request, call_next):
        self.seen.append("sync " + threading.current_thread().name)
        return call_next(request)

    async def acall(self, request, call_next):
        self.seen.append("async " + threading.current_thread().name)
        return await call_next(request)


def test_an_async_call_runs_on_the_event_loop_thread(server):
    seen: list[str] = []

    async def run():
        async with amake(server, middleware=[_AsyncAware(seen)]) as aclient:
            await aclient.complete("hi")

    asyncio.run(run())
    assert seen == ["async " + threading.current_thread().name]
    assert len(server.requests) == 1


def test_a_sync_only_middleware_runs_the_chain_in_a_worker_thread(server):
    seen: list[str] = []

    def recording(request, call_next):
        seen.append(threading.current_thread().name)
        return call_next(request)

    async def run():
        async with amake(server, middleware=[recording]) as aclient:
            return await aclient.complete("hi")

    response = asyncio.run(run())
    assert response.content and seen and seen[0].startswith("llmkit-openai")


def test_submit_gather_and_map(server):
    async def run():
        async with amake(server, keys=(KEY1, KEY2)) as aclient:
            task = aclient.submit("one")
            assert isinstance(task, asyncio.Task)
            mapped = await aclient.map(["a", "b", "c"])
            gathered = await aclient.gather("x", "y")
            return (await task), mapped, gathered

    first, mapped, gathered = asyncio.run(run())
    assert first.content == "one"
    assert [r.content for r in mapped] == ["a", "b", "c"]
    assert [r.content for r in gathered] == ["x", "y"]


def test_submit_rejects_bad_input_at_once(server):
    async def run():
        async with amake(server) as aclient:
            with pytest.raises(InvalidRequestError):
                aclient.submit([])

    asyncio.run(run())


def test_gather_with_return_exceptions_keeps_errors_in_place(server):
    async def run():
        async with amake(server, max_retries=0) as aclient:
            return await aclient.gather("a", "b", return_exceptions=True)

    server.script("fine", Fault(status=400))
    results = asyncio.run(run())
    assert sorted(type(r).__name__ for r in results) == ["InvalidRequestError", "Response"]


def test_map_cancels_the_rest_when_one_fails(server):
    async def run():
        async with amake(
            server, keys=(KEY1,), max_retries=0, rate_limit=RateLimit(max_concurrent=1)
        ) as aclient:
            with pytest.raises(InvalidRequestError):
                await aclient.map(["bad", *["queued"] * 5])
            assert await until(lambda: aclient.status()["waiting_requests"] == 0)
            assert await until(lambda: aclient.status()["in_use_clients"] == 0)

    server.script(Fault(status=400))
    asyncio.run(run())
    assert len(server.requests) < 6  # the queued ones were called off


def test_batch_status_usage_metrics(server):
    async def run():
        async with amake(server, keys=(KEY1, KEY2)) as aclient:
            result = await aclient.batch(["a", "b", "c"], progress=False)
            return list(result), aclient.status(), aclient.usage(), aclient.metrics()

    results, status, usage, metrics = asyncio.run(run())
    assert [r.content for r in results] == ["a", "b", "c"]
    assert status["total_clients"] == 2 and status["in_use_clients"] == 0
    assert usage["requests"] == 3
    assert isinstance(metrics, dict)


def test_sessions_work_with_the_async_client(server):
    async def run():
        async with amake(server) as aclient:
            session = Session("Be brief.", client=aclient)
            first = await session.acomplete("My name is Alice")
            await session.acomplete("What's my name?")
            manager_session = SessionManager()
            await manager_session.add_message("user", "hello")
            reply = await aclient.complete(manager_session.get_messages())
            return first, session, reply

    server.script("Hi Alice.", "Alice.")
    first, session, reply = asyncio.run(run())
    assert first.content == "Hi Alice."
    assert [m.content for m in session.get_messages()][-2:] == ["What's my name?", "Alice."]
    assert reply.content == "hello"


def test_close_is_idempotent_and_refuses_new_calls(server):
    async def run():
        aclient = amake(server)
        await aclient.complete("hi")
        await aclient.aclose()
        await aclient.aclose()
        assert aclient.closed
        from llmkit import PoolClosedError

        with pytest.raises(PoolClosedError):
            await aclient.complete("again")

    asyncio.run(run())


def test_constructor_takes_the_sync_arguments(server):
    async def run():
        async with AsyncLLMClient(
            "anthropic",
            api_keys=[KEY1],
            base_url=server.anthropic_base_url,
            settings=load_settings(environ={}),
        ) as aclient:
            assert aclient.provider == "anthropic" and isinstance(aclient.sync_client, LLMClient)
            return await aclient.complete("hi")

    assert asyncio.run(run()).content == "hi"


# -- the async manager ----------------------------------------------------------------------------


def test_the_specs_manager_code_runs(server, tmp_path, monkeypatch):
    config = tmp_path / "llm.yaml"
    config.write_text(
        f"providers:\n  anthropic:\n    api_keys: [{KEY1}, {KEY2}]\n"
        f"    base_url: {server.anthropic_base_url}\n"
    )
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_API_KEYS", "LLM_DEFAULT_PROVIDER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LLM_CONFIG_PATH", str(config))
    reset_llm_manager()

    async def main():
        manager = await get_llm_manager()
        client = manager.get_client(LLMProvider.ANTHROPIC)
        response = await client.complete("What is the capital of France?")
        status = manager.get_status(LLMProvider.ANTHROPIC)
        other = await manager.get_or_create_client(LLMProvider.ANTHROPIC)
        await manager.close()
        return response, status, client, other

    try:
        response, status, client, other = asyncio.run(main())
    finally:
        reset_llm_manager()
    assert response.content == "What is the capital of France?"
    assert status["total_clients"] == 2
    assert client.sync_client is other.sync_client  # one pooled client, shared
    assert client.closed


# -- cancellation ---------------------------------------------------------------------------------


def hold_the_only_key(client: AsyncLLMClient) -> AsyncTextStream:
    return client.stream("hold " * 200)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_cancelled_request_waiting_for_a_busy_key_leaves_the_queue(server, provider):
    async def run(aclient: AsyncLLMClient):
        holder = hold_the_only_key(aclient)
        await holder.__anext__()  # the only key is busy now
        waiter = asyncio.ensure_future(asyncio.wait_for(aclient.complete("waiting"), 1.0))
        assert await until(lambda: aclient.status()["waiting_requests"] == 1, 0.9)
        with pytest.raises(asyncio.TimeoutError):
            await waiter
        # acquire_timeout is 60 s: only the cancellation can have ended the wait this soon
        assert await until(lambda: aclient.status()["waiting_requests"] == 0)
        await holder.aclose()
        assert aclient.status()["in_use_clients"] == 0
        assert (await aclient.complete("next")).content == "next"  # nothing stale in the queue

    with make(server, provider, rate_limit=RateLimit(max_concurrent=1), acquire_timeout=60) as client:
        asyncio.run(run(AsyncLLMClient.wrap(client)))
    assert [r.body.get("stream", False) for r in server.requests] == [True, False]  # "waiting" never sent


def test_a_cancelled_request_waiting_for_a_cooling_key_leaves_the_queue(server):
    async def run(aclient: AsyncLLMClient):
        await aclient.complete("warm up")
        server.script(Fault(status=429, retry_after=30))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(aclient.complete("cooling"), 1.0)
        assert await until(lambda: aclient.status()["waiting_requests"] == 0)
        status = aclient.status()
        assert status["in_use_clients"] == 0
        assert status["client_statuses"][0]["state"] == "cooling"

    with make(server, acquire_timeout=60) as client:
        started = time.monotonic()
        asyncio.run(run(AsyncLLMClient.wrap(client)))
        assert time.monotonic() - started < 10
    assert [r.status for r in server.requests] == [200, 429]


def test_cancelling_many_waiters_empties_the_queue(server):
    async def run(aclient: AsyncLLMClient):
        holder = hold_the_only_key(aclient)
        await holder.__anext__()
        tasks = [aclient.submit(f"w{i}") for i in range(6)]
        assert await until(lambda: aclient.status()["waiting_requests"] >= 1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert await until(lambda: aclient.status()["waiting_requests"] == 0)
        await holder.aclose()
        assert aclient.status()["in_use_clients"] == 0

    with make(server, rate_limit=RateLimit(max_concurrent=1), acquire_timeout=60) as client:
        asyncio.run(run(AsyncLLMClient.wrap(client)))
    assert len(server.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_cancelled_in_flight_request_releases_its_key_at_once(server, provider):
    async def run(aclient: AsyncLLMClient):
        await aclient.complete("warm up")  # SDK imported, client built: the next call goes out at once
        server.latency = 1.0
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(aclient.complete("slow"), 0.3)
        assert aclient.status()["in_use_clients"] == 0  # the HTTP exchange was abandoned with the task
        server.latency = 0.0
        assert (await aclient.complete("next")).content

    with make(server, provider) as client:
        asyncio.run(run(AsyncLLMClient.wrap(client)))
    assert len(server.requests) == 3  # "slow" was sent once (not retried), then "next"


@pytest.mark.timeout(20)
def test_an_open_stream_and_waiting_calls_do_not_starve_each_other(server):
    """One key, one call at a time, one worker thread: the stream's chunks never wait for a thread."""

    async def run(aclient: AsyncLLMClient) -> list[str]:
        stream = aclient.stream("the stream holds the only key")
        first = await stream.__anext__()
        waiting = [aclient.submit(f"waiting {i}") for i in range(8)]
        assert await until(lambda: aclient.status()["waiting_requests"] == 8)
        rest = [text async for text in stream]  # read to its end while eight calls wait
        assert first + "".join(rest) == "the stream holds the only key"
        return [r.content for r in await asyncio.gather(*waiting)]

    with make(server, rate_limit=RateLimit(max_concurrent=1), acquire_timeout=10,
              pool=PoolConfig(max_workers=1)) as client:  # fmt: skip
        answers = asyncio.run(run(AsyncLLMClient.wrap(client)))
    assert answers == [f"waiting {i}" for i in range(8)]
