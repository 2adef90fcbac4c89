"""OpenAI's chat completions protocol as documented, against the OpenAI, Groq and local adapters (issue 13).

Replies are fixtures in ``tests/fixtures/protocol/`` written from OpenAI's
OpenAPI spec and the openai SDK's recorded replies (refusals, reasoning and
cached-token usage, stream chunks), served raw by :mod:`protocol_wire`, whole
and cut at random points, through ``LLMClient`` and ``AsyncLLMClient``.
"""

from __future__ import annotations

import json
import warnings
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
    InvalidRequestError,
    LLMClient,
    Message,
    MessageRole,
    NetworkError,
    ProviderError,
    StreamError,
)
from llmkit.config import load_settings
from llmkit.costs import PriceTable

OPENAI_COMPATIBLE = ["openai", "groq", "local"]
TEXT = "Grüße aus Zürich — ☕"


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with wire_server() as server:
        yield server


def client(wire: WireServer, provider: str = "openai", **kw: Any) -> LLMClient:
    kw.setdefault("retry_delay", 0.001)
    return LLMClient(provider, api_keys=["sk-test-proto-1"], base_url=wire.url + "/v1",
                     settings=load_settings(environ={}), metrics=False, **kw)  # fmt: skip


def chat(content: str = "ok", **usage: Any) -> Any:
    return json_reply({
        "id": "chatcmpl-FixtureChat00000001", "object": "chat.completion", "created": 1727346164,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, **usage},
    })  # fmt: skip


def stream_fixture(name: str, split: int | None, **kw: Any) -> Any:
    return sse_reply(fixture(name), rng_for(split), **kw)


# -- 2. streams that end honestly ---------------------------------------------------------------


@pytest.mark.parametrize("provider", OPENAI_COMPATIBLE)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("split", SPLITS)
def test_a_whole_stream_ends_with_usage(wire, provider, mode, split) -> None:
    wire.script(stream_fixture("openai_stream_text.sse", split))
    with client(wire, provider) as c:
        pieces, s, error = stream(c, mode)
    assert error is None and "".join(pieces) == TEXT
    assert s.finish_reason == "stop"
    assert (s.usage.input_tokens, s.usage.cached_input_tokens, s.usage.output_tokens) == (2006, 1920, 12)


@pytest.mark.parametrize("provider", OPENAI_COMPATIBLE)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("end", ["chunked", "close"])
@pytest.mark.parametrize(
    "name", ["openai_stream_cut_before_finish.sse", "openai_stream_cut_before_usage.sse"]
)
def test_a_cut_stream_is_an_error(wire, provider, mode, split, end, name) -> None:
    wire.script(stream_fixture(name, split, end=end))
    with client(wire, provider, max_retries=1) as c:
        pieces, s, error = stream(c, mode)
    assert "".join(pieces) == TEXT
    assert isinstance(error, StreamError), error
    assert isinstance(error.__cause__, NetworkError)
    assert s.usage is None and len(wire.recorded) == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_stream_cut_before_any_text_is_retried(wire, mode) -> None:
    head = b"\n\n".join(fixture("openai_stream_text.sse").split(b"\n\n")[:1]) + b"\n\n"
    wire.script(sse_reply(head), stream_fixture("openai_stream_text.sse", None))
    with client(wire, max_retries=2) as c:
        pieces, s, error = stream(c, mode)
    assert error is None and "".join(pieces) == TEXT and s.attempts == 2


@pytest.mark.parametrize("mode", MODES)
def test_finish_and_usage_without_done_is_whole(wire, mode) -> None:
    # Some OpenAI-compatible servers end the body without [DONE]; everything the
    # protocol promises (the finish reason, the usage asked for) has arrived.
    wire.script(stream_fixture("openai_stream_cut_before_done.sse", None))
    with client(wire, "local") as c:
        pieces, s, error = stream(c, mode)
    assert error is None and "".join(pieces) == TEXT and s.usage.output_tokens == 12


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("split", SPLITS)
def test_an_error_event_after_text_is_a_stream_error(wire, mode, split) -> None:
    wire.script(stream_fixture("openai_stream_error_after_text.sse", split))
    with client(wire) as c:
        pieces, _, error = stream(c, mode)
    assert "".join(pieces) == "Half an ans"
    assert isinstance(error, StreamError)
    assert type(error.__cause__) is ProviderError and "had an error" in str(error.__cause__)


# -- 5. refusals -----------------------------------------------------------------------------------

REFUSAL = "I'm very sorry, but I can't assist with that."


