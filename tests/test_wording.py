"""Counts in messages agree with their nouns: "1 key", "2 keys", "1 entry", never "1 keys"."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from llmkit import ConfigurationError, LLMClient, RateLimit
from llmkit.batch import BatchInterrupted, CheckpointMismatchError
from llmkit.batch.items import _parse_item
from llmkit.batch.result import BatchResult
from llmkit.cli.bench import Outcome, Scenario, report
from llmkit.config import load_settings
from llmkit.errors import LLMError
from llmkit.testing import FakeLLMServer, ServerLimits
from llmkit.testing.mock import MockLLMClient
from llmkit.types import Response
from llmkit.wording import plural


def test_plural() -> None:
    assert [plural(n, "key") for n in (0, 1, 2)] == ["0 keys", "1 key", "2 keys"]
    assert [plural(n, "entry", "entries") for n in (0, 1, 2)] == ["0 entries", "1 entry", "2 entries"]


@pytest.mark.parametrize(
    ("keys", "limits", "says"),
    [(1, 2, "rate_limit has 2 entries for 1 key:"), (2, 3, "rate_limit has 3 entries for 2 keys:"),
     (3, 0, "rate_limit has 0 entries for 3 keys:")],
)  # fmt: skip
def test_a_rate_limit_list_of_the_wrong_length_says_so_in_english(keys: int, limits: int, says: str) -> None:
    api_keys = [f"sk-test-wording-{i}" for i in range(keys)]
    rate_limits = [RateLimit(requests_per_minute=60)] * limits
    with pytest.raises(ConfigurationError) as caught:
        LLMClient("openai", api_keys=api_keys, rate_limit=rate_limits, settings=load_settings(environ={}))
    assert says in str(caught.value)


def test_a_batch_result_of_one_item() -> None:
    one = BatchResult(["a"], [None], [None], skipped=0)
    assert repr(one).startswith("BatchResult(1 item: ")
    assert "0 of 1 item done, 1 not run" in str(BatchInterrupted(one))


def test_a_mock_that_ran_out_after_one_call() -> None:
    mock = MockLLMClient(["only"])
    mock.complete("a")
    with pytest.raises(LLMError, match=r"ran out of responses after 1 call$"):
        mock.complete("b")


def test_the_bench_report_of_one_key_one_thread_one_request() -> None:
    scenario = Scenario("tiny", "openai", ServerLimits(requests_per_minute=60), (10, 20), 16)
    text = report(scenario, [Outcome("llmkit", ok=1, wall=1.0)], requests=1, threads=1, keys=1)
    assert "1 request, 1 thread, 1 key;" in text.splitlines()[0]


def test_a_checkpoint_with_one_unknown_id(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    record = {"id": "stray", "index": 5, "hash": "0" * 24, "status": "ok", "content": "x"}
    path.write_text(json.dumps(record) + "\n")
    client = LLMClient("openai", api_keys=["sk-test-wording-1"], base_url="http://127.0.0.1:9/v1",
                       settings=load_settings(environ={}))  # fmt: skip
    with client, pytest.raises(CheckpointMismatchError, match="1 id is not in this batch"):
        client.batch(["Hi"], checkpoint=path, progress=False)


def test_one_record_from_an_older_llmkit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "run.jsonl"
    old_hash = _parse_item(0, "Hi").legacy_digest()
    record = {"id": 0, "index": 0, "hash": old_hash, "status": "ok", "content": "x"}
    path.write_text(json.dumps(record) + "\n")
    with FakeLLMServer() as server:
        client = LLMClient("openai", api_keys=["sk-test-wording-1"], base_url=server.openai_base_url,
                           settings=load_settings(environ={}))  # fmt: skip
        with client, caplog.at_level(logging.WARNING, logger="llmkit.batch"):
            result = client.batch(["Hi"], checkpoint=path, progress=False)
    assert isinstance(result[0], Response)
    assert any("1 record was written by an older llmkit" in r.getMessage() for r in caplog.records)
