"""Streaming end to end, sync and async, both providers, over loopback against FakeLLMServer.

Every test runs through ``client.stream`` (sync) and ``AsyncLLMClient.stream``
(async) alike: ``collect`` hides which one, so the two must behave the same.
"""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from llmkit import AsyncLLMClient, LLMClient, RateLimit, StreamError
from llmkit.config import load_settings
from llmkit.engine.clock import FakeClock
from llmkit.testing import FakeLLMServer, Fault

PROVIDERS = ["openai", "anthropic"]
MODES = ["sync", "async"]
KEY1, KEY2 = "sk-stream-1", "sk-stream-2"
TEXT = "The quick brown fox jumps over the lazy dog, twice, then rests."


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def clean(server):
    server.reset()


def make(server: FakeLLMServer, provider: str, keys=(KEY1,), **kw) -> LLMClient:
    url = server.openai_base_url if provider == "openai" else server.anthropic_base_url
    kw.setdefault("retry_delay", 0.01)
    return LLMClient(provider, api_keys=list(keys), base_url=url, settings=load_settings(environ={}), **kw)


def collect(client: LLMClient, mode: str, prompt: str = TEXT, **kw):
    """Stream ``prompt`` to the end: ``(pieces, stream, error)``; the error is caught, not raised."""
    if mode == "sync":
        pieces: list[str] = []
        stream = client.stream(prompt, **kw)
        try:
            for piece in stream:
                pieces.append(piece)
        except Exception as exc:
            return pieces, stream, exc
        return pieces, stream, None

    async def run():
        pieces: list[str] = []
        stream = AsyncLLMClient.wrap(client).stream(prompt, **kw)
        try:
            async for piece in stream:
                pieces.append(piece)
        except Exception as exc:
            return pieces, stream, exc
        return pieces, stream, None

    return asyncio.run(run())


