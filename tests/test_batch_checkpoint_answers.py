"""What a batch checkpoint keeps of each answer: all of it, so a resumed batch gives the live Responses.

The live answers are the providers' documented replies (``tests/fixtures/protocol/``),
sent byte for byte by :mod:`protocol_wire`. A rerun on the same checkpoint
sends nothing and gives back the same Responses: every usage count, the
refusal, thinking blocks with their signatures, server tool blocks. Only
``raw`` is not kept, and ``latency`` to a tenth of a millisecond.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from protocol_wire import WireServer, fixture, json_reply, wire_server

from llmkit import LLMClient, Response, ToolCall, Usage
from llmkit.batch import merge_checkpoints
from llmkit.config import load_settings
from llmkit.types import ServerToolPart, TextPart, ThinkingPart


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with wire_server() as server:
        yield server


def client_for(wire: WireServer, provider: str, model: str) -> LLMClient:
    base_url = wire.url + "/v1" if provider == "openai" else wire.url
    return LLMClient(provider, api_keys=["sk-test-batch-1"], base_url=base_url, model=model,
                     settings=load_settings(environ={}), metrics=False, retry_delay=0.001)  # fmt: skip


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def same_answer(loaded: Response | None, live: Response | None) -> Response:
    assert loaded is not None and live is not None
    assert loaded.latency == pytest.approx(live.latency, abs=1e-4)
    return replace(loaded, latency=live.latency)


CASES = [
    ("anthropic", "claude-sonnet-4-5", "anthropic_message_thinking_tool_use.json"),
    ("anthropic", "claude-sonnet-4-5", "anthropic_message_web_search.json"),
    ("anthropic", "claude-sonnet-4-5", "anthropic_message_cache.json"),
    ("openai", "gpt-4o", "openai_chat_refusal.json"),
    ("openai", "o3-mini", "openai_chat_reasoning.json"),
]


@pytest.mark.parametrize(("provider", "model", "name"), CASES, ids=[c[2] for c in CASES])
def test_a_resumed_batch_gives_back_the_live_answers(
    wire: WireServer, tmp_path: Path, provider: str, model: str, name: str
) -> None:
    wire.script(json_reply(json.loads(fixture(name))))
    path = tmp_path / "run.jsonl"
    with client_for(wire, provider, model) as client:
        live = client.batch(["one", "two"], checkpoint=path, progress=False)
        sent = len(wire.recorded)
        again = client.batch(["one", "two"], checkpoint=path, progress=False)
    assert sent == 2 and len(wire.recorded) == 2, "the rerun sends nothing"
    assert again.skipped == 2
    for loaded, answered in zip(again.responses, live.responses):
        assert same_answer(loaded, answered) == answered
    merged = merge_checkpoints([path])
    assert [same_answer(m, a) for m, a in zip(merged.responses, live.responses)] == live.responses
    assert again.usage == live.usage


def test_the_record_keeps_every_usage_count_and_the_blocks(wire: WireServer, tmp_path: Path) -> None:
    wire.script(json_reply(json.loads(fixture("anthropic_message_thinking_tool_use.json"))))
    path = tmp_path / "run.jsonl"
    with client_for(wire, "anthropic", "claude-sonnet-4-5") as client:
        client.batch(["one"], checkpoint=path, progress=False)
    (record,) = lines(path)
    assert record["usage"] == {"input_tokens": 412, "output_tokens": 96, "cached_input_tokens": 0,
                               "cache_write_tokens": 0, "reasoning_tokens": 41,
                               "cache_write_1h_tokens": 0}  # fmt: skip
    kinds = [part["part"] for part in record["parts"]]
    assert kinds == ["thinking", "thinking", "text"]
    assert record["parts"][0]["signature"].startswith("EqQB") and record["parts"][1]["redacted"]


def test_records_of_the_previous_form_still_load(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    old = {"id": 0, "index": 0, "hash": "0" * 24, "status": "ok", "content": "Paris", "model": "gpt-4o-mini",
           "provider": "openai", "finish_reason": "stop",
           "usage": {"input_tokens": 10, "output_tokens": 3, "cached_input_tokens": 4},
           "cost": 0.001, "key_id": "key-1", "request_id": "req_1", "latency": 0.5, "attempts": 1,
           "tool_calls": [ToolCall("call_1", "f", {"x": 1}).to_dict()], "parsed": None,
           "time": 1.0}  # fmt: skip
    path.write_text(json.dumps(old) + "\n")
    (response,) = merge_checkpoints([path]).responses
    assert response is not None
    assert response.usage == Usage(10, 3, 4)
    assert (response.content, response.refusal, response.parts) == ("Paris", None, ())
    assert response.fallback_index == 0
    assert response.tool_calls == (ToolCall("call_1", "f", {"x": 1}),)


def test_a_part_that_cannot_be_written_never_loses_the_answer(tmp_path: Path) -> None:
    from llmkit.batch.checkpoint import _ok_record, _response_from
    from llmkit.batch.items import _parse_item

    odd = Response("x", model="m", provider="p", parts=(TextPart("x"), ThinkingPart("t", "s"), object()))
    record = json.loads(json.dumps(_ok_record(_parse_item(0, "Hi"), "0" * 24, odd, None)))
    loaded = _response_from(record)
    assert loaded.content == "x" and loaded.parts == ()  # the answer is kept; its parts could not be


def test_server_tool_blocks_and_fallback_index_round_trip() -> None:
    from llmkit.batch.checkpoint import _ok_record, _response_from
    from llmkit.batch.items import _parse_item

    block = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}}
    live = Response("ok", model="m", provider="p", finish_reason="pause_turn", refusal=None, fallback_index=1,
                    parts=(ServerToolPart(block), TextPart("ok")), usage=Usage(1, 2, 0, 0, 0, 0))  # fmt: skip
    loaded = _response_from(json.loads(json.dumps(_ok_record(_parse_item(0, "Hi"), "0" * 24, live, None))))
    assert loaded == live