@pytest.mark.parametrize("mode", MODES)
def test_a_refusal_is_exposed(wire, mode) -> None:
    wire.script(json_reply(json.loads(fixture("openai_chat_refusal.json"))))
    with client(wire, model="gpt-4o-2024-08-06") as c:
        r = complete(c, mode)
    assert r.content == ""
    assert r.refusal == REFUSAL
    assert r.finish_reason == "refusal"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("split", SPLITS)
def test_a_streamed_refusal_is_exposed(wire, mode, split) -> None:
    wire.script(stream_fixture("openai_stream_refusal.sse", split))
    with client(wire) as c:
        pieces, s, error = stream(c, mode)
    assert error is None and pieces == []
    assert s.refusal == "I'm sorry, I can't help with that."
    assert s.finish_reason == "refusal" and s.response.refusal == s.refusal


@pytest.mark.parametrize("mode", MODES)
def test_a_refusal_cut_short_is_not_retried(wire, mode) -> None:
    events = fixture("openai_stream_refusal.sse").split(b"\n\n")
    wire.script(sse_reply(b"\n\n".join(events[:3]) + b"\n\n"))  # the role chunk and two refusal pieces
    with client(wire, max_retries=3) as c:
        _, s, error = stream(c, mode)
    assert isinstance(error, StreamError) and s.refusal == "I'm sorry, I can't"
    assert len(wire.recorded) == 1  # a refusal handed over is output: never asked again


# -- 7. n > 1 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", OPENAI_COMPATIBLE)
@pytest.mark.parametrize("mode", MODES)
def test_n_above_one_is_refused_before_sending(wire, provider, mode) -> None:
    wire.script(chat())
    with client(wire, provider) as c, pytest.raises(InvalidRequestError, match="n=3"):
        complete(c, mode, n=3)
    with client(wire, provider) as c, pytest.raises(InvalidRequestError, match="n=2"):
        stream(c, mode, n=2)
    assert wire.recorded == []
    with client(wire, provider) as c:
        assert complete(c, mode, n=1).content == "ok"


# -- 8. fields a provider rejects ---------------------------------------------------------------


def test_groq_drops_message_names_and_says_so(wire) -> None:
    wire.script(chat())
    with client(wire, "groq") as c, pytest.warns(UserWarning, match="name"):
        c.complete([Message(MessageRole.USER, "Hi", name="alice")])
    assert "name" not in wire.bodies[0]["messages"][0]


def test_groq_strips_names_from_instructor_reasks(wire) -> None:
    from pydantic import BaseModel

    class City(BaseModel):
        name: str
        population: int

    def tool_reply(arguments: str) -> Any:
        return json_reply({
            "id": "chatcmpl-FixtureTool0000001", "object": "chat.completion", "created": 1727346164,
            "model": "llama-3.1-8b-instant",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
                "role": "assistant", "content": None, "refusal": None, "tool_calls": [{
                    "id": "call_fixture_1", "type": "function",
                    "function": {"name": "City", "arguments": arguments}}]}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
        })  # fmt: skip

    wire.script(tool_reply('{"name": "Paris"}'), tool_reply('{"name": "Paris", "population": 2100000}'))
    with client(wire, "groq") as c, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        city = c.complete("Paris?", response_model=City, max_reasks=1)
    assert city.population == 2100000
    reask = wire.bodies[1]["messages"]
    assert any(m["role"] == "tool" for m in reask)
    assert all("name" not in m for m in reask)


@pytest.mark.parametrize("field", ["logprobs", "top_logprobs", "logit_bias"])
def test_groq_refuses_what_it_rejects(wire, field) -> None:
    wire.script(chat())
    with client(wire, "groq") as c, pytest.raises(InvalidRequestError, match=field):
        c.complete("Hi", **{field: True})
    assert wire.recorded == []


def test_openai_sends_no_name_on_tool_messages(wire) -> None:
    wire.script(chat())
    from llmkit.types import ToolCall

    call = ToolCall("call_1", "lookup", {})
    messages = [Message(MessageRole.USER, "Hi"), Message(MessageRole.ASSISTANT, "", tool_calls=(call,)),
                Message(MessageRole.TOOL, "42", name="lookup", tool_call_id="call_1")]  # fmt: skip
    with client(wire) as c, pytest.warns(UserWarning, match="name"):
        c.complete(messages)
    tool = wire.bodies[0]["messages"][-1]
    assert tool == {"role": "tool", "content": "42", "tool_call_id": "call_1"}


# -- 9. reasoning models ------------------------------------------------------------------------------


