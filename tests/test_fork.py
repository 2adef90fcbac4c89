"""After ``os.fork()`` the child's client works: ``complete``, ``submit``, ``map`` and ``batch``.

Only the forking thread survives a fork: the parent's worker threads, the
threads waiting for keys and the connections are not the child's. Each open
pool is reset in the child (``llmkit.engine.lifetime``). Without that,
``submit()`` in the child waited for ever on an executor whose threads did not
exist; here the child gives up after a few seconds and says so.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from llmkit import LLMClient
from llmkit.config import load_settings
from llmkit.testing import FakeLLMServer

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only"),
]


def _child_work(client: LLMClient) -> int:
    """What the child checks; its exit status (0: all worked)."""
    try:
        assert client.complete("child complete").content
        assert client.submit("child submit").result(timeout=10).content
        assert len(client.map(["m1", "m2", "m3"])) == 3
        result = client.batch(["b1", "b2"], progress=False)
        assert result.succeeded == 2, result
        return 0
    except BaseException as exc:  # anything: report it through the exit status
        print(f"child failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1


def _wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_forked_child_can_complete_submit_map_and_batch(provider):
    with FakeLLMServer() as server:
        url = server.openai_base_url if provider == "openai" else server.anthropic_base_url
        client = LLMClient(provider, api_keys=["sk-fork-1", "sk-fork-2"], base_url=url,
                           settings=load_settings(environ={}))  # fmt: skip
        with client:
            # The parent has used everything: worker threads, connections, the SDK.
            assert client.submit("parent").result(timeout=10).content
            assert len(client.map(["p1", "p2"])) == 2
            pid = os.fork()
            if pid == 0:  # the child
                code = 1
                try:
                    import signal

                    signal.alarm(20)  # a hang in the child ends it
                    code = _child_work(client)
                finally:
                    os._exit(code)
            assert _wait(pid, 30) == 0, "the child's calls failed or hung (see its stderr above)"
            assert client.complete("parent after the fork").content  # the parent is unaffected
        prompts = [r.body for r in server.requests]
    assert len(prompts) == 1 + 2 + 1 + 1 + 3 + 2 + 1
