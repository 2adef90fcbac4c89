"""The response cache (llmkit.cache): keys, serialization, backends, and the client."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from llmkit import ConfigurationError, InvalidRequestError, LLMClient, Response, ToolCall, Usage
from llmkit.cache import (
    CacheMiddleware,
    MemoryCache,
    RedisCache,
    SQLiteCache,
    cache_key,
    decode_response,
    default_cache_path,
    encode_response,
    make_cache,
)
from llmkit.request import Request, build_request
from llmkit.testing import FakeLLMServer, Fault


class Clock:
    """An injected wall clock for TTL tests."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class City(BaseModel):
    name: str
    population: int
    tags: list[str] = []


def req(prompt: str = "Hello", **kwargs: Any) -> Request:
    kwargs.setdefault("model", "gpt-4o-mini")
    return build_request(prompt, **kwargs)


# -- keys -------------------------------------------------------------------------------------------


def test_identical_requests_share_a_key_and_anything_that_changes_the_answer_does_not() -> None:
    base = cache_key("openai", req())
    assert base == cache_key("openai", req())
    assert len(base) == 64
    assert base == cache_key("openai", req(timeout=5.0, max_retries=1))  # transport settings only
    assert cache_key("openai", req(temperature=0)) == cache_key("openai", req(temperature=0.0))
    different = [
        cache_key("anthropic", req()),
        cache_key("openai", req(model="gpt-4o")),
        cache_key("openai", req("Hello!")),
        cache_key("openai", req(system_prompt="Be brief.")),
        cache_key("openai", req(temperature=0.7)),
        cache_key("openai", req(max_tokens=10)),
        cache_key("openai", req(stop=["\n"])),
        cache_key("openai", req(extra={"top_p": 0.5})),
        cache_key("openai", req(response_model=City)),
        cache_key("openai", req([{"role": "user", "content": "Hello", "name": "bob"}])),
        cache_key("openai", req([{"role": "tool", "content": "Hello", "tool_call_id": "c1"}])),
    ]
    assert len({base, *different}) == len(different) + 1


def test_schema_changes_change_the_key() -> None:
    class Other(BaseModel):
        name: str

    assert cache_key("openai", req(response_model=City)) != cache_key("openai", req(response_model=Other))


# -- serialization ----------------------------------------------------------------------------------


def test_round_trip_keeps_the_answer_and_drops_raw_and_key() -> None:
    response = Response(
        "Paris", model="gpt-4o-mini-2024-07-18", provider="openai", finish_reason="stop",
        usage=Usage(10, 3, 4), latency=1.5, request_id="req_1", key_id="key-abc",
        tool_calls=(ToolCall("call_1", "get_weather", {"city": "Paris", "days": [1, 2]}),),
        cost=0.1, raw=object(),
    )  # fmt: skip
    text = encode_response(response)
    assert "key-abc" not in text
    hit = decode_response(text, latency=0.001)
    assert (hit.content, hit.model, hit.finish_reason) == ("Paris", response.model, "stop")
    assert hit.provider == "openai"
    assert hit.usage == response.usage and hit.tool_calls == response.tool_calls
    assert hit.request_id == "req_1" and hit.key_id is None and hit.raw is None
    assert hit.cached is True and hit.cost == 0.0 and hit.attempts == 0 and hit.latency == 0.001


def test_structured_object_round_trips_and_is_validated_again() -> None:
    city = City(name="Paris", population=2_100_000, tags=["capital"])
    text = encode_response(Response("{}", model="m", provider="openai", parsed=city), City)
    hit = decode_response(text, City)
    assert isinstance(hit.parsed, City) and hit.parsed == city

    class Stricter(BaseModel):
        name: str
        area: float

    with pytest.raises(ValueError):
        decode_response(text, Stricter)
    numbers = encode_response(Response("[1,2]", model="m", provider="p", parsed=[1, 2]), list[int])
    assert decode_response(numbers, list[int]).parsed == [1, 2]


