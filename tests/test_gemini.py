"""Google Gemini: the adapter against ``responses``-mocked HTTP, then end to end through FakeLLMServer."""

from __future__ import annotations

import json
import logging
from typing import Literal

import pytest
import requests
import responses
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from llmkit import LLMClient
from llmkit.config import load_settings
from llmkit.errors import (
    AuthenticationError,
    InvalidRequestError,
    LLMError,
    NetworkError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    RequestTimeoutError,
    StreamError,
    StructuredOutputError,
)
from llmkit.providers import canonical_name, provider_class
from llmkit.providers._gemini_schema import gemini_schema
from llmkit.providers._sse import SSEEvent, SSEParser
from llmkit.providers.gemini import GeminiProvider
from llmkit.redaction import fingerprint
from llmkit.request import build_request
from llmkit.testing import FakeLLMServer, Fault
from llmkit.types import ImagePart, Message, MessageRole, Usage

BASE = "https://gemini.test"
KEY = "AIzaSyD-unit-test-key-0123456789"
URL = f"{BASE}/v1beta/models/gemini-2.0-flash:generateContent"
STREAM_URL = f"{BASE}/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
KEYS = ["test-key-1", "test-key-2"]


def reply(text: str = "Hi!", finish: str = "STOP", **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": finish}],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 10},
        "modelVersion": "gemini-2.0-flash-001",
        "responseId": "resp-123",
    }
    body.update(extra)
    return body


@pytest.fixture
def provider() -> GeminiProvider:
    return GeminiProvider(base_url=BASE, timeout=5.0)


@pytest.fixture
def session(provider):
    client = provider.create_client(KEY)
    yield client
    provider.close_client(client)


def req(prompt="Hello", **kw):
    return build_request(prompt, model=kw.pop("model", "gemini-2.0-flash"), **kw)


# -- request shape ------------------------------------------------------------------------


@responses.activate
def test_request_shape_and_the_key_only_in_the_header(provider, session):
    responses.post(URL, json=reply())
    messages = [
        Message(MessageRole.SYSTEM, "Be brief."),
        Message(MessageRole.USER, "Hi"),
        Message(MessageRole.ASSISTANT, "Hello!"),
        Message(MessageRole.USER, "Capital of France?"),
    ]
    request = build_request(
        messages, model="gemini-2.0-flash", temperature=0.2, max_tokens=64, stop=["END"],
        extra={"top_k": 5, "topP": 0.9, "safety_settings": [{"category": "X"}],
               "generation_config": {"seed": 7}},
    )  # fmt: skip
    result = provider.complete(session, request)
    sent = responses.calls[0].request
    assert sent.url == URL and KEY not in sent.url
    assert sent.headers["x-goog-api-key"] == KEY
    assert "authorization" not in {k.lower() for k in sent.headers}
    assert json.loads(sent.body) == {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello!"}]},
            {"role": "user", "parts": [{"text": "Capital of France?"}]},
        ],
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 64, "stopSequences": ["END"],
                             "topK": 5, "topP": 0.9, "seed": 7},
        "safetySettings": [{"category": "X"}],
    }  # fmt: skip
    response = result.response
    assert response.content == "Hi!" and response.finish_reason == "STOP"
    assert response.model == "gemini-2.0-flash-001" and response.provider == "google"
    assert response.request_id == "resp-123"
    assert result.limits is None


@responses.activate
def test_usage_counts_cache_thoughts_and_tool_prompts(provider, session):
    usage = {"promptTokenCount": 100, "cachedContentTokenCount": 40, "candidatesTokenCount": 10,
             "thoughtsTokenCount": 25, "toolUsePromptTokenCount": 5}  # fmt: skip
    parts = [{"text": "thinking...", "thought": True}, {"text": "Paris"}]
    responses.post(URL, json=reply(usageMetadata=usage, candidates=[{"content": {"parts": parts}}]))
    response = provider.complete(session, req()).response
    expected = Usage(input_tokens=105, output_tokens=35, cached_input_tokens=40, reasoning_tokens=25)
    assert response.usage == expected
    assert response.content == "Paris"  # thoughts are not the answer
    assert response.thinking == "thinking..."


