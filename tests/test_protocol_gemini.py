"""Gemini's generateContent protocol as its v1beta protos define it, against the adapter (issue 13).

Replies are fixtures in ``tests/fixtures/protocol/`` written from Google's
generativelanguage v1beta protos and the Gemini API docs (thought parts,
``thoughtsTokenCount``), served raw by :mod:`protocol_wire`; request bodies
are checked against the fields the protos define.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from protocol_wire import MODES, SPLITS, WireServer, complete, fixture, json_reply, rng_for, sse_reply, stream
from protocol_wire import wire_server as make_wire

from llmkit import InvalidRequestError, LLMClient
from llmkit.config import load_settings


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with make_wire() as server:
        yield server


def client(wire: WireServer, model: str = "gemini-2.5-flash", **kw: Any) -> LLMClient:
    return LLMClient("google", api_keys=["test-key-1"], base_url=wire.url, model=model,
                     settings=load_settings(environ={}), metrics=False, **kw)  # fmt: skip


def thinking_reply() -> Any:
    return json_reply(json.loads(fixture("gemini_thinking.json")))


# -- 4. thinking ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "thinking", "config"),
    [
        ("gemini-2.5-flash", 1024, {"thinkingBudget": 1024, "includeThoughts": True}),
        ("gemini-2.5-flash", True, {"includeThoughts": True}),
        ("gemini-2.5-flash", "high", {"thinkingBudget": 16384, "includeThoughts": True}),
        ("gemini-2.5-flash", False, {"thinkingBudget": 0}),
        ("gemini-3-pro-preview", "low", {"thinkingLevel": "low", "includeThoughts": True}),
        ("gemini-2.5-pro", {"thinkingBudget": 128}, {"thinkingBudget": 128}),
    ],
)
def test_thinking_becomes_a_thinking_config(wire, model, thinking, config) -> None:
    wire.script(thinking_reply())
    with client(wire, model) as c:
        c.complete("A prime between 10 and 15?", thinking=thinking)
    body = wire.bodies[0]
    assert body["generationConfig"]["thinkingConfig"] == config
    assert "thinking" not in body


def test_bad_thinking_is_refused_before_sending(wire) -> None:
    wire.script(thinking_reply())
    with client(wire) as c, pytest.raises(InvalidRequestError, match="thinking"):
        c.complete("Hi", thinking=-5)
    assert wire.recorded == []


@pytest.mark.parametrize("mode", MODES)
def test_thought_parts_are_thinking_not_content(wire, mode) -> None:
    wire.script(thinking_reply())
    with client(wire) as c:
        r = complete(c, mode, "A prime between 10 and 15?", thinking=True)
    assert r.content == "13 is prime."
    assert r.thinking == "**Weighing the options**\n\nThe user asks for a prime between 10 and 15."
    assert r.usage.output_tokens == 205 and r.usage.reasoning_tokens == 200


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("split", SPLITS)
def test_streamed_thought_parts(wire, mode, split) -> None:
    wire.script(sse_reply(fixture("gemini_stream_thinking.sse"), rng_for(split)))
    with client(wire) as c:
        pieces, s, error = stream(c, mode, "A prime between 10 and 15?", thinking=True)
    assert error is None and "".join(pieces) == "13 is prime."
    assert s.thinking == "**Weighing the options**\n\nThe user asks for a prime between 10 and 15."
    assert s.usage.reasoning_tokens == 200


# -- 7. several candidates ---------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["candidate_count", "candidateCount"])
def test_more_than_one_candidate_is_refused(wire, spelling) -> None:
    wire.script(thinking_reply())
    with client(wire) as c, pytest.raises(InvalidRequestError, match="candidate"):
        c.complete("Hi", **{spelling: 2})
    with client(wire) as c, pytest.raises(InvalidRequestError, match="candidate"):
        c.complete("Hi", generation_config={"candidateCount": 3})
    assert wire.recorded == []


# -- 8. Vertex-only fields ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"labels": {"team": "x"}},
        {"audio_timestamp": True},
        {"generation_config": {"audioTimestamp": True}},
        {"routing_config": {"autoMode": {}}},
    ],
)
def test_vertex_only_fields_are_refused(wire, kw) -> None:
    wire.script(thinking_reply())
    with client(wire) as c, pytest.raises(InvalidRequestError, match="Vertex"):
        c.complete("Hi", **kw)
    assert wire.recorded == []


def test_generation_config_fields_of_the_proto_pass(wire) -> None:
    wire.script(thinking_reply())
    with client(wire) as c:
        c.complete(
            "Hi", top_k=3, seed=7, response_logprobs=True, logprobs=2, media_resolution="MEDIA_RESOLUTION_LOW"
        )
    config = wire.bodies[0]["generationConfig"]
    assert config == {"topK": 3, "seed": 7, "responseLogprobs": True, "logprobs": 2,
                      "mediaResolution": "MEDIA_RESOLUTION_LOW"}  # fmt: skip


# -- 10. function declarations need a description --------------------------------------------------


def test_a_function_without_a_docstring_still_has_a_description(wire) -> None:
    wire.script(thinking_reply())

    def get_time(city: str) -> str:
        return "noon"

    with client(wire) as c:
        c.complete("Time in Oslo?", tools=[get_time])
    (declaration,) = wire.bodies[0]["tools"][0]["functionDeclarations"]
    assert declaration["name"] == "get_time"
    assert isinstance(declaration["description"], str) and declaration["description"].strip()


def test_cache_control_is_not_sent_to_gemini(wire) -> None:
    wire.script(thinking_reply())
    with client(wire) as c:
        c.complete("Hi", cache_control=True)
    assert "cache" not in json.dumps(wire.bodies[0]).lower()
