"""Groq, local servers, the http:// warning, images and JSON mode, against FakeLLMServer."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmkit import InvalidRequestError, LLMClient, Message, MessageRole, RateLimit
from llmkit.config import load_settings
from llmkit.engine.estimate import estimate_input_tokens
from llmkit.providers import canonical_name, provider_class
from llmkit.providers._urls import warn_if_insecure
from llmkit.request import build_request
from llmkit.testing import FakeLLMServer, ServerLimits
from llmkit.testing.fake_server import IMAGE_TOKENS
from llmkit.types import ImagePart, TextPart

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
NO_ENV = load_settings(environ={})


@pytest.fixture
def srv() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def client(provider: str, srv: FakeLLMServer, **kw: Any) -> LLMClient:
    url = srv.anthropic_base_url if provider == "anthropic" else srv.openai_base_url
    kw.setdefault("api_keys", ["sk-test-1"])
    return LLMClient(provider, base_url=url, settings=NO_ENV, metrics=False, **kw)


def server_word(c: LLMClient, lane: str) -> dict[str, Any]:
    """What the key's limiter holds for one lane: its limit and the server's last remaining count."""
    return dict(c.status()["client_statuses"][0]["limits"][lane])


# --- Groq ------------------------------------------------------------------------------------


def test_groq_is_registered_with_its_endpoint() -> None:
    cls = provider_class("groq")
    assert cls.name == "groq" and cls.default_base_url == "https://api.groq.com/openai/v1"
    assert LLMClient("groq", api_keys=["gsk_x"], settings=NO_ENV)._adapter.base_url == cls.default_base_url


def test_groq_talks_openai_dialect(srv: FakeLLMServer) -> None:
    with client("groq", srv, api_keys=["gsk_test"]) as c:
        r = c.complete("hello groq")
    assert (r.content, r.provider) == ("hello groq", "groq")
    assert srv.requests[-1].path == "/v1/chat/completions" and srv.requests[-1].key == "gsk_test"


def _limited_server() -> FakeLLMServer:
    # The server's request limit shows up as x-ratelimit-*-requests (4 left after one call).
    return FakeLLMServer(limits=ServerLimits(requests_per_minute=5, tokens_per_minute=1000,
                                             style="minute_bucket"))


@pytest.mark.parametrize("provider", ["groq", "openai"])
def test_groq_daily_request_headers_do_not_cap_the_minute_bucket(provider: str) -> None:
    limit = RateLimit(requests_per_minute=100, tokens_per_minute=6000)
    with _limited_server() as server, client(provider, server, rate_limit=limit) as c:
        c.complete("hi", max_tokens=10)
        requests, tokens = server_word(c, "requests"), server_word(c, "tokens")
    # per-minute tokens: both believe the server's smaller limit and its remaining count
    assert tokens["per_minute"] == 1000 and tokens["server_remaining"] < 1000
    if provider == "groq":  # Groq's requests headers count per day: ignored
        assert requests["per_minute"] == 100 and requests["server_remaining"] is None
    else:  # OpenAI's are per minute: believed
        assert requests["per_minute"] == 5 and requests["server_remaining"] <= 4


def test_groq_limit_state_reads_only_tokens() -> None:
    from llmkit.providers.groq import GroqProvider

    state = GroqProvider().limit_state({
        "x-ratelimit-limit-requests": "14400", "x-ratelimit-remaining-requests": "3",
        "x-ratelimit-reset-requests": "2m59.56s", "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "5990", "x-ratelimit-reset-tokens": "100ms",
    })
    assert state is not None
    assert state.remaining_requests is None and state.limit_requests is None
    assert (state.remaining_tokens, state.limit_tokens, state.reset_tokens) == (5990, 6000, 0.1)
    assert GroqProvider().limit_state({"x-ratelimit-remaining-requests": "3"}) is None


# --- local servers ------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["local", "ollama", "vllm", "llamacpp", "lmstudio", "llama.cpp"])
def test_local_aliases(alias: str) -> None:
    assert canonical_name(alias) == "local"


def test_local_needs_no_key_and_defaults_to_ollama() -> None:
    cls = provider_class("ollama")
    assert cls.requires_key is False and cls.default_base_url == "http://localhost:11434/v1"
    with LLMClient("ollama", settings=NO_ENV) as c:
        assert c.provider == "local" and c._adapter.base_url == "http://localhost:11434/v1"


def test_local_through_an_openai_compatible_server(srv: FakeLLMServer) -> None:
    with LLMClient("vllm", base_url=srv.openai_base_url, settings=NO_ENV, model="qwen2.5") as c:
        r = c.complete("hi local")
        chunks = list(c.stream("streamed"))
    assert (r.content, r.provider, r.model) == ("hi local", "local", "qwen2.5")
    assert "".join(chunks) == "streamed"
    assert srv.requests[0].key == "no-key"  # the placeholder key


def test_no_alias_table_outside_settings() -> None:
    import llmkit.providers as registry

    assert not hasattr(registry, "_ALIASES")
    assert canonical_name("Claude") == "anthropic"


# --- http:// warning ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "warns"),
    [
        ("http://example.com/v1", True),
        ("http://10.0.0.5:8000/v1", True),
        ("https://example.com/v1", False),
        ("http://localhost:11434/v1", False),
        ("http://127.0.0.1:8000/v1", False),
        ("http://[::1]:8000/v1", False),
        (None, False),
    ],
)
def test_insecure_url_warning(url: str | None, warns: bool, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llmkit.providers.base"):
        assert warn_if_insecure(url, "openai") is warns
    assert bool(caplog.records) is warns


@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq", "local"])
def test_every_adapter_warns_about_remote_http(provider: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llmkit.providers.base"):
        provider_class(provider)(base_url="http://gpu-box.internal:8000/v1")
    messages = [r.getMessage() for r in caplog.records]
    assert any("plain http://" in m and "gpu-box.internal" in m for m in messages)


# --- images -------------------------------------------------------------------------------------------


def test_image_part_constructors(tmp_path: Path) -> None:
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    from_path = ImagePart.from_path(path)
    assert from_path.media_type == "image/png" and from_path.data == PNG
    assert ImagePart.from_bytes(b"\xff\xd8\xff\xe0rest").media_type == "image/jpeg"
    assert ImagePart.from_bytes(PNG, "image/jpg").media_type == "image/jpeg"
    url = ImagePart.from_url("https://example.com/cat.webp")
    assert url.url and url.data is None and url.data_url() == "https://example.com/cat.webp"
    data_url = ImagePart.from_url("data:image/png;base64," + base64.b64encode(PNG).decode())
    assert data_url.data == PNG and data_url.media_type == "image/png"
    assert from_path.data_url().startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: ImagePart.from_path(tmp / "missing.png"),
        lambda tmp: ImagePart.from_bytes(PNG, "image/tiff"),
        lambda tmp: ImagePart.from_bytes(b"not an image"),
        lambda tmp: ImagePart.from_url("ftp://example.com/x.png"),
        lambda tmp: ImagePart.from_url("data:image/png;base64,@@@"),
        lambda tmp: (tmp / "x.bmp").write_bytes(b"BM...") and ImagePart.from_path(tmp / "x.bmp"),
        lambda tmp: Message(MessageRole.USER, [TextPart("hi"), 42]),
    ],
)
def test_bad_images_are_refused_before_sending(make: Any, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError):
        make(tmp_path)


def test_image_tokens_are_estimated() -> None:
    image = ImagePart.from_bytes(PNG)
    with_image = build_request([Message(MessageRole.USER, ["abcd", image])], model="m")
    text_only = build_request([Message(MessageRole.USER, ["abcd"])], model="m")
    assert estimate_input_tokens(with_image) - estimate_input_tokens(text_only) == IMAGE_TOKENS


def _vision_message() -> Message:
    return Message(MessageRole.USER, [TextPart("What is this?"), ImagePart.from_bytes(PNG)])


def test_images_openai_shape(srv: FakeLLMServer) -> None:
    url_image = ImagePart.from_url("https://example.com/cat.png")
    with client("openai", srv) as c:
        r = c.complete([Message(MessageRole.USER, ["What is this?", ImagePart.from_bytes(PNG), url_image])])
    parts = srv.requests[-1].body["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "What is this?"}
    assert parts[1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()},
    }
    assert parts[2] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    assert r.usage.input_tokens == 4 + 2 * IMAGE_TOKENS  # "What is this?" is 4 tokens


def test_images_anthropic_shape(srv: FakeLLMServer) -> None:
    url_image = ImagePart.from_url("https://example.com/cat.png")
    with client("anthropic", srv) as c:
        r = c.complete([Message(MessageRole.USER, [*_vision_message().content, url_image])])
    blocks = srv.requests[-1].body["messages"][0]["content"]
    assert blocks[0] == {"type": "text", "text": "What is this?"}
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()},
    }
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    assert r.usage.input_tokens == 4 + 2 * IMAGE_TOKENS


def test_provider_native_parts_pass_untouched(srv: FakeLLMServer) -> None:
    native = {"type": "image_url", "image_url": {"url": "https://example.com/x.png", "detail": "low"}}
    with client("openai", srv) as c:
        c.complete([Message(MessageRole.USER, ["look", native])])
    assert srv.requests[-1].body["messages"][0]["content"][1] == native


# --- JSON mode ---------------------------------------------------------------------------------------


def test_json_mode_openai(srv: FakeLLMServer) -> None:
    with client("openai", srv) as c:
        c.complete("Give me a city", json_mode=True)
        body = srv.requests[-1].body
        assert body["response_format"] == {"type": "json_object"}
        # OpenAI refuses json_object unless the messages mention JSON: llmkit adds it when missing.
        assert body["messages"][0]["role"] == "system" and "JSON" in body["messages"][0]["content"]
        c.complete("Give me a city as JSON", json_mode=True)
        assert srv.requests[-1].body["messages"][0]["role"] == "user"


def test_json_mode_anthropic_is_prefilled(srv: FakeLLMServer) -> None:
    srv.script('"city": "Paris"}')
    with client("anthropic", srv) as c:
        r = c.complete("Give me a city", json_mode=True, system_prompt="Be brief.")
        srv.script('"a": 1}')
        streamed = "".join(c.stream("Give me one", json_mode=True))
    assert r.content == '{"city": "Paris"}' and streamed == '{"a": 1}'
    body = srv.requests[0].body
    assert body["messages"][-1] == {"role": "assistant", "content": "{"}
    assert body["system"].startswith("Be brief.") and "JSON" in body["system"]


def test_json_mode_is_validated() -> None:
    with pytest.raises(InvalidRequestError):
        build_request("hi", model="m", json_mode="yes")  # type: ignore[arg-type]
