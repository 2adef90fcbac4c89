"""Prices, cost, usage totals and the max_cost budget (llmkit.costs)."""

from __future__ import annotations

import json
import logging
import threading
from importlib import resources

import pytest

from llmkit import BudgetExceededError, ConfigurationError, LLMClient, Response, Usage
from llmkit.costs import CostMiddleware, ModelPrice, PriceTable, UsageTracker, builtin_prices, resolve_prices
from llmkit.request import Request, build_request
from llmkit.testing import FakeLLMServer

# -- prices -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-mini", ModelPrice(0.15, 0.6, 0.075)),
        ("gpt-4o", ModelPrice(2.5, 10.0, 1.25)),
        ("GPT-4o", ModelPrice(2.5, 10.0, 1.25)),
        ("gpt-4o-2024-05-13", ModelPrice(5.0, 15.0)),  # its own (older) price, not the family's
        ("claude-3-5-haiku-latest", ModelPrice(0.8, 4.0, 0.08, 1.0, 1.6)),
        ("gemini-2.0-flash", ModelPrice(0.1, 0.4, 0.025)),
        ("llama-3.3-70b-versatile", ModelPrice(0.59, 0.79)),
    ],
)
def test_exact_lookup(model: str, expected: ModelPrice) -> None:
    assert PriceTable().lookup(model) == expected


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("claude-3-5-sonnet-20240620", "claude-3-5-sonnet"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("gpt-4-0613", "gpt-4"),
        ("gemini-1.5-flash-002", "gemini-1.5-flash"),
        ("gemini-1.5-flash-8b-001", "gemini-1.5-flash-8b"),
        ("models/gemini-2.5-pro", "gemini-2.5-pro"),
    ],
)
def test_dated_and_versioned_ids_resolve_to_their_family(model: str, family: str) -> None:
    table = PriceTable()
    assert table.lookup(model) is not None
    assert table.lookup(model) == table.lookup(family)


@pytest.mark.parametrize(
    "model",
    ["my-local-model", "gpt-4-32k", "gpt-4o-mini-search-preview", "gpt-40", "claude-3", "llama3", ""],
)
def test_unknown_models_have_no_price(model: str) -> None:
    table = PriceTable()
    assert table.lookup(model) is None
    assert table.cost(model, Usage(100, 100)) is None


def test_unknown_model_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    table = PriceTable()
    with caplog.at_level(logging.DEBUG, logger="llmkit.costs"):
        for _ in range(3):
            table.cost("mystery-model-of-test-costs", Usage(1, 1))
        PriceTable().cost("mystery-model-of-test-costs", Usage(1, 1))  # once per process, not per table
    messages = [r for r in caplog.records if "mystery-model-of-test-costs" in r.getMessage()]
    assert len(messages) == 1
    assert messages[0].levelno == logging.WARNING and "Response.cost is None" in messages[0].getMessage()


def test_overrides_win_and_match_by_prefix() -> None:
    table = PriceTable(
        overrides={
            "my-model": {"input": 1.0, "output": 2.0, "cached_input": 0.5},
            "gpt-4o": {"input": 1.0, "output": 1.0},
        }
    )
    assert table.lookup("my-model") == ModelPrice(1.0, 2.0, 0.5)
    assert table.lookup("my-model-20250101") == ModelPrice(1.0, 2.0, 0.5)
    assert table.lookup("gpt-4o") == ModelPrice(1.0, 1.0, 1.0)  # cached defaults to input
    assert table.lookup("gpt-4o-2024-08-06") == ModelPrice(1.0, 1.0, 1.0)
    assert table.lookup("gpt-4o-mini") == ModelPrice(0.15, 0.6, 0.075)  # the built-in list is kept
    assert PriceTable({"x": ModelPrice(1, 1)}, builtin=False).lookup("gpt-4o") is None
    higher = table.with_overrides({"my-model": {"input": 3, "output": 3}})
    assert higher.lookup("my-model") == ModelPrice(3, 3)


