"""FakeLLMServer speaks the shapes of issue 13 (``Reply``), and llmkit reads them, sync and async.

The protocol tests proper (tests/test_protocol_*.py) use fixtures written from
the providers' references; these check that the fake server sends the same
kinds of reply (thinking, refusals, web search, cache counts, cut streams,
error events), so that users' own tests can script them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from protocol_wire import MODES, complete, stream

from llmkit import InvalidRequestError, LLMClient, NetworkError, OverloadedError, StreamError
from llmkit.config import load_settings
from llmkit.session import Session
from llmkit.testing import FakeLLMServer, Fault, Reply, ToolCallReply
from llmkit.testing._fake.replies import entry_from_json, entry_to_json

PROVIDERS = ["openai", "anthropic", "google"]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def clean(server: FakeLLMServer) -> None:
    server.reset()


def client(server: FakeLLMServer, provider: str, **kw: Any) -> LLMClient:
    url = {"openai": server.openai_base_url, "anthropic": server.anthropic_base_url}.get(provider, server.url)
    kw.setdefault("retry_delay", 0.001)
    return LLMClient(provider, api_keys=["sk-test-fake-1"], base_url=url, settings=load_settings(environ={}),
                     metrics=False, **kw)  # fmt: skip


def test_a_reply_survives_the_admin_endpoint() -> None:
    reply = Reply("hi", thinking="hmm", refusal=None, web_search="q", tool_call=ToolCallReply("f", {"x": 1}),
                  cached_input_tokens=3, truncated=True)  # fmt: skip
    assert entry_from_json(entry_to_json(reply)) == reply


# -- refusals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_refusals(server, mode, provider) -> None:
    server.script(Reply(refusal="I can't help with that."), Reply(refusal="I can't help with that."))
    with client(server, provider) as c:
        r = complete(c, mode)
        pieces, s, error = stream(c, mode)
    assert r.finish_reason == "refusal" and r.refusal == "I can't help with that." and r.content == ""
    assert error is None and pieces == []
    assert s.finish_reason == "refusal" and s.refusal == "I can't help with that."


# -- thinking ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", ["anthropic", "google"])
def test_thinking_comes_back_apart(server, mode, provider) -> None:
    model = {"anthropic": "claude-sonnet-4-5", "google": "gemini-2.5-flash"}[provider]
    server.script(*[Reply("Paris.", thinking="The capital of France is Paris.")] * 2)
    with client(server, provider, model=model, max_tokens=4000) as c:
        r = complete(c, mode, "Capital of France?", thinking=2048)
        pieces, s, error = stream(c, mode, "Capital of France?", thinking=2048)
    assert r.content == "Paris." and r.thinking == "The capital of France is Paris."
    assert r.usage.reasoning_tokens > 0
    assert error is None and "".join(pieces) == "Paris." and s.thinking == r.thinking


def test_openai_counts_reasoning_tokens(server) -> None:
    server.script(Reply("42.", thinking="Let me work it out step by step."))
    with client(server, "openai", model="o3-mini") as c:
        r = c.complete("The answer?", thinking="low", max_tokens=500)
    assert r.usage.reasoning_tokens > 0 and r.thinking == ""
    body = server.requests[-1].body
    assert body["reasoning_effort"] == "low" and body["max_completion_tokens"] == 500


@pytest.mark.parametrize("mode", MODES)
def test_a_thinking_tool_loop_through_a_session(server, mode) -> None:
    first = Reply("Let me check.", thinking="I need the weather.", tool_call=ToolCallReply("get_weather"))
    server.script(first, "Sunny.")

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    with client(server, "anthropic", model="claude-sonnet-4-5", max_tokens=4000) as c:
        session = Session(client=c)
        ask = {"thinking": 2048, "tools": [get_weather]}
        if mode == "sync":
            first = session.complete("Weather in Paris?", **ask)
            session.run_tool_calls(first, [get_weather])
            final = session.complete(**ask)
        else:

            async def run() -> Any:
                first = await session.acomplete("Weather in Paris?", **ask)
                session.run_tool_calls(first, [get_weather])
                return await session.acomplete(**ask)

            final = asyncio.run(run())
    assert final.content == "Sunny."
    sent = server.requests[-1].body["messages"][1]["content"]
    assert sent[0]["type"] == "thinking" and sent[0]["signature"]


def test_the_fake_refuses_a_tool_turn_without_its_thinking(server) -> None:
    server.script("never sent")
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "content": "sunny", "tool_call_id": "toolu_1"},
    ]  # fmt: skip
    with client(server, "anthropic", model="claude-sonnet-4-5", max_tokens=4000) as c, pytest.raises(
        InvalidRequestError, match="must start with a thinking block"
    ):  # fmt: skip
        c.complete(messages, thinking=2048, tools=[{"name": "get_weather"}])


# -- server tools, cache counts ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_web_search_is_a_server_tool_and_its_input_is_counted(server, mode) -> None:
    server.script(*[Reply("High tide at six.", web_search="tide times")] * 2)
    with client(server, "anthropic", model="claude-sonnet-4-5") as c:
        r = complete(c, mode, "When is high tide?")
        _, s, error = stream(c, mode, "When is high tide?")
    assert r.tool_calls == () and [p.name for p in r.server_tool_calls] == ["web_search"]
    assert error is None and s.tool_calls == () and [p.input for p in s.server_tool_calls] == [
        {"query": "tide times"}]  # fmt: skip
    assert s.usage.input_tokens == r.usage.input_tokens > server.requests[-1].input_tokens


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cache_reads_are_reported(server, provider) -> None:
    prompt = "x" * 400  # 100 tokens
    server.script(Reply("ok", cached_input_tokens=64), Reply("ok", cached_input_tokens=64))
    with client(server, provider) as c:
        r = c.complete(prompt)
        _, s, error = stream(c, "sync", prompt)
    assert r.usage.cached_input_tokens == 64 and error is None and s.usage.cached_input_tokens == 64
    assert r.usage.input_tokens == server.requests[0].input_tokens


def test_anthropic_cache_writes_are_reported(server) -> None:
    server.script(Reply("ok", cached_input_tokens=40, cache_write_tokens=50))
    with client(server, "anthropic") as c:
        r = c.complete("x" * 400)
    u = r.usage
    assert (u.cached_input_tokens, u.cache_write_tokens, u.input_tokens) == (
        40,
        50,
        server.requests[0].input_tokens,
    )


# -- streams that end honestly ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_truncated_stream_is_an_error(server, mode, provider) -> None:
    server.script(Reply("one two three four", truncated=True))
    with client(server, provider, max_retries=0) as c:
        pieces, _, error = stream(c, mode)
    assert "".join(pieces) == "one two three four"
    assert isinstance(error, StreamError) and isinstance(error.__cause__, NetworkError)


@pytest.mark.parametrize("mode", MODES)
def test_an_overloaded_event_before_text_is_retried(server, mode) -> None:
    server.script(Fault.mid_stream(after=0, status=529), "hello there")
    with client(server, "anthropic", max_retries=2) as c:
        pieces, s, error = stream(c, mode)
    assert error is None and "".join(pieces) == "hello there" and s.attempts == 2


@pytest.mark.parametrize("mode", MODES)
def test_an_overloaded_event_after_text_is_caused_by_overloaded(server, mode) -> None:
    server.script(Fault.mid_stream(after=1, status=529, message="Overloaded"))
    with client(server, "anthropic", max_retries=2) as c:
        pieces, _, error = stream(c, mode, "one two three")
    assert pieces and isinstance(error, StreamError)
    assert isinstance(error.__cause__, OverloadedError) and error.__cause__.status_code == 529
