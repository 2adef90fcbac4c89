"""Batch checkpoints under attack: other inputs, full and read-only disks, two batches on one file."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from llmkit import LLMClient
from llmkit.batch import CheckpointError, CheckpointMismatchError, run_batch
from llmkit.batch.items import _parse_item
from llmkit.testing import FakeLLMServer, RequestInfo
from llmkit.types import ImagePart, Message, MessageRole

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
def client(server: FakeLLMServer) -> Iterator[LLMClient]:
    with LLMClient(
        provider="openai", api_keys=["sk-test-1"], base_url=server.openai_base_url, model="gpt-4o-mini"
    ) as c:
        yield c


def prompts(n: int) -> list[str]:
    return [f"item {i}" for i in range(n)]


def sent(server: FakeLLMServer) -> Counter[str]:
    return Counter(
        r.body["messages"][-1]["content"]
        for r in server.requests
        if r.path.endswith("/chat/completions") and r.body is not None
    )


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


# -- 3. a checkpoint is only reused for the inputs it was written for --------------------------------


def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def get_weather_v2(city: str, unit: str = "C") -> str:
    """The weather in a city."""
    return "sunny"


get_weather_v2.__name__ = "get_weather"  # same name, another signature: another schema is sent


class City(pydantic.BaseModel):
    name: str


class CityWithCountry(pydantic.BaseModel):
    name: str
    country: str = ""


CityWithCountry.__name__ = "City"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({}, {"model": "gpt-4o"}),
        ({"model": "gpt-4o-mini"}, {"model": "gpt-4o"}),
        ({}, {"system_prompt": "Answer in French."}),
        ({"temperature": 0.0}, {"temperature": 0.9}),
        ({"max_tokens": 10}, {"max_tokens": 500}),
        ({}, {"stop": ["\n"]}),
        ({}, {"json_mode": True}),
        ({}, {"top_p": 0.5}),  # a provider parameter (``extra``)
        ({"tools": [get_weather]}, {"tools": [get_weather_v2]}),
        ({"tools": [get_weather]}, {"tools": [get_weather], "tool_choice": "required"}),
        ({"response_model": City}, {"response_model": CityWithCountry}),
    ],
    ids=lambda kw: ",".join(kw) or "none",
)
def test_changed_batch_arguments_are_refused(
    server: FakeLLMServer, client: LLMClient, tmp_path: Path, first: dict[str, Any], second: dict[str, Any]
) -> None:
    path = tmp_path / "run.jsonl"
    assert client.batch(prompts(3), checkpoint=path, progress=False, **first).succeeded == 3
    before, requests = path.read_bytes(), len(server.requests)
    with pytest.raises(CheckpointMismatchError, match="other inputs") as caught:
        client.batch(prompts(3), checkpoint=path, progress=False, **second)
    message = str(caught.value)
    assert "item 0" in message and "new checkpoint file" in message and "inputs it was written for" in message
    assert ("response_model" if "response_model" in second else "arguments") in message
    assert path.read_bytes() == before and len(server.requests) == requests  # nothing written, nothing sent
    assert client.batch(prompts(3), checkpoint=path, progress=False, **first).skipped == 3  # the old inputs


def test_arguments_that_do_not_change_the_answer_keep_the_checkpoint(
    server: FakeLLMServer, client: LLMClient, tmp_path: Path
) -> None:
    path = tmp_path / "run.jsonl"
    client.batch(prompts(3), checkpoint=path, progress=False, temperature=0.2, tools=[get_weather])
    again = client.batch(
        prompts(3), checkpoint=path, progress=False, temperature=0.2, tools=[get_weather],
        timeout=60, max_retries=5, retry_delay=0.1, cache=False,
    )  # fmt: skip
    assert again.skipped == 3 and len(server.requests) == 3
    # None (or json_mode=False, no stop) means "the default", as in complete(): passing it is no change.
    assert client.batch(prompts(3), checkpoint=path, progress=False, temperature=0.2, tools=[get_weather],
                        json_mode=False, stop=[]).skipped == 3  # fmt: skip
    assert client.batch(prompts(3), checkpoint=path, progress=False, temperature=0.2,
                        tools=[get_weather], model=None).skipped == 3  # fmt: skip


def test_an_item_argument_and_a_batch_argument_of_the_same_value_are_the_same_input(
    client: LLMClient, tmp_path: Path
) -> None:
    path = tmp_path / "run.jsonl"
    items = [{"id": i, "prompt": p, "max_tokens": 20} for i, p in enumerate(prompts(3))]
    client.batch(items, checkpoint=path, progress=False)
    plain = [{"id": i, "prompt": p} for i, p in enumerate(prompts(3))]
    assert client.batch(plain, checkpoint=path, progress=False, max_tokens=20).skipped == 3
    changed = [dict(item, max_tokens=30) if item["id"] == 1 else item for item in items]
    with pytest.raises(CheckpointMismatchError, match=r"item 1\b"):
        client.batch(changed, checkpoint=path, progress=False)


def image_item(data: bytes | None = None, url: str | None = None) -> list[Message]:
    image = ImagePart(data=data, media_type="image/png") if data is not None else ImagePart(url=url)
    return [Message(MessageRole.USER, ["What is in this picture?", image])]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (image_item(PNG + b"\x01"), image_item(PNG + b"\x02")),
        (image_item(url="https://example.com/a.png"), image_item(url="https://example.com/b.png")),
    ],
    ids=["bytes", "url"],
)
def test_changed_image_content_is_refused(
    server: FakeLLMServer, client: LLMClient, tmp_path: Path, first: Any, second: Any
) -> None:
    path = tmp_path / "run.jsonl"
    assert client.batch([first], checkpoint=path, progress=False).succeeded == 1
    assert client.batch([first], checkpoint=path, progress=False).skipped == 1
    with pytest.raises(CheckpointMismatchError, match="messages"):
        client.batch([second], checkpoint=path, progress=False)
    assert len(server.requests) == 1


def test_the_digest_is_stable_across_processes(tmp_path: Path) -> None:
    """Function tools and response models hash by what is sent, not by an object's address."""
    code = (
        "import sys; sys.path.insert(0, 'tests');"
        "from test_batch_checkpoint import digest_of_a_rich_item; print(digest_of_a_rich_item())"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        for _ in range(2)
    ]
    assert runs[0].stdout == runs[1].stdout == digest_of_a_rich_item() + "\n"