@pytest.mark.parametrize(
    "price",
    [
        {"input": 1.0},
        {"input": -1.0, "output": 1.0},
        {"input": 1.0, "output": float("nan")},
        {"input": "1", "output": 1.0},
        {"input": 1.0, "output": 1.0, "cache_input": 0.1},  # a typo
        3.0,
    ],
)
def test_bad_overrides_are_configuration_errors(price: object) -> None:
    with pytest.raises(ConfigurationError, match="my-model"):
        PriceTable(overrides={"my-model": price})


def test_cost_charges_cached_input_at_the_cached_price() -> None:
    table = PriceTable()
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, cached_input_tokens=400_000)
    # 600k uncached at 2.50 + 400k cached at 1.25 + 1M output at 10.00
    assert table.cost("gpt-4o", usage) == pytest.approx(1.5 + 0.5 + 10.0)
    assert table.cost("gpt-4o", Usage(1000, 0)) == pytest.approx(0.0025)
    # more cached than input (a provider quirk) is capped at the input
    assert table.cost("gpt-4o", Usage(10, 0, 50)) == pytest.approx(10 * 1.25e-6)


def test_resolve_prices_layers_settings_under_the_argument() -> None:
    settings = {"a": {"input": 1, "output": 1}, "b": {"input": 1, "output": 1}}
    table = resolve_prices({"b": {"input": 2, "output": 2}}, settings)
    assert table.lookup("a") == ModelPrice(1, 1)
    assert table.lookup("b") == ModelPrice(2, 2)
    explicit = PriceTable()
    assert resolve_prices(explicit, settings) is explicit
    assert resolve_prices(None).lookup("gpt-4o") is not None
    with pytest.raises(ConfigurationError):
        resolve_prices(["gpt-4o"])  # type: ignore[arg-type]


def test_the_price_file_is_documented_and_consistent() -> None:
    data = json.loads(resources.files("llmkit").joinpath("data/prices.json").read_text("utf-8"))
    assert data["_source"] and data["_as_of"]
    assert set(data["models"]) >= {"openai", "anthropic", "google", "groq"}
    for model, price in builtin_prices().items():
        assert price.cached_input is not None and price.cached_input <= price.input, model
        assert price.input > 0 and price.output > 0, model


# -- cost and usage through the fake server ---------------------------------------------------------


def openai_client(srv: FakeLLMServer, **kwargs: object) -> LLMClient:
    kwargs.setdefault("api_keys", ["sk-test-1"])
    kwargs.setdefault("model", "gpt-4o-mini")
    return LLMClient(provider="openai", base_url=srv.openai_base_url, **kwargs)  # type: ignore[arg-type]


def test_cost_of_real_openai_and_anthropic_responses(fake_server: FakeLLMServer) -> None:
    with openai_client(fake_server) as client:
        response = client.complete("Hello, how are you today?")
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    expected = (response.usage.input_tokens * 0.15 + response.usage.output_tokens * 0.6) / 1e6
    assert response.cost == pytest.approx(expected)

    with LLMClient(
        provider="anthropic", api_keys=["sk-test-1"], base_url=fake_server.anthropic_base_url,
        model="claude-3-5-haiku-latest",
    ) as client:  # fmt: skip
        response = client.complete("Hello, how are you today?")
    expected = (response.usage.input_tokens * 0.8 + response.usage.output_tokens * 4.0) / 1e6
    assert response.cost == pytest.approx(expected)


def test_unknown_model_costs_none_and_is_counted_as_unpriced(fake_server: FakeLLMServer) -> None:
    with openai_client(fake_server, model="my-local-model") as client:
        response = client.complete("Hi")
        usage = client.usage()
    assert response.cost is None
    assert usage["unpriced_requests"] == 1
    assert usage["cost"] == 0.0
    assert usage["input_tokens"] == response.usage.input_tokens


