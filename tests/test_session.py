"""Sessions: history, trimming, saving, threads, and multi-turn calls through the fake server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmkit import ConfigurationError, InvalidRequestError, LLMClient, Message, MessageRole
from llmkit.config import load_settings
from llmkit.session import Session, SessionManager, message_tokens
from llmkit.testing import FakeLLMServer, Fault
from llmkit.types import Response


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
def srv(server: FakeLLMServer) -> FakeLLMServer:
    server.reset()
    return server


@pytest.fixture
def client(srv: FakeLLMServer) -> Iterator[LLMClient]:
    with LLMClient(
        provider="openai", api_keys=["sk-test-1"], base_url=srv.openai_base_url, model="gpt-4o-mini"
    ) as c:
        yield c


def roles(session: Session) -> list[str]:
    return [m.role.value for m in session.get_messages()]


# -- history -------------------------------------------------------------------------


def test_messages_keep_order_with_the_system_prompt_first() -> None:
    session = Session("Be brief.")
    session.add_user("hi")
    session.add_message("assistant", "hello")
    session.add_message(MessageRole.USER, "bye", name="alice")
    messages = session.get_messages()
    assert roles(session) == ["system", "user", "assistant", "user"]
    assert messages[3] == Message(MessageRole.USER, "bye", name="alice")
    assert len(session) == 4
    messages.clear()  # a copy
    assert len(session) == 4


def test_system_messages_join_the_system_prompt() -> None:
    session = Session("One.")
    session.add_user("hi")
    session.add_message(MessageRole.SYSTEM, "Two.")
    assert roles(session) == ["system", "system", "user"]
    assert session.system_prompt == "One.\n\nTwo."


def test_bad_role_and_content_are_refused() -> None:
    session = Session()
    with pytest.raises(InvalidRequestError):
        session.add_message("narrator", "hi")
    with pytest.raises(InvalidRequestError):
        session.add_user(42)
    assert len(session) == 0


def test_clear_keeps_the_system_prompt_unless_asked() -> None:
    session = Session("sys")
    session.add_user("hi")
    session.clear()
    assert roles(session) == ["system"]
    session.clear(keep_system=False)
    assert len(session) == 0 and session.system_prompt is None


def test_many_threads_adding() -> None:
    session = Session("sys")

    def work(n: int) -> None:
        for i in range(200):
            session.add_message("user" if i % 2 == 0 else "assistant", f"{n}-{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(session) == 16 * 200 + 1
    texts = [m.content for m in session.get_messages()[1:]]
    assert len(set(texts)) == 16 * 200
    for n in range(16):  # each thread's messages stay in its order
        mine = [t for t in texts if t.startswith(f"{n}-")]
        assert mine == [f"{n}-{i}" for i in range(200)]


# -- trimming ------------------------------------------------------------------------


def test_trim_drops_oldest_turns_and_keeps_the_system_prompt() -> None:
    session = Session("You are terse.")
    for i in range(10):
        session.add_user(f"question {i} " + "x" * 40)
        session.add_assistant(f"answer {i} " + "y" * 40)
    session.add_user("the newest question")
    full = session.estimate_tokens()
    budget = full // 2
    dropped = session.trim(budget)
    assert dropped > 0 and dropped % 2 == 0  # whole user/assistant pairs
    assert session.estimate_tokens() <= budget
    messages = session.get_messages()
    assert messages[0].role is MessageRole.SYSTEM
    assert messages[1].role is MessageRole.USER  # still opens with a user message
    assert messages[-1].content == "the newest question"
    assert session.trim(budget) == 0  # already fits


def test_trim_keeps_the_newest_turn_even_over_budget() -> None:
    session = Session("sys")
    session.add_user("old")
    session.add_assistant("reply")
    session.add_user("z" * 4000)
    session.trim(10)
    assert roles(session) == ["system", "user"]
    assert session.get_messages()[-1].content == "z" * 4000


def test_budget_trims_automatically() -> None:
    session = Session("sys", max_tokens_budget=60)
    for i in range(20):
        session.add_user(f"message number {i}")
        session.add_assistant(f"reply number {i}")
        assert session.estimate_tokens() <= 60
    assert session.get_messages()[0].content == "sys"
    assert session.get_messages()[-1].content == "reply number 19"
    assert len(session) < 41


def test_token_estimate_matches_the_request_estimate() -> None:
    from llmkit.engine.estimate import estimate_input_tokens
    from llmkit.request import build_request

    session = Session("system words here")
    session.add_user("hello there")
    session.add_assistant("hi, how can I help?")
    request = build_request(session.get_messages(), model="m")
    assert session.estimate_tokens() == estimate_input_tokens(request)
    assert message_tokens(Message(MessageRole.USER, "abcd")) == 1 + 3


def test_bad_budget_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Session(max_tokens_budget=0)


# -- saving --------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    session = Session("sys", max_tokens_budget=5000)
    session.add_message(MessageRole.USER, "héllo", name="alice")
    session.add_assistant("hi")
    session.add_message(MessageRole.USER, [{"type": "text", "text": "parts"}])
    path = tmp_path / "chat.json"
    session.save(path)
    loaded = Session.load(path)
    assert loaded.get_messages() == session.get_messages()
    assert loaded.max_tokens_budget == 5000
    assert json.loads(path.read_text(encoding="utf-8"))["version"] == 1
    assert Session.from_dict(session.to_dict()).get_messages() == session.get_messages()
    assert isinstance(SessionManager.load(path), SessionManager)
    assert [p.name for p in tmp_path.iterdir()] == ["chat.json"]  # no temporary file left


def test_load_refuses_an_unknown_version() -> None:
    with pytest.raises(ConfigurationError):
        Session.from_dict({"version": 99, "messages": []})


# -- completing through the fake server ----------------------------------------------


def test_multi_turn_sends_the_whole_history(srv: FakeLLMServer, client: LLMClient) -> None:
    session = Session("Be brief.", client=client)
    first = session.complete("My name is Alice")
    assert isinstance(first, Response) and first.content == "My name is Alice"  # the fake server echoes
    session.complete("What's my name?")
    sent = srv.requests[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("system", "Be brief."),
        ("user", "My name is Alice"),
        ("assistant", "My name is Alice"),
        ("user", "What's my name?"),
    ]
    assert roles(session) == ["system", "user", "assistant", "user", "assistant"]


def test_multi_turn_with_anthropic(srv: FakeLLMServer) -> None:
    with LLMClient(
        provider="anthropic", api_keys=["sk-ant-1"], base_url=srv.anthropic_base_url, model="claude-3-5-haiku"
    ) as client:
        session = Session("Be brief.")
        session.complete("one", client=client)
        session.complete("two", client=client, max_tokens=50)
    body = srv.requests[-1].body
    assert body["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["max_tokens"] == 50


def test_a_failed_call_leaves_the_session_as_it_was(srv: FakeLLMServer, client: LLMClient) -> None:
    session = Session("sys", client=client)
    session.complete("first")
    before = session.get_messages()
    srv.script(Fault(status=400))
    with pytest.raises(InvalidRequestError):
        session.complete("second")
    assert session.get_messages() == before  # the user message was rolled back
    session.complete("second")  # and the same call can simply be made again
    assert roles(session) == ["system", "user", "assistant", "user", "assistant"]


def test_complete_without_text_sends_the_history(srv: FakeLLMServer, client: LLMClient) -> None:
    session = Session()
    session.add_user("already here")
    session.complete(client=client)
    assert srv.requests[-1].body["messages"] == [{"role": "user", "content": "already here"}]
    with pytest.raises(InvalidRequestError):
        Session(client=client).complete()


def test_budget_applies_to_what_is_sent(srv: FakeLLMServer, client: LLMClient) -> None:
    session = Session("sys", client=client, max_tokens_budget=40)
    for i in range(6):
        session.complete(f"question number {i} with some words")
    sent = srv.requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "sys"}
    assert sent[-1]["content"] == "question number 5 with some words"
    assert len(sent) < 12


def test_complete_needs_a_client() -> None:
    with pytest.raises(ConfigurationError, match="client"):
        Session().complete("hi")


class _StructuredStub:
    """A client whose complete() answers structured calls as LLMClient does."""

    def complete(self, messages, **kwargs):
        from pydantic import BaseModel

        class City(BaseModel):
            name: str

        city = City(name="Paris")
        reply = Response(content="", model="m", provider="stub", parsed=city)
        return (city, reply) if kwargs.get("include_response") else city


def test_structured_answers_keep_their_json_as_the_reply() -> None:
    session = Session(client=_StructuredStub())
    city = session.complete("Tell me about Paris", response_model=object)
    assert city.name == "Paris"
    assert session.get_messages()[-1] == Message(MessageRole.ASSISTANT, '{"name":"Paris"}')
    parsed, reply = session.complete("again", response_model=object, include_response=True)
    assert parsed.name == "Paris" and isinstance(reply, Response)


# -- async -----------------------------------------------------------------------------


def test_spec_style_async_code_runs(srv: FakeLLMServer, client: LLMClient) -> None:
    async def main() -> str:
        session = SessionManager()
        await session.add_message(MessageRole.USER, "My name is Alice")
        response = client.complete(session.get_messages())
        await session.add_message(MessageRole.ASSISTANT, response.content)
        await session.aadd_message(MessageRole.USER, "What's my name?")
        reply = await session.acomplete(client=client)
        return reply.content

    assert asyncio.run(main()) == "What's my name?"
    assert len(srv.requests[-1].body["messages"]) == 3


def test_session_manager_add_message_works_without_await() -> None:
    session = SessionManager("sys")
    added = session.add_message("user", "hi")
    assert added.message == Message(MessageRole.USER, "hi")
    assert roles(session) == ["system", "user"]


# --- tools --------------------------------------------------------------------------------------


def get_weather(city: str) -> dict[str, str]:
    """The weather in a city."""
    return {"city": city, "sky": "sunny"}


@pytest.mark.parametrize("provider", ["openai", "google"])
def test_a_session_keeps_tool_calls_and_results(srv: FakeLLMServer, provider: str, tmp_path: Path) -> None:
    from llmkit.testing import ToolCallReply

    url = srv.url if provider == "google" else srv.openai_base_url
    with LLMClient(provider, api_keys=["sk-test"], base_url=url, settings=load_settings(environ={})) as c:
        session = Session("Be brief.", client=c)
        srv.script(ToolCallReply("get_weather", {"city": "Oslo"}, id="call_1"), "Sunny in Oslo.")
        first = session.complete("Weather in Oslo?", tools=[get_weather])
        assert roles(session) == ["system", "user", "assistant"]
        assert session.get_messages()[-1].tool_calls == first.tool_calls
        (result,) = session.run_tool_calls(first, [get_weather])
        assert result.tool_call_id == "call_1" and '"sky": "sunny"' in result.content
        assert session.complete(tools=[get_weather]).content == "Sunny in Oslo."
        assert roles(session) == ["system", "user", "assistant", "tool", "assistant"]
        session.save(tmp_path / "s.json")
        assert Session.load(tmp_path / "s.json").get_messages() == session.get_messages()


def test_run_tool_calls_adds_the_assistant_turn_when_the_session_lacks_it() -> None:
    from llmkit.types import ToolCall

    session = Session()
    session.add_user("Weather in Rome?")
    reply = Response("", "m", "p", tool_calls=(ToolCall("c9", "get_weather", {"city": "Rome"}),))
    session.run_tool_calls(reply, [get_weather])
    assert roles(session) == ["user", "assistant", "tool"]
    assert session.get_messages()[1].tool_calls == reply.tool_calls


def test_run_tool_calls_of_a_reply_without_calls_adds_nothing() -> None:
    session = Session()
    session.add_user("hi")
    session.add_assistant("Just text.")
    assert session.run_tool_calls(Response("Just text.", "m", "p"), [get_weather]) == []
    assert roles(session) == ["user", "assistant"]
