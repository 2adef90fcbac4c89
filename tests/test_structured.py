"""Structured outputs (``response_model=``) end to end: instructor over the real SDKs, FakeLLMServer."""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Callable

import pytest
from pydantic import BaseModel, Field

from llmkit import InvalidRequestError, LLMClient, ProviderError, RateLimit, Response
from llmkit.config import load_settings
from llmkit.engine.clock import FakeClock
from llmkit.errors import StructuredOutputError
from llmkit.redaction import fingerprint
from llmkit.structured.backends import backend_for
from llmkit.testing import FakeLLMServer, Fault, ToolCallReply
from llmkit.types import Usage

PROVIDERS = ["openai", "anthropic"]
KEY1, KEY2 = "sk-test-1", "sk-test-2"


class Landmark(BaseModel):
    name: str
    year: int = Field(description="Year it was built")


class CityInfo(BaseModel):
    name: str = Field(description="City name")
    country: str = Field(description="Country name")
    population: int = Field(description="Population count")
    landmarks: list[Landmark] = Field(description="Famous landmarks")


PARIS = {
    "name": "Paris",
    "country": "France",
    "population": 2_102_650,
    "landmarks": [{"name": "Eiffel Tower", "year": 1889}, {"name": "Notre-Dame", "year": 1345}],
}
NOT_PARIS = {**PARIS, "population": "about two million", "landmarks": [{"name": "Louvre"}]}


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def clean(server):
    server.reset()


def make(server: FakeLLMServer, provider: str, keys=(KEY1, KEY2), **kw) -> LLMClient:
    url = server.openai_base_url if provider == "openai" else server.anthropic_base_url
    kw.setdefault("retry_delay", 0.01)
    # settings from an empty environment: no key, config file or default from the machine running this
    return LLMClient(provider, api_keys=list(keys), base_url=url, settings=load_settings(environ={}), **kw)


def server_usage(server: FakeLLMServer) -> Usage:
    """The tokens of every answered request, as the server counted them."""
    records = [r for r in server.requests if r.status == 200]
    return Usage(sum(r.input_tokens for r in records), sum(r.output_tokens for r in records))


def paris() -> ToolCallReply:
    return ToolCallReply("CityInfo", PARIS)


def not_paris() -> ToolCallReply:
    return ToolCallReply("CityInfo", NOT_PARIS)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_reply_that_validates_returns_the_model(server, provider):
    server.script(paris())
    with make(server, provider) as client:
        city = client.complete("Tell me about Paris", response_model=CityInfo)
    assert isinstance(city, CityInfo)
    assert city == CityInfo(**PARIS)
    assert [landmark.name for landmark in city.landmarks] == ["Eiffel Tower", "Notre-Dame"]
    [record] = server.requests
    body = json.dumps(record.body)
    assert "CityInfo" in body and "landmarks" in body  # the tool instructor forces, with its schema