def wait_until(predicate, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


# -- a stream that finishes -------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_finished_stream_equals_the_plain_reply(server, provider, mode):
    with make(server, provider) as client:
        plain = client.complete(TEXT)
        pieces, stream, error = collect(client, mode)
        assert error is None
        assert len(pieces) > 1  # it really came in pieces
        assert "".join(pieces) == stream.text == plain.content == TEXT
        assert stream.done
        assert stream.usage == plain.usage and stream.usage.output_tokens > 0
        assert stream.finish_reason == plain.finish_reason and stream.finish_reason in ("stop", "end_turn")
        response = stream.response
        assert response.content == TEXT and response.usage == plain.usage
        assert response.provider == provider and response.request_id
        assert client.status()["in_use_clients"] == 0
    assert [r.stream for r in server.requests] == [False, True]


# -- a stream that breaks after some text ---------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", [Fault(status=500, after_deltas=2), Fault(drop=True, after_deltas=2)])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_stream_broken_midway_raises_after_its_text_and_is_not_retried(server, provider, fault, mode):
    server.script(fault)
    with make(server, provider, keys=(KEY1, KEY2), max_retries=3) as client:
        pieces, stream, error = collect(client, mode)
        assert isinstance(error, StreamError), error  # never a silent truncation
        assert 1 <= len(pieces) <= 2 and TEXT.startswith("".join(pieces))
        assert stream.text == "".join(pieces)
        assert error.key_id is not None and KEY1 not in str(error)
        assert len(server.requests) == 1  # text was yielded: retrying would repeat it
        assert client.status()["in_use_clients"] == 0


# -- a stream that fails before its first token ------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [429, 500])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_stream_failing_before_its_first_token_is_retried_on_another_key(server, provider, status, mode):
    server.script(Fault(status=status, retry_after=30 if status == 429 else None))
    with make(server, provider, keys=(KEY1, KEY2)) as client:
        pieces, stream, error = collect(client, mode)
        assert error is None
        assert "".join(pieces) == TEXT and stream.usage is not None
    first, second = server.requests
    assert (first.status, second.status) == (status, 200)
    assert first.key != second.key


# -- a stream closed early -------------------------------------------------------------------


def first_piece_then(client: LLMClient, how: str) -> None:
    if how == "close":
        stream = client.stream(TEXT)
        next(stream)
        stream.close()
        stream.close()  # idempotent
    elif how == "with":
        with client.stream(TEXT) as stream:
            next(stream)
    else:  # break out of the loop and drop the only reference
        for _ in client.stream(TEXT):
            break


async def afirst_piece_then(client: AsyncLLMClient, how: str) -> None:
    if how == "close":
        stream = client.stream(TEXT)
        await stream.__anext__()
        await stream.aclose()
        await stream.aclose()
    elif how == "with":
        async with client.stream(TEXT) as stream:
            await stream.__anext__()
    else:
        async for _ in client.stream(TEXT):
            break


@pytest.mark.parametrize("how", ["close", "with", "break"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_stream_closed_early_releases_its_key(server, provider, mode, how):
    server.reply = lambda info: TEXT * 50  # a long reply, so closing is really early
    try:
        with make(server, provider) as client:
            if mode == "sync":
                first_piece_then(client, how)
            else:
                asyncio.run(afirst_piece_then(AsyncLLMClient.wrap(client), how))
            status = client.status()
            assert status["in_use_clients"] == 0, status
            assert status["client_statuses"][0]["in_flight"] == 0
            # the key serves the next request at once
            assert client.complete("next", max_tokens=5).content
    finally:
        server.reply = None


def test_an_unclosed_stream_holds_its_key_until_it_ends(server):
    with make(server, "openai") as client:
        stream = client.stream(TEXT)
        next(stream)
        assert client.status()["in_use_clients"] == 1
        rest = list(stream)
        assert client.status()["in_use_clients"] == 0
        assert stream.text == TEXT and rest


def test_a_dropped_async_stream_releases_its_key(server):
    async def run(client: AsyncLLMClient) -> None:
        stream = client.stream(TEXT)
        await stream.__anext__()
        assert client.status()["in_use_clients"] == 1
        del stream
        gc.collect()  # the stream is garbage once dropped; no aclose() needed

    with make(server, "anthropic") as client:
        asyncio.run(run(AsyncLLMClient.wrap(client)))
        assert client.status()["in_use_clients"] == 0


# -- token reservations ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_streams_token_reservation_is_reconciled_with_its_usage(server, provider, mode):
    limit = RateLimit(
        requests_per_minute=100,
        input_tokens_per_minute=10_000,
        output_tokens_per_minute=6_000,
        burst_seconds=60,  # a plain bucket holding the minute: the books, not the pacing, are tested
    )
    with make(server, provider, rate_limit=limit, max_tokens=500, clock=FakeClock()) as client:
        before = client.status()["client_statuses"][0]["remaining"]
        assert before["output_tokens"] == 6_000
        _, stream, error = collect(client, mode)
        assert error is None and stream.usage is not None
        remaining = client.status()["client_statuses"][0]["remaining"]
    # the 500 output tokens reserved up front are given back, less what the stream used
    assert remaining["output_tokens"] == 6_000 - stream.usage.output_tokens
    assert remaining["input_tokens"] == 10_000 - stream.usage.input_tokens
    assert remaining["requests"] == before["requests"] - 1


# -- async cancellation ---------------------------------------------------------------------


def test_a_cancelled_async_stream_waiting_for_a_key_leaves_the_queue(server):
    async def run(client: AsyncLLMClient) -> None:
        holder = client.stream(TEXT)
        await holder.__anext__()  # the only key is now busy
        waiter = client.stream(TEXT)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(waiter.__anext__(), 0.3)
        assert await asyncio.to_thread(wait_until, lambda: client.status()["waiting_requests"] == 0)
        await holder.aclose()

    limit = RateLimit(max_concurrent=1)
    with make(server, "openai", rate_limit=limit, acquire_timeout=30) as client:
        asyncio.run(run(AsyncLLMClient.wrap(client)))
        assert client.status()["in_use_clients"] == 0
        assert len(server.requests) == 1  # the cancelled stream never reached the server


def test_a_stream_cancelled_mid_read_releases_its_key_at_once():
    async def run(client: AsyncLLMClient) -> None:
        stream = client.stream(TEXT)
        await stream.__anext__()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(stream.__anext__(), 0.05)  # the next delta is 0.3 s away
        assert client.status()["in_use_clients"] == 0  # the read was abandoned with its task
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()  # and the stream is over

    with FakeLLMServer(stream_interval=0.3) as slow, make(slow, "anthropic") as client:
        asyncio.run(run(AsyncLLMClient.wrap(client)))


# -- streams are seen by logging, metrics and middleware that observe them -----------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_streams_are_counted_logged_and_priced(server, provider, mode, caplog):
    caplog.set_level("INFO", logger="llmkit.middleware")
    model = "gpt-4o-mini" if provider == "openai" else "claude-3-5-haiku-latest"
    with make(server, provider, log_level="INFO", model=model) as client:
        _, stream, error = collect(client, mode)
        snap = client.metrics()
        usage = client.usage()
    assert error is None
    response = stream.response
    assert response.key_id and response.key_id in snap["by_key"] and KEY1 not in response.key_id
    assert response.cost is not None and response.cost > 0 and response.cost == pytest.approx(usage["cost"])
    assert (snap["requests"], snap["successes"]) == (1, 1)
    assert snap["output_tokens"] == stream.usage.output_tokens > 0
    assert snap["cost"] == pytest.approx(response.cost)
    (line,) = [r for r in caplog.records if r.name == "llmkit.middleware"]
    assert line.getMessage().startswith(f"llm stream {provider} ")
    assert line.llmkit["key_id"] == response.key_id


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_stream_is_counted_and_logged_as_a_failure(server, mode, caplog):
    server.script(Fault(status=500, after_deltas=2))
    with make(server, "openai", log_level="INFO") as client:
        _, _, error = collect(client, mode)
        snap = client.metrics()
    assert isinstance(error, StreamError)
    assert (snap["requests"], snap["errors"], snap["errors_by_type"]) == (1, 1, {"StreamError": 1})
    (line,) = [r for r in caplog.records if r.name == "llmkit.middleware"]
    assert line.levelname == "WARNING" and line.getMessage().startswith("llm stream failed openai")


def test_user_middleware_may_observe_streams_and_its_failure_does_not_break_them(server, caplog):
    seen = []

    class Watcher:
        def __call__(self, request, call_next):
            return call_next(request)

        def observe_stream(self, request, response, error):
            seen.append((request.messages[-1].content, response.content, error))
            raise RuntimeError("a bug in the observer")

    with make(server, "openai", middleware=[Watcher()]) as client:
        early = client.stream(TEXT)
        next(early)
        early.close()
        early.close()  # observed once
        whole = list(client.stream("second"))
        snap = client.metrics()
    assert [(prompt, error) for prompt, _, error in seen] == [(TEXT, None), ("second", None)]
    assert TEXT.startswith(seen[0][1]) and len(seen[0][1]) < len(TEXT)  # what arrived before the close
    assert "".join(whole) == seen[1][1] == "second"
    assert snap["requests"] == 2
    assert sum("stream observer failed" in r.getMessage() for r in caplog.records) == 2


def test_a_stream_closed_before_it_started_is_not_counted(server):
    with make(server, "openai", log_level="INFO") as client:
        client.stream(TEXT).close()
        assert client.metrics()["requests"] == 0
    assert server.requests == []
