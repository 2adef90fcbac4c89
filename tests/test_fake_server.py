"""Tests of ``llmkit.testing.FakeLLMServer``, driven through the real openai and anthropic SDKs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, Literal

import anthropic
import httpx
import openai
import pytest
from pydantic import BaseModel

from llmkit.testing import (
    FakeLLMServer,
    Fault,
    RequestInfo,
    ServerLimits,
    ToolCallReply,
    count_tokens,
)
from llmkit.testing._fake.dialect_base import go_duration
from llmkit.testing._fake.schema import example_from_schema

GPT = "gpt-4o-mini"
CLAUDE = "claude-3-5-haiku-latest"
TEXT = "The quick brown fox jumps over the lazy dog"  # 43 chars: 11 tokens
USER = [{"role": "user", "content": TEXT}]
BUCKET = "minute_bucket"  # the lenient style these tests of other things were written for

pytestmark = pytest.mark.timeout(60)

# A connection dropped mid-stream surfaces as the SDK transport's own error (httpx2 for
# openai 3.x / anthropic 2.x, httpx before), not as an SDK APIConnectionError.
try:
    import httpx2

    TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError,
                                                     httpx2.TransportError)
except ImportError:  # older SDKs use httpx
    TRANSPORT_ERRORS = (httpx.TransportError,)


_clients: dict[tuple[str, str, str], Any] = {}


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    for client in _clients.values():
        client.close()
    _clients.clear()


def oai(srv: Any, key: str = "sk-test") -> openai.OpenAI:
    """An OpenAI SDK client for ``srv`` (one per server and key: building one is slow)."""
    ident = ("openai", srv.url, key)
    if ident not in _clients:
        _clients[ident] = openai.OpenAI(api_key=key, base_url=srv.openai_base_url,
                                        max_retries=0, timeout=10)
    return _clients[ident]  # type: ignore[no-any-return]


def ant(srv: Any, key: str = "sk-ant-test") -> anthropic.Anthropic:
    ident = ("anthropic", srv.url, key)
    if ident not in _clients:
        _clients[ident] = anthropic.Anthropic(api_key=key, base_url=srv.anthropic_base_url,
                                              max_retries=0, timeout=10)
    return _clients[ident]  # type: ignore[no-any-return]


def ask(srv: Any, key: str = "sk-test", **kw: Any) -> Any:
    return oai(srv, key).chat.completions.create(model=GPT, messages=kw.pop("messages", USER), **kw)


def ask_claude(srv: Any, key: str = "sk-ant-test", **kw: Any) -> Any:
    kw.setdefault("max_tokens", 100)
    return ant(srv, key).messages.create(model=CLAUDE, messages=kw.pop("messages", USER), **kw)


def post(srv: Any, path: str, body: Any, headers: dict[str, str] | None = None,
         method: str = "POST") -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with httpx.Client(trust_env=False, timeout=10) as client:
        return client.request(method, srv.url + path, content=content, headers=headers or {})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def srv(fake_server: FakeLLMServer) -> FakeLLMServer:
    return fake_server


# Pure helpers -----------------------------------------------------------------------------


def test_count_tokens_is_ceil_of_quarter_length() -> None:
    assert [count_tokens(t) for t in ("", "a", "abcd", "abcde", TEXT)] == [0, 1, 1, 2, 11]


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.02, "20ms"), (1, "1s"), (1.5, "1.5s"), (60, "1m0s"), (360, "6m0s"),
    (179.56, "2m59.56s"), (3600, "1h0m0s"),
])
def test_go_duration_format(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


class Address(BaseModel):
    street: str
    zip_code: int


class Person(BaseModel):
    name: str
    age: int
    height: float
    active: bool
    kind: Literal["admin", "user"]
    tags: list[str]
    address: Address
    previous: list[Address]
    nickname: str | None = None


def test_example_from_schema_is_valid_for_pydantic_models() -> None:
    value = example_from_schema(Person.model_json_schema())
    person = Person.model_validate(value)
    assert (person.name, person.age, person.height, person.active) == ("example", 1, 1.0, True)
    assert person.kind == "admin" and person.tags == ["example"]
    assert person.address.zip_code == 1 and len(person.previous) == 1
    bounded = {"type": "integer", "minimum": 5, "maximum": 9}
    assert example_from_schema(bounded) == 5
    assert example_from_schema({"type": "number", "exclusiveMaximum": 0.5}) < 0.5


# Lifecycle ---------------------------------------------------------------------------------


def test_lifecycle_and_urls() -> None:
    server = FakeLLMServer()
    with pytest.raises(RuntimeError):
        _ = server.url
    with server:
        assert server.running and server.url == f"http://127.0.0.1:{server.port}"
        assert server.openai_base_url == server.url + "/v1"
        assert server.anthropic_base_url == server.url
        assert server.start() is server  # no-op while running
    assert not server.running
    server.stop()
    server.close()  # idempotent


def test_stop_is_prompt_with_keep_alive_connections_open() -> None:
    server = FakeLLMServer().start()
    client = oai(server)
    client.chat.completions.create(model=GPT, messages=USER)  # leaves a pooled connection
    raw = socket.create_connection(("127.0.0.1", server.port))
    raw.sendall(b"GET /_fake/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")  # now an idle keep-alive connection
    began = time.perf_counter()
    server.stop()
    assert time.perf_counter() - began < 1.0
    raw.settimeout(2)
    assert raw.recv(10) == b""  # the server closed it
    raw.close()
    client.close()


# OpenAI shapes -----------------------------------------------------------------------------


def test_openai_completion_shape(srv: FakeLLMServer) -> None:
    messages = [{"role": "system", "content": "Be brief."}, *USER]
    raw = oai(srv).chat.completions.with_raw_response.create(model=GPT, messages=messages)
    assert raw.headers["x-request-id"] and raw.headers["content-type"] == "application/json"
    reply = raw.parse()
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion"
    assert reply.model == GPT and reply.created > 0
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == TEXT
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == count_tokens("Be brief.") + 11
    assert reply.usage.completion_tokens == 11 and reply.usage.total_tokens == 14 + 11


def test_openai_stream_with_usage(srv: FakeLLMServer) -> None:
    chunks = list(ask(srv, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.model == GPT for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) == 9 and "".join(texts) == TEXT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (11, 11)
    plain = list(ask(srv, stream=True))
    assert all(c.choices and c.usage is None for c in plain)


def test_openai_max_tokens_truncates(srv: FakeLLMServer) -> None:
    reply = ask(srv, max_tokens=2)
    assert reply.choices[0].message.content == TEXT[:8]
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 2
    chunks = list(ask(srv, max_completion_tokens=3, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == TEXT[:12]
    assert chunks[-1].choices[0].finish_reason == "length"


def test_openai_content_parts_and_images(srv: FakeLLMServer) -> None:
    parts = [{"type": "text", "text": "What is this?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    reply = ask(srv, messages=[{"role": "user", "content": parts}])
    assert reply.choices[0].message.content == "What is this?"
    assert reply.usage.prompt_tokens == count_tokens("What is this?") + 85


# Anthropic shapes --------------------------------------------------------------------------


def test_anthropic_message_shape(srv: FakeLLMServer) -> None:
    system = [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Really."}]
    raw = ant(srv).messages.with_raw_response.create(model=CLAUDE, max_tokens=50,
                                                     system=system, messages=USER)
    assert raw.headers["request-id"]
    message = raw.parse()
    assert message.id.startswith("msg_") and message.type == "message"
    assert message.role == "assistant" and message.model == CLAUDE
    assert message.content[0].type == "text" and message.content[0].text == TEXT
    assert message.stop_reason == "end_turn"
    expected = count_tokens("You are terse.") + count_tokens("Really.") + 11
    assert (message.usage.input_tokens, message.usage.output_tokens) == (expected, 11)
    assert ask_claude(srv, system="Be kind.").usage.input_tokens == 2 + 11


def test_anthropic_stream_events(srv: FakeLLMServer) -> None:
    events = list(ask_claude(srv, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [e for e in events if e.type == "content_block_delta"]
    assert len(deltas) == 9 and "".join(d.delta.text for d in deltas) == TEXT
    assert events[0].message.usage.input_tokens == 11
    assert events[-2].delta.stop_reason == "end_turn" and events[-2].usage.output_tokens == 11


def test_anthropic_stream_helper(srv: FakeLLMServer) -> None:
    with ant(srv).messages.stream(model=CLAUDE, max_tokens=5, messages=USER) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == TEXT[:20]
    assert final.content[0].text == TEXT[:20] and final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 5


def test_anthropic_count_tokens(srv: FakeLLMServer) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "AAAA"}}
    content = [{"type": "text", "text": TEXT}, image]
    counted = ant(srv).messages.count_tokens(model=CLAUDE, system="Hi there",
                                             messages=[{"role": "user", "content": content}])
    assert counted.input_tokens == 2 + 11 + 85
    assert srv.requests[-1].path == "/v1/messages/count_tokens"


def test_anthropic_requires_max_tokens(srv: FakeLLMServer) -> None:
    response = post(srv, "/v1/messages", {"model": CLAUDE, "messages": USER},
                    {"x-api-key": "k"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


# Tool calls --------------------------------------------------------------------------------


def test_scripted_tool_call_openai(srv: FakeLLMServer) -> None:
    srv.script(ToolCallReply("get_weather", {"city": "Paris", "days": 3}),
               ToolCallReply("get_weather", {"city": "Rome, a very long city name"}))
    reply = ask(srv)
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls" and call.type == "function"
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}
    assert reply.usage.completion_tokens == count_tokens(call.function.arguments)
    chunks = list(ask(srv, stream=True))
    fragments = [tc.function.arguments for c in chunks for tc in c.choices[0].delta.tool_calls or []]
    assert len(fragments) > 2
    assert json.loads("".join(fragments)) == {"city": "Rome, a very long city name"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_scripted_tool_call_anthropic(srv: FakeLLMServer) -> None:
    srv.script(ToolCallReply("lookup", {"q": "x"}), ToolCallReply("lookup", {"q": "streamed"}))
    message = ask_claude(srv)
    block = message.content[0]
    assert block.type == "tool_use" and block.name == "lookup" and block.input == {"q": "x"}
    assert message.stop_reason == "tool_use" and block.id.startswith("toolu_")
    with ant(srv).messages.stream(model=CLAUDE, max_tokens=50, messages=USER) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == {"q": "streamed"} and final.stop_reason == "tool_use"


def test_forced_tool_call_built_from_schema_openai(srv: FakeLLMServer) -> None:
    tool = {"type": "function", "function": {"name": "Person",
                                             "parameters": Person.model_json_schema()}}
    reply = ask(srv, tools=[tool], tool_choice={"type": "function", "function": {"name": "Person"}})
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "Person"
    Person.model_validate_json(call.function.arguments)
    assert ask(srv, tools=[tool]).choices[0].message.content == TEXT  # not forced: text


def test_forced_tool_call_built_from_schema_anthropic(srv: FakeLLMServer) -> None:
    tool = {"name": "Person", "description": "d", "input_schema": Person.model_json_schema()}
    message = ask_claude(srv, tools=[tool], tool_choice={"type": "tool", "name": "Person"})
    assert message.stop_reason == "tool_use"
    Person.model_validate(message.content[0].input)


def test_json_schema_response_format(srv: FakeLLMServer) -> None:
    schema = {"name": "Address", "schema": Address.model_json_schema()}
    reply = ask(srv, response_format={"type": "json_schema", "json_schema": schema})
    Address.model_validate_json(reply.choices[0].message.content)


# Replies -----------------------------------------------------------------------------------


def test_script_is_fifo_across_providers(srv: FakeLLMServer) -> None:
    srv.script("one", "two").script("three")
    assert ask(srv).choices[0].message.content == "one"
    assert ask_claude(srv).content[0].text == "two"
    assert srv.pending == ["three"]
    assert ask(srv).choices[0].message.content == "three"
    assert ask(srv).choices[0].message.content == TEXT  # back to echo


def test_reply_function_sees_the_request(srv: FakeLLMServer) -> None:
    seen: list[RequestInfo] = []

    def reply(info: RequestInfo) -> str:
        seen.append(info)
        return f"{info.provider}/{info.model}/{info.key}"

    srv.reply = reply
    messages = [{"role": "system", "content": "S"}, *USER]
    assert ask(srv, "k1", messages=messages, temperature=0.5).choices[0].message.content == (
        f"openai/{GPT}/k1")
    assert ask_claude(srv, "k2", system="S").content[0].text == f"anthropic/{CLAUDE}/k2"
    for info in seen:
        assert info.messages == [{"role": "system", "content": "S"},
                                 {"role": "user", "content": TEXT}]
    assert seen[0].params["temperature"] == 0.5 and "messages" not in seen[0].params
    assert seen[1].params["max_tokens"] == 100 and "system" not in seen[1].params
    srv.reply = lambda info: ToolCallReply("f", {"a": 1}) if info.provider == "openai" else (
        Fault(status=500))
    assert ask(srv).choices[0].message.tool_calls[0].function.name == "f"
    with pytest.raises(anthropic.InternalServerError):
        ask_claude(srv)


# Faults ------------------------------------------------------------------------------------


def test_rate_limit_fault_openai(srv: FakeLLMServer) -> None:
    srv.script(Fault.rate_limited(retry_after=1.5))
    with pytest.raises(openai.RateLimitError) as caught:
        ask(srv)
    headers = caught.value.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("2", "1500")
    assert caught.value.response.json()["error"]["type"] == "requests"
    assert ask(srv).choices[0].message.content == TEXT  # the fault was consumed


def test_overloaded_and_server_errors(srv: FakeLLMServer) -> None:
    srv.script(Fault.overloaded(), Fault(status=503), Fault.server_error(), Fault(status=529))
    with pytest.raises(anthropic.InternalServerError) as caught:
        ask_claude(srv)
    assert caught.value.status_code == 529
    assert caught.value.response.json()["error"]["type"] == "overloaded_error"
    with pytest.raises(anthropic.InternalServerError) as caught:
        ask_claude(srv)
    assert caught.value.status_code == 503
    with pytest.raises(openai.InternalServerError) as oe:
        ask(srv)
    assert oe.value.status_code == 500 and oe.value.response.json()["error"]["type"] == (
        "server_error")
    with pytest.raises(openai.APIStatusError) as oe:
        ask(srv)
    assert oe.value.status_code == 529


def test_dropped_connection(srv: FakeLLMServer) -> None:
    srv.script(Fault.dropped(), Fault.dropped())
    with pytest.raises(openai.APIConnectionError):
        ask(srv)
    with pytest.raises(anthropic.APIConnectionError):
        ask_claude(srv)
    assert srv.stats()["dropped"] == 2 and srv.requests[-1].status is None
    assert ask(srv).choices[0].message.content == TEXT


def test_malformed_body(srv: FakeLLMServer) -> None:
    srv.script(Fault.malformed_body(), Fault.malformed_body(), Fault.malformed_body())
    with pytest.raises(ValueError):  # json.JSONDecodeError
        ask(srv)
    with pytest.raises(ValueError):
        ask_claude(srv)
    with pytest.raises(ValueError):
        list(ask(srv, stream=True))
    assert [r.fault for r in srv.requests] == ["malformed"] * 3


def test_error_in_the_middle_of_a_stream(srv: FakeLLMServer) -> None:
    srv.script(Fault.mid_stream(after=2, status=500), Fault.mid_stream(after=3, status=529))
    got: list[str] = []
    with pytest.raises(openai.APIError, match="injected"):
        for chunk in ask(srv, stream=True):
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "The quick "
    pieces: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        for event in ask_claude(srv, stream=True):
            if event.type == "content_block_delta":
                pieces.append(event.delta.text)
    assert pieces == ["The ", "quick ", "brown "]
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_dropped_connection_in_the_middle_of_a_stream(srv: FakeLLMServer) -> None:
    srv.script(Fault.mid_stream(after=2), Fault.mid_stream(after=1))
    got: list[str] = []
    with pytest.raises(TRANSPORT_ERRORS, match="incomplete chunked read"):
        for chunk in ask(srv, stream=True):
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "The quick "
    with pytest.raises(TRANSPORT_ERRORS), ant(srv).messages.stream(
            model=CLAUDE, max_tokens=50, messages=USER) as stream:
        list(stream.text_stream)
    srv.script(Fault.mid_stream(after=50, status=500))  # fewer deltas: breaks after the last
    with pytest.raises(openai.APIError):
        list(ask(srv, stream=True))
    assert [r.fault for r in srv.requests] == ["stream_drop@2", "stream_drop@1", "stream_500@50"]
    assert ask(srv).choices[0].message.content == TEXT  # a fresh connection works


def test_delays_and_latency() -> None:
    with FakeLLMServer(latency=0.15) as server:
        began = time.perf_counter()
        ask(server)
        assert time.perf_counter() - began >= 0.15
        server.latency = 0
        server.script(Fault.slow(0.2))
        began = time.perf_counter()
        assert ask(server).choices[0].message.content == TEXT
        assert time.perf_counter() - began >= 0.2


def test_faults_for_one_key_and_rules(srv: FakeLLMServer) -> None:
    rule = srv.add_fault(Fault(status=500, key="k1"), times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            ask(srv, "k1")
        assert ask(srv, "k2").choices[0].message.content == TEXT
    ask(srv, "k1")  # the rule is used up
    srv.remove_fault(rule)
    srv.add_fault(Fault(status=401, provider="anthropic"))
    with pytest.raises(anthropic.AuthenticationError):
        ask_claude(srv)
    ask(srv)
    srv.reset()
    srv.script(Fault(status=503, key="k2"), "for anyone")
    assert ask(srv, "k1").choices[0].message.content == "for anyone"
    with pytest.raises(openai.InternalServerError):
        ask(srv, "k2")


def test_random_faults_are_seeded() -> None:
    rates = {500: 0.15, 429: 0.15, 529: 0.1, "drop": 0.1, "malformed": 0.1}
    runs = []
    for _ in range(2):
        with FakeLLMServer(fault_rates=rates, seed=1, fault_retry_after=0.5) as server:
            with httpx.Client(trust_env=False, timeout=5) as client:
                for _ in range(60):
                    with contextlib.suppress(httpx.TransportError):
                        client.post(server.openai_base_url + "/chat/completions",
                                    json={"model": GPT, "messages": USER},
                                    headers={"authorization": "Bearer k"})
            runs.append([(r.status, r.fault) for r in server.requests])
    assert runs[0] == runs[1]
    faults = {fault for _, fault in runs[0]}
    assert {"500", "429", "529", "drop", "malformed", None} <= faults
    with pytest.raises(ValueError):
        FakeLLMServer(fault_rates={200: 0.1})


# Rate limits --------------------------------------------------------------------------------


def test_requests_per_minute_admits_exactly_n(clock: FakeClock) -> None:
    with FakeLLMServer(limits=ServerLimits(requests_per_minute=3, style=BUCKET), clock=clock) as server:
        client = oai(server)
        remaining = []
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(model=GPT, messages=USER)
            remaining.append(raw.headers["x-ratelimit-remaining-requests"])
        assert remaining == ["2", "1", "0"]
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-reset-requests"] == "1m0s"
        with pytest.raises(openai.RateLimitError) as caught:
            ask(server)
        headers = caught.value.response.headers
        assert (headers["retry-after"], headers["retry-after-ms"]) == ("20", "20000")
        assert headers["x-ratelimit-remaining-requests"] == "0"
        clock.advance(19.9)
        with pytest.raises(openai.RateLimitError) as caught:
            ask(server)
        assert caught.value.response.headers["retry-after-ms"] == "100"
        assert caught.value.response.headers["retry-after"] == "1"
        clock.advance(0.1)
        ask(server)
        assert server.stats()["by_status"] == {200: 4, 429: 2}


def test_burst_seconds_smooths_the_limit(clock: FakeClock) -> None:
    limits = ServerLimits(requests_per_minute=120, burst_seconds=1)
    with FakeLLMServer(limits=limits, clock=clock) as server:
        ask(server)
        ask(server)
        with pytest.raises(openai.RateLimitError) as caught:
            ask(server)
        assert caught.value.response.headers["retry-after-ms"] == "500"
        clock.advance(0.5)
        ask(server)


def test_input_token_limit_anthropic(clock: FakeClock) -> None:
    with FakeLLMServer(limits=ServerLimits(input_tokens_per_minute=30, style=BUCKET),
                       clock=clock) as server:
        client = ant(server)
        raw = client.messages.with_raw_response.create(model=CLAUDE, max_tokens=9, messages=USER)
        assert raw.headers["anthropic-ratelimit-input-tokens-limit"] == "30"
        assert raw.headers["anthropic-ratelimit-input-tokens-remaining"] == "19"
        ask_claude(server)
        with pytest.raises(anthropic.RateLimitError) as caught:
            ask_claude(server)  # needs 11, has 8, refills 0.5/s
        assert caught.value.response.headers["retry-after"] == "6"
        assert caught.value.response.json()["error"]["type"] == "rate_limit_error"
        clock.advance(6)
        ask_claude(server)


def test_output_reservation_is_refunded(clock: FakeClock) -> None:
    with FakeLLMServer(limits=ServerLimits(output_tokens_per_minute=100, style=BUCKET),
                       clock=clock) as server:
        client = ant(server)

        def remaining(max_tokens: int) -> int:
            raw = client.messages.with_raw_response.create(
                model=CLAUDE, max_tokens=max_tokens, messages=USER)
            raw.parse()
            return int(raw.headers["anthropic-ratelimit-output-tokens-remaining"])

        assert remaining(60) == 40  # 60 reserved at admission
        assert remaining(60) == 100 - 11 - 60  # 49 of the first 60 came back
        with pytest.raises(anthropic.RateLimitError) as caught:
            ask_claude(server, max_tokens=500)  # reserves the capacity (100), 78 are left
        assert caught.value.response.headers["retry-after"] == "14"  # 22 tokens at 100/min
        clock.advance(13.2)
        assert remaining(500) == 0
        assert remaining(20) == 100 - 11 - 20


def test_key_limits_override_the_default(clock: FakeClock) -> None:
    limits = ServerLimits(requests_per_minute=1, style=BUCKET)
    vip = {"vip": ServerLimits(requests_per_minute=100, style=BUCKET)}
    with FakeLLMServer(limits=limits, key_limits=vip, clock=clock) as server:
        for _ in range(3):
            ask(server, "vip")
        ask(server, "plain")
        with pytest.raises(openai.RateLimitError):
            ask(server, "plain")
        assert [r.status for r in server.requests_for("plain")] == [200, 429]


def test_rate_limit_headers_of_both_providers(clock: FakeClock) -> None:
    limits = ServerLimits(requests_per_minute=60, input_tokens_per_minute=1000,
                          output_tokens_per_minute=500, style=BUCKET)
    with FakeLLMServer(limits=limits, clock=clock) as server:
        headers = oai(server).chat.completions.with_raw_response.create(
            model=GPT, messages=USER, max_tokens=100).headers
        assert headers["x-ratelimit-limit-requests"] == "60"
        assert headers["x-ratelimit-remaining-requests"] == "59"
        assert headers["x-ratelimit-reset-requests"] == "1s"
        assert headers["x-ratelimit-limit-tokens"] == "1500"
        assert headers["x-ratelimit-remaining-tokens"] == str(1500 - 11 - 100)
        assert headers["x-ratelimit-reset-tokens"] == "12s"  # 100 output tokens at 500/min
        headers = ant(server, "sk-test").messages.with_raw_response.create(
            model=CLAUDE, max_tokens=100, messages=USER).headers
        for name in ("requests", "input-tokens", "output-tokens", "tokens"):
            for part in ("limit", "remaining", "reset"):
                assert f"anthropic-ratelimit-{name}-{part}" in headers
        assert headers["anthropic-ratelimit-requests-remaining"] == "58"
        assert headers["anthropic-ratelimit-tokens-limit"] == "500"  # the tightest
        reset = datetime.strptime(headers["anthropic-ratelimit-output-tokens-reset"],
                                  "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert 0 <= (reset - datetime.now(timezone.utc)).total_seconds() <= 24
    with FakeLLMServer() as server:  # no limits: no rate-limit headers at all
        headers = oai(server).chat.completions.with_raw_response.create(
            model=GPT, messages=USER).headers
        assert not [h for h in headers if "ratelimit" in h]


def test_combined_tokens_per_minute(clock: FakeClock) -> None:
    with FakeLLMServer(limits=ServerLimits(tokens_per_minute=100, style=BUCKET), clock=clock) as server:
        headers = oai(server).chat.completions.with_raw_response.create(
            model=GPT, messages=USER, max_tokens=39).headers
        assert headers["x-ratelimit-remaining-tokens"] == "50"  # 11 input + 39 reserved
        ask(server, max_tokens=39)  # the first gave back 28: 78 left, takes 50, gives back 28
        with pytest.raises(openai.RateLimitError) as caught:
            ask(server, max_tokens=60)  # needs 71, has 56
        assert caught.value.response.json()["error"]["type"] == "tokens"


# Keys, log, robustness ----------------------------------------------------------------------


def test_authentication_and_permission() -> None:
    with FakeLLMServer(valid_keys={"good", "banned"}, forbidden_keys={"banned"}) as server:
        ask(server, "good")
        with pytest.raises(openai.AuthenticationError):
            ask(server, "wrong")
        with pytest.raises(anthropic.AuthenticationError) as caught:
            ask_claude(server, "wrong")
        assert caught.value.response.json()["error"]["type"] == "authentication_error"
        with pytest.raises(openai.PermissionDeniedError):
            ask(server, "banned")
        with pytest.raises(anthropic.PermissionDeniedError):
            ask_claude(server, "banned")
        assert post(server, "/v1/chat/completions", {"model": GPT, "messages": USER}
                    ).status_code == 401
        assert post(server, "/v1/messages", {}, {"authorization": "Bearer good"}
                    ).status_code == 400  # Anthropic also takes a bearer token


def test_request_log_and_stats(srv: FakeLLMServer) -> None:
    srv.script("a", Fault(status=429))
    ask(srv, "k1", temperature=0.1)
    with pytest.raises(anthropic.RateLimitError):
        ask_claude(srv, "k2")
    ask_claude(srv, "k2")
    first = srv.requests[0]
    assert (first.key, first.path, first.provider, first.status) == (
        "k1", "/v1/chat/completions", "openai", 200)
    assert first.model == GPT and first.body["temperature"] == 0.1
    assert first.headers["authorization"] == "Bearer k1" and first.time > 0
    assert (first.input_tokens, first.output_tokens) == (11, 1)
    assert [r.status for r in srv.requests_for("k2")] == [429, 200]
    stats = srv.stats()
    assert stats["total"] == 3 and stats["by_status"] == {200: 2, 429: 1}
    assert stats["by_key"] == {"k1": 1, "k2": 2}
    assert stats["by_provider"] == {"openai": 1, "anthropic": 2}
    srv.script("left over")
    srv.reset()
    assert srv.requests == [] and srv.pending == [] and srv.stats()["total"] == 0


def test_log_limit_keeps_recent_records_and_exact_counts() -> None:
    with FakeLLMServer(log_limit=2) as server:
        for text in ("a", "b", "c"):
            ask(server, messages=[{"role": "user", "content": text}])
        assert [r.body["messages"][0]["content"] for r in server.requests] == ["b", "c"]
        assert server.stats()["total"] == 3 and server.stats()["by_status"] == {200: 3}


def test_fault_validation() -> None:
    for bad in ({"status": 200}, {"status": 500, "drop": True}, {"after_deltas": 2},
                {"malformed": True, "after_deltas": 1}, {"delay": -1}):
        with pytest.raises(ValueError):
            Fault(**bad)
    with pytest.raises(TypeError):
        FakeLLMServer().script(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ServerLimits(requests_per_minute=0)


def test_stream_interval_spaces_the_deltas() -> None:
    with FakeLLMServer(stream_interval=0.03) as server:
        began = time.perf_counter()
        chunks = list(ask(server, stream=True))
        assert time.perf_counter() - began >= 9 * 0.03 and len(chunks) == 11


def test_reset_refills_buckets(clock: FakeClock) -> None:
    with FakeLLMServer(limits=ServerLimits(requests_per_minute=1), clock=clock) as server:
        ask(server)
        with pytest.raises(openai.RateLimitError):
            ask(server)
        server.reset()
        ask(server)


def test_bad_requests_and_unknown_paths(srv: FakeLLMServer) -> None:
    auth = {"authorization": "Bearer k"}
    response = post(srv, "/v1/chat/completions", b"{not json", auth)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):
        ask(srv, messages=[])
    odd = {"model": GPT, "messages": USER, "tools": 7, "stream_options": "x"}
    assert post(srv, "/v1/chat/completions", odd, auth).status_code == 400
    anthropic_bad = post(srv, "/v1/messages", b"[1, 2", {"x-api-key": "k"})
    assert anthropic_bad.json() == {"type": "error", "error": {
        "type": "invalid_request_error",
        "message": "We could not parse the JSON body of your request."}}
    chunked = httpx.Client(trust_env=False).post(  # a chunked request body is read too
        srv.openai_base_url + "/chat/completions", headers=auth,
        content=iter([b'{"model": "m", ', b'"messages": [{"role": "user", "content": "hi"}]}']))
    assert chunked.json()["choices"][0]["message"]["content"] == "hi"
    assert post(srv, "/v1/nowhere", {}, auth).status_code == 404
    assert post(srv, "/v1/chat/completions", b"", auth, method="GET").status_code == 404
    assert post(srv, "/_fake/nothing", {}).status_code == 404


def test_a_failing_reply_function_gets_a_500_and_the_server_lives_on(
        srv: FakeLLMServer, caplog: pytest.LogCaptureFixture) -> None:
    srv.reply = lambda info: 1 / 0  # type: ignore[assignment,return-value]
    with pytest.raises(openai.InternalServerError, match="ZeroDivisionError"):
        ask(srv)
    assert "error while handling" in caplog.text
    srv.reply = None
    assert ask(srv).choices[0].message.content == TEXT


def test_admin_endpoints(srv: FakeLLMServer) -> None:
    script = {"entries": ["from admin", {"fault": {"status": 503}},
                          {"tool_call": {"name": "f", "arguments": {"x": 1}}}]}
    assert post(srv, "/_fake/script", script).json()["pending"] == 3
    assert ask(srv).choices[0].message.content == "from admin"
    with pytest.raises(openai.InternalServerError):
        ask(srv)
    assert ask(srv).choices[0].message.tool_calls[0].function.arguments == '{"x":1}'
    assert post(srv, "/_fake/faults", {"fault": {"status": 500}, "times": 1}).status_code == 200
    with pytest.raises(openai.InternalServerError):
        ask(srv)
    assert post(srv, "/_fake/stats", b"", method="GET").json()["by_status"] == {
        "200": 2, "503": 1, "500": 1}
    assert len(post(srv, "/_fake/log", b"", method="GET").json()["requests"]) == 4
    assert post(srv, "/_fake/script", {"entries": [{"bogus": 1}]}).status_code == 400
    post(srv, "/_fake/reset", {})
    assert srv.stats()["total"] == 0


def test_concurrent_clients_are_counted_exactly() -> None:
    with FakeLLMServer(latency=0.02) as server:
        def work(index: int) -> None:
            client = oai(server, f"key-{index % 2}")
            for _ in range(10):
                client.chat.completions.create(model=GPT, messages=USER)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = server.stats()
        assert stats["total"] == 80 and stats["by_key"] == {"key-0": 40, "key-1": 40}
        assert 1 < stats["peak_in_flight"]["key-0"] <= 4


# Subprocess mode ----------------------------------------------------------------------------


def test_spawned_server() -> None:
    limits = ServerLimits(requests_per_minute=2, style=BUCKET)
    with FakeLLMServer.spawn(limits=limits, valid_keys=["k"]) as server:
        assert server.openai_base_url == server.url + "/v1"
        ask(server, "k")
        ask_claude(server, "k")
        with pytest.raises(openai.RateLimitError):
            ask(server, "k")
        with pytest.raises(openai.AuthenticationError):
            ask(server, "other")
        assert server.stats()["by_status"] == {200: 2, 429: 1, 401: 1}
        assert server.stats()["rate_limits"] == {BUCKET: {"admitted": 2, "refused": 1}}
        server.reset()
        server.script("scripted", Fault(status=529))
        assert ask(server, "k").choices[0].message.content == "scripted"
        with pytest.raises(anthropic.InternalServerError):
            ask_claude(server, "k")
        assert [r["status"] for r in server.requests] == [200, 529]
        process = server.process
    assert process.returncode == 0  # stopped cleanly on SIGTERM
    with pytest.raises(TypeError), FakeLLMServer.spawn(reply=lambda info: "x"):
        pass


@pytest.fixture
def cli_process() -> Iterator[subprocess.Popen[str]]:
    command = [sys.executable, "-m", "llmkit.testing.fake_server", "--port", "0", "--rpm",
               "1200", "--burst-seconds", "1", "--latency", "0.0", "--fault-rate", "500=0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONWARNINGS": "error"})
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_command_line_mode(cli_process: subprocess.Popen[str]) -> None:
    assert cli_process.stdout is not None and cli_process.stderr is not None
    line = cli_process.stdout.readline()
    assert line.startswith("READY http://127.0.0.1:")
    url = line.split()[1]
    with httpx.Client(trust_env=False, timeout=5) as client:
        assert client.get(url + "/_fake/health").json() == {"ok": True}
        reply = client.post(url + "/v1/chat/completions", json={"model": GPT, "messages": USER},
                            headers={"authorization": "Bearer k"})
        assert reply.headers["x-ratelimit-limit-requests"] == "1200"
        assert reply.headers["x-ratelimit-remaining-requests"] == "19"  # burst of 1 s
    cli_process.send_signal(signal.SIGINT)
    assert cli_process.wait(timeout=5) == 0
    assert cli_process.stderr.read() == ""  # no warnings, no access log