def test_unusable_entries_are_misses() -> None:
    backend = MemoryCache()
    middleware = CacheMiddleware(backend, "openai")
    backend.set(cache_key("openai", req()), "not json")
    calls: list[Request] = []

    def send(request: Request) -> Response:
        calls.append(request)
        return Response("fresh", model=request.model, provider="openai")

    assert middleware(req(), send).content == "fresh"
    assert middleware(req(), send).cached is True
    assert len(calls) == 1


# -- backends ---------------------------------------------------------------------------------------


@pytest.fixture
def redis_backend_url(redis_url: str) -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield redis_url
    client.close()


Factory = Callable[..., Any]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    made: list[Any] = []

    def factory(**kwargs: Any) -> Any:
        if request.param == "memory":
            backend: Any = MemoryCache(**kwargs)
        elif request.param == "sqlite":
            backend = SQLiteCache(tmp_path / "cache" / "responses.sqlite3", **kwargs)
        else:
            backend = RedisCache(request.getfixturevalue("redis_backend_url"), **kwargs)
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        backend.close()


def test_backend_get_set_delete_clear(make_backend: Factory) -> None:
    backend = make_backend()
    assert backend.get("k") is None
    backend.set("k", "välue\nwith lines")
    assert backend.get("k") == "välue\nwith lines"
    backend.set("k", "v2")
    assert backend.get("k") == "v2"
    backend.delete("k")
    assert backend.get("k") is None
    backend.set("a", "1")
    backend.set("b", "2")
    backend.clear()
    assert backend.get("a") is None and backend.get("b") is None

    backend.close()  # idempotent


def test_backend_ttl_on_an_injected_clock(make_backend: Factory) -> None:
    clock = Clock()
    backend = make_backend(ttl=60, clock=clock)
    backend.set("k", "v")
    clock.now += 59.9
    assert backend.get("k") == "v"
    clock.now += 0.1
    assert backend.get("k") is None


def test_memory_cache_is_an_lru() -> None:
    cache = MemoryCache(max_entries=2)
    cache.set("a", "1")
    cache.set("b", "2")
    assert cache.get("a") == "1"  # a is now the most recent
    cache.set("c", "3")
    assert cache.get("b") is None and cache.get("a") == "1" and cache.get("c") == "3"
    assert len(cache) == 2
    with pytest.raises(ConfigurationError):
        MemoryCache(max_entries=0)
    with pytest.raises(ConfigurationError):
        MemoryCache(ttl=0)


def test_memory_and_sqlite_caches_are_thread_safe(tmp_path: Path) -> None:
    for cache in (MemoryCache(max_entries=50), SQLiteCache(tmp_path / "t.sqlite3")):
        errors: list[BaseException] = []

        def work(n: int, cache: Any = cache, errors: list[BaseException] = errors) -> None:
            try:
                for i in range(100):
                    cache.set(f"{n}-{i % 60}", str(i))
                    cache.get(f"{(n + 1) % 8}-{i % 60}")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        cache.close()


