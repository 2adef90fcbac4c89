"""What the fake server says about its limits, per provider, read back over loopback.

The headers are parsed by the small readers below (not by llmkit's adapters);
the SDKs see the 429s and billing errors as they would from the real APIs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llmkit.testing import FakeLLMServer, Fault, ServerLimits

GPT, CLAUDE, GEMINI = "gpt-4o-mini", "claude-3-5-haiku-latest", "gemini-2.0-flash"
TEXT = "The quick brown fox jumps over the lazy dog"  # 11 tokens
USER = [{"role": "user", "content": TEXT}]
WALL = 1_700_000_000.25  # the wall clock when the server clock reads T0
T0 = 1000.0

pytestmark = pytest.mark.timeout(60)


# Independent readers -----------------------------------------------------------------------

_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def go_seconds(text: str) -> float:
    """A Go ``time.Duration`` string (``"1m0s"``, ``"750ms"``, ``"1.5s"``) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a Go duration: {text!r}"
    return sum(float(number) * _GO_UNITS[unit] for number, unit in parts)


def rfc3339_unix(text: str) -> float:
    """An RFC 3339 UTC timestamp in Unix seconds."""
    when = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return when.timestamp()


def proto_seconds(text: str) -> float:
    """A protobuf Duration in JSON (``"2s"``, ``"0.25s"``) in seconds."""
    assert re.fullmatch(r"\d+(\.\d{1,9})?s", text), text
    return float(text[:-1])


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def clients() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for client in made:
        client.close()


def openai_sdk(server: FakeLLMServer, made: list[Any], key: str = "sk-test-a") -> openai.OpenAI:
    client = openai.OpenAI(api_key=key, base_url=server.openai_base_url, max_retries=0, timeout=10)
    made.append(client)
    return client


def anthropic_sdk(server: FakeLLMServer, made: list[Any], key: str = "sk-test-a") -> anthropic.Anthropic:
    client = anthropic.Anthropic(api_key=key, base_url=server.anthropic_base_url, max_retries=0,
                                 timeout=10)
    made.append(client)
    return client


def gemini_post(server: FakeLLMServer, key: str = "sk-test-a") -> httpx.Response:
    body = {"contents": [{"role": "user", "parts": [{"text": TEXT}]}]}
    with httpx.Client(trust_env=False, timeout=10) as http:
        return http.post(f"{server.url}/v1beta/models/{GEMINI}:generateContent", json=body,
                         headers={"x-goog-api-key": key})


def limited(clock: Clock, **limits: Any) -> FakeLLMServer:
    return FakeLLMServer(limits=ServerLimits(**limits), clock=clock, wall_clock=lambda: WALL)


# Each style, as each provider says it -------------------------------------------------------

# style, requests per minute, admitted at T0, then the wait (ms), then the reset (s)
STYLE_CASES = [
    ("per_second", 120, 2, 1000, 1.0),
    ("minute_bucket", 6, 6, 10_000, 60.0),
    ("second_bucket", 120, 2, 500, 1.0),
    ("leaky", 120, 2, 500, 1.0),
    ("fixed_minute", 6, 6, 20_000, 20.0),  # T0 = 1000 is 20 s before the minute at 1020
    ("sliding_minute", 6, 6, 60_000, 60.0),
]


@pytest.mark.parametrize(("style", "rpm", "admitted", "wait_ms", "reset"), STYLE_CASES)
def test_openai_headers_and_429_per_style(clock: Clock, clients: list[Any], style: str, rpm: int,
                                          admitted: int, wait_ms: int, reset: float) -> None:
    with limited(clock, requests_per_minute=rpm, style=style) as server:
        chat = openai_sdk(server, clients).chat.completions
        for _ in range(admitted):
            headers = chat.with_raw_response.create(model=GPT, messages=USER).headers
        assert headers["x-ratelimit-limit-requests"] == str(rpm)
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert go_seconds(headers["x-ratelimit-reset-requests"]) == pytest.approx(reset)
        with pytest.raises(openai.RateLimitError) as caught:
            chat.create(model=GPT, messages=USER)
        error, response = caught.value, caught.value.response
        assert (error.code, error.type, response.status_code) == ("rate_limit_exceeded", "requests", 429)
        assert int(response.headers["retry-after-ms"]) == wait_ms
        assert int(response.headers["retry-after"]) == math.ceil(wait_ms / 1000)
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        message = response.json()["error"]["message"]
        assert message.startswith(f"Rate limit reached for {GPT} in organization")
        assert f"on requests per min (RPM): Limit {rpm}, Used {admitted}, Requested 1" in message
        clock.now += wait_ms / 1000 - 0.001
        with pytest.raises(openai.RateLimitError):
            chat.create(model=GPT, messages=USER)
        clock.now += 0.001
        chat.create(model=GPT, messages=USER)
        assert server.stats()["rate_limits"] == {style: {"admitted": admitted + 1, "refused": 2}}