@pytest.mark.parametrize("provider", PROVIDERS)
def test_instructor_gets_its_wrapper_of_the_model_made_once(server, provider, monkeypatch):
    """instructor wraps a plain model anew on every call (create_model and a JSON schema); given its
    own wrapper it uses it as it is: llmkit makes it once per class, and the tool sent is the same."""
    import instructor

    from llmkit.structured.backends import instructor_model

    made = []
    wrap = instructor.openai_schema
    monkeypatch.setattr(instructor, "openai_schema", lambda model: made.append(model) or wrap(model))

    class Town(BaseModel):
        name: str
        population: int

    with make(server, provider) as client:
        towns = [client.complete("Tell me about a town", response_model=Town) for _ in range(3)]
    assert made == [Town]  # once for three calls, not three times
    assert all(type(town) is Town for town in towns)
    bodies = [json.dumps(record.body.get("tools")) for record in server.requests]
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2] and "population" in bodies[0]
    assert issubclass(instructor_model(Town), Town) and instructor_model(Town) is instructor_model(Town)
    assert instructor_model(list[Town]) == list[Town]  # anything but a plain model goes as it is


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_model_is_the_users_own_class_and_pickles(server, provider):
    server.script(paris())
    with make(server, provider) as client:
        city = client.complete("Tell me about Paris", response_model=CityInfo)
    assert type(city) is CityInfo  # not instructor's subclass, without its private attributes
    assert pickle.loads(pickle.dumps(city)) == city
    assert city.model_fields_set == set(PARIS)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_include_response_returns_the_model_and_a_full_response(server, provider):
    with make(server, provider) as client:  # no script: the server fills the forced tool from its schema
        city, response = client.complete(
            "Tell me about Paris", response_model=CityInfo, include_response=True
        )
    assert isinstance(city, CityInfo) and isinstance(response, Response)
    assert response.parsed is city
    assert CityInfo.model_validate_json(response.content) == city
    assert response.provider == provider
    assert response.key_id == fingerprint(server.requests[0].key)
    assert response.request_id
    assert response.finish_reason in ("tool_calls", "tool_use")
    assert response.tool_calls[0].name == "CityInfo"
    assert response.usage == server_usage(server)
    assert response.usage.output_tokens > 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_invalid_reply_is_reasked_and_usage_sums_both_replies(server, provider):
    server.script(not_paris(), paris())
    with make(server, provider) as client:
        city, response = client.complete(
            "Tell me about Paris", response_model=CityInfo, include_response=True
        )
    assert city == CityInfo(**PARIS)
    first, second = server.requests
    assert first.key == second.key  # re-asks stay on the leased key
    assert len(second.body["messages"]) > len(first.body["messages"])
    assert "population" in json.dumps(second.body["messages"][1:])  # the validation errors went back
    assert response.usage == server_usage(server)
    assert response.usage.input_tokens == first.input_tokens + second.input_tokens
    assert response.usage.output_tokens == first.output_tokens + second.output_tokens
    assert response.attempts == 1  # one key, one dispatcher attempt


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_reply_that_never_validates_raises_structured_output_error(server, provider):
    server.script(not_paris(), not_paris(), not_paris(), not_paris())
    with make(server, provider) as client, pytest.raises(StructuredOutputError) as caught:
        client.complete("Tell me about Paris", response_model=CityInfo)
    error = caught.value
    assert len(server.requests) == 3  # the first reply and 2 re-asks (the default); no llmkit retry
    assert {r.key for r in server.requests} == {server.requests[0].key}
    locations = {tuple(e["loc"]) for e in error.errors}
    assert ("population",) in locations and ("landmarks", 0, "year") in locations
    assert "CityInfo" in str(error) and "population" in str(error)
    assert error.provider == provider
    assert error.key_id == fingerprint(server.requests[0].key)
    assert not error.retryable
    assert len(server.pending) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_max_reasks_is_per_call(server, provider):
    server.script(not_paris(), paris())
    with make(server, provider) as client, pytest.raises(StructuredOutputError):
        client.complete("Tell me about Paris", response_model=CityInfo, max_reasks=0)
    assert len(server.requests) == 1
    assert "max_reasks" not in json.dumps(server.requests[0].body)  # llmkit's own kwarg is not sent


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_429_moves_the_structured_call_to_another_key(server, provider):
    server.script(Fault.rate_limited(retry_after=5), paris())
    with make(server, provider) as client:
        city = client.complete("Tell me about Paris", response_model=CityInfo)
    assert city == CityInfo(**PARIS)
    first, second = server.requests
    assert (first.status, second.status) == (429, 200)
    assert first.key != second.key


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_429_on_a_reask_starts_over_on_another_key(server, provider):
    server.script(not_paris(), Fault.rate_limited(retry_after=5), paris())
    with make(server, provider) as client:
        city, response = client.complete(
            "Tell me about Paris", response_model=CityInfo, include_response=True
        )
    assert city == CityInfo(**PARIS)
    first, reask, retry = server.requests
    assert [r.status for r in server.requests] == [200, 429, 200]
    assert first.key == reask.key != retry.key
    assert retry.body["messages"] == first.body["messages"]  # fresh, without the failed key's re-ask
    assert response.usage == Usage(retry.input_tokens, retry.output_tokens)  # what this key spent


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_5xx_inside_instructor_is_retried_by_llmkit(server, provider):
    server.script(Fault.server_error(500), Fault.server_error(503), paris())
    with make(server, provider, max_retries=1) as client, pytest.raises(ProviderError) as caught:
        client.complete("Tell me about Paris", response_model=CityInfo)
    assert caught.value.status_code == 503  # llmkit's error, not instructor's wrapper
    assert [r.status for r in server.requests] == [500, 503]
    server.reset()
    server.script(Fault.server_error(500), paris())
    with make(server, provider, max_retries=1) as client:
        assert client.complete("Tell me about Paris", response_model=CityInfo) == CityInfo(**PARIS)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_refused_request_is_not_retried(server, provider):
    server.script(Fault(status=400, message="bad tool schema"))
    with make(server, provider) as client, pytest.raises(InvalidRequestError, match="bad tool schema"):
        client.complete("Tell me about Paris", response_model=CityInfo)
    assert len(server.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_structured_calls_from_many_threads(server, provider):
    with make(server, provider) as client:
        futures = [client.submit(f"City number {i}", response_model=CityInfo) for i in range(12)]
        cities = [f.result(timeout=30) for f in futures]
        wrappers = len(backend_for(client._pool.provider)._wrapped)
    assert all(type(city) is CityInfo for city in cities)
    assert len(server.requests) == 12
    assert wrappers == 2  # one instructor wrapper per key's SDK client


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_pool_reconciles_the_summed_usage_even_when_validation_fails(server, provider):
    limit = RateLimit(input_tokens_per_minute=50_000, output_tokens_per_minute=50_000, burst_seconds=60)
    with make(server, provider, keys=(KEY1,), rate_limit=limit, clock=FakeClock()) as client:

        def remaining() -> dict[str, float]:
            return client.status()["client_statuses"][0]["remaining"]

        start = remaining()
        server.script(not_paris(), paris())
        client.complete("Tell me about Paris", response_model=CityInfo)
        spent = server_usage(server)
        assert start["input_tokens"] - remaining()["input_tokens"] == spent.input_tokens
        assert start["output_tokens"] - remaining()["output_tokens"] == spent.output_tokens

        server.reset()
        start = remaining()
        server.script(not_paris(), not_paris())
        with pytest.raises(StructuredOutputError):
            client.complete("Tell me about Paris", response_model=CityInfo, max_reasks=1)
        spent = server_usage(server)
        assert spent.output_tokens > 0
        assert start["input_tokens"] - remaining()["input_tokens"] == spent.input_tokens
        assert start["output_tokens"] - remaining()["output_tokens"] == spent.output_tokens
        assert client.status()["client_statuses"][0]["in_flight"] == 0


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "bad",
    [dict, CityInfo(**PARIS), "CityInfo", int, list[CityInfo], None.__class__],
    ids=["dict", "instance", "string", "int", "list", "NoneType"],
)
def test_a_bad_response_model_fails_before_anything_is_sent(server, provider, bad):
    with make(server, provider) as client, pytest.raises(InvalidRequestError, match="pydantic model class"):
        client.complete("Tell me about Paris", response_model=bad)
    assert server.requests == []


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "kwargs",
    [{"max_reasks": -1}, {"max_reasks": True}, {"max_reasks": "2"}, {"instructor_mode": "telepathy"}],
    ids=["negative", "bool", "string", "unknown-mode"],
)
def test_bad_structured_arguments_fail_before_anything_is_sent(server, provider, kwargs):
    with make(server, provider) as client, pytest.raises(InvalidRequestError):
        client.complete("Tell me about Paris", response_model=CityInfo, **kwargs)
    assert server.requests == []