def test_sqlite_cache_persists_and_purges(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "c.sqlite3"
    clock = Clock()
    first = SQLiteCache(path, ttl=10, clock=clock)
    first.set("keep", "1")
    first.close()
    second = SQLiteCache(path, ttl=10, clock=clock)
    assert second.get("keep") == "1" and len(second) == 1
    clock.now += 11
    assert second.purge_expired() == 1 and len(second) == 0
    second.close()


_CHILD_WRITER = """
import sys
from llmkit.cache import SQLiteCache
cache = SQLiteCache(sys.argv[1])
for i in range(50):
    cache.set(f"key-{i}", f"value from the child {i}")
cache.close()
"""


def test_sqlite_cache_is_shared_between_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    parent = SQLiteCache(path)
    parent.set("from-parent", "1")  # the parent holds the file open while the child writes
    subprocess.run([sys.executable, "-c", _CHILD_WRITER, str(path)], check=True, timeout=60)
    assert parent.get("key-49") == "value from the child 49"
    assert parent.get("from-parent") == "1"
    assert len(parent) == 51
    parent.close()


def test_redis_cache_lets_redis_expire_entries_and_keeps_to_its_prefix(redis_backend_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_backend_url)
    client.set("unrelated", "x")
    cache = RedisCache(client, ttl=30, prefix="t:")
    cache.set("k", "v")
    assert 0 < client.pttl("t:k") <= 30_000
    cache.clear()
    assert client.get("unrelated") == b"x" and cache.get("k") is None
    cache.close()  # a client it was given stays open
    assert client.ping()
    client.close()


def test_default_cache_path_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LLMKIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "llmkit" / "responses.sqlite3"
    monkeypatch.setenv("LLMKIT_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_path() == tmp_path / "mine" / "responses.sqlite3"
    monkeypatch.delenv("LLMKIT_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_path() == Path.home() / ".cache" / "llmkit" / "responses.sqlite3"


def test_make_cache(tmp_path: Path) -> None:
    memory = MemoryCache()
    assert make_cache(None) is None and make_cache(False) is None
    assert make_cache(memory) is memory
    assert isinstance(make_cache(True), SQLiteCache)
    assert isinstance(make_cache(tmp_path / "x.sqlite3"), SQLiteCache)
    assert isinstance(make_cache("redis://127.0.0.1:1/0"), RedisCache)
    with pytest.raises(ConfigurationError):
        make_cache(42)


# -- through the client -----------------------------------------------------------------------------


def openai_client(srv: FakeLLMServer, **kwargs: Any) -> LLMClient:
    return LLMClient(
        provider="openai", api_keys=["sk-test-1"], base_url=srv.openai_base_url, model="gpt-4o-mini", **kwargs
    )


def test_second_identical_call_is_a_free_hit(fake_server: FakeLLMServer, make_backend: Factory) -> None:
    with openai_client(fake_server, cache=make_backend()) as client:
        first = client.complete("What is the capital of France?", temperature=0)
        second = client.complete("What is the capital of France?", temperature=0)
        usage = client.usage()
    assert len(fake_server.requests) == 1
    assert first.cached is False and first.cost is not None and first.cost > 0
    assert second.cached is True and second.cost == 0.0 and second.key_id is None
    assert second.content == first.content and second.usage == first.usage
    assert usage["requests"] == 2 and usage["cache_hits"] == 1
    assert usage["cost"] == pytest.approx(first.cost)


def test_a_different_temperature_is_a_miss(fake_server: FakeLLMServer, make_backend: Factory) -> None:
    with openai_client(fake_server, cache=make_backend()) as client:
        client.complete("Hi", temperature=0)
        assert client.complete("Hi", temperature=0.5).cached is False
        assert client.complete("Hi", temperature=0.5).cached is True
    assert len(fake_server.requests) == 2


def test_per_request_bypass(fake_server: FakeLLMServer) -> None:
    backend = MemoryCache()
    with openai_client(fake_server, cache=backend) as client:
        assert client.complete("Hi", cache=False).cached is False
        assert len(backend) == 0  # a bypassed call neither reads nor writes
        client.complete("Hi")
        assert client.complete("Hi", cache=False).cached is False
        assert client.complete("Hi", cache=True).cached is True
        with pytest.raises(InvalidRequestError):
            client.complete("Hi", cache="yes")
    assert len(fake_server.requests) == 3
    assert all("cache" not in r.body for r in fake_server.requests)  # never sent to the provider


def test_per_request_opt_in_uses_the_default_sqlite_file(
    fake_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LLMKIT_CACHE_DIR", str(tmp_path))
    with openai_client(fake_server) as client:
        client.complete("Hi", cache=True)
        assert client.complete("Hi", cache=True).cached is True
        assert client.complete("Hi").cached is False  # without the flag: no cache on this client
    assert (tmp_path / "responses.sqlite3").exists()
    assert len(fake_server.requests) == 2


def test_errors_are_not_cached(fake_server: FakeLLMServer) -> None:
    backend = MemoryCache()
    fake_server.script(Fault(status=400))
    with openai_client(fake_server, cache=backend) as client:
        with pytest.raises(InvalidRequestError):
            client.complete("Hi")
        assert len(backend) == 0
        assert client.complete("Hi").cached is False
        assert client.complete("Hi").cached is True


def test_a_broken_backend_never_fails_the_call(
    fake_server: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(MemoryCache):
        def get(self, key: str) -> str | None:
            raise ConnectionError("down")

        def set(self, key: str, value: str) -> None:
            raise ConnectionError("down")

    caplog.set_level(logging.DEBUG, logger="llmkit.cache")
    with openai_client(fake_server, cache=Broken()) as client:
        assert client.complete("Hi").content == "Hi"
        assert client.complete("Hi").cached is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "cache" in r.getMessage()]
    assert len(warnings) == 1


def test_uncacheable_parameters_bypass_the_cache(fake_server: FakeLLMServer) -> None:
    backend = MemoryCache()
    middleware = CacheMiddleware(backend, "openai")
    request = req(extra={"weird": object()})
    assert middleware(request, lambda r: Response("x", model=r.model, provider="openai")).content == "x"
    assert len(backend) == 0


def test_a_cache_hit_is_served_even_when_the_budget_is_spent(fake_server: FakeLLMServer) -> None:
    from llmkit.costs import CostMiddleware, PriceTable

    limit = CostMiddleware(PriceTable()).estimate(req("Hello there", max_tokens=10))
    with openai_client(fake_server, cache=MemoryCache(), max_cost=limit) as client:
        client.complete("Hello there", max_tokens=10)
        again = client.complete("Hello there", max_tokens=10)
    assert again.cached is True and again.cost == 0.0
    assert len(fake_server.requests) == 1


def test_structured_answer_round_trips_through_the_client_cache(fake_server: FakeLLMServer) -> None:
    pytest.importorskip("instructor")
    with openai_client(fake_server, cache=MemoryCache()) as client:
        city = client.complete("Tell me about Paris", response_model=City)
        again, response = client.complete("Tell me about Paris", response_model=City, include_response=True)
    assert isinstance(again, City) and again == city
    assert response.cached is True
    assert len(fake_server.requests) == 1


def test_the_endpoint_is_part_of_the_key() -> None:
    plain = cache_key("openai", req())
    assert cache_key("openai", req(), endpoint=None) == plain  # the provider's default: keys unchanged
    one = cache_key("openai", req(), endpoint="http://127.0.0.1:8001/v1")
    assert one == cache_key("openai", req(), endpoint="http://127.0.0.1:8001/v1/")  # a trailing slash
    assert len({plain, one, cache_key("openai", req(), endpoint="http://127.0.0.1:8002/v1")}) == 3


def test_two_servers_under_one_provider_name_do_not_share_answers(make_backend: Factory) -> None:
    backend = make_backend()
    with FakeLLMServer() as first_server, FakeLLMServer() as second_server:
        first_server.reply = lambda info: "from the first server"
        second_server.reply = lambda info: "from the second server"
        with (
            openai_client(first_server, cache=backend) as first,
            openai_client(second_server, cache=backend) as second,
        ):
            assert first.complete("Hi", temperature=0).content == "from the first server"
            answer = second.complete("Hi", temperature=0)
            assert (answer.content, answer.cached) == ("from the second server", False)
            assert second.complete("Hi", temperature=0).cached is True  # each endpoint still caches
            assert first.complete("Hi", temperature=0).content == "from the first server"
        assert (len(first_server.requests), len(second_server.requests)) == (1, 1)
