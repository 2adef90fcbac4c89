"""LLMClient end to end: the real SDKs over loopback against FakeLLMServer."""

from __future__ import annotations

import logging

import pytest

from llmkit import (
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    LLMClient,
    LLMConfig,
    Message,
    MessageRole,
    NetworkError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    RequestTimeoutError,
)
from llmkit.redaction import fingerprint
from llmkit.testing import FakeLLMServer, Fault

SECRET = "sk-test-SECRETKEY0123456789"
SECRET2 = "sk-test-OTHERSECRET98765432"
PROVIDERS = ["openai", "anthropic"]


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def clean(server, monkeypatch):
    server.reset()
    for var in (
        "OPENAI_API_KEY",
        "OPENAI_API_KEYS",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_API_KEYS",
        "LLM_CONFIG_PATH",
        "LLM_DEFAULT_PROVIDER",
    ):
        monkeypatch.delenv(var, raising=False)


def base_url(server, provider):
    return server.openai_base_url if provider == "openai" else server.anthropic_base_url


def make(server, provider, keys=(SECRET,), **kw):
    return LLMClient(provider, api_keys=list(keys), base_url=base_url(server, provider), **kw)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_complete_returns_a_full_response(server, provider):
    with make(server, provider) as client:
        response = client.complete("What is the capital of France?")
    record = server.requests[-1]
    assert response.content == "What is the capital of France?"  # the server echoes
    assert response.provider == provider
    assert response.model == client.model
    assert response.finish_reason in ("stop", "end_turn")
    assert response.usage.input_tokens == record.input_tokens
    assert response.usage.output_tokens == record.output_tokens
    assert response.usage.total_tokens == record.input_tokens + record.output_tokens
    assert response.request_id and response.request_id.startswith("req_")
    assert response.key_id == fingerprint(SECRET) and SECRET not in response.key_id
    assert response.latency > 0 and response.attempts == 1
    assert response.raw is not None
    assert record.key == SECRET


