"""client.batch(via="provider"): the providers' batch APIs through the fake server, all three providers.

Submit, poll, download and match; splitting; expired, cancelled, failed and partly failed
batches; response_model; costs at batch prices; the queue limit; bad input refused first.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from llmkit import BudgetExceededError, InvalidRequestError, LLMClient
from llmkit.batch import (
    BatchCancelledError,
    BatchExpiredError,
    BatchFailedError,
    ItemError,
    provider_calls,
)
from llmkit.batch.provider_plan import Line, split
from llmkit.costs import PriceTable
from llmkit.providers._anthropic_batch import AnthropicBatch
from llmkit.providers._gemini_batch import GeminiBatch
from llmkit.providers._openai_batch import OpenAIBatch
from llmkit.redaction import fingerprint
from llmkit.testing import BatchFault, FakeLLMServer, RequestInfo, ToolCallReply

KEYS = ["sk-test-batch-1", "sk-test-batch-2"]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest", "google": "gemini-2.0-flash"}
CREATE_PATHS = {
    "openai": "/v1/batches",
    "anthropic": "/v1/messages/batches",
    "google": ":batchGenerateContent",
}
CHAT_PATHS = ("/v1/chat/completions", "/v1/messages", ":generateContent")


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries of batch API calls wait 10 ms, not seconds (the waits are not what is tested)."""
    monkeypatch.setattr(provider_calls, "_BACKOFF", 0.01)


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(batch_seconds=60) as srv:  # a batch ends 60 ms after it is created
        yield srv


@pytest.fixture(params=list(MODELS))
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def base_url(server: FakeLLMServer, provider: str) -> str:
    return {"openai": server.openai_base_url, "anthropic": server.anthropic_base_url}.get(
        provider, server.url
    )


def make_client(server: FakeLLMServer, provider: str, **kwargs: Any) -> LLMClient:
    kwargs.setdefault("api_keys", KEYS)
    return LLMClient(provider=provider, base_url=base_url(server, provider), model=MODELS[provider], **kwargs)


