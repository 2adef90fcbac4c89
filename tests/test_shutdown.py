"""Shutdown: close() with work waiting and in flight, twice, and at interpreter exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from llmkit import LLMClient, PoolClosedError, RateLimit
from llmkit.testing import FakeLLMServer, Fault


@pytest.fixture
def server():
    with FakeLLMServer() as srv:
        yield srv


def run_in_thread(fn):
    out: list = []

    def target():
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def test_close_wakes_requests_waiting_for_a_key(server):
    client = LLMClient(
        "openai",
        api_keys=["sk-test-1"],
        base_url=server.openai_base_url,
        rate_limit=RateLimit(requests_per_minute=1),
        acquire_timeout=120,
    )
    client.complete("uses the only request of the minute")
    thread, out = run_in_thread(lambda: client.complete("waits for a minute"))
    time.sleep(0.2)
    assert client.status()["waiting_requests"] == 1
    started = time.monotonic()
    client.close()
    thread.join(5)
    assert time.monotonic() - started < 2
    assert isinstance(out[0], PoolClosedError)
    assert len(server.requests) == 1  # the waiting request was never sent


def test_close_waits_for_calls_in_flight(server):
    client = LLMClient("openai", api_keys=["sk-test-1"], base_url=server.openai_base_url)
    client.complete("warm up")
    server.script(Fault(delay=0.5))
    thread, out = run_in_thread(lambda: client.complete("slow but in time"))
    time.sleep(0.1)
    client.close(timeout=5)
    thread.join(5)
    assert out[0].content == "slow but in time"


def test_close_gives_up_on_calls_in_flight_after_its_timeout(server):
    client = LLMClient("openai", api_keys=["sk-test-1"], base_url=server.openai_base_url)
    client.complete("warm up")
    server.script(Fault(delay=1.5))
    thread, out = run_in_thread(lambda: client.complete("too slow"))
    time.sleep(0.1)
    started = time.monotonic()
    client.close(timeout=0.2)
    assert time.monotonic() - started < 1.0
    thread.join(5)
    assert isinstance(out[0], PoolClosedError)


def test_close_twice_and_refuse_new_work(server):
    client = LLMClient("openai", api_keys=["sk-test-1"], base_url=server.openai_base_url)
    client.close()
    client.close()
    assert client.closed
    with pytest.raises(PoolClosedError):
        client.complete("hi")
    with pytest.raises(PoolClosedError):
        client.submit("hi")
    assert server.requests == []


def test_the_interpreter_does_not_hang_at_exit_with_work_waiting(server):
    script = textwrap.dedent(f"""
        import time
        from llmkit import LLMClient, RateLimit
        client = LLMClient("openai", api_keys=["sk-test-1"], base_url={server.openai_base_url!r},
                           rate_limit=RateLimit(requests_per_minute=1), acquire_timeout=300)
        client.complete("first")
        client.submit("would wait a minute for capacity")
        time.sleep(0.2)
        print("leaving", flush=True)
    """)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "leaving" in done.stdout
    assert time.monotonic() - started < 30  # not the 60 s the queued request would wait
