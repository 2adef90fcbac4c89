"""Every call ends within the time it was given.

``timeout`` is a deadline for a complete reply, not a per-read timeout: a body
that trickles in a byte at a time ends at it. Streams end at theirs too and
take ``first_token_timeout`` and ``chunk_timeout``. ``close(timeout=...)``
ends the calls still on the wire once its timeout passes (they raise
PoolClosedError), and the interpreter exits within seconds with calls stuck
on a hung server. Each test here would hang (or run for a minute) without the
deadline it checks; the bounds are loose (several times the deadline) so that
a busy machine does not fail them, and pytest-timeout ends them regardless.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from llmkit import AsyncLLMClient, LLMClient, RetryPolicy
from llmkit.config import load_settings
from llmkit.errors import PoolClosedError, RequestTimeoutError, StreamError
from llmkit.testing import FakeLLMServer, Fault

pytestmark = pytest.mark.timeout(40)

PROVIDERS = ["openai", "anthropic"]
LONG_REPLY = "word " * 60  # 300 characters: a minute of trickling at 0.2 s a byte


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


def make(server: FakeLLMServer, provider: str = "openai", **kw) -> LLMClient:
    kw.setdefault("retry_delay", 0.01)
    return LLMClient(provider, api_keys=["sk-deadline-1"], base_url=url_of(server, provider),
                     settings=load_settings(environ={}), **kw)  # fmt: skip


def elapsed_of(fn) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


# -- a complete reply within `timeout` --------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_trickling_body_ends_at_the_timeout(server, provider):
    server.script(LONG_REPLY)
    server.add_fault(Fault(trickle=0.2))
    with make(server, provider, max_retries=0) as client:

        def call():
            with pytest.raises(RequestTimeoutError, match="in time"):
                client.complete("hi", timeout=1.0)

        assert elapsed_of(call) < 5.0  # the trickle would take a minute
    assert len(server.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_trickling_body_ends_at_the_timeout_in_asyncio(server, provider):
    server.script(LONG_REPLY)
    server.add_fault(Fault(trickle=0.2))

    async def run() -> None:
        async with AsyncLLMClient.wrap(make(server, provider, max_retries=0)) as client:
            with pytest.raises(RequestTimeoutError):
                await client.complete("hi", timeout=1.0)

    assert elapsed_of(lambda: asyncio.run(run())) < 5.0


def test_max_time_bounds_the_whole_call_across_retries(server):
    server.add_fault(Fault(trickle=0.2))
    policy = RetryPolicy(max_retries=10, base_delay=0.01, max_time=2.0)
    with make(server, retry=policy) as client:

        def call():
            with pytest.raises(RequestTimeoutError):
                client.complete("hi", timeout=1.0)

        assert elapsed_of(call) < 6.0  # ten retries of a one-second timeout would be eleven seconds


def test_a_trickle_faster_than_the_timeout_is_read_whole(server):
    server.script("short")
    server.add_fault(Fault(trickle=0.01), times=1)
    with make(server) as client:
        assert client.complete("hi", timeout=10.0).content == "short"


# -- streams ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_tokens():
    """A server whose streams send one delta a second."""
    with FakeLLMServer(stream_interval=1.0) as srv:
        yield srv


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_stream_ends_at_its_timeout(slow_tokens, provider):
    slow_tokens.reset()
    slow_tokens.script(LONG_REPLY)
    with make(slow_tokens, provider, max_retries=0) as client:

        def read():
            with pytest.raises((StreamError, RequestTimeoutError)):
                for _ in client.stream("hi", timeout=2.5):
                    pass

        assert elapsed_of(read) < 7.0  # sixty deltas a second apart


@pytest.mark.parametrize("provider", PROVIDERS)
def test_chunk_timeout_ends_a_stream_whose_tokens_stop_coming(slow_tokens, provider):
    slow_tokens.reset()
    slow_tokens.script(LONG_REPLY)
    with make(slow_tokens, provider, max_retries=0) as client:
        stream = client.stream("hi", timeout=60, chunk_timeout=0.3)

        def read():
            with pytest.raises((StreamError, RequestTimeoutError), match="in time"):
                for _ in stream:
                    pass

        assert elapsed_of(read) < 5.0  # the first delta is a second late: over its 0.3 s


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_stream_ends_at_its_timeout_in_asyncio(slow_tokens, provider):
    slow_tokens.reset()
    slow_tokens.script(LONG_REPLY)

    async def run() -> None:
        async with AsyncLLMClient.wrap(make(slow_tokens, provider, max_retries=0)) as client:
            with pytest.raises((StreamError, RequestTimeoutError)):
                async for _ in client.stream("hi", timeout=2.5):
                    pass

    assert elapsed_of(lambda: asyncio.run(run())) < 7.0


def test_first_token_timeout_retries_a_stream_that_never_starts(server):
    server.add_fault(Fault(delay=5.0), times=1)  # the first attempt's headers come 5 s late
    with make(server, max_retries=1) as client:
        stream = client.stream("hi", first_token_timeout=0.5)
        assert "".join(stream) and stream.attempts == 2
    assert len(server.requests) == 2


# -- close() and exit ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_close_ends_a_call_on_the_wire_after_its_timeout(server, provider):
    server.latency = 30.0
    client = make(server, provider, max_retries=0)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.complete("hi")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    assert _until(lambda: client.status()["in_use_clients"] == 1)
    assert elapsed_of(lambda: client.close(timeout=1.0)) < 5.0
    thread.join(5.0)
    assert not thread.is_alive()
    assert [type(e) for e in errors] == [PoolClosedError]


def test_close_ends_an_async_call_on_the_wire_with_pool_closed_error(server):
    server.latency = 30.0
    client = make(server, max_retries=0)

    async def run() -> BaseException:
        aclient = AsyncLLMClient.wrap(client)
        task = asyncio.ensure_future(aclient.complete("hi"))
        while client.status()["in_use_clients"] == 0:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(client.close, 1.0)
        with pytest.raises(PoolClosedError):
            await asyncio.wait_for(task, 5.0)
        assert not task.cancelled()  # nobody cancelled it: it ended with an error, not cancelled
        return task.exception()

    assert isinstance(asyncio.run(run()), PoolClosedError)


def test_close_ends_queued_work_with_pool_closed_error(server):
    server.latency = 30.0
    from llmkit import RateLimit

    client = make(server, max_retries=0, rate_limit=RateLimit(max_concurrent=1))
    futures = [client.submit(f"q{i}") for i in range(3)]
    assert _until(lambda: client.status()["in_use_clients"] == 1)
    client.close(timeout=0.5)
    for future in futures:
        with pytest.raises(PoolClosedError):
            future.result(timeout=5)


def test_the_interpreter_exits_within_seconds_with_calls_stuck_on_a_hung_server(server):
    server.latency = 60.0
    script = textwrap.dedent(f"""
        import time
        from llmkit import LLMClient
        from llmkit.config import load_settings
        client = LLMClient("openai", api_keys=["sk-exit-1"], base_url={server.openai_base_url!r},
                           settings=load_settings(environ={{}}))
        futures = [client.submit(f"stuck {{i}}") for i in range(3)]
        while client.status()["in_use_clients"] == 0:
            time.sleep(0.01)
        print("sent", flush=True)
    """)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "sent" in done.stdout
    assert elapsed < 10.0  # the SDK's own default would wait 600 s


def _until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