def test_instructor_mode_can_be_chosen_per_call(server):
    with make(server, "openai") as client:
        city = client.complete(
            "Tell me about Paris", response_model=CityInfo, instructor_mode="json_schema_mode"
        )
    assert isinstance(city, CityInfo)
    [record] = server.requests
    assert record.body["response_format"]["type"] == "json_schema"
    assert "tools" not in record.body and "instructor_mode" not in record.body


def test_a_mode_the_provider_lacks_is_an_invalid_request(server):
    with make(server, "anthropic") as client, pytest.raises(InvalidRequestError, match="instructor"):
        client.complete("Tell me about Paris", response_model=CityInfo, instructor_mode="md_json")
    assert server.requests == []


def test_the_instructor_wrapper_is_made_once_per_key_client(server):
    with make(server, "openai", keys=(KEY1,)) as client:
        backend = backend_for(client._pool.provider)
        for _ in range(3):
            client.complete("Tell me about Paris", response_model=CityInfo)
        assert len(backend._wrapped) == 1


@pytest.mark.parametrize("provider", [*PROVIDERS, "google"])
def test_a_reask_waits_for_room_in_the_keys_requests_per_minute(server, provider):
    import threading

    clock = FakeClock()
    limit = RateLimit(requests_per_minute=60, burst_seconds=1)  # one request a second
    if provider == "google":  # Gemini's JSON-schema mode answers with text
        server.script(json.dumps(NOT_PARIS), json.dumps(PARIS))
        client = LLMClient("google", api_keys=[KEY1], base_url=server.url, settings=load_settings(environ={}),
                           rate_limit=limit, clock=clock)  # fmt: skip
    else:
        server.script(not_paris(), paris())
        client = make(server, provider, keys=(KEY1,), rate_limit=limit, clock=clock)
    with client:
        result: list[CityInfo] = []
        worker = threading.Thread(target=lambda: result.append(
            client.complete("Tell me about Paris", response_model=CityInfo)))  # fmt: skip
        worker.start()
        deadline = time.monotonic() + 10
        while clock.waiting == 0 and worker.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert clock.waiting == 1 and len(server.requests) == 1  # the re-ask waits: the bucket is empty
        clock.advance(1.0)
        worker.join(10)
        assert result == [CityInfo(**PARIS)] and len(server.requests) == 2
        status = client.status()["client_statuses"][0]
        assert status["in_flight"] == 0
        assert status["remaining"]["requests"] == pytest.approx(0.0)  # both requests were counted


