"""Anthropic's Messages protocol as documented, byte for byte, against the adapter (issue 13).

Every reply here is a fixture in ``tests/fixtures/protocol/`` written from
Anthropic's API reference (streaming events, errors, extended thinking, web
search, prompt caching) and the anthropic SDK's types and recorded streams,
served raw by :mod:`protocol_wire`. Streams run whole and cut at random
points; every call runs through ``LLMClient`` and ``AsyncLLMClient`` alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from protocol_wire import (
    MODES,
    SPLITS,
    WireServer,
    complete,
    fixture,
    json_reply,
    rng_for,
    sse_reply,
    stream,
    wire_server,
)

from llmkit import (
    AuthenticationError,
    InvalidRequestError,
    LLMClient,
    Message,
    MessageRole,
    NetworkError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    StreamError,
)
from llmkit.config import load_settings
from llmkit.costs import PriceTable
from llmkit.session import Session
from llmkit.types import ServerToolPart, TextPart, ThinkingPart

MODEL = "claude-sonnet-4-5"


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with wire_server() as server:
        yield server


def client(wire: WireServer, **kw: Any) -> LLMClient:
    kw.setdefault("retry_delay", 0.001)
    kw.setdefault("model", MODEL)
    return LLMClient("anthropic", api_keys=["sk-test-proto-1"], base_url=wire.url,
                     settings=load_settings(environ={}), metrics=False, **kw)  # fmt: skip


def stream_fixture(name: str, split: int | None, **kw: Any) -> Any:
    return sse_reply(fixture(name), rng_for(split), **kw)


# -- 1. event: error after the HTTP 200 -------------------------------------------------------------


ERROR_EVENTS = [
    ("overloaded_error", OverloadedError, 529),
    ("rate_limit_error", RateLimitError, 429),
    ("api_error", ProviderError, 500),
    ("invalid_request_error", InvalidRequestError, 400),
    ("authentication_error", AuthenticationError, 401),
    ("permission_error", PermissionDeniedError, 403),
    ("not_found_error", InvalidRequestError, 404),
    ("request_too_large", InvalidRequestError, 413),
    ("timeout_error", ProviderError, 504),
]


def error_stream(kind: str) -> bytes:
    return fixture("anthropic_stream_overloaded_before_text.sse").replace(b"overloaded_error", kind.encode())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("kind", "error_class", "status"), ERROR_EVENTS)
def test_a_stream_error_event_is_mapped_by_its_type(wire, mode, kind, error_class, status) -> None:
    wire.script(sse_reply(error_stream(kind)))
    with client(wire, max_retries=0) as c:
        pieces, _, error = stream(c, mode)
    assert pieces == []
    assert type(error) is error_class, error
    assert error.status_code == status
    assert error.provider == "anthropic"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("split", SPLITS)
def test_an_overloaded_event_before_any_text_is_retried(wire, mode, split) -> None:
    wire.script(stream_fixture("anthropic_stream_overloaded_before_text.sse", split),
                stream_fixture("anthropic_stream_text.sse", split))  # fmt: skip
    with client(wire, max_retries=2) as c:
        pieces, s, error = stream(c, mode)
    assert error is None
    assert "".join(pieces) == "Grüße aus Zürich — ☕"
    assert s.attempts == 2 and len(wire.recorded) == 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("split", SPLITS)
def test_an_overloaded_event_after_text_is_a_stream_error_caused_by_overloaded(wire, mode, split) -> None:
    wire.script(stream_fixture("anthropic_stream_overloaded_after_text.sse", split))
    with client(wire, max_retries=2) as c:
        pieces, _, error = stream(c, mode)
    assert "".join(pieces) == "Half an ans"
    assert isinstance(error, StreamError)
    assert isinstance(error.__cause__, OverloadedError) and error.__cause__.status_code == 529
    assert len(wire.recorded) == 1  # never retried after text


# -- 2. a stream cut off before message_stop ------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("end", ["chunked", "close"])
def test_a_stream_cut_before_message_stop_is_an_error(wire, mode, split, end) -> None:
    wire.script(stream_fixture("anthropic_stream_cut.sse", split, end=end))
    with client(wire, max_retries=2) as c:
        pieces, s, error = stream(c, mode)
    assert "".join(pieces) == "Grüße aus Zürich — ☕"
    assert isinstance(error, StreamError), error
    assert isinstance(error.__cause__, NetworkError)
    assert s.finish_reason is None


@pytest.mark.parametrize("mode", MODES)
def test_a_stream_cut_before_any_text_is_retried(wire, mode) -> None:
    head = fixture("anthropic_stream_text.sse").split(b"event: content_block_delta")[0]
    wire.script(sse_reply(head), stream_fixture("anthropic_stream_text.sse", None))
    with client(wire, max_retries=2) as c:
        pieces, s, error = stream(c, mode)
    assert error is None and "".join(pieces) == "Grüße aus Zürich — ☕"
    assert s.attempts == 2 and s.finish_reason == "end_turn"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("split", SPLITS)
def test_a_whole_stream_still_ends_cleanly(wire, mode, split) -> None:
    wire.script(stream_fixture("anthropic_stream_text.sse", split))
    with client(wire) as c:
        pieces, s, error = stream(c, mode)
    assert error is None and "".join(pieces) == "Grüße aus Zürich — ☕"
    assert s.finish_reason == "end_turn" and s.usage.output_tokens == 12 and s.usage.input_tokens == 25


# -- 3. server tools ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("split", SPLITS)
def test_a_streamed_server_tool_use_is_not_a_tool_call(wire, mode, split) -> None:
    wire.script(stream_fixture("anthropic_stream_web_search.sse", split))
    with client(wire) as c:
        pieces, s, error = stream(c, mode)
    assert error is None
    assert "".join(pieces) == "I'll search for that.High tide is at 06:12."
    assert s.tool_calls == ()
    (call,) = s.server_tool_calls
    assert (call.id, call.name, call.input) == ("srvtoolu_01FixtureSearch0000001", "web_search",
                                                {"query": "tide times Saint-Malo"})  # fmt: skip
    (result,) = s.response.server_tool_results
    assert result.type == "web_search_tool_result" and result.id == call.id
    assert result.block["content"][0]["url"] == "https://www.example.com/tides"
    kinds = [type(p).__name__ for p in s.response.parts]
    assert kinds == ["TextPart", "ServerToolPart", "ServerToolPart", "TextPart"]


@pytest.mark.parametrize("mode", MODES)
def test_complete_keeps_server_tools_apart_and_sends_them_back(wire, mode) -> None:
    wire.script(json_reply(json.loads(fixture("anthropic_message_web_search.json"))),
                json_reply(json.loads(fixture("anthropic_message_after_tool.json"))))  # fmt: skip

    def set_alarm(time: str) -> str:
        """Set an alarm."""
        return "ok"

    with client(wire) as c:
        session = Session(client=c)
        r = session.complete("When is high tide?", tools=[set_alarm]) if mode == "sync" else None
        if mode == "async":
            import asyncio

            r = asyncio.run(session.acomplete("When is high tide?", tools=[set_alarm]))
        assert r.content == "I'll search for that.High tide is at 06:12."
        assert [(t.id, t.name) for t in r.tool_calls] == [("toolu_01FixtureClientTool000001", "set_alarm")]
        assert [p.name for p in r.server_tool_calls] == ["web_search"]
        session.run_tool_calls(r, [set_alarm])
        session.complete(tools=[set_alarm])
    sent = wire.bodies[1]["messages"][1]
    assert sent["role"] == "assistant"
    assert [b["type"] for b in sent["content"]] == [
        "text", "server_tool_use", "web_search_tool_result", "text", "tool_use"]  # fmt: skip
    original = json.loads(fixture("anthropic_message_web_search.json"))["content"]
    assert sent["content"][1] == original[1] and sent["content"][2] == original[2]


def test_server_tools_are_sent_as_given(wire) -> None:
    wire.script(json_reply(json.loads(fixture("anthropic_message_after_tool.json"))))
    search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    with client(wire) as c:
        c.complete("Hi", server_tools=[search])
    assert wire.bodies[0]["tools"] == [search]
    assert "server_tools" not in wire.bodies[0]


# -- 4. extended thinking --------------------------------------------------------------------------

SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds4VvbTHGpd+fixture+signature+only=="


def test_thinking_is_a_documented_parameter(wire) -> None:
    wire.script(json_reply(json.loads(fixture("anthropic_message_after_tool.json"))))
    with client(wire, max_tokens=8000) as c:
        c.complete("Hi", thinking=2048)
        c.complete("Hi", thinking="medium")
        c.complete("Hi", thinking={"type": "enabled", "budget_tokens": 3000})
        c.complete("Hi", thinking=False)
    thinking = [body.get("thinking") for body in wire.bodies]
    assert thinking == [
        {"type": "enabled", "budget_tokens": 2048}, {"type": "enabled", "budget_tokens": 4096},
        {"type": "enabled", "budget_tokens": 3000}, None,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"thinking": 2048, "max_tokens": 2048}, "max_tokens"),
        ({"thinking": 2048}, "max_tokens"),
        ({"thinking": 500, "max_tokens": 4000}, "1024"),
        ({"thinking": 2048, "max_tokens": 4000, "temperature": 0.2}, "temperature"),
        ({"thinking": "very"}, "thinking"),
        ({"thinking": 2048, "max_tokens": 4000, "tool_choice": "required", "tools": [{"name": "f"}]}, "tool"),
    ],
)
def test_bad_thinking_is_refused_before_sending(wire, kw, words) -> None:
    wire.script(json_reply(json.loads(fixture("anthropic_message_after_tool.json"))))
    with client(wire) as c, pytest.raises(InvalidRequestError, match=words):
        c.complete("Hi", **kw)
    assert wire.recorded == []


@pytest.mark.parametrize("mode", MODES)
def test_thinking_blocks_come_back_apart_from_the_text(wire, mode) -> None:
    wire.script(json_reply(json.loads(fixture("anthropic_message_thinking_tool_use.json"))))
    with client(wire, max_tokens=4000) as c:
        r = complete(c, mode, "Weather in Paris?", thinking=2048, tools=[{"name": "get_weather"}])
    assert r.content == "Let me check."
    assert r.thinking == "The user wants the weather in Paris. I should call get_weather."
    first, redacted = r.thinking_parts
    assert first.signature == SIGNATURE
    assert redacted.redacted.startswith("EmwKAhgBEgy3va3pzix") and redacted.thinking == ""
    assert r.usage.output_tokens == 96 and r.usage.reasoning_tokens == 41


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("split", SPLITS)
def test_streamed_thinking_and_its_signature(wire, mode, split) -> None:
    wire.script(stream_fixture("anthropic_stream_thinking_tool_use.sse", split))
    with client(wire, max_tokens=4000) as c:
        pieces, s, error = stream(
            c, mode, "Weather in Paris?", thinking=2048, tools=[{"name": "get_weather"}]
        )
    assert error is None
    assert "".join(pieces) == "Let me check."
    assert s.thinking == "The user wants the weather in Paris. I should call get_weather."
    assert [(t.name, t.arguments) for t in s.tool_calls] == [("get_weather", {"city": "Paris"})]
    (block,) = s.response.thinking_parts
    assert block.signature == SIGNATURE
    assert s.usage.reasoning_tokens == 41


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("split", SPLITS)
def test_a_retried_stream_starts_its_thinking_afresh(wire, mode, split) -> None:
    whole = fixture("anthropic_stream_thinking_tool_use.sse")
    thought = whole.split(b"event: content_block_stop")[0]  # thinking, then the API fails
    error = fixture("anthropic_stream_overloaded_before_text.sse").split(b"\n\n")[1] + b"\n\n"
    wire.script(sse_reply(thought + error, rng_for(split)), sse_reply(whole, rng_for(split)))
    with client(wire, max_tokens=4000, max_retries=2) as c:
        _, s, failure = stream(c, mode, "Weather in Paris?", thinking=2048, tools=[{"name": "get_weather"}])
    assert failure is None and s.attempts == 2
    assert s.thinking == "The user wants the weather in Paris. I should call get_weather."
    assert len(s.response.thinking_parts) == 1


def test_a_plain_reply_with_server_tools_is_kept_whole_in_a_session(wire) -> None:
    body = json.loads(fixture("anthropic_message_web_search.json"))
    body["content"] = body["content"][:-1]  # no client tool call: a pause_turn continues from these blocks
    body["stop_reason"] = "pause_turn"
    wire.script(json_reply(body), json_reply(json.loads(fixture("anthropic_message_after_tool.json"))))
    with client(wire) as c:
        session = Session(client=c)
        session.complete("When is high tide?")
        session.complete()
    kinds = [b["type"] for b in wire.bodies[1]["messages"][1]["content"]]
    assert kinds == ["text", "server_tool_use", "web_search_tool_result", "text"]


@pytest.mark.parametrize("source", ["complete", "stream"])
def test_session_sends_the_thinking_block_back_with_the_tool_results(wire, source) -> None:
    if source == "complete":
        reply = json_reply(json.loads(fixture("anthropic_message_thinking_tool_use.json")))
    else:
        reply = stream_fixture("anthropic_stream_thinking_tool_use.sse", None)
    wire.script(reply, json_reply(json.loads(fixture("anthropic_message_after_tool.json"))))

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny, 21°C"

    with client(wire, max_tokens=4000) as c:
        session = Session(client=c)
        if source == "complete":
            r = session.complete("Weather in Paris?", thinking=2048, tools=[get_weather])
        else:
            s = c.stream("Weather in Paris?", thinking=2048, tools=[get_weather])
            "".join(s)
            session.add_user("Weather in Paris?")
            r = s.response
        session.run_tool_calls(r, [get_weather])
        final = session.complete(thinking=2048, tools=[get_weather])
    assert final.content == "It is sunny in Paris, 21°C."
    assistant = wire.bodies[1]["messages"][1]
    assert assistant["role"] == "assistant"
    blocks = assistant["content"]
    assert blocks[0] == {"type": "thinking",
                         "thinking": "The user wants the weather in Paris. I should call get_weather.",
                         "signature": SIGNATURE}  # fmt: skip
    kinds = [b["type"] for b in blocks]
    assert kinds[-1] == "tool_use" and "text" in kinds
    if source == "complete":
        assert kinds[1] == "redacted_thinking"
        assert blocks[1]["data"].startswith("EmwKAhgBEgy3va3pzix")


def test_a_saved_session_keeps_thinking_blocks(tmp_path) -> None:
    r_parts = (ThinkingPart("I think", "sig-1"), ThinkingPart(redacted="abc"), TextPart("Hello"))
    session = Session()
    session.add_user("Hi")
    session.extend([Message(MessageRole.ASSISTANT, list(r_parts))])
    session.save(tmp_path / "s.json")
    loaded = Session.load(tmp_path / "s.json")
    assert loaded.get_messages()[-1].content == list(r_parts)


# -- 5. refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("split", SPLITS)
def test_a_streamed_refusal_says_so(wire, mode, split) -> None:
    wire.script(stream_fixture("anthropic_stream_refusal.sse", split))
    with client(wire) as c:
        pieces, s, error = stream(c, mode)
    assert error is None and pieces == []
    assert s.finish_reason == "refusal"
    assert s.refusal == "This request was refused due to policy."


# -- 6. stream usage: the cumulative counts of message_delta -------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("split", SPLITS)
def test_stream_usage_takes_the_cumulative_counts_of_message_delta(wire, mode, split) -> None:
    wire.script(stream_fixture("anthropic_stream_web_search.sse", split))
    with client(wire) as c:
        _, s, error = stream(c, mode)
        assert error is None
        assert (s.usage.input_tokens, s.usage.output_tokens) == (11306, 187)
        assert c.usage()["input_tokens"] == 11306


# -- prompt caching -------------------------------------------------------------------------------


def test_cache_control_marks_the_stable_prefix(wire) -> None:
    wire.script(json_reply(json.loads(fixture("anthropic_message_cache.json"))))
    history = [
        Message(MessageRole.SYSTEM, "You read contracts."),
        Message(MessageRole.USER, "Here is the contract: ..."),
        Message(MessageRole.ASSISTANT, "Read it."),
        Message(MessageRole.USER, "What is the notice period?"),
    ]
    with client(wire) as c:
        c.complete(history, cache_control=True, tools=[{"name": "lookup", "description": "Look up."}])
        c.complete(history, cache_control="1h")
    first, second = wire.bodies
    ephemeral = {"type": "ephemeral"}
    assert first["system"] == [{"type": "text", "text": "You read contracts.", "cache_control": ephemeral}]
    assert first["tools"][-1]["cache_control"] == ephemeral
    assert first["messages"][-1]["content"][-1]["cache_control"] == ephemeral
    assert first["messages"][0]["content"][-1]["cache_control"] == ephemeral  # the turn before
    assert "cache_control" not in first
    marks = json.dumps(first).count('"cache_control"')
    assert marks <= 4  # Anthropic allows four breakpoints
    assert second["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


@pytest.mark.parametrize("mode", MODES)
def test_cache_reads_and_writes_are_counted_and_priced(wire, mode) -> None:
    wire.script(json_reply(json.loads(fixture("anthropic_message_cache.json"))))
    prices = PriceTable({MODEL: {"input": 3.0, "output": 15.0, "cached_input": 0.3,
                                 "cache_write": 3.75, "cache_write_1h": 6.0}}, builtin=False)  # fmt: skip
    with client(wire, prices=prices) as c:
        r = complete(c, mode, "Notice period?")
    u = r.usage
    assert (u.input_tokens, u.cached_input_tokens, u.cache_write_tokens, u.cache_write_1h_tokens) == (
        10221, 9000, 1200, 1000)  # fmt: skip
    expected = (21 * 3.0 + 9000 * 0.3 + 200 * 3.75 + 1000 * 6.0 + 11 * 15.0) / 1e6
    assert r.cost == pytest.approx(expected)


def test_builtin_anthropic_prices_know_cache_writes() -> None:
    from llmkit.costs.prices import builtin_prices

    price = builtin_prices()["claude-sonnet-4-5"]
    assert price.cached_input == pytest.approx(price.input * 0.1)
    assert price.cache_write == pytest.approx(price.input * 1.25)
    assert price.cache_write_1h == pytest.approx(price.input * 2)


@pytest.mark.parametrize(
    ("model", "expected"), [("claude-sonnet-4-5", 1221), ("claude-3-5-haiku-latest", 10221)]
)
def test_cache_reads_count_toward_itpm_only_where_anthropic_says(wire, model, expected) -> None:
    wire.script(json_reply({**json.loads(fixture("anthropic_message_cache.json")), "model": model}))
    with client(wire, model=model) as c:
        adapter, slot = c._adapter, c._pool.slots[0]
        reply = adapter.complete(slot.client, c._request("Hi", {}))
    counted = (
        reply.response.usage.input_tokens if reply.limit_input_tokens is None else reply.limit_input_tokens
    )
    assert counted == expected  # None: the same as usage.input_tokens


@pytest.mark.parametrize("split", SPLITS)
def test_a_stream_says_what_counts_toward_itpm(wire, split) -> None:
    wire.script(stream_fixture("anthropic_stream_cache.sse", split))
    with client(wire) as c:
        adapter, slot = c._adapter, c._pool.slots[0]
        deltas = list(adapter.stream(slot.client, c._request("Hi", {}, stream=True)))
    (last,) = [d for d in deltas if d.usage is not None]
    assert last.usage.input_tokens == 10221 and last.usage.cached_input_tokens == 9000
    assert last.limit_input_tokens == 1221


def test_session_cache_control_goes_with_every_call(wire) -> None:
    wire.script(json_reply(json.loads(fixture("anthropic_message_after_tool.json"))))
    with client(wire) as c:
        session = Session("Be brief.", client=c, cache_control=True)
        session.complete("One")
        session.complete("Two")
    assert all(body["system"][0]["cache_control"] == {"type": "ephemeral"} for body in wire.bodies)


def test_server_tool_part_reads_its_block() -> None:
    part = ServerToolPart({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                           "input": {"query": "q"}})  # fmt: skip
    assert part.is_call and part.id == "srvtoolu_1" and part.input == {"query": "q"}


def test_an_sdk_status_error_from_an_error_event_is_mapped_by_its_type() -> None:
    # The anthropic SDK's own stream raises an event: error with the stream's status, 200.
    import anthropic
    import httpx2

    from llmkit.providers._sdk import map_sdk_error

    response = httpx2.Response(200, request=httpx2.Request("POST", "http://127.0.0.1/v1/messages"))
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    raised = anthropic.APIStatusError("Overloaded", response=response, body=body)
    error = map_sdk_error(raised, anthropic, "anthropic")
    assert type(error) is OverloadedError and error.status_code == 529


def test_message_names_are_left_out_and_said(wire) -> None:
    wire.script(json_reply(json.loads(fixture("anthropic_message_after_tool.json"))))
    with client(wire) as c, pytest.warns(UserWarning, match="name"):
        c.complete([Message(MessageRole.USER, "Hi", name="alice")])
    assert wire.bodies[0]["messages"] == [{"role": "user", "content": "Hi"}]
