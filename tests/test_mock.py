"""MockLLMClient: the client's interface with scripted replies and no network."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from llmkit import InvalidRequestError, LLMError, Message, MessageRole, PoolClosedError, RateLimitError
from llmkit.testing.mock import MockLLMClient
from llmkit.tools import run_tool_calls
from llmkit.types import Response, ToolCall


class City(BaseModel):
    name: str
    population: int


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def test_replies_come_in_order_and_every_call_is_recorded() -> None:
    mock = MockLLMClient(["one", "two"])
    assert [mock.complete(p).content for p in ("a", "b")] == ["one", "two"]
    assert [c.messages[-1].content for c in mock.calls] == ["a", "b"]
    with pytest.raises(LLMError, match="ran out of responses after 2 calls"):
        mock.complete("c")


def test_default_cycle_callables_and_exceptions() -> None:
    assert MockLLMClient(default="same").complete("x").content == "same"
    cycling = MockLLMClient(["a", "b"], cycle=True)
    assert [cycling.complete("x").content for _ in range(3)] == ["a", "b", "a"]
    echo = MockLLMClient(default=lambda request: request.messages[-1].content.upper())
    assert echo.complete("hello").content == "HELLO"
    failing = MockLLMClient([RateLimitError("slow down", provider="mock")])
    with pytest.raises(RateLimitError):
        failing.complete("x")
    given = Response("as is", "m", "p")
    assert MockLLMClient([given]).complete("x") == given  # an awaitable copy: see the await tests


def test_structured_replies_from_json_or_models() -> None:
    mock = MockLLMClient(['{"name": "Paris", "population": 2}', City(name="Rome", population=3)])
    assert mock.complete("x", response_model=City) == City(name="Paris", population=2)
    city, response = mock.complete("y", response_model=City, include_response=True)
    assert city == City(name="Rome", population=3) and response.parsed is city
    with pytest.raises(ValueError):  # JSON that does not validate fails as it would for real
        MockLLMClient(['{"name": "Oslo"}']).complete("z", response_model=City)


def test_tool_call_replies_drive_a_tool_loop() -> None:
    mock = MockLLMClient([ToolCall("c1", "get_weather", {"city": "Oslo"}), "It is sunny."])
    messages: list[Message] = [Message(MessageRole.USER, "Weather in Oslo?")]
    first = mock.complete(messages, tools=[get_weather])
    assert first.tool_calls == (ToolCall("c1", "get_weather", {"city": "Oslo"}),)
    assert first.finish_reason == "tool_calls" and first.content == ""
    messages += run_tool_calls(first, [get_weather])
    assert mock.complete(messages, tools=[get_weather]).content == "It is sunny."
    assert mock.calls[0].tools[0].name == "get_weather"  # tools are normalized as the client does
    assert mock.calls[1].messages[-1].content == "sunny in Oslo"
    two = MockLLMClient([[ToolCall("a", "f", {}), ToolCall("b", "g", {})]]).complete("x")
    assert [c.id for c in two.tool_calls] == ["a", "b"]


def test_bad_tools_are_refused_as_by_the_client() -> None:
    mock = MockLLMClient(default="x")
    with pytest.raises(InvalidRequestError, match="tool_choice"):
        mock.complete("x", tools=[get_weather], tool_choice="nope")
    assert mock.calls == []  # refused before the reply was taken


def test_stream_submit_map_status_and_close() -> None:
    mock = MockLLMClient(default="a few words")
    assert list(mock.stream("x")) == ["a ", "few ", "words"]
    assert mock.submit("x").result().content == "a few words"
    assert [r.content for r in mock.map(["x", "y"])] == ["a few words"] * 2
    assert mock.status()["available_clients"] == 1
    with mock:
        pass
    assert mock.status()["available_clients"] == 0
    with pytest.raises(PoolClosedError):
        mock.complete("x")
    assert isinstance(mock.submit("x").exception(), PoolClosedError)


# --- the spec's await style, and the async twin ------------------------------------------


def test_the_spec_imports_and_awaits_the_mock() -> None:
    import asyncio

    from llmkit.testing import MockLLMClient as Exported

    assert Exported is MockLLMClient
    mock_client = Exported(responses=["Response 1", "Response 2"])
    messages = [Message(MessageRole.USER, "Hi")]

    async def main() -> tuple[Response, Response]:
        return await mock_client.complete(messages), await mock_client.complete(messages)

    first, second = asyncio.run(main())
    assert (first.content, second.content) == ("Response 1", "Response 2")
    assert type(first) is Response  # awaiting gives a plain Response


def test_sync_results_still_behave_as_responses() -> None:
    scripted = Response("scripted", "mock-model", "mock", "stop")
    result = MockLLMClient([scripted]).complete("x")
    assert isinstance(result, Response) and result == scripted and scripted == result
    assert repr(result) == repr(scripted) and hash(result) == hash(scripted)
    assert result.content == "scripted" and str(result) == "scripted"


def test_async_twin_has_the_async_clients_shape() -> None:
    import asyncio

    from llmkit.testing import AsyncMockLLMClient

    async def main() -> tuple[Any, ...]:
        async with AsyncMockLLMClient(["one two", '{"name": "Paris", "population": 2}', "three"]) as mock:
            streamed = [text async for text in mock.stream("s")]
            city = await mock.complete("c", response_model=City)
            task = mock.submit("t")
            third = await task
            return streamed, city, third, mock

    streamed, city, third, mock = asyncio.run(main())
    assert streamed == ["one ", "two"] and city == City(name="Paris", population=2)
    assert type(third) is Response and third.content == "three"
    assert len(mock.calls) == 3 and mock.status()["available_clients"] == 0
    with pytest.raises(PoolClosedError):
        mock.sync_client.complete("after close")
