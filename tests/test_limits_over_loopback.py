"""The promise over real HTTP: the SDKs against FakeLLMServer enforcing every style, both providers.

Small numbers keep each run to a second or two; the full figures (400 requests,
16 threads, every contender) are bench/goodput.py's to measure.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from llmkit import LLMClient, QuotaExceededError, RateLimit
from llmkit.config import load_settings
from llmkit.testing import ENFORCEMENT_STYLES, FakeLLMServer, Fault, ServerLimits

KEYS = ["sk-test-limits-key-1", "sk-test-limits-key-2"]
PROVIDERS = ["openai", "anthropic"]


def client(server: FakeLLMServer, provider: str, rate_limit: RateLimit | None, **kw) -> LLMClient:
    urls = {"openai": server.openai_base_url, "anthropic": server.anthropic_base_url, "google": server.url}
    kw.setdefault("api_keys", KEYS)
    kw.setdefault("base_url", urls[provider])
    kw.setdefault("acquire_timeout", 60)
    return LLMClient(provider, rate_limit=rate_limit, settings=load_settings(environ={}), max_tokens=16,
                     metrics=False, **kw)  # fmt: skip


def send_all(c: LLMClient, count: int, threads: int = 6) -> list:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda i: c.complete(f"request {i}"), range(count)))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("style", ENFORCEMENT_STYLES)
def test_the_dashboard_number_holds_however_the_server_enforces_it(style, provider):
    with FakeLLMServer(limits=ServerLimits(requests_per_minute=600, style=style), latency=0.01) as server:
        with client(server, provider, RateLimit(requests_per_minute=600)) as c:
            replies = send_all(c, 40)
        stats = server.stats()
    assert len(replies) == 40 and stats["by_status"][200] == 40
    assert stats["by_status"].get(429, 0) <= 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("style", ["per_second", "leaky", "sliding_minute"])
def test_with_no_limits_given_the_headers_teach_them(style, provider, caplog):
    caplog.set_level(logging.INFO, logger="llmkit.engine.limiter")
    with FakeLLMServer(limits=ServerLimits(requests_per_minute=600, style=style), latency=0.01) as server:
        with client(server, provider, None) as c:
            replies = send_all(c, 40)
            lanes = c.status()["client_statuses"][0]["limits"]
        stats = server.stats()
    assert len(replies) == 40 and stats["by_status"].get(429, 0) <= 1
    assert lanes["requests"]["per_minute"] == 600 and lanes["requests"]["source"] == "learned"
    learned = [r for r in caplog.records if "limits 600 requests/min (learned)" in r.getMessage()]
    assert len(learned) == len(KEYS)  # one INFO line per key


@pytest.mark.timeout(60)
def test_token_limits_per_second_hold_for_anthropic():
    limits = ServerLimits(requests_per_minute=6000, input_tokens_per_minute=24_000,
                          output_tokens_per_minute=12_000, style="per_second")  # fmt: skip
    rate_limit = RateLimit(requests_per_minute=6000, input_tokens_per_minute=24_000,
                           output_tokens_per_minute=12_000)  # fmt: skip
    with FakeLLMServer(limits=limits, latency=0.01) as server:
        with client(server, "anthropic", rate_limit) as c, ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda i: c.complete(f"request {i} " + "word " * (i % 40)), range(40)))
        stats = server.stats()
    assert stats["by_status"][200] == 40 and stats["by_status"].get(429, 0) <= 1


def test_anthropics_tokens_headers_are_the_tightest_limit_not_a_combined_one():
    """Anthropic documents ``anthropic-ratelimit-tokens-*`` as the values of whichever of the input
    and output limits is most restrictive: not a third, combined limit (OpenAI's TPM)."""
    from llmkit.providers._limits import anthropic_limits

    prefix = "anthropic-ratelimit-"
    headers = {
        prefix + "input-tokens-limit": "90000", prefix + "input-tokens-remaining": "89000",
        prefix + "output-tokens-limit": "24000", prefix + "output-tokens-remaining": "23900",
        prefix + "tokens-limit": "24000", prefix + "tokens-remaining": "23900",
    }  # fmt: skip
    state = anthropic_limits(headers)
    assert state is not None
    assert (state.limit_input_tokens, state.limit_output_tokens) == (90000, 24000)
    assert state.limit_tokens is None and state.remaining_tokens is None


@pytest.mark.timeout(60)
def test_with_dashboard_token_limits_anthropic_gets_no_combined_token_lane():
    limits = ServerLimits(requests_per_minute=6000, input_tokens_per_minute=90_000,
                          output_tokens_per_minute=24_000, style="per_second")  # fmt: skip
    rate_limit = RateLimit(requests_per_minute=6000, input_tokens_per_minute=90_000,
                           output_tokens_per_minute=24_000)  # fmt: skip
    with FakeLLMServer(limits=limits, latency=0.01) as server, client(server, "anthropic", rate_limit) as c:
        send_all(c, 10)
        lanes = c.status()["client_statuses"][0]["limits"]
    assert set(lanes) == {"requests", "input_tokens", "output_tokens"}  # no learned "tokens" at 24,000


@pytest.mark.parametrize("provider", [*PROVIDERS, "google"])
def test_an_account_out_of_credit_is_disabled_with_its_reason_and_the_call_moves_on(provider):
    with FakeLLMServer(out_of_credit_keys=[KEYS[0]]) as server:
        with client(server, provider, None) as c:
            for _ in range(4):
                assert c.complete("hello").content == "hello"
            first = c.status()["client_statuses"][0]
        hits = len(server.requests_for(KEYS[0]))
    assert first["state"] == "disabled" and "QuotaExceeded" in first["disabled_reason"]
    assert hits == 1  # never hit again, unlike a key cooled after a 429


def test_every_key_out_of_credit_raises_quota_exceeded():
    with FakeLLMServer(out_of_credit_keys=KEYS) as server, client(server, "openai", None) as c, \
            pytest.raises(QuotaExceededError):  # fmt: skip
        c.complete("hello")
    assert len(server.requests) == 2


@pytest.mark.parametrize("value", ["-1e12", "-inf", "nan", "999999999999999"])
def test_one_poisoned_header_does_not_lock_the_key(value):
    with FakeLLMServer() as server, client(server, "openai", RateLimit(requests_per_minute=600),
                                           api_keys=KEYS[:1], acquire_timeout=2) as c:  # fmt: skip
        server.script(Fault.poisoned_headers({"x-ratelimit-remaining-requests": value,
                                              "x-ratelimit-limit-requests": "600"}))  # fmt: skip
        for _ in range(5):
            c.complete("after the poison")
        status = c.status()["client_statuses"][0]
    assert status["state"] == "healthy" and status["limits"]["requests"]["per_minute"] == 600


def test_a_reply_with_no_choices_is_sent_once_and_raised():
    from llmkit import MalformedResponseError

    unreadable = Fault(malformed=True, body={"id": "x", "choices": []})
    with FakeLLMServer(reply=lambda info: unreadable) as server, \
            client(server, "openai", RateLimit(requests_per_minute=600), api_keys=KEYS[:1]) as c:  # fmt: skip
        with pytest.raises(MalformedResponseError):
            c.complete("billed but unreadable")
        status = c.status()["client_statuses"][0]
    assert len(server.requests) == 1  # billed once, sent once
    assert status["state"] == "healthy" and status["consecutive_failures"] == 0
