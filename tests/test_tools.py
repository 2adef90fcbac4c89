"""Tools and function calling: specs from functions, models and schemas; both providers' shapes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from llmkit import InvalidRequestError, LLMClient, Message, MessageRole
from llmkit.config import load_settings
from llmkit.request import build_request
from llmkit.testing import FakeLLMServer, ToolCallReply
from llmkit.testing._fake.dialect_gemini import THOUGHT_SIGNATURE
from llmkit.tools import (
    ToolChoice,
    ToolSpec,
    normalize_tool_choice,
    normalize_tools,
    run_tool_calls,
    tool_spec,
)
from llmkit.types import ToolCall

NO_ENV = load_settings(environ={})
PROVIDERS = ["openai", "anthropic", "google", "groq", "local"]
OPENAI_WIRE = {"openai", "groq", "local"}  # the OpenAI adapter and its subclasses


def get_weather(city: str, unit: Literal["C", "F"] = "C", days: int = 1) -> dict[str, Any]:
    """Get the weather forecast for a city.

    Args:
        city: The city's name, e.g. Paris.
        unit: Degrees Celsius or Fahrenheit.
        days (int): How many days ahead.
    """
    return {"city": city, "unit": unit, "days": days, "sky": "sunny"}


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str = Field(description="Full name")
    age: int


WEATHER_SCHEMA = {
    "name": "get_weather",
    "description": "Get the weather forecast for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def srv() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def client(provider: str, srv: FakeLLMServer) -> LLMClient:
    urls = {"anthropic": srv.anthropic_base_url, "google": srv.url}
    url = urls.get(provider, srv.openai_base_url)
    return LLMClient(provider, api_keys=["sk-test"], base_url=url, settings=NO_ENV, metrics=False)


# --- specs -------------------------------------------------------------------------------------


def test_function_spec_from_signature_and_docstring() -> None:
    spec = tool_spec(get_weather)
    assert spec.name == "get_weather" and spec.description == "Get the weather forecast for a city."
    props = spec.parameters["properties"]
    assert props["city"] == {"type": "string", "description": "The city's name, e.g. Paris."}
    assert props["unit"]["enum"] == ["C", "F"] and props["unit"]["default"] == "C"
    assert props["days"]["type"] == "integer" and props["days"]["description"] == "How many days ahead."
    assert spec.parameters["required"] == ["city"]


def test_sphinx_docstrings_and_no_hints() -> None:
    def lookup(key, limit: int = 3):  # type: ignore[no-untyped-def]
        """Look a key up.

        :param key: what to look for
        :param int limit: at most this many
        """

    spec = tool_spec(lookup)
    assert spec.description == "Look a key up."
    assert spec.parameters["properties"]["key"]["description"] == "what to look for"
    assert spec.parameters["properties"]["limit"]["description"] == "at most this many"


def test_model_and_dict_specs() -> None:
    person = tool_spec(Person)
    assert (person.name, person.description) == ("Person", "A person mentioned in the text.")
    assert person.parameters["properties"]["name"]["description"] == "Full name"
    assert tool_spec(WEATHER_SCHEMA) == ToolSpec("get_weather", WEATHER_SCHEMA["description"],
                                                 WEATHER_SCHEMA["parameters"])
    openai_shape = {"type": "function", "function": WEATHER_SCHEMA}
    anthropic_shape = {"name": "get_weather", "description": WEATHER_SCHEMA["description"],
                       "input_schema": WEATHER_SCHEMA["parameters"]}
    assert tool_spec(openai_shape) == tool_spec(anthropic_shape) == tool_spec(WEATHER_SCHEMA)
    titled = tool_spec({"title": "Lookup", "type": "object", "properties": {"q": {"type": "string"}}})
    assert titled.name == "Lookup" and "title" not in titled.parameters


@pytest.mark.parametrize(
    "bad",
    [[42], [{"description": "no name"}], [get_weather, get_weather],
     [{"name": "bad name!", "parameters": {}}], [{"name": "x", "parameters": {"type": "array"}}]],
)
def test_bad_tools_are_refused(bad: list[Any]) -> None:
    with pytest.raises(InvalidRequestError):
        normalize_tools(bad)


def test_tool_choice_forms() -> None:
    specs = normalize_tools([get_weather, Person])
    assert normalize_tool_choice("auto", specs) == ToolChoice("auto")
    assert normalize_tool_choice("any", specs) == ToolChoice("required")
    assert normalize_tool_choice(Person, specs) == ToolChoice("tool", "Person")
    assert normalize_tool_choice("get_weather", specs) == ToolChoice("tool", "get_weather")
    assert normalize_tool_choice({"type": "tool", "name": "Person"}, specs) == ToolChoice("tool", "Person")
    with pytest.raises(InvalidRequestError, match="names no tool"):
        normalize_tool_choice("nope", specs)
    with pytest.raises(InvalidRequestError, match="needs tools"):
        build_request("hi", model="m", tool_choice="auto")
    with pytest.raises(InvalidRequestError, match="cannot be combined"):
        build_request("hi", model="m", tools=[Person], response_model=Person)


# --- wire shapes and calls ------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("tool", [get_weather, WEATHER_SCHEMA], ids=["function", "schema"])
def test_tool_call_reply_becomes_tool_calls(provider: str, tool: Any, srv: FakeLLMServer) -> None:
    srv.script(ToolCallReply("get_weather", {"city": "Paris"}, id="call_1"))
    with client(provider, srv) as c:
        r = c.complete("Weather in Paris?", tools=[tool], tool_choice="auto")
    (call,) = r.tool_calls
    assert (call.id, call.name, call.arguments) == ("call_1", "get_weather", {"city": "Paris"})
    body = srv.requests[-1].body
    if provider in OPENAI_WIRE:
        assert body["tools"][0]["type"] == "function"
        assert body["tools"][0]["function"]["name"] == "get_weather"
        assert body["tools"][0]["function"]["parameters"]["required"] == ["city"]
        assert body["tool_choice"] == "auto"
    elif provider == "google":
        (declaration,) = body["tools"][0]["functionDeclarations"]
        assert declaration["name"] == "get_weather"
        assert declaration["description"] == "Get the weather forecast for a city."
        assert declaration["parameters"]["type"] == "OBJECT"
        assert declaration["parameters"]["required"] == ["city"]
        assert declaration["parameters"]["properties"]["city"]["type"] == "STRING"
        assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
        assert call.thought_signature == THOUGHT_SIGNATURE
    else:
        assert body["tools"][0]["name"] == "get_weather"
        assert body["tools"][0]["input_schema"]["required"] == ["city"]
        assert body["tool_choice"] == {"type": "auto"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_pydantic_tool_forced(provider: str, srv: FakeLLMServer) -> None:
    with client(provider, srv) as c:
        r = c.complete("Alice is 30.", tools=[Person], tool_choice=Person)
    (call,) = r.tool_calls
    assert call.name == "Person" and Person.model_validate(call.arguments)
    body = srv.requests[-1].body
    if provider == "google":
        assert body["toolConfig"] == {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["Person"]}}
        return
    expected = ({"type": "function", "function": {"name": "Person"}} if provider in OPENAI_WIRE
                else {"type": "tool", "name": "Person"})
    assert body["tool_choice"] == expected


@pytest.mark.parametrize("provider", PROVIDERS)
def test_required_and_none_choices(provider: str, srv: FakeLLMServer) -> None:
    with client(provider, srv) as c:
        field = "toolConfig" if provider == "google" else "tool_choice"
        c.complete("x", tools=[get_weather], tool_choice="required")
        required = srv.requests[-1].body[field]
        c.complete("x", tools=[get_weather], tool_choice="none")
        none = srv.requests[-1].body[field]
    if provider == "google":
        assert required == {"functionCallingConfig": {"mode": "ANY"}}
        assert none == {"functionCallingConfig": {"mode": "NONE"}}
    elif provider in OPENAI_WIRE:
        assert (required, none) == ("required", "none")
    else:
        assert (required, none) == ({"type": "any"}, {"type": "none"})


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_result_round_trip(provider: str, srv: FakeLLMServer) -> None:
    srv.script(
        ToolCallReply("get_weather", {"city": "Paris"}, id="call_a"),
        "It is sunny in Paris.",
    )
    messages: list[Message] = [Message(MessageRole.USER, "Weather in Paris?")]
    with client(provider, srv) as c:
        first = c.complete(messages, tools=[get_weather])
        added = run_tool_calls(first, [get_weather])
        messages += added
        final = c.complete(messages, tools=[get_weather])
    assert final.content == "It is sunny in Paris."
    assert [m.role for m in added] == [MessageRole.ASSISTANT, MessageRole.TOOL]
    assert added[1].tool_call_id == "call_a" and '"sky": "sunny"' in added[1].content
    if provider == "google":
        contents = srv.requests[-1].body["contents"]
        assert contents[1] == {"role": "model", "parts": [{
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_a"},
            "thoughtSignature": THOUGHT_SIGNATURE}]}
        assert contents[2] == {"role": "user", "parts": [{"functionResponse": {
            "name": "get_weather", "id": "call_a",
            "response": {"city": "Paris", "unit": "C", "days": 1, "sky": "sunny"}}}]}
        return
    sent = srv.requests[-1].body["messages"]
    if provider in OPENAI_WIRE:
        assistant, result = sent[1], sent[2]
        assert assistant["role"] == "assistant" and assistant["tool_calls"] == [{
            "id": "call_a", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
        assert result["role"] == "tool" and result["tool_call_id"] == "call_a"
        assert '"city": "Paris"' in result["content"]
    else:
        assistant, result = sent[1], sent[2]
        assert assistant == {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}}]}
        assert result["role"] == "user"
        (block,) = result["content"]
        assert block["type"] == "tool_result" and block["tool_use_id"] == "call_a"


def test_anthropic_groups_parallel_tool_results(srv: FakeLLMServer) -> None:
    calls = (ToolCall("t1", "get_weather", {"city": "Paris"}),
             ToolCall("t2", "get_weather", {"city": "Rome"}))
    messages = [
        Message(MessageRole.USER, "Paris and Rome?"),
        Message(MessageRole.ASSISTANT, "Checking.", tool_calls=calls),
        Message(MessageRole.TOOL, "sunny", tool_call_id="t1"),
        Message(MessageRole.TOOL, "rainy", tool_call_id="t2"),
    ]
    with client("anthropic", srv) as c:
        c.complete(messages, tools=[get_weather])
    sent = srv.requests[-1].body["messages"]
    assert len(sent) == 3
    assert sent[1]["content"][0] == {"type": "text", "text": "Checking."}
    assert [b["tool_use_id"] for b in sent[2]["content"]] == ["t1", "t2"]


def test_run_tool_calls_validates_and_reports_errors() -> None:
    from llmkit.types import Response

    response = Response(content="", model="m", provider="p", tool_calls=(
        ToolCall("1", "get_weather", {"city": "Oslo", "days": "3"}),  # "3" is coerced to 3
        ToolCall("2", "get_weather", {"days": 2}),                     # city missing
        ToolCall("3", "unknown", {}),
    ))
    messages = run_tool_calls(response, {"get_weather": get_weather})
    assert '"days": 3' in messages[1].content
    assert messages[2].content.startswith("Error: invalid arguments")
    assert messages[3].content.startswith("Error: there is no tool named 'unknown'")


def test_tools_change_the_cache_key() -> None:
    from llmkit.cache.base import cache_key

    plain = build_request("hi", model="m")
    with_tools = build_request("hi", model="m", tools=[get_weather])
    assert cache_key("openai", plain) != cache_key("openai", with_tools)
    assert cache_key("openai", plain) == cache_key("openai", build_request("hi", model="m"))


# --- Gemini's own rules ------------------------------------------------------------------------------


def test_gemini_calls_without_ids_get_unique_local_ones_not_sent_back(srv: FakeLLMServer) -> None:
    srv.script(
        ToolCallReply("get_weather", {"city": "Paris"}),
        ToolCallReply("get_weather", {"city": "Rome"}),
        "Done.",
    )
    messages: list[Message] = [Message(MessageRole.USER, "Paris, then Rome?")]
    with client("google", srv) as c:
        first = c.complete(messages, tools=[get_weather])
        messages += run_tool_calls(first, [get_weather])
        second = c.complete(messages, tools=[get_weather])
        messages += run_tool_calls(second, [get_weather])
        c.complete(messages, tools=[get_weather])
    ids = [first.tool_calls[0].id, second.tool_calls[0].id]
    assert all(i.startswith("gemini_call_") for i in ids) and ids[0] != ids[1]
    contents = srv.requests[-1].body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user"]
    assert contents[3]["parts"][0]["functionCall"] == {"name": "get_weather", "args": {"city": "Rome"}}
    assert contents[4]["parts"][0]["functionResponse"]["name"] == "get_weather"
    assert "id" not in contents[4]["parts"][0]["functionResponse"]


def test_gemini_groups_parallel_results_and_names_them(srv: FakeLLMServer) -> None:
    calls = (ToolCall("t1", "get_weather", {"city": "Paris"}), ToolCall("t2", "get_time", {"tz": "CET"}))
    messages = [
        Message(MessageRole.USER, "Weather and time?"),
        Message(MessageRole.ASSISTANT, "", tool_calls=calls),
        Message(MessageRole.TOOL, "sunny", tool_call_id="t1"),
        Message(MessageRole.TOOL, "[1, 2]", tool_call_id="t2"),
        Message(MessageRole.TOOL, "a note without a call id"),
    ]
    with client("google", srv) as c:
        c.complete(messages, tools=[get_weather])
    contents = srv.requests[-1].body["contents"]
    assert contents[1] == {"role": "model", "parts": [  # calls made elsewhere: Google's stand-in signature
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "t1"},
         "thoughtSignature": "skip_thought_signature_validator"},
        {"functionCall": {"name": "get_time", "args": {"tz": "CET"}, "id": "t2"}}]}
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "id": "t1", "response": {"output": "sunny"}}},
        {"functionResponse": {"name": "get_time", "id": "t2", "response": {"output": [1, 2]}}}]}
    assert contents[3] == {"role": "user", "parts": [{"text": "a note without a call id"}]}


def test_gemini_parameters_beyond_its_schema_subset_and_no_parameters(srv: FakeLLMServer) -> None:
    def tally(counts: dict[str, int]) -> int:
        """Add up counts."""
        return sum(counts.values())

    def ping() -> str:
        """Say pong."""
        return "pong"

    with client("google", srv) as c:
        c.complete("x", tools=[tally, ping])
    tally_decl, ping_decl = srv.requests[-1].body["tools"][0]["functionDeclarations"]
    assert "parameters" not in tally_decl
    assert tally_decl["parametersJsonSchema"]["properties"]["counts"]["type"] == "object"
    assert ping_decl == {"name": "ping", "description": "Say pong."}


def test_tool_calls_survive_to_dict_sessions_and_the_cache(tmp_path: Any) -> None:
    from llmkit import Session
    from llmkit.cache.base import decode_response, encode_response
    from llmkit.types import Response

    call = ToolCall("c1", "get_weather", {"city": "Oslo"}, thought_signature="sig==")
    turn = Message(MessageRole.ASSISTANT, "", tool_calls=(call,))
    data = turn.to_dict()
    assert data["tool_calls"] == [{"id": "c1", "type": "function",
                                   "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                                   "extra_content": {"google": {"thought_signature": "sig=="}}}]
    session = Session()
    session.extend([Message(MessageRole.USER, "Oslo?"), {"role": "assistant", "content": None,
                                                          "tool_calls": data["tool_calls"]}])
    session.save(tmp_path / "s.json")
    (_, loaded) = Session.load(tmp_path / "s.json").get_messages()
    assert loaded.tool_calls == (call,) and loaded.tool_calls[0].thought_signature == "sig=="
    response = Response("", "m", "google", tool_calls=(call,))
    assert decode_response(encode_response(response)).tool_calls[0].thought_signature == "sig=="


@pytest.mark.parametrize("bad", [
    {"id": "c1", "function": {"name": "f", "arguments": "{not json"}},
    {"id": 3, "name": "f", "arguments": {}},
    {"id": "c1", "name": "f", "arguments": "[1]"},
    "call",
])
def test_unreadable_tool_calls_in_dicts_are_refused(bad: Any) -> None:
    with pytest.raises(InvalidRequestError, match="tool call"):
        build_request([{"role": "assistant", "content": "", "tool_calls": [bad]}], model="m")


# --- streams ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_streamed_tool_calls_are_put_together(provider: str, srv: FakeLLMServer) -> None:
    arguments = {"city": "Rio de Janeiro", "unit": "F", "days": 3}  # streamed in 8-character pieces
    srv.script(ToolCallReply("get_weather", arguments, id="call_s"))
    with client(provider, srv) as c, c.stream("Weather?", tools=[get_weather], tool_choice="any") as stream:
        pieces = list(stream)
    assert pieces == [] and stream.text == ""
    (call,) = stream.tool_calls
    assert (call.id, call.name, call.arguments) == ("call_s", "get_weather", arguments)
    assert stream.response.tool_calls == stream.tool_calls
    assert stream.finish_reason in ("tool_calls", "tool_use", "STOP")


def test_async_streams_give_tool_calls(srv: FakeLLMServer) -> None:
    import asyncio

    from llmkit import AsyncLLMClient

    srv.script(ToolCallReply("get_weather", {"city": "Paris"}, id="call_x"))

    async def main() -> Any:
        async with AsyncLLMClient("anthropic", api_keys=["sk-test"], base_url=srv.anthropic_base_url,
                                  settings=NO_ENV, metrics=False) as c:  # fmt: skip
            stream = c.stream("Weather?", tools=[get_weather])
            async with stream:
                assert [text async for text in stream] == []
            return stream.tool_calls

    assert asyncio.run(main()) == (ToolCall("call_x", "get_weather", {"city": "Paris"}),)


def test_assembler_orders_calls_and_keeps_unparsable_arguments() -> None:
    from llmkit.providers._tool_stream import ToolCallAssembler

    calls = ToolCallAssembler()
    calls.add(1, "b", "second", '{"x": ')
    calls.add(0, "a", "first")
    calls.add(1, arguments="1}")
    calls.add(2, "c", "broken", '{"x": 1')
    assert not ToolCallAssembler() and calls
    assert calls.take() == (ToolCall("a", "first", {}), ToolCall("b", "second", {"x": 1}),
                            ToolCall("c", "broken", {"_raw": '{"x": 1'}))  # fmt: skip
    assert calls.take() == ()


def test_assembler_keeps_calls_that_share_an_index_apart() -> None:
    from llmkit.providers._tool_stream import ToolCallAssembler

    calls = ToolCallAssembler()  # as Ollama streams parallel calls: every one at index 0
    calls.add(0, "call_a", "get_weather", '{"city": "Paris"}')
    calls.add(0, "call_b", "get_time", '{"tz": "CET"}')
    calls.add(None, "call_c", "ping", "")
    assert calls.take() == (
        ToolCall("call_a", "get_weather", {"city": "Paris"}),
        ToolCall("call_b", "get_time", {"tz": "CET"}),
        ToolCall("call_c", "ping", {}),
    )


def test_a_stream_that_breaks_after_its_tool_calls_is_not_retried(srv: FakeLLMServer) -> None:
    from llmkit import StreamError
    from llmkit.testing import Fault

    srv.reply = lambda info: ToolCallReply("get_weather", {"city": "Paris"})
    srv.script(Fault(drop=True, after_deltas=1))  # the call arrives, then the connection drops
    try:
        with LLMClient("google", api_keys=["k1", "k2"], base_url=srv.url, settings=NO_ENV) as c:
            stream = c.stream("Weather?", tools=[get_weather])
            with pytest.raises(StreamError):
                list(stream)
    finally:
        srv.reply = None
    assert len(srv.requests) == 1  # not sent again: the call would come twice
    assert [call.name for call in stream.tool_calls] == ["get_weather"]


def test_nan_results_go_to_gemini_as_text(srv: FakeLLMServer) -> None:
    calls = (ToolCall("t1", "get_weather", {"city": "Paris"}),)
    messages = [Message(MessageRole.USER, "x"), Message(MessageRole.ASSISTANT, "", tool_calls=calls),
                Message(MessageRole.TOOL, "NaN", tool_call_id="t1")]  # fmt: skip
    with client("google", srv) as c:
        c.complete(messages, tools=[get_weather])
    (part,) = srv.requests[-1].body["contents"][2]["parts"]
    assert part["functionResponse"]["response"] == {"output": "NaN"}
