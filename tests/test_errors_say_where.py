"""Errors that say where: the host and port tried, base_url checked in code, plain grammar, no stray lines."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap

import pytest

from llmkit import ConfigurationError, LLMClient, NetworkError
from llmkit.config import ProviderSettings, Settings
from llmkit.costs import PriceTable


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("provider", "path"), [("openai", "/v1"), ("anthropic", ""), ("google", "")])
def test_a_connection_error_names_host_and_port(provider: str, path: str) -> None:
    port = _closed_port()
    client = LLMClient(provider, api_keys=["sk-test-where-1"], base_url=f"http://127.0.0.1:{port}{path}",
                       max_retries=0, settings=Settings())  # fmt: skip
    with client, pytest.raises(NetworkError) as info:
        client.complete("hi")
    assert f"127.0.0.1:{port}" in str(info.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [("localhost:8000/v1", "must start with http:// or https://"),
     ("http://:8000/v1", "names no host"),
     ("http://localhost:99999/v1", "is not a valid URL")],
)
def test_base_url_in_code_is_checked_as_the_yaml_one(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        LLMClient("openai", api_keys=["sk-test-where-1"], base_url=url, settings=Settings())
    with pytest.raises(ConfigurationError, match=message):
        ProviderSettings(base_url=url)


def test_counts_agree_with_their_nouns() -> None:
    with pytest.raises(ConfigurationError, match="has 2 entries but there are 1 API key:") as info:
        ProviderSettings(api_keys=["k1"], rate_limits=[{}, {}])
    assert "1 API keys" not in str(info.value)


def test_a_structured_output_error_prints_no_stray_line() -> None:
    code = textwrap.dedent("""\
        from pydantic import BaseModel
        from llmkit import LLMClient, StructuredOutputError
        from llmkit.config import Settings
        from llmkit.testing import FakeLLMServer

        class City(BaseModel):
            name: str

        with FakeLLMServer() as server:
            server.script(*["not json"] * 10)
            client = LLMClient("openai", api_keys=["sk-test-where-1"], base_url=server.openai_base_url,
                               settings=Settings())
            try:
                client.complete("Paris", response_model=City)
            except StructuredOutputError:
                print("raised")
        """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "raised", result.stderr
    assert "Max retries exceeded" not in result.stderr and result.stderr == ""


def test_an_unpriced_model_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    table = PriceTable()
    with caplog.at_level(logging.WARNING, logger="llmkit.costs"):
        assert table.cost("unpriced-model-for-this-test", _usage()) is None
        assert PriceTable().lookup("unpriced-model-for-this-test") is None
    warnings = [r for r in caplog.records if "unpriced-model-for-this-test" in r.getMessage()]
    assert len(warnings) == 1 and "prices={" in warnings[0].getMessage()


def _usage():
    from llmkit.types import Usage

    return Usage(10, 5)