def digest_of_a_rich_item() -> str:
    from llmkit.batch.digest import InputDigest

    item = _parse_item(0, {"id": "x", "messages": image_item(PNG), "max_tokens": 5})
    return InputDigest({"tools": [get_weather], "tool_choice": get_weather}, City).of(item)


def test_client_defaults_are_part_of_the_inputs(
    server: FakeLLMServer, client: LLMClient, tmp_path: Path
) -> None:
    """``client_defaults``: what the client fills in when the batch does not say (its model, ...)."""
    path = tmp_path / "run.jsonl"
    defaults = {"provider": "openai", "model": "gpt-4o-mini", "temperature": None}
    run_batch(client.submit, prompts(2), checkpoint=path, progress=False, client_defaults=defaults)
    assert run_batch(client.submit, prompts(2), checkpoint=path, progress=False,
                     client_defaults=defaults, model="gpt-4o-mini").skipped == 2  # fmt: skip
    with pytest.raises(CheckpointMismatchError, match="client"):
        run_batch(client.submit, prompts(2), checkpoint=path, progress=False,
                  client_defaults={**defaults, "model": "gpt-4o"})  # fmt: skip
    assert len(server.requests) == 2


def test_a_checkpoint_from_an_older_llmkit_is_accepted_when_its_old_hash_matches(
    server: FakeLLMServer, client: LLMClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "run.jsonl"
    client.batch(prompts(4), checkpoint=path, progress=False)
    records = sorted(lines(path), key=lambda rec: rec["index"])
    for rec in records:  # as llmkit wrote them before the digest covered the batch's arguments
        rec["hash"] = _parse_item(rec["index"], f"item {rec['index']}").legacy_digest()
    records[3]["hash"] = "0" * 24  # one that no longer matches its item
    path.write_text("".join(json.dumps(rec) + "\n" for rec in records[:3]))
    with caplog.at_level(logging.WARNING, logger="llmkit.batch"):
        result = client.batch(prompts(5), checkpoint=path, progress=False)
    assert (result.skipped, result.succeeded, len(server.requests)) == (3, 5, 6)
    assert any("older llmkit" in r.getMessage() and "3 records" in r.getMessage() for r in caplog.records)
    path.write_text(path.read_text() + json.dumps(records[3]) + "\n")
    with pytest.raises(CheckpointMismatchError, match="item 3"):
        client.batch(prompts(5), checkpoint=path, progress=False)


# -- 4. a full or read-only disk loses no answer ------------------------------------------------------


class FailingDisk:
    """``os.write``/``os.fsync`` on one file fail with ``error`` once ``lines_left`` lines were written."""

    def __init__(self, path: Path, lines_left: int, error: int = errno.ENOSPC, at: str = "write") -> None:
        self.path, self.lines_left, self.error, self.at = path, lines_left, error, at
        self.real_write, self.real_fsync = os.write, os.fsync
        self.failures = 0

    def ours(self, fd: int) -> bool:
        try:
            return self.path.exists() and os.path.samestat(os.fstat(fd), os.stat(self.path))
        except OSError:
            return False

    def _fail(self) -> None:
        self.failures += 1
        raise OSError(self.error, os.strerror(self.error))

    def write(self, fd: int, data: Any) -> int:
        if not self.ours(fd):
            return self.real_write(fd, data)
        if self.lines_left <= 0 and self.at == "write":
            if self.failures == 0:  # a short write first, as a disk filling up gives
                self.failures += 1
                return self.real_write(fd, bytes(data)[: len(data) // 2])
            self._fail()
        self.lines_left -= 1
        return self.real_write(fd, data)

    def fsync(self, fd: int) -> None:
        if self.ours(fd) and self.lines_left < 0 and self.at == "fsync":
            self._fail()
        self.real_fsync(fd)


def slow_echo(delay: float) -> Callable[[RequestInfo], str]:
    def reply(info: RequestInfo) -> str:
        threading.Event().wait(delay)
        return "answer to " + info.last_user_text

    return reply


@pytest.mark.parametrize(
    ("error", "at"), [(errno.ENOSPC, "write"), (errno.EROFS, "write"), (errno.EIO, "fsync")]
)
@pytest.mark.timeout(30)
def test_a_failing_disk_raises_checkpoint_error_with_every_answer(
    server: FakeLLMServer,
    client: LLMClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: int,
    at: str,
) -> None:
    path = tmp_path / "run.jsonl"
    disk = FailingDisk(path, lines_left=5, error=error, at=at)
    monkeypatch.setattr(os, "write", disk.write)
    monkeypatch.setattr(os, "fsync", disk.fsync)
    server.reply = slow_echo(0.01)
    with pytest.raises(CheckpointError) as caught:
        client.batch(prompts(40), checkpoint=path, concurrency=4, progress=False)
    monkeypatch.undo()
    exc = caught.value
    assert not isinstance(exc, CheckpointMismatchError)
    assert isinstance(exc.__cause__, OSError) and exc.__cause__.errno == error
    assert str(path) in str(exc) and os.strerror(error) in str(exc) and ".result" in str(exc)
    result = exc.result
    assert result is not None and len(result) == 40
    answered = sent(server)
    assert sum(answered.values()) < 40  # no new item started after the failure
    # Every answer the server gave (and billed) is in the result: none was lost.
    assert {r.content for r in result if r} == {"answer to " + p for p in answered}
    assert result.succeeded == sum(answered.values()) and result.pending == 40 - result.succeeded
    # The file holds whole lines only (a short write was cut back), for the rerun to read.
    recorded = lines(path)
    assert len(recorded) == 5 and path.read_bytes().endswith(b"\n")
    again = client.batch(prompts(40), checkpoint=path, concurrency=4, progress=False)
    assert again.succeeded == 40 and again.skipped == 5


def test_a_failing_final_sync_raises_checkpoint_error_with_the_result(
    server: FakeLLMServer, client: LLMClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.jsonl"
    disk = FailingDisk(path, lines_left=-1, error=errno.EIO, at="fsync")
    monkeypatch.setattr(os, "fsync", disk.fsync)
    with pytest.raises(CheckpointError, match="Input/output error") as caught:
        client.batch(prompts(3), checkpoint=path, progress=False, fsync="batch")
    monkeypatch.undo()
    assert caught.value.result is not None and caught.value.result.succeeded == 3


def test_an_unwritable_checkpoint_is_refused_before_anything_is_sent(
    server: FakeLLMServer, client: LLMClient, tmp_path: Path
) -> None:
    missing = tmp_path / "no such folder" / "run.jsonl"
    with pytest.raises(CheckpointError, match="no such folder") as caught:
        client.batch(prompts(3), checkpoint=missing, progress=False)
    assert isinstance(caught.value.__cause__, OSError) and caught.value.result is None
    assert server.requests == []


def test_an_unreadable_checkpoint_is_refused_before_anything_is_sent(
    server: FakeLLMServer, client: LLMClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.jsonl"
    client.batch(prompts(2), checkpoint=path, progress=False)
    disk, real_read = FailingDisk(path, 0), os.read

    def failing_read(fd: int, size: int) -> bytes:
        if disk.ours(fd):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_read(fd, size)

    monkeypatch.setattr(os, "read", failing_read)
    with pytest.raises(CheckpointError, match=r"Cannot read the checkpoint .*Input/output error"):
        client.batch(prompts(3), checkpoint=path, progress=False)
    monkeypatch.undo()
    assert len(server.requests) == 2
    assert client.batch(prompts(3), checkpoint=path, progress=False).skipped == 2  # the lock was released


_UNSHARE = shutil.which("unshare")


def run_in_tiny_disk(script: str, server: FakeLLMServer, tmp_path: Path) -> dict[str, Any]:
    """Run ``script`` in a child with a 16 KiB tmpfs at ``tmp_path/disk`` (its own mount namespace)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = json.dumps({"disk": str(disk), "base_url": server.openai_base_url})
    probe = subprocess.run(
        [_UNSHARE or "unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=16k tmpfs '{disk}'"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.decode().strip()}")
    child = [sys.executable, str(ROOT / "tests" / "disk_fault_child.py"), script, args]
    done = subprocess.run(
        [_UNSHARE or "unshare", "-rm", *child], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.skipif(_UNSHARE is None or sys.platform != "linux", reason="needs Linux and unshare")
@pytest.mark.timeout(90)
def test_a_really_full_disk_loses_no_answer(server: FakeLLMServer, tmp_path: Path) -> None:
    server.reply = slow_echo(0.002)
    out = run_in_tiny_disk("full", server, tmp_path)
    assert out["error"] == "CheckpointError" and out["errno"] == errno.ENOSPC, out
    answered = sent(server)
    assert 0 < out["recorded"] < out["total"] and sum(answered.values()) < out["total"]
    assert sorted(out["answers"]) == sorted("answer to " + p for p in answered)  # none lost
    assert out["whole_lines"]


@pytest.mark.skipif(_UNSHARE is None or sys.platform != "linux", reason="needs Linux and unshare")
@pytest.mark.timeout(90)
def test_a_read_only_folder_is_a_checkpoint_error(server: FakeLLMServer, tmp_path: Path) -> None:
    out = run_in_tiny_disk("read-only", server, tmp_path)
    assert out["new"] == ["CheckpointError", errno.EROFS] and out["existing"] == [
        "CheckpointError",
        errno.EROFS,
    ]
    assert "read-only" in out["message"].lower() and out["result"] is None
    assert "merge_checkpoints" in out["old_message"] and "merge_checkpoints" not in out["message"]
    assert server.requests == []


# -- 5. one checkpoint, two running batches -----------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_checkpoint_held_by_another_process_is_refused(
    server: FakeLLMServer, client: LLMClient, tmp_path: Path
) -> None:
    path = tmp_path / "run.jsonl"
    holder = (
        "import sys; from llmkit.batch.checkpoint import _CheckpointFile;"
        f"f = _CheckpointFile({str(path)!r}, 'line'); f.open(); print('LOCKED', flush=True);"
        "sys.stdin.readline(); f.close()"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen(
        [sys.executable, "-c", holder], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "LOCKED"
        with pytest.raises(CheckpointError, match="in use by another running batch") as caught:
            client.batch(prompts(3), checkpoint=path, progress=False)
        assert str(path) in str(caught.value) and server.requests == []
    finally:
        child.communicate("\n", timeout=10)
    assert client.batch(prompts(3), checkpoint=path, progress=False).succeeded == 3


class FdLedger:
    """The descriptors one thread opens on a path, and each ``os.close`` it makes of them."""

    def __init__(self, path: Path) -> None:
        self.path, self.thread = str(path), threading.get_ident()
        self.opened: list[int] = []
        self.closes: Counter[int] = Counter()
        self.real_open, self.real_close = os.open, os.close

    def open(self, file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = self.real_open(file, flags, *args, **kwargs)
        if threading.get_ident() == self.thread and os.fspath(file) == self.path:
            self.opened.append(fd)
        return fd

    def close(self, fd: int) -> None:
        if threading.get_ident() == self.thread:
            self.closes[fd] += 1
        self.real_close(fd)


@pytest.mark.timeout(30)
def test_a_checkpoint_held_by_another_thread_is_refused_and_each_fd_closed_once(
    server: FakeLLMServer, client: LLMClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.jsonl"
    release, first_in = threading.Event(), threading.Event()

    def reply(info: RequestInfo) -> str:
        first_in.set()
        release.wait(10)
        return info.last_user_text

    server.reply = reply
    results: list[Any] = []
    holder = threading.Thread(
        target=lambda: results.append(
            client.batch(prompts(4), checkpoint=path, concurrency=2, progress=False)
        )
    )
    holder.start()
    try:
        assert first_in.wait(10)
        ledger = FdLedger(path)
        monkeypatch.setattr(os, "open", ledger.open)
        monkeypatch.setattr(os, "close", ledger.close)
        with pytest.raises(CheckpointError, match="in use by another running batch"):
            client.batch(prompts(4), checkpoint=path, progress=False)
        monkeypatch.undo()
        assert ledger.opened and all(ledger.closes[fd] == 1 for fd in ledger.opened), ledger.closes
    finally:
        release.set()
        holder.join(10)
    assert results and results[0].succeeded == 4  # the running batch was not disturbed
    assert sorted(r["id"] for r in lines(path)) == [0, 1, 2, 3]