@pytest.mark.parametrize(("style", "rpm", "admitted", "wait_ms", "reset"), STYLE_CASES)
def test_anthropic_headers_and_429_per_style(clock: Clock, clients: list[Any], style: str, rpm: int,
                                             admitted: int, wait_ms: int, reset: float) -> None:
    with limited(clock, requests_per_minute=rpm, style=style) as server:
        messages = anthropic_sdk(server, clients).messages
        for _ in range(admitted):
            headers = messages.with_raw_response.create(model=CLAUDE, max_tokens=20,
                                                        messages=USER).headers
        assert headers["anthropic-ratelimit-requests-limit"] == str(rpm)
        assert headers["anthropic-ratelimit-requests-remaining"] == "0"
        reset_at = rfc3339_unix(headers["anthropic-ratelimit-requests-reset"])
        assert reset_at == math.ceil(WALL + reset)  # the server clock mapped to wall time
        with pytest.raises(anthropic.RateLimitError) as caught:
            messages.create(model=CLAUDE, max_tokens=20, messages=USER)
        response = caught.value.response
        assert response.json()["type"] == "error"
        assert response.json()["error"]["type"] == "rate_limit_error"
        assert f"of {rpm} requests per minute" in response.json()["error"]["message"]
        assert response.headers["retry-after"] == str(math.ceil(wait_ms / 1000))
        assert "retry-after-ms" not in response.headers  # Anthropic documents whole seconds
        assert response.headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_gemini_429_carries_quota_failure_and_retry_info(clock: Clock) -> None:
    with limited(clock, requests_per_minute=120) as server:
        first = gemini_post(server)
        assert first.status_code == 200
        assert not [h for h in first.headers if "ratelimit" in h]  # Gemini sends none
        clock.now += 0.25
        assert gemini_post(server).status_code == 200
        refused = gemini_post(server)
    assert refused.status_code == 429 and "retry-after" not in refused.headers
    error = refused.json()["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    kinds = [detail["@type"] for detail in error["details"]]
    assert kinds == ["type.googleapis.com/google.rpc.Help", "type.googleapis.com/google.rpc.QuotaFailure",
                     "type.googleapis.com/google.rpc.RetryInfo"]
    (violation,) = error["details"][1]["violations"]
    assert violation == {
        "quotaMetric": "generativelanguage.googleapis.com/generate_requests_per_model_per_minute",
        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
        "quotaDimensions": {"location": "global", "model": GEMINI},
        "quotaValue": "120",
    }
    assert proto_seconds(error["details"][2]["retryDelay"]) == pytest.approx(0.75)
    assert "Please retry in 0.75s." in error["message"]


def test_gemini_names_the_input_token_quota(clock: Clock) -> None:
    with limited(clock, input_tokens_per_minute=1200) as server:  # 20 a second
        assert gemini_post(server).status_code == 200
        error = gemini_post(server).json()["error"]
    (violation,) = error["details"][1]["violations"]
    assert violation["quotaId"] == "GenerateContentPaidTierInputTokensPerModelPerMinute"
    assert violation["quotaValue"] == "1200"


# (g) token limits, per second ---------------------------------------------------------------


def test_input_and_output_tokens_per_second_anthropic(clock: Clock, clients: list[Any]) -> None:
    with limited(clock, input_tokens_per_minute=1200, output_tokens_per_minute=1200) as server:
        messages = anthropic_sdk(server, clients).messages  # 20 input and 20 output a second
        raw = messages.with_raw_response.create(model=CLAUDE, max_tokens=15, messages=USER)
        raw.parse()
        headers = raw.headers
        assert headers["anthropic-ratelimit-input-tokens-remaining"] == "9"
        assert headers["anthropic-ratelimit-output-tokens-remaining"] == "5"  # 15 reserved
        assert headers["anthropic-ratelimit-tokens-remaining"] == "5"  # the tightest
        assert rfc3339_unix(headers["anthropic-ratelimit-input-tokens-reset"]) == math.ceil(WALL + 1)
        with pytest.raises(anthropic.RateLimitError) as caught:
            messages.create(model=CLAUDE, max_tokens=5, messages=USER)  # 22 input > 20
        refused = caught.value.response.headers
        assert refused["anthropic-ratelimit-output-tokens-remaining"] == "9"  # 4 came back
        assert "of 1,200 input tokens per minute" in caught.value.response.json()["error"]["message"]
        clock.now += 1.0
        messages.create(model=CLAUDE, max_tokens=15, messages=USER)


def test_combined_tokens_per_second_openai(clock: Clock, clients: list[Any]) -> None:
    with limited(clock, tokens_per_minute=3000) as server:  # 50 tokens a second
        chat = openai_sdk(server, clients).chat.completions
        raw = chat.with_raw_response.create(model=GPT, messages=USER, max_tokens=30)
        raw.parse()
        assert raw.headers["x-ratelimit-remaining-tokens"] == "9"  # 11 in + 30 reserved
        assert go_seconds(raw.headers["x-ratelimit-reset-tokens"]) == pytest.approx(1.0)
        with pytest.raises(openai.RateLimitError) as caught:
            chat.create(model=GPT, messages=USER, max_tokens=30)  # 28 left after the settle
        error = caught.value
        assert (error.type, error.code) == ("tokens", "rate_limit_exceeded")
        assert "on tokens per min (TPM): Limit 3000, Used 22, Requested 41" in error.message


def test_a_request_that_can_never_fit_is_too_large(clock: Clock, clients: list[Any]) -> None:
    server = limited(clock, input_tokens_per_minute=600)  # 10 a second: 11 never fit
    with server, pytest.raises(openai.RateLimitError) as caught:
        openai_sdk(server, clients).chat.completions.create(model=GPT, messages=USER)
    message = caught.value.response.json()["error"]["message"]
    assert message.startswith(f"Request too large for {GPT}")
    assert "Limit 600, Requested 11" in message and caught.value.type == "tokens"


def test_remaining_never_exceeds_the_limit(clock: Clock, clients: list[Any]) -> None:
    with limited(clock, requests_per_minute=2, style="leaky", leaky_burst=5) as server:
        headers = openai_sdk(server, clients).chat.completions.with_raw_response.create(
            model=GPT, messages=USER).headers
    assert headers["x-ratelimit-remaining-requests"] == "2"  # 5 admissible, the limit says 2


# Out of credit is not a rate limit ----------------------------------------------------------


def test_out_of_credit_keys_get_each_providers_billing_error(clients: list[Any]) -> None:
    with FakeLLMServer(out_of_credit_keys=["sk-test-broke"],
                       limits=ServerLimits(requests_per_minute=600)) as server:
        with pytest.raises(openai.RateLimitError) as caught:
            openai_sdk(server, clients, "sk-test-broke").chat.completions.create(
                model=GPT, messages=USER)
        assert caught.value.response.json() == {"error": {
            "message": "You exceeded your current quota, please check your plan and billing "
                       "details. For more information on this error, read the docs: "
                       "https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}
        assert not [h for h in caught.value.response.headers if "ratelimit" in h]
        with pytest.raises(anthropic.APIStatusError) as billing:
            anthropic_sdk(server, clients, "sk-test-broke").messages.create(
                model=CLAUDE, max_tokens=5, messages=USER)
        assert billing.value.status_code == 402
        assert billing.value.response.json()["error"]["type"] == "billing_error"
        depleted = gemini_post(server, "sk-test-broke")
        assert depleted.status_code == 429 and depleted.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
        assert "prepayment credits are depleted" in depleted.json()["error"]["message"]
        assert "details" not in depleted.json()["error"]  # no RetryInfo: waiting will not help
        openai_sdk(server, clients, "sk-test-fine").chat.completions.create(model=GPT, messages=USER)
        stats = server.stats()
    assert stats["by_status"] == {429: 2, 402: 1, 200: 1}
    assert stats["rate_limits"] == {"per_second": {"admitted": 1, "refused": 0}}


def test_a_no_credit_fault_for_one_request(clients: list[Any]) -> None:
    with FakeLLMServer() as server:
        server.script(Fault.no_credit(key="sk-test-a"))
        with pytest.raises(openai.RateLimitError) as caught:
            openai_sdk(server, clients).chat.completions.create(model=GPT, messages=USER)
        assert caught.value.code == "insufficient_quota"
        openai_sdk(server, clients).chat.completions.create(model=GPT, messages=USER)
        assert [r.fault for r in server.requests] == ["out_of_credit", None]
    with pytest.raises(ValueError, match="choose one"):
        Fault(status=500, out_of_credit=True)


# Poisoned headers ---------------------------------------------------------------------------


def test_poisoned_headers_replace_the_real_ones(clock: Clock, clients: list[Any]) -> None:
    poison = {"x-ratelimit-remaining-requests": "-1e12", "x-ratelimit-limit-tokens": "inf",
              "anthropic-ratelimit-requests-remaining": "99999999"}
    with limited(clock, requests_per_minute=600, tokens_per_minute=6_000_000) as server:
        server.add_fault(Fault.poisoned_headers(poison), times=2)
        raw = openai_sdk(server, clients).chat.completions.with_raw_response.create(
            model=GPT, messages=USER)
        assert raw.parse().choices[0].message.content == TEXT  # an otherwise normal reply
        assert raw.headers.get_list("x-ratelimit-remaining-requests") == ["-1e12"]
        assert raw.headers["x-ratelimit-limit-tokens"] == "inf"
        assert raw.headers["x-ratelimit-limit-requests"] == "600"  # the others are untouched
        claude = anthropic_sdk(server, clients).messages.with_raw_response.create(
            model=CLAUDE, max_tokens=5, messages=USER).headers
        assert claude.get_list("anthropic-ratelimit-requests-remaining") == ["99999999"]
        clean = openai_sdk(server, clients).chat.completions.with_raw_response.create(
            model=GPT, messages=USER).headers
        assert clean["x-ratelimit-remaining-requests"] == "7"
        assert [r.fault for r in server.requests] == ["headers", "headers", None]


def test_poisoned_headers_on_a_rate_limit_429(clock: Clock, clients: list[Any]) -> None:
    with limited(clock, requests_per_minute=60) as server:
        chat = openai_sdk(server, clients).chat.completions
        chat.create(model=GPT, messages=USER)
        server.add_fault(Fault.poisoned_headers({"x-ratelimit-remaining-requests": "5000"}))
        with pytest.raises(openai.RateLimitError) as caught:
            chat.create(model=GPT, messages=USER)
    assert caught.value.response.headers.get_list("x-ratelimit-remaining-requests") == ["5000"]
    assert caught.value.response.headers["retry-after-ms"] == "1000"


# The command lines choose the style ---------------------------------------------------------


def test_the_command_lines_take_a_style() -> None:
    from llmkit.cli.serve_fake import full_parser
    from llmkit.testing._fake.cli import _parser, build_kwargs

    for parser in (_parser(), full_parser()):
        args = parser.parse_args(["--rpm", "1200", "--style", "leaky", "--leaky-burst", "3",
                                  "--out-of-credit-key", "sk-test-broke"])
        kwargs = build_kwargs(args)
        assert kwargs["limits"] == ServerLimits(requests_per_minute=1200, style="leaky",
                                                leaky_burst=3)
        assert kwargs["out_of_credit_keys"] == ["sk-test-broke"]
    assert build_kwargs(_parser().parse_args(["--rpm", "60"]))["limits"].style == "per_second"
    old = build_kwargs(_parser().parse_args(["--rpm", "60", "--burst-seconds", "60"]))
    assert old["limits"].style == "minute_bucket"
    restyled = build_kwargs(_parser().parse_args(
        ["--config", '{"limits": {"requests_per_minute": 60}}', "--style", "sliding_minute"]))
    assert restyled["limits"] == ServerLimits(requests_per_minute=60, style="sliding_minute")
    with pytest.raises(ValueError, match="contradicts"):
        build_kwargs(_parser().parse_args(["--rpm", "60", "--style", "leaky", "--burst-seconds", "1"]))
    with pytest.raises(SystemExit):
        _parser().parse_args(["--style", "lenient"])


def test_with_the_real_clock_a_per_second_windows_reset_stamp_is_its_exact_end():
    """Windows on the wall clock's whole seconds: the whole-second RFC 3339 stamp Anthropic
    sends names the window's end exactly (not up to a second after it)."""
    import time
    from datetime import datetime

    import httpx

    limits = ServerLimits(requests_per_minute=120, style="per_second")
    with FakeLLMServer(limits=limits) as server:
        messages = [{"role": "user", "content": "hi"}]
        body = {"model": "claude-3-5-haiku-latest", "max_tokens": 8, "messages": messages}
        headers = {"x-api-key": "sk-test-wall", "anthropic-version": "2023-06-01"}
        for _ in range(5):
            asked = time.time()
            reply = httpx.post(server.anthropic_base_url + "/v1/messages", json=body, headers=headers)
            stamp = reply.headers["anthropic-ratelimit-requests-reset"]
            end = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            assert end == int(end) and 0 <= end - asked <= 1.0 + 0.05  # the next whole second