def test_usage_totals_by_provider_model_and_key(fake_server: FakeLLMServer) -> None:
    with openai_client(fake_server, api_keys=["sk-test-1", "sk-test-2"]) as client:
        responses = [client.complete(f"Prompt number {i}") for i in range(6)]
        responses.append(client.complete("Hi", model="gpt-4o"))
        usage = client.usage()
    assert usage["requests"] == 7
    assert usage["input_tokens"] == sum(r.usage.input_tokens for r in responses)
    assert usage["output_tokens"] == sum(r.usage.output_tokens for r in responses)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["cost"] == pytest.approx(sum(r.cost or 0.0 for r in responses))
    assert usage["by_provider"]["openai"]["requests"] == 7
    assert usage["by_model"]["gpt-4o-mini"]["requests"] == 6
    assert usage["by_model"]["gpt-4o"]["cost"] == pytest.approx(responses[-1].cost)
    keys = {r.key_id for r in responses}
    assert set(usage["by_key"]) == keys and len(keys) == 2
    assert sum(k["requests"] for k in usage["by_key"].values()) == 7
    for key_id, totals in usage["by_key"].items():
        mine = [r for r in responses if r.key_id == key_id]
        assert totals["cost"] == pytest.approx(sum(r.cost or 0.0 for r in mine))
    assert "sk-test" not in json.dumps(usage)


def test_tracker_is_thread_safe_and_resets() -> None:
    tracker = UsageTracker()
    response = Response("x", model="m", provider="p", usage=Usage(2, 3), cost=0.5, key_id="k")

    def work() -> None:
        for _ in range(500):
            tracker.record(response)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = tracker.snapshot()
    assert snap["requests"] == 4000 and snap["by_key"]["k"]["input_tokens"] == 8000
    assert snap["cost"] == pytest.approx(2000.0)
    tracker.reset()
    assert tracker.snapshot()["requests"] == 0


# -- the budget -------------------------------------------------------------------------------------


def a_request(max_tokens: int | None = 10, model: str = "gpt-4o-mini") -> Request:
    return build_request("Hello there", model=model, max_tokens=max_tokens)


def test_budget_exactly_at_the_limit_passes_and_one_more_token_refuses(fake_server: FakeLLMServer) -> None:
    limit = CostMiddleware(PriceTable()).estimate(a_request(max_tokens=10))
    assert limit is not None
    with openai_client(fake_server, max_cost=limit) as client:
        with pytest.raises(BudgetExceededError) as refused:
            client.complete("Hello there", max_tokens=11)
        assert len(fake_server.requests) == 0  # nothing was sent
        response = client.complete("Hello there", max_tokens=10)
        assert response.cost is not None and 0 < response.cost <= limit
        assert len(fake_server.requests) == 1
        with pytest.raises(BudgetExceededError):  # the spent part now counts
            client.complete("Hello there", max_tokens=10)
        assert len(fake_server.requests) == 1
    message = str(refused.value)
    assert "max_cost" in message and "$" in message and "Nothing was sent" in message


def test_budget_never_overshoots_under_16_concurrent_calls() -> None:
    worst = CostMiddleware(PriceTable()).estimate(a_request(max_tokens=20))
    assert worst is not None
    max_cost = worst * 5.5
    results: list[Response | BaseException] = []
    lock = threading.Lock()
    with FakeLLMServer(latency=0.2) as srv, openai_client(srv, max_cost=max_cost) as client:
        barrier = threading.Barrier(16)

        def call() -> None:
            barrier.wait()
            try:
                outcome: Response | BaseException = client.complete("Hello there", max_tokens=20)
            except BudgetExceededError as exc:
                outcome = exc
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=call) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent = len(srv.requests)
        usage = client.usage()
    successes = [r for r in results if isinstance(r, Response)]
    assert len(results) == 16
    assert 5 <= len(successes) < 16
    assert sent == len(successes)
    assert usage["cost"] <= max_cost
    assert sum(r.cost or 0.0 for r in successes) <= max_cost


