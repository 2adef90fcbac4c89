"""``client.usage()`` totals every token count a Usage has: prompt-cache writes, reasoning, cache reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import fields

import pytest
from protocol_wire import WireServer, fixture, json_reply, wire_server

from llmkit import LLMClient, Response, Usage
from llmkit.config import load_settings
from llmkit.costs import UsageTracker

COUNTS = [f.name for f in fields(Usage)]


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with wire_server() as server:
        yield server


def test_every_usage_count_is_totalled_in_each_grouping() -> None:
    tracker = UsageTracker()
    one = Response("a", model="m1", provider="p", usage=Usage(100, 50, 30, 20, 10, 5), cost=1.0, key_id="k1")
    two = Response("b", model="m2", provider="p", usage=Usage(7, 6, 5, 4, 3, 2), cost=1.0, key_id="k2")
    for response in (one, two, one):
        tracker.record(response)
    snap = tracker.snapshot()
    for name in COUNTS:
        both = 2 * getattr(one.usage, name) + getattr(two.usage, name)
        assert snap[name] == both, name
        assert snap["by_provider"]["p"][name] == both, name
        assert snap["by_model"]["m1"][name] == snap["by_key"]["k1"][name] == 2 * getattr(one.usage, name)
        assert snap["by_model"]["m2"][name] == snap["by_key"]["k2"][name] == getattr(two.usage, name)
    assert snap["total_tokens"] == 2 * 150 + 13


def test_a_cache_hit_adds_no_tokens() -> None:
    tracker = UsageTracker()
    tracker.record(Response("a", model="m", provider="p", usage=Usage(1, 2, 3, 4, 5, 6), cached=True))
    snap = tracker.snapshot()
    assert (snap["requests"], snap["cache_hits"]) == (1, 1)
    assert all(snap[name] == 0 for name in COUNTS)


def test_the_client_totals_prompt_cache_writes_and_thinking(wire: WireServer) -> None:
    with LLMClient("anthropic", api_keys=["sk-test-usage-1"], base_url=wire.url, model="claude-sonnet-4-5",
                   settings=load_settings(environ={}), metrics=False) as client:  # fmt: skip
        wire.script(json_reply(json.loads(fixture("anthropic_message_cache.json"))))
        cached = client.complete("Read the contract")
        wire.script(json_reply(json.loads(fixture("anthropic_message_thinking_tool_use.json"))))
        thought = client.complete("Weather in Paris?")
        usage = client.usage()
    assert (cached.usage.cache_write_tokens, cached.usage.cache_write_1h_tokens) == (1200, 1000)
    assert thought.usage.reasoning_tokens == 41
    expected = cached.usage + thought.usage
    (key_id,) = {cached.key_id, thought.key_id}
    assert key_id is not None
    for totals in (usage, usage["by_provider"]["anthropic"], usage["by_model"]["claude-sonnet-4-5"],
                   usage["by_key"][key_id]):  # fmt: skip
        assert {name: totals[name] for name in COUNTS} == {name: getattr(expected, name) for name in COUNTS}