@responses.activate
def test_function_calls_blocked_prompts_and_header_request_ids(provider, session):
    call = {"functionCall": {"name": "weather", "args": {"city": "Paris"}}}
    responses.post(URL, json=reply(candidates=[{"content": {"parts": [call]}, "finishReason": "STOP"}]))
    responses.post(URL, json={"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {}},
                   headers={"x-goog-request-id": "hdr-1"})  # fmt: skip
    calls = provider.complete(session, req()).response.tool_calls
    assert [(c.name, c.arguments) for c in calls] == [("weather", {"city": "Paris"})]
    blocked = provider.complete(session, req()).response
    assert (blocked.content, blocked.finish_reason, blocked.request_id) == ("", "SAFETY", "hdr-1")


@responses.activate
def test_images_json_mode_base_urls_and_model_prefixes(session):
    provider = GeminiProvider(base_url=BASE + "/v1beta/")
    responses.post(URL, json=reply())
    image = ImagePart.from_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 8)
    content = [{"type": "text", "text": "What is this?"}, image]
    request = build_request([{"role": "user", "content": content}], model="models/gemini-2.0-flash",
                            json_mode=True)  # fmt: skip
    provider.complete(session, request)
    body = json.loads(responses.calls[0].request.body)
    assert body["contents"][0]["parts"] == [
        {"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": image.base64()}}
    ]  # fmt: skip
    assert body["generationConfig"] == {"responseMimeType": "application/json"}
    with pytest.raises(InvalidRequestError, match="media type"):
        provider.build_body(build_request([{"role": "user", "content": [ImagePart(url="https://x/y")]}],
                                          model="m"))  # fmt: skip


def test_the_registry_knows_google_and_its_alias():
    assert canonical_name("Gemini") == "google"
    assert provider_class("gemini") is GeminiProvider
    assert GeminiProvider.requires_key and GeminiProvider.capabilities.streaming


# -- errors -------------------------------------------------------------------------------


def google_error(code: int, status: str, message: str = "boom", details=()) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "status": status, "details": list(details)}}


@responses.activate
@pytest.mark.parametrize(
    ("status", "name", "cls"),
    [
        (400, "INVALID_ARGUMENT", InvalidRequestError),
        (401, "UNAUTHENTICATED", AuthenticationError),
        (403, "PERMISSION_DENIED", PermissionDeniedError),
        (404, "NOT_FOUND", InvalidRequestError),
        (408, "DEADLINE_EXCEEDED", RequestTimeoutError),
        (429, "RESOURCE_EXHAUSTED", RateLimitError),
        (500, "INTERNAL", ProviderError),
        (503, "UNAVAILABLE", ProviderError),
        (504, "DEADLINE_EXCEEDED", ProviderError),
    ],
)
def test_every_error_status_maps_into_the_tree(provider, session, status, name, cls):
    responses.post(URL, json=google_error(status, name, "it broke"), status=status,
                   headers={"x-goog-request-id": "rid-9"})  # fmt: skip
    with pytest.raises(cls) as caught:
        provider.complete(session, req())
    error = caught.value
    assert (error.status_code, error.provider, error.request_id) == (status, "google", "rid-9")
    assert error.message == "it broke" and error.retry_after is None
    assert KEY not in str(error)


RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


@responses.activate
@pytest.mark.parametrize(
    ("delay", "headers", "expected"),
    [("2.5s", {}, 2.5), ("17s", {}, 17.0), ("0.250s", {}, 0.25), ("9000s", {}, 600.0),
     ("2.5s", {"retry-after": "7"}, 7.0), ("soon", {}, None)],
)  # fmt: skip
def test_retry_info_is_the_retry_after_unless_a_header_says(provider, session, delay, headers, expected):
    quota = {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []}
    details = [quota, {"@type": RETRY_INFO, "retryDelay": delay}]
    responses.post(URL, json=google_error(429, "RESOURCE_EXHAUSTED", details=details), status=429,
                   headers=headers)  # fmt: skip
    with pytest.raises(RateLimitError) as caught:
        provider.complete(session, req())
    assert caught.value.retry_after == expected


@responses.activate
def test_an_invalid_key_400_is_an_authentication_error(provider, session):
    info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
    body = google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [info])
    responses.post(URL, json=body, status=400)
    with pytest.raises(AuthenticationError) as caught:
        provider.complete(session, req())
    assert caught.value.status_code == 400