def test_reservation_is_released_when_the_call_fails() -> None:
    budget = CostMiddleware(PriceTable(), max_cost=1.0)

    def failing(request: Request) -> Response:
        assert budget.reserved > 0
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        budget(a_request(), failing)
    assert budget.reserved == 0.0 and budget.spent == 0.0


def test_unknown_price_with_a_budget_is_refused_or_allowed(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[Request] = []

    def send(request: Request) -> Response:
        sent.append(request)
        return Response("ok", model=request.model, provider="openai", usage=Usage(5, 5))

    strict = CostMiddleware(PriceTable(), max_cost=10.0)
    with pytest.raises(BudgetExceededError, match="prices="):
        strict(a_request(model="my-model"), send)
    assert sent == []

    lenient = CostMiddleware(PriceTable(), max_cost=10.0, unknown_price="allow")
    with caplog.at_level(logging.WARNING, logger="llmkit.costs"):
        response = lenient(a_request(model="my-model"), send)
        lenient(a_request(model="my-model"), send)
    assert response.cost is None and len(sent) == 2
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "max_cost" in r.getMessage()]
    assert len(warnings) == 1 and "'my-model'" in warnings[0].getMessage()  # once per model
    assert lenient.tracker.snapshot()["unpriced_requests"] == 2


def test_bad_budget_arguments() -> None:
    for bad in (-1, "10", True, float("nan")):
        with pytest.raises(ConfigurationError):
            CostMiddleware(PriceTable(), max_cost=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        CostMiddleware(PriceTable(), unknown_price="maybe")
    zero = CostMiddleware(PriceTable(), max_cost=0)
    with pytest.raises(BudgetExceededError):
        zero(a_request(), lambda r: Response("x", model=r.model, provider="p"))


def test_structured_calls_reserve_every_possible_reask() -> None:
    from pydantic import BaseModel

    class City(BaseModel):
        name: str

    budget = CostMiddleware(PriceTable())
    plain = budget.estimate(a_request())
    structured = budget.estimate(a_request().with_changes(response_model=City))
    once = budget.estimate(a_request().with_changes(response_model=City, extra={"max_reasks": 0}))
    assert plain is not None and structured is not None and once is not None
    assert plain < once < structured
    assert structured > 3 * plain


def test_a_response_priced_already_keeps_its_cost() -> None:
    budget = CostMiddleware(PriceTable())
    response = budget(a_request(), lambda r: Response("x", model=r.model, provider="p", cost=0.25))
    assert response.cost == 0.25
    hit = budget(a_request(), lambda r: Response("x", model=r.model, provider="p", cached=True, cost=None))
    assert hit.cost == 0.0
    assert budget.tracker.snapshot()["cache_hits"] == 1


def test_the_fast_cost_copy_equals_dataclasses_replace() -> None:
    from dataclasses import replace

    from llmkit.costs.budget import _with_cost

    raw, parsed = object(), object()
    response = Response("x", model="m", provider="p", usage=Usage(1, 2), key_id="k", raw=raw, parsed=parsed)
    copy = _with_cost(response, 0.5)
    assert copy == replace(response, cost=0.5) and copy.cost == 0.5 and response.cost is None
    assert copy.raw is raw and copy.parsed is parsed


def test_streams_are_budgeted_and_counted(fake_server: FakeLLMServer) -> None:
    from llmkit import LLMClient

    with LLMClient("openai", api_keys=["sk-test-1"], base_url=fake_server.openai_base_url,
                   model="gpt-4o-mini", max_cost=0.0005) as client:  # fmt: skip
        text = "".join(client.stream("stream within budget", max_tokens=10))
        assert text == "stream within budget"
        usage = client.usage()
        assert usage["requests"] == 1 and usage["cost"] > 0
        with pytest.raises(BudgetExceededError):
            client.stream("far too big a stream", max_tokens=100_000)  # refused before sending
    assert len(fake_server.requests) == 1