def test_openai_system_message_stays_first(server):
    with make(server, "openai") as client:
        client.complete([Message(MessageRole.SYSTEM, "Be brief."), {"role": "user", "content": "Hi"}])
    body = server.requests[-1].body
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_anthropic_system_message_becomes_top_level_system(server):
    with make(server, "anthropic") as client:
        client.complete(
            [Message(MessageRole.SYSTEM, "Be brief."), Message(MessageRole.USER, "Hi")],
            system_prompt="You are terse.",
        )
    body = server.requests[-1].body
    assert body["system"] == "You are terse.\n\nBe brief."
    assert body["messages"] == [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_parameters_reach_the_server(server, provider):
    with make(server, provider, temperature=0.9, max_tokens=500) as client:
        client.complete("Hi", temperature=0.2, stop=["END"], metadata={"user_id": "u1"})
        client.complete("Hi again")  # client-wide defaults
    first, second = (r.body for r in server.requests[-2:])
    assert first["temperature"] == 0.2 and first["max_tokens"] == 500
    assert first["metadata"] == {"user_id": "u1"}
    assert first.get("stop", first.get("stop_sequences")) == ["END"]
    assert second["temperature"] == 0.9


def test_llm_config_to_dict_is_accepted_by_complete(server):
    config = LLMConfig(
        temperature=0.3,
        max_tokens=77,
        max_retries=1,
        retry_delay=0.01,
        timeout=5.0,
        system_prompt="Be precise.",
    )
    with make(server, "openai") as client:
        client.complete([Message(MessageRole.USER, "Hi")], **config.to_dict())
    body = server.requests[-1].body
    assert body["temperature"] == 0.3 and body["max_tokens"] == 77
    assert body["messages"][0] == {"role": "system", "content": "Be precise."}


def test_client_from_settings_in_the_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEYS", f"{SECRET},{SECRET2}")
    with LLMClient(base_url=server.openai_base_url) as client:
        assert client.provider == "openai"
        client.complete("one")
        client.complete("two")
        assert client.status()["total_clients"] == 2
    assert {r.key for r in server.requests} == {SECRET, SECRET2}


STATUS_ERRORS = [
    (400, InvalidRequestError),
    (401, AuthenticationError),
    (403, PermissionDeniedError),
    (404, InvalidRequestError),
    (422, InvalidRequestError),
    (429, RateLimitError),
    (500, ProviderError),
    (503, ProviderError),
    (529, OverloadedError),
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("status", "error_class"), STATUS_ERRORS)
def test_every_error_status_maps_to_its_class_with_its_fields(server, provider, status, error_class):
    # A 429 is a wait, not a failure: it is raised when its Retry-After passes the call's time left.
    server.script(Fault(status=status, retry_after=2 if status == 429 else None))
    with make(server, provider, max_retries=0, acquire_timeout=1.0) as client, \
            pytest.raises(error_class) as info:  # fmt: skip
        client.complete("Hi")
    error = info.value
    assert error.status_code == status
    assert error.provider == provider
    assert error.key_id == fingerprint(SECRET)
    if status == 429:
        assert error.retry_after >= 2.0
        assert "more than the" in error.message  # it says why it did not wait
    assert SECRET not in str(error) and SECRET not in repr(error)
    assert len(server.requests) == 1  # max_retries=0: sent once


@pytest.mark.parametrize("provider", PROVIDERS)
def test_network_faults_map_to_network_errors(server, provider):
    with make(server, provider, max_retries=0, timeout=0.3) as client:
        server.script(Fault(drop=True))
        with pytest.raises(NetworkError):
            client.complete("Hi")
        server.script(Fault(delay=1.5))
        with pytest.raises(RequestTimeoutError):
            client.complete("Hi")
        server.script(Fault(malformed=True))
        with pytest.raises(ProviderError, match="Malformed"):
            client.complete("Hi")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_transient_errors_are_retried_on_another_key(server, provider):
    server.script(Fault(status=500), Fault(status=429, retry_after=1))
    with make(server, provider, keys=(SECRET, SECRET2), retry_delay=0.01) as client:
        response = client.complete("Hi")
    assert response.content == "Hi" and response.attempts == 3
    assert [r.status for r in server.requests] == [500, 429, 200]
    assert server.requests[0].key != server.requests[1].key


@pytest.mark.parametrize(
    ("messages", "kwargs", "match"),
    [
        ([], {}, "empty"),
        ("", {}, "empty"),
        ([{"role": "wizard", "content": "Hi"}], {}, "Unknown message role"),
        ([{"role": "user", "content": 42}], {}, "must be a string"),
        ([{"content": "Hi"}], {}, "missing 'role'"),
        ([Message(MessageRole.SYSTEM, "Only a system prompt")], {}, "add a user message"),
        ("Hi", {"max_tokens": -1}, "max_tokens"),
        ("Hi", {"max_tokens": 0}, "max_tokens"),
        ("Hi", {"temperature": 3.5}, "temperature"),
        ("Hi", {"temperature": "hot"}, "temperature"),
        ("Hi", {"timeout": 0}, "timeout"),
        ("Hi", {"max_retries": -2}, "max_retries"),
        ("Hi", {"stop": [""]}, "stop"),
    ],
)
def test_bad_input_raises_before_anything_is_sent(server, messages, kwargs, match):
    with make(server, "openai") as client, pytest.raises(InvalidRequestError, match=match):
        client.complete(messages, **kwargs)
    with make(server, "openai") as client, pytest.raises(InvalidRequestError, match=match):
        client.submit(messages, **kwargs)  # raises in the caller's thread, not in the Future
    assert server.requests == []


def test_bad_client_configuration_raises_clear_errors(server, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="Unknown provider 'openia'"):
        LLMClient("openia", api_keys=[SECRET])
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        LLMClient("anthropic")
    with pytest.raises(ConfigurationError, match="api_keys"):
        LLMClient("openai", api_keys=[""])
    assert server.requests == []


def test_keys_never_appear_in_reprs_errors_or_logs(server, caplog, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEYS", f"{SECRET},{SECRET2}")
    caplog.set_level(logging.DEBUG)
    server.script(Fault(status=401, message=f"Incorrect API key provided: {SECRET}"), Fault(status=500))
    from llmkit.config import load_settings

    settings = load_settings()
    with LLMClient(
        "anthropic", base_url=server.anthropic_base_url, retry_delay=0.01, max_retries=1
    ) as client:
        client.complete("Hi")
        texts = [
            repr(client),
            str(client),
            repr(settings),
            str(settings),
            str(client.status()),
            repr(client._pool),
            repr(client._pool.slots),
        ]
    server.script(Fault(status=401, message=f"Incorrect API key provided: {SECRET2}"))
    with make(server, "openai", keys=(SECRET2,)) as client, pytest.raises(AuthenticationError) as info:
        client.complete("Hi")
    texts += [str(info.value), repr(info.value), caplog.text]
    for text in texts:
        assert SECRET not in text and SECRET2 not in text
    assert "key-" in str(info.value)  # the fingerprint stands in for the key


def test_submit_map_and_status(server):
    with make(server, "openai", keys=(SECRET, SECRET2)) as client:
        future = client.submit("async hello")
        results = client.map([f"prompt {i}" for i in range(10)])
        assert future.result().content == "async hello"
        assert [r.content for r in results] == [f"prompt {i}" for i in range(10)]
        status = client.status()
    assert status["total_clients"] == 2 and status["in_use_clients"] == 0
    assert sum(s["requests"] for s in status["client_statuses"]) == 11


def test_closed_client_refuses_work(server):
    from llmkit import PoolClosedError

    client = make(server, "openai")
    client.close()
    client.close()
    with pytest.raises(PoolClosedError):
        client.complete("Hi")
    assert server.requests == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_raw_is_the_sdk_object_built_on_first_use(server, provider):
    import pickle

    with make(server, provider) as client:
        response = client.complete("raw please")
    if provider == "openai":
        import openai

        assert response.raw.choices[0].message.content == "raw please"
        assert isinstance(response.raw.get(), openai.types.chat.ChatCompletion)
    else:
        import anthropic

        assert response.raw.content[0].text == "raw please"
        assert isinstance(response.raw.get(), anthropic.types.Message)
    copy = pickle.loads(pickle.dumps(response))
    assert copy.content == "raw please" and copy.raw.model == response.model