@responses.activate
def test_odd_bodies_malformed_json_and_transport_failures(provider, session):
    responses.post(URL, body="<html>Bad Gateway</html>", status=502)
    responses.post(URL, body='{"candidates": [', status=200)
    responses.post(URL, json={"candidates": []}, status=200)
    responses.post(URL, body=requests.ConnectionError("connection refused"))
    responses.post(URL, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(ProviderError, match="Bad Gateway") as caught:
        provider.complete(session, req())
    assert caught.value.status_code == 502
    with pytest.raises(ProviderError, match="Malformed"):
        provider.complete(session, req())
    with pytest.raises(ProviderError, match="no candidates"):
        provider.complete(session, req())
    with pytest.raises(NetworkError) as network:
        provider.complete(session, req())
    assert type(network.value) is NetworkError
    with pytest.raises(RequestTimeoutError):
        provider.complete(session, req())


@responses.activate
def test_redirects_are_not_followed_so_the_key_header_stays_home(provider, session):
    responses.post(URL, status=307, headers={"location": "https://elsewhere.test/steal"})
    responses.post("https://elsewhere.test/steal", json=reply())
    with pytest.raises(InvalidRequestError, match="307"):
        provider.complete(session, req())
    assert len(responses.calls) == 1


# -- streaming and the SSE parser ---------------------------------------------------------


def sse_stream(*chunks: dict[str, object], end: str = "\r\n\r\n") -> bytes:
    return "".join(f"data: {json.dumps(c, ensure_ascii=False)}{end}" for c in chunks).encode()


def piece(text: str, finish: str | None = None, usage: dict[str, int] | None = None) -> dict[str, object]:
    candidate: dict[str, object] = {"content": {"parts": [{"text": text}], "role": "model"}}
    if finish:
        candidate["finishReason"] = finish
    chunk: dict[str, object] = {"candidates": [candidate], "modelVersion": "gemini-2.0-flash-001"}
    if usage:
        chunk["usageMetadata"] = usage
    return chunk


FINAL_USAGE = {"promptTokenCount": 4, "candidatesTokenCount": 6}
STREAM = sse_stream(piece("Héllo, "), piece("wörld "), piece("🌍!", "STOP", FINAL_USAGE))


@responses.activate
def test_a_stream_yields_text_then_usage_and_finish(provider, session):
    responses.post(STREAM_URL, body=STREAM, content_type="text/event-stream",
                   headers={"x-goog-request-id": "s-1"})  # fmt: skip
    deltas = list(provider.stream(session, req()))
    assert "".join(d.text for d in deltas) == "Héllo, wörld 🌍!"
    assert deltas[0].request_id == "s-1"
    last = deltas[-1]
    assert (last.usage, last.finish_reason, last.model) == (Usage(4, 6), "STOP", "gemini-2.0-flash-001")
    assert responses.calls[0].request.headers["x-goog-api-key"] == KEY


@responses.activate
@pytest.mark.parametrize(
    ("body", "error"),
    [
        (sse_stream(piece("a"), google_error(500, "INTERNAL")), ProviderError),
        (sse_stream(piece("a"), google_error(429, "RESOURCE_EXHAUSTED")), RateLimitError),
        (sse_stream(piece("a")), NetworkError),  # ended without a finishReason
        (sse_stream(piece("a")) + b"data: {not json\r\n\r\n", ProviderError),
    ],
    ids=["error-event", "429-event", "cut", "malformed"],
)
def test_broken_streams_raise_mapped_errors(provider, session, body, error):
    responses.post(STREAM_URL, body=body, content_type="text/event-stream")
    with pytest.raises(error):
        list(provider.stream(session, req()))


@responses.activate
def test_a_stream_refused_up_front_raises_before_any_delta(provider, session):
    responses.post(STREAM_URL, json=google_error(429, "RESOURCE_EXHAUSTED",
                   details=[{"@type": RETRY_INFO, "retryDelay": "3s"}]), status=429)  # fmt: skip
    with pytest.raises(RateLimitError) as caught:
        next(iter(provider.stream(session, req())))
    assert caught.value.retry_after == 3.0


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


_texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12)