def run(client: LLMClient, items: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("progress", False)
    kwargs.setdefault("poll_interval", 0.01)
    return client.batch(items, via="provider", **kwargs)


def creates(server: FakeLLMServer, provider: str) -> int:
    return sum(1 for r in server.requests if r.method == "POST" and r.path.endswith(CREATE_PATHS[provider]))


def chat_requests(server: FakeLLMServer) -> int:
    return sum(1 for r in server.requests if r.method == "POST" and r.path.endswith(CHAT_PATHS))


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def shouting(info: RequestInfo) -> str:
    return info.last_user_text.upper()


# -- submit, poll, download, match ----------------------------------------------------------------------


def test_submit_poll_download_and_match_by_custom_id(
    server: FakeLLMServer, provider: str, tmp_path: Path
) -> None:
    server.reply = shouting
    items = [{"id": f"doc {i} / é", "prompt": f"text number {i}"} for i in range(12)]
    path = tmp_path / "run.jsonl"
    with make_client(server, provider) as client:
        result = run(client, items, checkpoint=path, max_tokens=50)
    assert result.succeeded == 12 and result.failed == 0
    assert [r.content for r in result] == [f"TEXT NUMBER {i}" for i in range(12)]  # input order
    assert result.ids == [item["id"] for item in items]
    response = result.responses[3]
    assert response.provider == provider and response.key_id == fingerprint(KEYS[0])
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    jobs = server.batch_jobs()
    assert len(jobs) == 1 and jobs[0]["custom_ids"] == [f"llmkit-{i}" for i in range(12)]
    assert chat_requests(server) == 0  # nothing went through the live endpoints
    records = lines(path)
    assert records[0]["type"] == "batch_submit" and records[1] == {**records[1], "type": "batch_created",
                                                                  "batch_id": jobs[0]["id"]}  # fmt: skip
    assert sorted(r["id"] for r in records[2:]) == sorted(item["id"] for item in items)


def test_the_line_is_what_the_live_call_sends(server: FakeLLMServer, provider: str) -> None:
    with make_client(server, provider) as client:
        client.complete("Hello there", max_tokens=20, temperature=0.3, system_prompt="Be brief.")
        run(client, ["Hello there"], max_tokens=20, temperature=0.3, system_prompt="Be brief.")
    live = next(r.body for r in server.requests if r.path.endswith(CHAT_PATHS))
    sent = server.requests[-1] if provider != "openai" else None
    if provider == "openai":
        upload = next(r for r in server.requests if r.path == "/v1/files")
        assert upload.body is None  # multipart
        line = _uploaded_lines(server)[0]
        assert line["method"] == "POST" and line["url"] == "/v1/chat/completions" and line["body"] == live
    elif provider == "anthropic":
        create = next(r for r in server.requests if r.path == "/v1/messages/batches")
        assert create.body["requests"][0]["params"] == live
    else:
        create = next(r for r in server.requests if r.path.endswith(":batchGenerateContent"))
        entry = create.body["batch"]["inputConfig"]["requests"]["requests"][0]
        assert entry == {"request": live, "metadata": {"key": "llmkit-0"}}
    assert sent is None or sent.status == 200


def _uploaded_lines(server: FakeLLMServer) -> list[dict[str, Any]]:
    book = server._engine.batches.book
    uploads = [f for f in book.files.values() if f.get("purpose") == "batch"]
    return [json.loads(line) for line in uploads[0]["data"].splitlines()]


def test_split_across_several_provider_batches(server: FakeLLMServer, provider: str) -> None:
    server.reply = shouting
    items = [f"part {i}" for i in range(10)] + [{"prompt": "other model", "model": "gpt-4o"}]
    if provider != "openai":
        items = items[:10]
    with make_client(server, provider) as client:
        result = run(client, items, batch_size=4)
    assert [r.content for r in result][:10] == [f"PART {i}" for i in range(10)]
    sizes = [len(job["custom_ids"]) for job in server.batch_jobs()]
    assert sizes == ([4, 4, 2, 1] if provider == "openai" else [4, 4, 2])
    if provider == "openai":
        assert server.batch_jobs()[-1]["model"] == "gpt-4o"  # one model per provider batch


def _lines(count: int, size: int = 10) -> list[Line]:
    data = b"x" * size
    request: Any = type("R", (), {"model": "m"})()
    return [Line(None, f"c{i}", data, request) for i in range(count)]  # type: ignore[arg-type]


def test_splitting_follows_each_providers_documented_limits() -> None:
    assert [len(c) for c in split(_lines(50_001), OpenAIBatch.limits, None, 1)] == [50_000, 1]
    assert [len(c) for c in split(_lines(100_001), AnthropicBatch.limits, None, 1)] == [100_000, 1]
    assert [len(c) for c in split(_lines(100_001), AnthropicBatch.limits, 30_000, 1)] == [30_000] * 3 + [
        10_001
    ]
    megabyte = 1_000_000
    chunks = split(_lines(450, megabyte), OpenAIBatch.limits, None, 1)  # 200 MB a file
    assert [len(c) for c in chunks] == [199, 199, 52]
    assert all(sum(len(line.data) + 1 for line in c) <= 200_000_000 for c in chunks)
    chunks = split(_lines(300, megabyte), AnthropicBatch.limits, None, 1)  # 256 MB a batch
    assert [len(c) for c in chunks] == [255, 45]
    assert [len(c) for c in split(_lines(2_100, megabyte), GeminiBatch.limits, None, 1)] == [1_999, 101]


def test_gemini_sends_small_batches_inline_and_large_ones_as_an_uploaded_file(
    server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.reply = shouting
    with make_client(server, "google") as client:
        small = run(client, ["tiny"])
        monkeypatch.setattr(GeminiBatch, "inline_bytes", 200)
        large = run(client, [f"longer prompt {i} " * 5 for i in range(8)])
    assert small[0].content == "TINY" and large.succeeded == 8
    assert large[7].content == ("longer prompt 7 " * 5).upper()
    inline, from_file = server.batch_jobs()
    assert inline["metadata"]["source"] == "inline" and from_file["metadata"]["source"] == "file"
    paths = [r.path for r in server.requests]
    assert paths.count("/upload/v1beta/files") == 2  # start, then upload and finalize
    assert any(p.startswith("/download/v1beta/files/") for p in paths)


# -- failures ---------------------------------------------------------------------------------------------


def test_an_expired_batch_reports_its_unfinished_items_and_retries_them_live(
    server: FakeLLMServer, provider: str
) -> None:
    server.add_batch_fault(BatchFault(expire_after=0.5))
    with make_client(server, provider) as client:
        result = run(client, [f"q{i}" for i in range(6)])
        assert [r.content for r in result[:3]] == ["q0", "q1", "q2"]
        assert all(isinstance(r, ItemError) and r.type == "BatchExpiredError" for r in result[3:])
        assert isinstance(result[3].exception, BatchExpiredError)

        server.add_batch_fault(BatchFault(expire_after=0.5))
        again = run(client, [f"q{i}" for i in range(6)], retry_failed_live=True)
        usage = client.usage()
    assert [r.content for r in again] == [f"q{i}" for i in range(6)]
    assert chat_requests(server) == 3  # the three expired ones, through the live pool
    live, batched = again.responses[5], again.responses[0]
    assert live.cost == pytest.approx(2 * batched.cost)  # list price against batch price (same tokens)
    assert usage["requests"] == 9 and usage["batch_requests"] == 6  # expired ones were never answered


def test_a_partly_failed_batch_records_each_error_with_the_providers_reason(
    server: FakeLLMServer, provider: str, tmp_path: Path
) -> None:
    server.add_batch_fault(BatchFault(error_every=3, error_status=400, error_message="prompt refused here"))
    path = tmp_path / "run.jsonl"
    with make_client(server, provider) as client:
        result = run(client, [f"q{i}" for i in range(7)], checkpoint=path)
    assert [bool(r) for r in result] == [True, True, False, True, True, False, True]
    error = result[2]
    assert error.type == "InvalidRequestError" and error.status_code == 400
    assert "prompt refused here" in error.message
    assert {r["id"]: r["status"] for r in lines(path) if "id" in r} == {
        i: "error" if i in (2, 5) else "ok" for i in range(7)
    }


def test_on_error_raise_collects_the_paid_batch_then_raises(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with FakeLLMServer(batch_seconds=60, batch_queue_limit=4) as srv:  # one provider batch at a time
        srv.add_batch_fault(BatchFault(error_every=2, error_status=500))
        with make_client(srv, "openai") as client, pytest.raises(Exception, match="injected") as caught:
            run(client, [f"q{i}" for i in range(8)], checkpoint=path, batch_size=4, on_error="raise")
        jobs = srv.batch_jobs()
    assert caught.type.__name__ == "ProviderError"
    ran = [job for job in jobs if job["outcome"] != "failed"]  # (OpenAI fails those over its queue limit)
    assert len(ran) == 1  # nothing more was run after the first error...
    assert sum(1 for r in lines(path) if "status" in r) == 4  # ...and the paid one was recorded whole


def test_a_batch_refused_whole_gives_each_item_the_reason(server: FakeLLMServer, provider: str) -> None:
    server.add_batch_fault(BatchFault(fail="the input file was not valid (injected)"))
    with make_client(server, provider) as client:
        result = run(client, ["a", "b"])
    assert result.failed == 2
    assert all("not valid (injected)" in e.message for e in result.errors)
    if provider == "anthropic":  # it fails no batch whole: every request errs, with the reason
        assert {e.type for e in result.errors} == {"InvalidRequestError"}
    else:
        assert {e.type for e in result.errors} == {"BatchFailedError"}
        assert isinstance(result.errors[0].exception, BatchFailedError)


def test_a_batch_cancelled_at_the_provider_reports_what_it_did_not_run(provider: str) -> None:
    """Someone cancels the batch in the provider's console while llmkit polls it."""
    import threading
    import time

    with FakeLLMServer(batch_seconds=600, batch_time_scale=1000) as slow:  # 0.6 s a batch

        def cancel_soon() -> None:
            book = slow._engine.batches.book
            while not book.jobs_of(provider, KEYS[0]):  # once it is created...
                time.sleep(0.005)
            time.sleep(0.3)  # ...and half run
            book.cancel(book.jobs_of(provider, KEYS[0])[0])

        threading.Thread(target=cancel_soon, daemon=True).start()
        with make_client(slow, provider) as client:
            result = run(client, [f"q{i}" for i in range(10)])
    done = [r for r in result if r]
    assert 2 <= len(done) <= 8, result
    assert all(isinstance(e.exception, BatchCancelledError) for e in result.errors)
    assert result.succeeded + result.failed == 10


def test_a_dropped_download_is_fetched_again(
    server: FakeLLMServer, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GeminiBatch, "inline_bytes", 0)  # Gemini downloads a responses file
    server.add_batch_fault(BatchFault(drop_downloads=1))
    with make_client(server, provider) as client:
        result = run(client, [f"q{i}" for i in range(5)])
    assert [r.content for r in result] == [f"q{i}" for i in range(5)]
    dropped = [r for r in server.requests if r.fault == "drop"]
    assert len(dropped) == 1


def test_a_full_queue_makes_the_next_submission_wait(provider: str) -> None:
    with FakeLLMServer(batch_seconds=100, batch_queue_limit=4) as srv:
        with make_client(srv, provider) as client:
            result = run(client, [f"q{i}" for i in range(12)], batch_size=4)
        jobs = srv.batch_jobs()
    assert [r.content for r in result] == [f"q{i}" for i in range(12)]
    answered = Counter(cid for job in jobs if job["outcome"] == "completed" for cid in job["custom_ids"])
    assert set(answered.values()) == {1} and len(answered) == 12  # each item answered once
    if provider == "openai":  # OpenAI creates it, then fails it (token_limit_exceeded): that costs nothing
        assert any(job["outcome"] == "failed" for job in jobs)
    else:  # Anthropic and Gemini refuse the create with a 429
        assert any(r.status == 429 for r in srv.requests) and len(jobs) == 3


# -- structured outputs and costs ----------------------------------------------------------------------------


class City(pydantic.BaseModel):
    name: str
    population: int


def city_reply(info: RequestInfo) -> Any:
    name = info.last_user_text.split()[-1]
    arguments = {"name": name, "population": len(name)}
    if info.forced_tool is not None:
        return ToolCallReply(info.forced_tool, arguments)
    return json.dumps(arguments) if name != "Nowhere" else '{"name": "Nowhere"}'


def test_response_model_through_the_batch_path(server: FakeLLMServer, provider: str, tmp_path: Path) -> None:
    server.reply = city_reply
    path = tmp_path / "run.jsonl"
    with make_client(server, provider) as client:
        result = run(
            client, ["Tell me about Paris", "Tell me about Lyon"], response_model=City, checkpoint=path
        )
        assert list(result) == [City(name="Paris", population=5), City(name="Lyon", population=4)]
        assert result.responses[0].parsed == result[0]
        assert json.loads(result.responses[0].content) == {"name": "Paris", "population": 5}
        again = run(
            client, ["Tell me about Paris", "Tell me about Lyon"], response_model=City, checkpoint=path
        )
    assert again.skipped == 2 and list(again) == list(result)  # validated again from the checkpoint
    if provider == "google":  # Gemini's JSON-schema mode, as the live path asks it
        create = next(r for r in server.requests if r.path.endswith(":batchGenerateContent"))
        config = create.body["batch"]["inputConfig"]["requests"]["requests"][0]["request"]["generationConfig"]
        assert config["responseMimeType"] == "application/json" and "responseSchema" in config


def test_an_answer_that_does_not_validate_is_an_item_error(server: FakeLLMServer) -> None:
    server.reply = city_reply
    with make_client(server, "google") as client:
        result = run(client, ["Tell me about Paris", "Tell me about Nowhere"], response_model=City)
    assert result[0] == City(name="Paris", population=5)
    assert result[1].type == "StructuredOutputError" and "City" in result[1].message


def test_costs_at_batch_prices(server: FakeLLMServer, provider: str) -> None:
    prompts = [f"How long is a piece of string number {i}?" for i in range(4)]
    with make_client(server, provider) as client:
        batched = run(client, prompts, max_tokens=30)
        usage = client.usage()
    with make_client(server, provider) as client:
        live = client.batch(prompts, max_tokens=30, progress=False)
    table = PriceTable()
    for response in batched.responses:
        assert response is not None
        listed = table.cost(response.model, response.usage)
        assert listed is not None and response.cost == pytest.approx(listed * 0.5)
    assert batched.cost == pytest.approx(0.5 * live.cost)
    assert usage["cost"] == pytest.approx(batched.cost) and usage["batch_requests"] == 4
    assert usage["by_key"][fingerprint(KEYS[0])]["requests"] == 4


def test_the_budget_is_checked_at_batch_prices_before_anything_is_uploaded(server: FakeLLMServer) -> None:
    prompts = ["x" * 400] * 10  # 100 input tokens each, up to 1000 output tokens: 1100 x 10 tokens
    worst_live = 10 * (100 * 0.15 + 1000 * 0.6) / 1e6
    with make_client(server, "openai", max_cost=worst_live * 0.4) as client:
        with pytest.raises(BudgetExceededError, match="Nothing was uploaded"):
            run(client, prompts, max_tokens=1000)
        assert server.requests == []
    with make_client(server, "openai", max_cost=worst_live * 0.6) as client:  # fits at half price
        assert run(client, prompts, max_tokens=1000).succeeded == 10
        assert client._cost.reserved == pytest.approx(0.0)


# -- refused before anything is sent -----------------------------------------------------------------------


def test_bad_input_is_refused_before_anything_is_uploaded(server: FakeLLMServer, provider: str) -> None:
    items: list[Any] = ["fine", "", {"prompt": "too hot", "temperature": 7}, {"prompt": "fine too"}]
    with make_client(server, provider) as client:
        with pytest.raises(InvalidRequestError) as caught:
            run(client, items)
        message = str(caught.value)
        assert "2 items cannot be sent" in message and "item 1" in message and "item 2" in message
        assert "nothing was uploaded" in message
        with pytest.raises(InvalidRequestError, match="does not stream"):
            run(client, ["hi"], stream=True)
        with pytest.raises(InvalidRequestError, match="via must be"):
            client.batch(["hi"], via="provder")
        with pytest.raises(InvalidRequestError, match="poll_interval"):
            run(client, ["hi"], poll_interval=0)
    assert server.requests == []


def test_a_provider_without_a_batch_api_says_so(server: FakeLLMServer) -> None:
    client = LLMClient(provider="local", base_url=server.openai_base_url, model="llama3.2")
    with client, pytest.raises(InvalidRequestError, match=r"has no batch API.*via='live'"):
        run(client, ["hi"])
    assert server.requests == []


def test_progress_shows_the_providers_counts(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeLLMServer(batch_seconds=300) as slow, make_client(slow, "openai") as client:
        run(client, [f"q{i}" for i in range(20)], progress=True, poll_interval=0.05)
    err = capsys.readouterr().err
    assert "llmkit provider batch" in err and "processing=" in err and "succeeded=" in err
    assert "20/20" in err


def test_groq_batches_through_the_openai_shaped_api_at_its_own_discount(server: FakeLLMServer) -> None:
    with LLMClient(provider="groq", api_keys=KEYS, base_url=server.openai_base_url,
                   model="llama-3.1-8b-instant") as client:  # fmt: skip
        result = run(client, ["one", "two"])
    assert [r.content for r in result] == ["one", "two"]
    response = result.responses[0]
    assert response is not None and response.provider == "groq"
    listed = PriceTable().cost("llama-3.1-8b-instant", response.usage)
    assert listed is not None and response.cost == pytest.approx(0.75 * listed)  # Groq's batch page: 25% off


def test_a_checkpoint_is_shared_by_live_and_provider_runs(server: FakeLLMServer, tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with make_client(server, "openai") as client:
        client.batch([f"q{i}" for i in range(5)], checkpoint=path, progress=False)
        assert chat_requests(server) == 5
        again = run(client, [f"q{i}" for i in range(8)], checkpoint=path)
    assert again.skipped == 5 and [r.content for r in again] == [f"q{i}" for i in range(8)]
    assert server.batch_jobs()[0]["custom_ids"] == ["llmkit-5", "llmkit-6", "llmkit-7"]


def test_batch_prices_from_the_table_and_from_your_own_prices() -> None:
    from llmkit.errors import ConfigurationError
    from llmkit.types import Usage

    usage = Usage(1_000_000, 1_000_000)
    table = PriceTable({"my-ft-model": {"input": 1.0, "output": 2.0},
                        "cheap": {"input": 1.0, "output": 1.0, "batch": 0.3},
                        "gpt-4o-mini": {"input": 1.0, "output": 1.0}})  # fmt: skip
    assert table.batch_cost("claude-3-5-haiku-20241022", usage) == pytest.approx((0.8 + 4.0) / 2)
    assert table.batch_cost("cheap", usage) == pytest.approx(0.6)
    assert table.batch_cost("gpt-4o-mini", usage) == pytest.approx(1.0)  # your rates, the built-in 0.5
    assert table.batch_cost("my-ft-model", usage) is None  # no multiplier known for it...
    assert table.batch_cost("my-ft-model", usage, provider="openai") == pytest.approx(1.5)  # ...but OpenAI's
    more = table.with_overrides({"x": {"input": 1, "output": 1}})
    assert more.batch_cost("cheap", usage) == pytest.approx(0.6)  # the multiplier survives with_overrides
    with pytest.raises(ConfigurationError, match="batch multiplier"):
        PriceTable({"bad": {"input": 1.0, "output": 1.0, "batch": 2}})
