"""Middleware: the chain order, the logging and metrics built-ins, through the fake server."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from llmkit import ConfigurationError, InvalidRequestError, LLMClient, ProviderError
from llmkit.metrics import MetricsMiddleware, MetricsRecorder, percentile
from llmkit.middleware import LoggingMiddleware, build_chain
from llmkit.request import build_request
from llmkit.testing import FakeLLMServer, Fault
from llmkit.types import Response, Usage

KEY = "sk-test-secret-0123456789"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture
def srv(server: FakeLLMServer) -> FakeLLMServer:
    server.reset()
    return server


def openai_client(srv: FakeLLMServer, **kwargs) -> LLMClient:
    kwargs.setdefault("api_keys", [KEY])
    kwargs.setdefault("retry_delay", 0.001)
    return LLMClient(provider="openai", base_url=srv.openai_base_url, model="gpt-4o-mini", **kwargs)


def response(**changes) -> Response:
    fields: dict[str, Any] = {
        "content": "ok",
        "model": "m",
        "provider": "openai",
        "usage": Usage(10, 5),
        "key_id": "key-1",
    }
    fields.update(changes)
    return Response(**fields)


# -- chain order -------------------------------------------------------------------


def test_user_middleware_runs_outside_logging_and_metrics(srv: FakeLLMServer, caplog) -> None:
    events: list[str] = []
    holder: dict[str, LLMClient] = {}

    def recorder(name: str):
        def middleware(request, call_next):
            events.append(f"{name}:in")
            result = call_next(request)
            events.append(f"{name}:out requests={holder['client'].metrics()['requests']}")
            return result

        return middleware

    class Probe(logging.Handler):  # sees what metrics counted when the logging line is written
        def emit(self, record: logging.LogRecord) -> None:
            events.append(f"log requests={holder['client'].metrics()['requests']}")

    probe = Probe()
    logging.getLogger("llmkit.middleware").addHandler(probe)
    try:
        with openai_client(srv, middleware=[recorder("a"), recorder("b")], log_level="INFO") as client:
            holder["client"] = client
            with caplog.at_level(logging.INFO, logger="llmkit.middleware"):
                client.complete("hello")
            kinds = [type(m).__name__ for m in client._middleware]
    finally:
        logging.getLogger("llmkit.middleware").removeHandler(probe)
    assert kinds[2:4] == ["LoggingMiddleware", "MetricsMiddleware"]
    # a, b outermost (in the order given), then logging (writes after metrics counted), then metrics.
    assert events == ["a:in", "b:in", "log requests=1", "b:out requests=1", "a:out requests=1"]


def test_short_circuit_never_reaches_the_server(srv: FakeLLMServer) -> None:
    def stub(request, call_next):
        return response(content="from the stub", key_id=None)

    with openai_client(srv, middleware=[stub]) as client:
        assert client.complete("hello").content == "from the stub"
        assert client.metrics()["requests"] == 0  # the stub answered outside the metrics
    assert srv.requests == []


def test_middleware_may_change_the_request(srv: FakeLLMServer) -> None:
    def louder(request, call_next):
        return call_next(request.with_changes(max_tokens=7))

    with openai_client(srv, middleware=[louder]) as client:
        client.complete("hello")
    assert srv.requests[-1].body["max_tokens"] == 7


def test_build_chain_rejects_what_cannot_be_called() -> None:
    with pytest.raises(TypeError, match="callable"):
        build_chain(["nope"], lambda request: response())  # type: ignore[list-item]


# -- metrics through the client ------------------------------------------------------


def test_metrics_after_known_traffic(srv: FakeLLMServer) -> None:
    with openai_client(srv, max_retries=1) as client:
        replies = [client.complete(p) for p in ("one two three", "a" * 41)]
        srv.script(Fault(status=500), "recovered")
        replies.append(client.complete("retry me"))
        srv.script(Fault(status=500), Fault(status=500))
        with pytest.raises(ProviderError):
            client.complete("fails twice")
        srv.script(Fault(status=400))
        with pytest.raises(InvalidRequestError):
            client.complete("bad")
        snap = client.metrics()
    stats = srv.stats()
    assert snap["requests"] == 5
    assert snap["successes"] == 3
    assert snap["errors"] == 2
    assert snap["errors_by_type"] == {"ProviderError": 1, "InvalidRequestError": 1}
    assert snap["attempts"] == 4 and snap["retries"] == 1
    assert snap["input_tokens"] == stats["input_tokens"] == sum(r.usage.input_tokens for r in replies)
    assert snap["output_tokens"] == stats["output_tokens"]
    assert snap["total_tokens"] == stats["input_tokens"] + stats["output_tokens"]
    assert snap["latency"]["count"] == 3 and snap["latency"]["p50"] > 0
    key_id = replies[0].key_id
    assert key_id and KEY not in key_id
    assert set(snap["by_key"]) == {key_id}
    assert snap["by_key"][key_id]["requests"] == 5
    assert snap["by_provider"]["openai"]["errors_by_type"] == snap["errors_by_type"]
    json.dumps(snap)  # plain data
    assert KEY not in json.dumps(snap)


def test_metrics_per_key_and_per_provider(srv: FakeLLMServer) -> None:
    keys = ["sk-test-1", "sk-test-2"]
    with openai_client(srv, api_keys=keys) as client:
        replies = [client.complete(f"prompt {i}") for i in range(6)]
        snap = client.metrics()
    assert sum(s["requests"] for s in snap["by_key"].values()) == 6
    assert set(snap["by_key"]) == {r.key_id for r in replies}
    for key_id, scope in snap["by_key"].items():
        assert scope["input_tokens"] == sum(r.usage.input_tokens for r in replies if r.key_id == key_id)
    assert snap["by_provider"]["openai"]["requests"] == 6


def test_metrics_of_an_anthropic_client(srv: FakeLLMServer) -> None:
    with LLMClient(
        provider="anthropic",
        api_keys=["sk-ant-test-1"],
        base_url=srv.anthropic_base_url,
        model="claude-3-5-haiku-latest",
    ) as client:
        client.complete("hello there, claude")
        snap = client.metrics()
    stats = srv.stats()
    assert snap["by_provider"]["anthropic"]["requests"] == 1
    assert (snap["input_tokens"], snap["output_tokens"]) == (stats["input_tokens"], stats["output_tokens"])


def test_metrics_reset_and_disabled(srv: FakeLLMServer) -> None:
    with openai_client(srv) as client:
        client.complete("hello")
        assert client.metrics(reset=True)["requests"] == 1
        assert client.metrics()["requests"] == 0
    with openai_client(srv, metrics=False) as client:
        client.complete("hello")
        assert client.metrics() == {}
        assert not any(isinstance(m, MetricsMiddleware) for m in client._middleware)


# -- the recorder ------------------------------------------------------------------


def test_percentiles_are_exact_on_a_known_set() -> None:
    recorder = MetricsRecorder()
    for ms in range(100, 0, -1):  # 1..100 ms, out of order
        recorder.record_success(response(), ms / 1000)
    latency = recorder.snapshot()["latency"]
    assert latency["count"] == 100
    assert latency["min"] == pytest.approx(0.001) and latency["max"] == pytest.approx(0.1)
    assert latency["mean"] == pytest.approx(0.0505)
    assert latency["p50"] == pytest.approx(0.0505)
    assert latency["p95"] == pytest.approx(0.09505)
    assert latency["p99"] == pytest.approx(0.09901)


def test_percentile_helper() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_window_keeps_the_most_recent() -> None:
    recorder = MetricsRecorder(window=10)
    for value in range(1, 101):
        recorder.record_success(response(), float(value))
    latency = recorder.snapshot()["latency"]
    assert latency["count"] == 100 and latency["mean"] == pytest.approx(50.5)
    assert (latency["min"], latency["max"]) == (91.0, 100.0)
    with pytest.raises(ValueError):
        MetricsRecorder(window=0)


def test_cost_cached_and_errors_by_scope() -> None:
    recorder = MetricsRecorder()
    recorder.record_success(response(cost=0.25, attempts=3), 0.1)
    recorder.record_success(response(cost=None), 0.1)
    recorder.record_success(response(cached=True, cost=9.0, usage=Usage(1000, 1000)), 0.001)
    error = ProviderError("boom", provider="openai", status_code=500, key_id="key-2")
    recorder.record_error(error)
    recorder.record_error(RuntimeError("a middleware bug"), provider="openai")
    snap = recorder.snapshot()
    assert snap["requests"] == 5 and snap["successes"] == 3 and snap["errors"] == 2
    assert snap["cached"] == 1
    assert snap["cost"] == pytest.approx(0.25) and snap["priced"] == 1
    assert (snap["input_tokens"], snap["output_tokens"]) == (20, 10)  # the cache hit spent none
    assert (snap["attempts"], snap["retries"]) == (4, 2)
    assert snap["errors_by_type"] == {"ProviderError": 1, "RuntimeError": 1}
    assert snap["by_key"]["key-1"]["requests"] == 2  # the cache hit used no key
    assert snap["by_key"]["key-2"]["errors_by_type"] == {"ProviderError": 1}
    assert snap["by_provider"]["openai"]["requests"] == 5


def test_recorder_is_thread_safe() -> None:
    recorder = MetricsRecorder()

    def work(n: int) -> None:
        for i in range(500):
            recorder.record_success(response(key_id=f"key-{n % 3}"), 0.01)
            if i % 10 == 0:
                recorder.record_error(ProviderError("x", key_id=f"key-{n % 3}"), provider="openai")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snap = recorder.snapshot()
    assert snap["successes"] == 8 * 500 and snap["errors"] == 8 * 50
    assert snap["input_tokens"] == 8 * 500 * 10
    assert sum(s["requests"] for s in snap["by_key"].values()) == snap["requests"]


def test_metrics_middleware_counts_and_reraises() -> None:
    ticks = iter([0.0, 0.5, 1.0])
    metrics = MetricsMiddleware(provider="openai", clock=lambda: next(ticks))
    request = build_request("hi", model="m")
    assert metrics(request, lambda r: response()).content == "ok"

    def failing(r):
        raise ProviderError("boom")

    with pytest.raises(ProviderError):
        metrics(request, failing)
    snap = metrics.snapshot()
    assert snap["latency"]["p50"] == 0.5
    assert snap["by_provider"]["openai"]["errors"] == 1  # the client's provider, as the error had none
    metrics.reset()
    assert metrics.snapshot()["requests"] == 0


# -- logging -----------------------------------------------------------------------


def test_logging_names_the_key_id_never_the_key(srv: FakeLLMServer, caplog) -> None:
    with (
        openai_client(srv, log_level="INFO", max_retries=0) as client,
        caplog.at_level(logging.DEBUG, logger="llmkit"),
    ):
        ok = client.complete("a secret prompt")
        srv.script(Fault(status=500))
        with pytest.raises(ProviderError):
            client.complete("again")
    calls = [r for r in caplog.records if r.name == "llmkit.middleware"]
    assert [r.levelno for r in calls] == [logging.INFO, logging.WARNING]
    success, failure = (r.getMessage() for r in calls)
    assert ok.key_id in success and "gpt-4o-mini" in success and "openai" in success
    assert f"tokens={ok.usage.input_tokens}/{ok.usage.output_tokens}" in success
    assert "attempts=1" in success and "cached=False" in success
    assert "ProviderError" in failure and "status=500" in failure and ok.key_id in failure
    assert calls[0].llmkit["key_id"] == ok.key_id
    assert KEY not in caplog.text
    assert "a secret prompt" not in caplog.text  # content only with log_content=True


def test_logging_content_only_when_asked(caplog) -> None:
    request = build_request("tell me a secret", model="m")
    middleware = LoggingMiddleware(logging.DEBUG, logger="test.calls", log_content=True, max_content_chars=8)
    with caplog.at_level(logging.DEBUG, logger="test.calls"):
        middleware(request, lambda r: response(content="a long, long reply"))
    [record] = caplog.records
    assert record.levelno == logging.DEBUG and record.name == "test.calls"
    assert "tell me ...(+8 chars)" in record.getMessage()
    assert "a long, ...(+10 chars)" in record.getMessage()


def test_logging_is_silent_when_its_level_is_off(caplog) -> None:
    middleware = LoggingMiddleware("DEBUG", logger="test.quiet")
    with caplog.at_level(logging.INFO, logger="test.quiet"):
        middleware(build_request("hi", model="m"), lambda r: response())
    assert caplog.records == []


def test_bad_log_level_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        LoggingMiddleware("LOUD")
    with pytest.raises(ConfigurationError):
        LoggingMiddleware(-1)