@settings(max_examples=100, deadline=None)
@given(
    events=st.lists(st.lists(_texts, min_size=1, max_size=3), min_size=1, max_size=5),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_sse_parsing_ignores_chunk_boundaries(events, newline, cuts):
    wire = "\ufeff: a comment" + newline
    for lines in events:
        for i, text in enumerate(lines):
            space = " " if i % 2 or text.startswith(" ") else ""  # one optional space is eaten
            wire += ("event: note" + newline if i == 0 else "") + f"data:{space}{text}{newline}"
        wire += newline
    data = wire.encode()
    expected = [SSEEvent("\n".join(lines), "note") for lines in events]
    parser = SSEParser()
    got = [e for chunk in split_at(data, cuts) for e in parser.feed(chunk)] + parser.close()
    assert got == expected


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=20))
def test_gemini_deltas_ignore_chunk_boundaries(cuts):
    provider = GeminiProvider(base_url=BASE)
    deltas = list(provider._deltas(split_at(STREAM, cuts), "gemini-2.0-flash"))
    assert "".join(d.text for d in deltas) == "Héllo, wörld 🌍!"
    assert deltas[-1].usage == Usage(4, 6) and deltas[-1].finish_reason == "STOP"


# -- schemas ------------------------------------------------------------------------------


class Landmark(BaseModel):
    name: str = Field(description="Its name")
    year: int | None = None


class CityInfo(BaseModel):
    name: str
    country: str
    population: int
    kind: Literal["city", "town"] = "city"
    landmarks: list[Landmark] = Field(title="Landmarks", description="Famous places")


def test_a_pydantic_schema_becomes_geminis_subset():
    schema = gemini_schema(CityInfo.model_json_schema(), "CityInfo")
    assert schema["type"] == "OBJECT"
    assert schema["propertyOrdering"] == ["name", "country", "population", "kind", "landmarks"]
    assert schema["required"] == ["name", "country", "population", "landmarks"]
    assert schema["properties"]["kind"] == {"type": "STRING", "enum": ["city", "town"]}
    landmarks = schema["properties"]["landmarks"]
    assert landmarks["description"] == "Famous places" and "title" not in landmarks
    item = landmarks["items"]
    assert item["properties"]["year"] == {"type": "INTEGER", "nullable": True}
    assert item["properties"]["name"] == {"type": "STRING", "description": "Its name"}
    assert "$ref" not in json.dumps(schema) and "default" not in json.dumps(schema)


class Tree(BaseModel):
    children: list[Tree] = []


class Loose(BaseModel):
    scores: dict[str, int]


@pytest.mark.parametrize(("model", "why"), [(Tree, "recursive"), (Loose, "free-form object")])
def test_schemas_gemini_cannot_express_fail_before_sending(model, why):
    with pytest.raises(InvalidRequestError, match=why):
        gemini_schema(model.model_json_schema(), model.__name__)


# -- end to end through FakeLLMServer -----------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
def srv(server):
    server.reset()
    return server


def make(server: FakeLLMServer, **kw) -> LLMClient:
    kw.setdefault("retry_delay", 0.01)
    return LLMClient("google", api_keys=list(kw.pop("keys", KEYS)), base_url=server.url,
                     model="gemini-2.0-flash", settings=load_settings(environ={}), **kw)  # fmt: skip


def test_complete_with_a_system_prompt_and_parameters(srv):
    with make(srv) as client:
        response = client.complete("Hello Gemini", system_prompt="Be brief.", temperature=0.3,
                                   max_tokens=40, stop=["END"], top_p=0.5)  # fmt: skip
    assert response.content == "Hello Gemini" and response.provider == "google"
    assert response.finish_reason == "STOP" and response.request_id
    record = srv.requests[-1]
    assert record.provider == "google" and record.model == "gemini-2.0-flash"
    assert record.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert record.key in KEYS and record.headers["x-goog-api-key"] == record.key
    assert record.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert record.body["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 40,
                                               "stopSequences": ["END"], "topP": 0.5}  # fmt: skip
    assert response.usage == Usage(record.input_tokens, record.output_tokens)
    assert response.key_id == fingerprint(record.key)


def test_streaming_text_usage_and_finish_reason(srv):
    with make(srv) as client:
        stream = client.stream("one two three four")
        pieces = list(stream)
    assert pieces == ["one ", "two ", "three ", "four"]
    record = srv.requests[-1]
    assert record.stream and record.path.endswith(":streamGenerateContent")
    assert stream.usage == Usage(record.input_tokens, record.output_tokens)
    assert stream.finish_reason == "STOP"


def test_a_mid_stream_fault_is_a_stream_error(srv):
    srv.script(Fault.mid_stream(after=1, status=500))
    with make(srv) as client, pytest.raises(StreamError) as caught:
        list(client.stream("one two three four"))
    assert isinstance(caught.value.__cause__, ProviderError)
    assert len(srv.requests) == 1  # never retried after text went out