REASONING = ["o3-mini", "o1", "o4-mini", "gpt-5", "gpt-5-mini-2025-08-07"]


@pytest.mark.parametrize(
    ("model", "field"),
    [
        *((m, "max_completion_tokens") for m in REASONING),
        ("gpt-4o-mini", "max_tokens"),
        ("gpt-4.1", "max_tokens"),
    ],
)
def test_the_output_limit_field_follows_the_model_family(wire, model, field) -> None:
    wire.script(chat())
    with client(wire, model=model) as c:
        c.complete("Hi", max_tokens=300)
    body = wire.bodies[0]
    other = "max_tokens" if field == "max_completion_tokens" else "max_completion_tokens"
    assert body[field] == 300 and other not in body


def test_the_output_limit_field_can_be_chosen(wire) -> None:
    wire.script(chat())
    with client(wire, "local", model="my-reasoner") as c:
        c.complete("Hi", max_tokens=300, max_tokens_param="max_completion_tokens")
    assert wire.bodies[0]["max_completion_tokens"] == 300 and "max_tokens_param" not in wire.bodies[0]


def test_max_completion_tokens_given_directly_is_refused(wire) -> None:
    wire.script(chat())
    with client(wire, model="o3-mini") as c, pytest.raises(InvalidRequestError, match="max_tokens="):
        c.complete("Hi", max_completion_tokens=300)
    assert wire.recorded == []


@pytest.mark.parametrize("mode", MODES)
def test_reasoning_effort_and_reasoning_tokens(wire, mode) -> None:
    wire.script(json_reply(json.loads(fixture("openai_chat_reasoning.json"))))
    prices = PriceTable({"o3-mini": {"input": 1.1, "output": 4.4, "cached_input": 0.55}}, builtin=False)
    with client(wire, model="o3-mini", prices=prices) as c:
        r = complete(c, mode, "The answer?", thinking="high", max_tokens=2000)
    body = wire.bodies[0]
    assert body["reasoning_effort"] == "high" and body["max_completion_tokens"] == 2000
    assert "thinking" not in body
    u = r.usage
    assert (u.input_tokens, u.cached_input_tokens, u.output_tokens, u.reasoning_tokens) == (
        1312,
        1024,
        530,
        512,
    )
    assert r.cost == pytest.approx((288 * 1.1 + 1024 * 0.55 + 530 * 4.4) / 1e6)


@pytest.mark.parametrize(("model", "thinking", "words"), [
    ("o3-mini", 2048, "effort"), ("gpt-4o-mini", "high", "reasoning"), ("o3-mini", "extreme", "thinking"),
])  # fmt: skip
def test_thinking_openai_cannot_take_is_refused(wire, model, thinking, words) -> None:
    wire.script(chat())
    with client(wire, model=model) as c, pytest.raises(InvalidRequestError, match=words):
        c.complete("Hi", thinking=thinking)
    assert wire.recorded == []


def test_thinking_none_on_a_model_that_does_not_reason_is_no_thinking(wire) -> None:
    wire.script(chat())
    with client(wire, model="gpt-4o-mini") as c:
        c.complete("Hi", thinking="none")
        c.complete("Hi", thinking=False)
    assert all("reasoning_effort" not in body for body in wire.bodies)


@pytest.mark.parametrize("provider", ["groq", "local"])
def test_thinking_is_refused_where_the_adapter_has_none(wire, provider) -> None:
    with client(wire, provider) as c, pytest.raises(InvalidRequestError, match="thinking"):
        c.complete("Hi", thinking="high")


@pytest.mark.parametrize("provider", OPENAI_COMPATIBLE)
def test_cache_control_is_not_sent_to_openai_compatible_apis(wire, provider) -> None:
    wire.script(chat())
    with client(wire, provider) as c:
        c.complete("Hi", cache_control=True)
    assert "cache_control" not in json.dumps(wire.bodies[0])


def test_openai_cached_tokens_are_priced_as_cached(wire) -> None:
    wire.script(chat(prompt_tokens=2006, prompt_tokens_details={"cached_tokens": 1920}))
    prices = PriceTable({"gpt-4o": {"input": 2.5, "output": 10.0, "cached_input": 1.25}}, builtin=False)
    with client(wire, model="gpt-4o", prices=prices) as c:
        r = c.complete("Hi")
    assert r.usage.cached_input_tokens == 1920
    assert r.cost == pytest.approx((86 * 2.5 + 1920 * 1.25 + 2 * 10.0) / 1e6)
