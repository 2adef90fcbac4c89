"""A cache hit is the answer the live call gave: every field that describes it comes back.

The live answers are the providers' documented replies (``tests/fixtures/protocol/``:
thinking with signatures, redacted thinking, a server tool's call and result, a
refusal, reasoning and prompt-cache token counts), sent byte for byte by
:mod:`protocol_wire`; the second, identical call must not reach the server and
must give back the same Response, apart from what describes the call rather
than the answer (``cached``, ``latency``, ``key_id``, ``cost``, ``attempts``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from protocol_wire import WireServer, fixture, json_reply, wire_server

from llmkit import LLMClient, Response, ToolCall, Usage
from llmkit.cache import (
    CacheMiddleware,
    MemoryCache,
    RedisCache,
    SQLiteCache,
    cache_key,
    decode_response,
    encode_response,
)
from llmkit.config import load_settings
from llmkit.request import Request, build_request
from llmkit.types import ServerToolPart, TextPart, ThinkingPart


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with wire_server() as server:
        yield server


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        made: Any = MemoryCache()
    elif request.param == "sqlite":
        made = SQLiteCache(tmp_path / "responses.sqlite3")
    else:
        url = request.getfixturevalue("redis_url")
        made = RedisCache(url, prefix=f"llmkit:test-fidelity:{tmp_path.name}:")
    yield made
    made.clear()
    made.close()


def client_for(wire: WireServer, provider: str, model: str, cache: Any) -> LLMClient:
    base_url = wire.url + "/v1" if provider == "openai" else wire.url
    key = "test-key-1" if provider == "google" else "sk-test-cache-1"
    return LLMClient(provider, api_keys=[key], base_url=base_url, model=model, cache=cache,
                     settings=load_settings(environ={}), metrics=False, retry_delay=0.001)  # fmt: skip


def same_answer(hit: Response, live: Response) -> Response:
    """``hit`` with the fields that describe the call (not the answer) taken from ``live``."""
    return replace(hit, cached=live.cached, latency=live.latency, key_id=live.key_id,
                   cost=live.cost, attempts=live.attempts)  # fmt: skip


def has_thinking_with_signatures(r: Response) -> bool:
    signed = [p for p in r.thinking_parts if p.signature]
    redacted = [p for p in r.thinking_parts if p.redacted]
    return bool(signed and redacted and r.thinking and r.tool_calls)


def has_server_tools(r: Response) -> bool:
    return bool(r.server_tool_calls and r.server_tool_results and r.tool_calls)


def has_cache_counts(r: Response) -> bool:
    return (r.usage.cached_input_tokens, r.usage.cache_write_tokens, r.usage.cache_write_1h_tokens) == (
        9000, 1200, 1000)  # fmt: skip


def has_refusal(r: Response) -> bool:
    return bool(r.refusal) and r.finish_reason == "refusal"


def has_reasoning(r: Response) -> bool:
    return r.usage.reasoning_tokens == 512 and r.usage.cached_input_tokens == 1024


def has_gemini_thinking(r: Response) -> bool:
    return bool(r.thinking) and any(isinstance(p, TextPart) for p in r.parts) and r.usage.reasoning_tokens > 0


CLAUDE = "claude-sonnet-4-5"
CASES: list[tuple[str, str, str, Callable[[Response], bool]]] = [
    ("anthropic", CLAUDE, "anthropic_message_thinking_tool_use.json", has_thinking_with_signatures),
    ("anthropic", CLAUDE, "anthropic_message_web_search.json", has_server_tools),
    ("anthropic", CLAUDE, "anthropic_message_cache.json", has_cache_counts),
    ("openai", "gpt-4o", "openai_chat_refusal.json", has_refusal),
    ("openai", "o3-mini", "openai_chat_reasoning.json", has_reasoning),
    ("google", "gemini-2.5-flash", "gemini_thinking.json", has_gemini_thinking),
]


@pytest.mark.parametrize(("provider", "model", "name", "what"), CASES, ids=[c[2] for c in CASES])
def test_a_hit_gives_back_the_live_answer(
    wire: WireServer, backend: Any, provider: str, model: str, name: str, what: Callable[[Response], bool]
) -> None:
    wire.script(json_reply(json.loads(fixture(name))))
    with client_for(wire, provider, model, backend) as client:
        live = client.complete("Hi", temperature=0)
        hit = client.complete("Hi", temperature=0)
    assert what(live), "the fixture's reply should carry what this case is about"
    assert len(wire.recorded) == 1, "the second call is answered from the cache"
    assert live.cached is False and hit.cached is True
    assert same_answer(hit, live) == live
    assert what(hit)


def test_every_field_of_the_answer_round_trips() -> None:
    search = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
              "input": {"query": "tides"}}  # fmt: skip
    found = [{"type": "web_search_result", "url": "https://example.com", "title": "T"}]
    result = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": found}
    live = Response(
        "High tide at 06:12.", model="claude-sonnet-4-5", provider="anthropic", finish_reason="tool_use",
        usage=Usage(11306, 187, 9000, 1200, 41, 1000), latency=2.5, request_id="req_1", key_id="key-abc",
        tool_calls=(ToolCall("toolu_1", "set_alarm", {"time": "05:30"}, thought_signature="c2ln"),),
        cost=0.04, attempts=2, raw=object(), fallback_index=2, refusal="I won't.",
        parts=(ThinkingPart("Let me think.", "sig-1"), ThinkingPart(redacted="ZW5j"), ThinkingPart("bare"),
               TextPart("I'll search."), ServerToolPart(search), ServerToolPart(result),
               TextPart("High tide at 06:12.")),
    )  # fmt: skip
    text = encode_response(live)
    assert "key-abc" not in text
    hit = decode_response(text, latency=0.001)
    assert hit.cached is True and hit.cost == 0.0 and hit.attempts == 0 and hit.key_id is None
    assert hit.latency == 0.001 and hit.raw is None
    assert same_answer(hit, live) == live
    assert hit.parts == live.parts and all(type(a) is type(b) for a, b in zip(hit.parts, live.parts))


def test_a_part_the_cache_cannot_write_is_not_cached() -> None:
    backend = MemoryCache()
    middleware = CacheMiddleware(backend, "openai")
    odd = Response("x", model="m", provider="openai", parts=(TextPart("x"), object()))
    assert middleware(build_request("Hi", model="m"), lambda r: odd) is odd
    assert len(backend) == 0


# -- entries written by the previous format ---------------------------------------------------------


def v1_entry(**changes: Any) -> str:
    """An entry as llmkit wrote it before this format: usage as three numbers, no refusal or parts."""
    entry = {"v": 1, "content": "Paris", "model": "gpt-4o-mini", "provider": "openai",
             "finish_reason": "stop", "usage": [10, 3, 4], "tool_calls": [],
             "request_id": "req_1"}  # fmt: skip
    entry.update(changes)
    return json.dumps(entry)


def served(entry: str, request: Request) -> tuple[Response, list[Request], MemoryCache]:
    backend = MemoryCache()
    backend.set(cache_key("openai", request), entry)
    calls: list[Request] = []

    def send(sent: Request) -> Response:
        calls.append(sent)
        return Response("fresh", model=sent.model, provider="openai")

    return CacheMiddleware(backend, "openai")(request, send), calls, backend


def test_a_plain_answer_of_the_previous_format_still_loads() -> None:
    response, calls, _ = served(v1_entry(), build_request("Capital?", model="gpt-4o-mini"))
    assert calls == [] and response.cached is True
    assert (response.content, response.finish_reason, response.request_id) == ("Paris", "stop", "req_1")
    assert response.usage == Usage(10, 3, 4) and response.refusal is None and response.parts == ()


@pytest.mark.parametrize(
    "changes",
    [
        {"finish_reason": "refusal"},  # its refusal text was not kept
        {"finish_reason": "pause_turn"},  # the server tool blocks to continue from were not kept
        {"finish_reason": "tool_use", "tool_calls": [ToolCall("toolu_1", "f", {}).to_dict()]},  # nor thinking
    ],
    ids=["refusal", "pause_turn", "tool_calls"],
)
def test_an_old_answer_that_may_have_lost_blocks_is_a_miss(changes: dict[str, Any]) -> None:
    request = build_request("Capital?", model="gpt-4o-mini")
    response, calls, backend = served(v1_entry(**changes), request)
    assert len(calls) == 1 and response.content == "fresh" and response.cached is False
    rewritten = decode_response(backend.get(cache_key("openai", request)) or "")
    assert rewritten.content == "fresh"  # written again in the current format


def test_an_async_hit_gives_back_the_live_answer_too(wire: WireServer) -> None:
    import asyncio

    from llmkit import AsyncLLMClient

    wire.script(json_reply(json.loads(fixture("anthropic_message_thinking_tool_use.json"))))
    with client_for(wire, "anthropic", CLAUDE, MemoryCache()) as client:

        async def twice() -> tuple[Response, Response]:
            aclient = AsyncLLMClient.wrap(client)
            return await aclient.complete("Hi", temperature=0), await aclient.complete("Hi", temperature=0)

        live, hit = asyncio.run(twice())
    assert len(wire.recorded) == 1 and hit.cached is True
    assert has_thinking_with_signatures(hit) and same_answer(hit, live) == live