def test_a_failure_to_take_a_reasks_capacity_is_raised_not_swallowed(server, monkeypatch):
    from llmkit.backends.redis import SharedLimitsUnavailableError
    from llmkit.engine.loop import RetryLoop

    def down(self, lease, cost, cancel=None):
        raise SharedLimitsUnavailableError("Redis is down and on_unavailable='fail'")

    monkeypatch.setattr(RetryLoop, "extend", down)  # instructor's hooks would only warn about it
    server.script(not_paris(), paris())
    with make(server, "openai", keys=(KEY1,)) as client, pytest.raises(SharedLimitsUnavailableError):
        client.complete("Tell me about Paris", response_model=CityInfo)


class NotFullyDefined(BaseModel):
    name: str
    child: Undefined  # type: ignore[name-defined]  # noqa: F821 - a forward reference nothing resolves


class NoJsonSchema(BaseModel):
    name: str
    callback: Callable[[], int]


class Opaque:
    """A class pydantic has no schema for."""


class ArbitraryField(BaseModel):
    model_config = {"arbitrary_types_allowed": True}
    thing: Opaque


@pytest.mark.parametrize("provider", [*PROVIDERS, "google"])
@pytest.mark.parametrize(
    ("model", "says"),
    [
        (lambda: NotFullyDefined, "NotFullyDefined.*not fully defined.*Undefined"),
        (lambda: NoJsonSchema, "NoJsonSchema.*JSON schema"),
        (lambda: ArbitraryField, "ArbitraryField.*JSON schema"),
    ],
    ids=["forward-reference", "callable-field", "arbitrary-type"],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_response_model_pydantic_cannot_use_fails_at_once(server, provider, model, says, mode):
    """A user's model error is the caller's to fix: raised before a key is taken, never retried."""
    import asyncio

    from llmkit import AsyncLLMClient

    if provider == "google":
        client = LLMClient("google", api_keys=[KEY1], base_url=server.url, settings=load_settings(environ={}),
                           retry_delay=0.01)  # fmt: skip
    else:
        client = make(server, provider, keys=(KEY1,))
    with client:
        with pytest.raises(InvalidRequestError, match=f"(?s)response_model {says}") as caught:
            if mode == "sync":
                client.complete("Tell me about Paris", response_model=model())
            else:
                aclient = AsyncLLMClient.wrap(client)
                asyncio.run(aclient.complete("Tell me about Paris", response_model=model()))
        status = client.status()["client_statuses"][0]
    assert server.requests == []
    assert (status["requests"], status["error_count"], status["state"]) == (0, 0, "healthy")
    assert "pydantic" in type(caught.value.__cause__).__module__


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_pydantic_user_error_inside_instructor_is_not_retried(server, provider, monkeypatch):
    """Should the class pass the early check and fail inside instructor, it is still not a provider error."""
    import llmkit.structured.run as run

    monkeypatch.setattr(run, "check_model_is_usable", lambda model: None)
    with make(server, provider, keys=(KEY1,), max_retries=3) as client:
        with pytest.raises(InvalidRequestError, match="response_model NotFullyDefined cannot be used"):
            client.complete("Tell me about Paris", response_model=NotFullyDefined)
        status = client.status()["client_statuses"][0]
    assert server.requests == []
    assert (status["requests"], status["error_count"], status["state"]) == (1, 0, "healthy")


def test_one_reply_that_never_validated_is_said_in_the_singular(server):
    server.script(not_paris())
    with make(server, "openai") as client, pytest.raises(StructuredOutputError, match="after 1 reply: "):
        client.complete("Tell me about Paris", response_model=CityInfo, max_reasks=0)