def test_a_429_with_retry_info_moves_to_the_other_key(srv):
    srv.script(Fault.rate_limited(0.05))
    with make(srv) as client:
        response = client.complete("hi")
    first, second = srv.requests
    assert (first.status, second.status) == (429, 200) and first.key != second.key
    assert response.key_id == fingerprint(second.key) and response.attempts == 2


def test_the_fake_speaks_googles_error_shape_and_query_keys(srv):
    srv.script(Fault.rate_limited(2.5))
    url = srv.url + "/v1beta/models/gemini-2.0-flash:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    limited = requests.post(url, json=body, headers={"x-goog-api-key": "k"}, timeout=5)
    error = limited.json()["error"]
    assert (limited.status_code, error["code"], error["status"]) == (429, 429, "RESOURCE_EXHAUSTED")
    assert {"@type": RETRY_INFO, "retryDelay": "2.5s"} in error["details"]
    assert limited.headers["retry-after"] == "3"
    assert requests.post(url, json=body, params={"key": "qk"}, timeout=5).status_code == 200
    assert srv.requests[-1].key == "qk"
    assert requests.post(url, json=body, timeout=5).json()["error"]["status"] == "UNAUTHENTICATED"
    count = requests.post(url.replace("generateContent", "countTokens"), json=body,
                          headers={"x-goog-api-key": "k"}, timeout=5)  # fmt: skip
    assert count.json() == {"totalTokens": 1}


def test_count_tokens_through_the_adapter(srv):
    provider = GeminiProvider(base_url=srv.url)
    session = provider.create_client("test-key-1")
    try:
        assert provider.count_tokens(session, req("12345678", system_prompt="abcd")) == 3
    finally:
        provider.close_client(session)


PARIS = {"name": "Paris", "country": "France", "population": 2_102_650, "kind": "city",
         "landmarks": [{"name": "Eiffel Tower", "year": 1889}]}  # fmt: skip
NOT_PARIS = {**PARIS, "population": "about two million"}


def server_usage(server: FakeLLMServer) -> Usage:
    records = [r for r in server.requests if r.status == 200]
    return Usage(sum(r.input_tokens for r in records), sum(r.output_tokens for r in records))


def test_structured_output_from_the_schema(srv):
    with make(srv) as client:
        city, response = client.complete("Paris?", response_model=CityInfo, include_response=True)
    assert isinstance(city, CityInfo) and response.parsed is city
    config = srv.requests[0].body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"]["type"] == "OBJECT"
    assert response.usage == server_usage(srv)


def test_structured_output_reasks_and_sums_usage(srv):
    srv.script(json.dumps(NOT_PARIS), json.dumps(PARIS))
    with make(srv) as client:
        city, response = client.complete("Paris?", response_model=CityInfo, include_response=True)
    assert city == CityInfo(**PARIS)
    first, second = srv.requests
    assert first.key == second.key
    contents = second.body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert "population" in contents[2]["parts"][0]["text"]
    assert response.usage == server_usage(srv) and response.attempts == 1


def test_structured_output_that_never_validates(srv):
    srv.script(*[json.dumps(NOT_PARIS)] * 3, "not json at all")
    with make(srv) as client, pytest.raises(StructuredOutputError) as caught:
        client.complete("Paris?", response_model=CityInfo, max_reasks=3)
    assert len(srv.requests) == 4
    assert caught.value.errors[0]["type"] == "json_invalid"
    assert caught.value.provider == "google"
    with make(srv) as client, pytest.raises(InvalidRequestError, match="instructor_mode"):
        client.complete("Paris?", response_model=CityInfo, instructor_mode="tools")


def test_keys_never_reach_logs_or_errors(srv, caplog):
    caplog.set_level(logging.DEBUG)
    with FakeLLMServer(valid_keys=["test-key-2"]) as strict, make(strict) as client:
        assert client.complete("hi").content == "hi"
        strict.script(Fault.server_error(503), Fault.server_error(503), Fault.server_error(503),
                      Fault.server_error(503))  # fmt: skip
        with pytest.raises(LLMError) as caught:
            client.complete("hi", max_retries=1)
        client.status()
    text = caplog.text + str(caught.value) + repr(caught.value) + repr(client)
    assert all(key not in text for key in KEYS)
