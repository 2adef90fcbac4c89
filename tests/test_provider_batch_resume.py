"""Provider batches survive: SIGKILL while polling, a kill during the create, Ctrl-C (left running or
cancelled), a live run on their checkpoint, a resume with other inputs. All three providers."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmkit import LLMClient
from llmkit.batch import (
    BatchInterrupted,
    CheckpointError,
    CheckpointMismatchError,
    provider_calls,
    provider_run,
)
from llmkit.testing import FakeLLMServer

KEYS = ["sk-test-batch-1"]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest", "google": "gemini-2.0-flash"}
CREATE_PATHS = {
    "openai": "/v1/batches",
    "anthropic": "/v1/messages/batches",
    "google": ":batchGenerateContent",
}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provider_calls, "_BACKOFF", 0.01)


@pytest.fixture(params=list(MODELS))
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def children() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """One child per provider, started at once: their imports overlap the other tests."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    script = str(ROOT / "tests" / "provider_batch_child.py")
    started = {
        name: subprocess.Popen([sys.executable, script], env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for name in MODELS
    }  # fmt: skip
    yield started
    for process in started.values():
        process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def base_url(server: FakeLLMServer, provider: str) -> str:
    return {"openai": server.openai_base_url, "anthropic": server.anthropic_base_url}.get(
        provider, server.url
    )


def make_client(server: FakeLLMServer, provider: str) -> LLMClient:
    return LLMClient(
        provider=provider, api_keys=KEYS, base_url=base_url(server, provider), model=MODELS[provider]
    )


def prompts(n: int) -> list[str]:
    return [f"item {i}" for i in range(n)]


def run(client: LLMClient, items: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("progress", False)
    kwargs.setdefault("poll_interval", 0.02)
    return client.batch(items, via="provider", **kwargs)


def creates(server: FakeLLMServer, provider: str) -> int:
    return sum(1 for r in server.requests if r.method == "POST" and r.path.endswith(CREATE_PATHS[provider]))


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def interrupt_main() -> None:
    """A real SIGINT delivered to the main thread, as Ctrl-C would be."""
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


def ctrl_c_once_created(server: FakeLLMServer, after: float) -> None:
    """Press Ctrl-C ``after`` seconds into the first provider batch (from another thread)."""

    def press() -> None:
        deadline = time.monotonic() + 20
        while not server.batch_jobs() and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(after)
        interrupt_main()

    threading.Thread(target=press, daemon=True).start()


def test_sigkill_while_polling_resumes_by_polling_never_by_submitting_again(
    provider: str, tmp_path: Path, children: dict[str, subprocess.Popen[str]]
) -> None:
    child, path = children[provider], tmp_path / "run.jsonl"
    with FakeLLMServer(
        batch_seconds=600, batch_time_scale=250
    ) as server:  # a batch ends 2.4 s after creation
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline().strip() == "READY"
        args = {"provider": provider, "base_url": base_url(server, provider), "model": MODELS[provider],
                "checkpoint": str(path), "items": 9, "batch_size": 4}  # fmt: skip
        child.stdin.write(json.dumps(args) + "\n")
        child.stdin.flush()
        deadline = time.monotonic() + 20
        while not (path.exists() and path.read_bytes().count(b'"batch_created"') == 3):
            assert child.poll() is None and time.monotonic() < deadline, "the child ended or hung"
            time.sleep(0.01)
        time.sleep(0.1)  # it polls now
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert not [r for r in records(path) if "status" in r]  # killed before any answer came in
        submitted = [job["id"] for job in server.batch_jobs()]
        assert creates(server, provider) == 3

        with make_client(server, provider) as client:
            result = run(client, prompts(9), checkpoint=path, batch_size=4)
        assert [r.content for r in result] == prompts(9) and result.skipped == 0
        assert creates(server, provider) == 3  # polled and downloaded; nothing submitted again
        assert [job["id"] for job in server.batch_jobs()] == submitted
        sent = Counter(cid for job in server.batch_jobs() for cid in job["custom_ids"])
        assert set(sent.values()) == {1} and len(sent) == 9  # each item paid for once


class _Killed(BaseException):
    """Stands for the process dying right after the provider created the batch."""


def test_a_kill_during_the_create_is_looked_up_by_its_tag(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "run.jsonl"

    def dies(tag: str, batch_id: str) -> dict[str, Any]:
        raise _Killed

    with FakeLLMServer(batch_seconds=60) as server, make_client(server, provider) as client:
        with monkeypatch.context() as patched:
            patched.setattr(provider_run, "created_record", dies)
            with pytest.raises(_Killed):
                run(client, prompts(3), checkpoint=path)
        assert [r["type"] for r in records(path)] == ["batch_submit"] and len(server.batch_jobs()) == 1
        with caplog.at_level(logging.WARNING, logger="llmkit.batch.provider"):
            result = run(client, prompts(3), checkpoint=path)
        assert [r.content for r in result] == prompts(3)
        if provider == "anthropic":  # its batches carry no metadata: it cannot be found, so it goes again
            assert len(server.batch_jobs()) == 2
            assert "paid twice" in caplog.text
        else:  # OpenAI's metadata and Gemini's display name hold the tag: found, not submitted again
            assert len(server.batch_jobs()) == 1
            assert [r.get("type") for r in records(path)][:2] == ["batch_submit", "batch_created"]


def test_ctrl_c_leaves_the_provider_batch_running_and_resumable(provider: str, tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with FakeLLMServer(batch_seconds=600, batch_time_scale=600) as server:  # a batch takes 1 s
        with make_client(server, provider) as client:
            ctrl_c_once_created(server, 0.2)
            with pytest.raises(BatchInterrupted) as caught:
                run(client, prompts(6), checkpoint=path)
            assert isinstance(caught.value, KeyboardInterrupt)
            assert caught.value.result.done == 0 and caught.value.result.pending == 6
            job = server.batch_jobs()[0]
            assert job["outcome"] is None and not job["cancelled"]  # still running, not cancelled

            with pytest.raises(CheckpointError, match="via='provider'"):  # a live run would pay twice
                client.batch(prompts(6), checkpoint=path, progress=False)
            with pytest.raises(CheckpointMismatchError):  # other inputs: refused before anything is sent
                run(client, prompts(6), checkpoint=path, max_tokens=7)
            assert creates(server, provider) == 1

            result = run(client, prompts(6), checkpoint=path)
        assert [r.content for r in result] == prompts(6)
        assert creates(server, provider) == 1
        assert not [r for r in server.requests if r.path.endswith(("/chat/completions", "/v1/messages",
                                                                   ":generateContent"))]  # fmt: skip


def test_cancelling_on_ctrl_c_is_an_explicit_option(provider: str, tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with FakeLLMServer(batch_seconds=600, batch_time_scale=600) as server:
        with make_client(server, provider) as client:
            ctrl_c_once_created(server, 0.4)
            with pytest.raises(BatchInterrupted):
                run(client, prompts(10), checkpoint=path, on_interrupt="cancel")
            assert server.batch_jobs()[0]["cancelled"]

            kept = run(client, prompts(10), checkpoint=path, retry_failed=False)
            done = [i for i, r in enumerate(kept) if r]
            assert 0 < len(done) < 10  # what it finished before the cancel is kept...
            assert {e.type for e in kept.errors} == {"BatchCancelledError"}  # ...the rest said why

            again = run(client, prompts(10), checkpoint=path)  # failed items go again, in a new batch
        assert [r.content for r in again] == prompts(10)
        second = server.batch_jobs()[1]
        assert second["custom_ids"] == [f"llmkit-{i}" for i in range(10) if i not in done]
