"""Where settings come from: pydantic-settings sources, config/llm.yaml, secret files, variables, logging."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic_settings import PydanticBaseSettingsSource, YamlConfigSettingsSource

from llmkit import LLMClient
from llmkit.config import RateLimit, load_settings
from llmkit.config.merging import VariablesSource, _Collected
from llmkit.config.variables import Variables, find_config_file
from llmkit.errors import ConfigurationError

SECRET = "sk-test-SOURCES-secret-1"

YAML = """\
providers:
  anthropic:
    api_keys: [sk-test-file-1]
    rate_limits:
      - {requests_per_minute: 12, input_tokens_per_minute: 5000, output_tokens_per_minute: 2000}
    settings: {temperature: 0.7, max_tokens: 4096}
pool: {acquire_timeout: 30.0}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_the_sources_are_pydantic_settings_sources() -> None:
    source = VariablesSource(_Collected, Variables({"OPENAI_API_KEYS": "a,b"}, "a dict", {}))
    assert isinstance(source, PydanticBaseSettingsSource)
    assert source() == {"providers": {"openai": {"api_keys": ["a", "b"]}}}
    assert source.variables.used == ["OPENAI_API_KEYS"]
    assert issubclass(YamlConfigSettingsSource, PydanticBaseSettingsSource)


def test_the_environment_alone_is_read_without_importing_pydantic_settings(tmp_path: Path) -> None:
    """Nothing to merge (no file, no secrets directory): a cold start does not pay for
    pydantic-settings' import; the settings are the same as when it merges them."""
    code = (
        "import sys\n"
        "from llmkit.config import load_settings\n"
        "s = load_settings(environ={'OPENAI_API_KEYS': 'a,b', 'LLM_POOL__ACQUIRE_TIMEOUT': '7'})\n"
        "keys = s.providers['openai'].api_keys\n"
        "print(len(keys), s.pool.acquire_timeout, 'pydantic_settings' in sys.modules)\n"
        "load_settings(environ={}, secrets_dir=sys.argv[1])\n"
        "print('pydantic_settings' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["2 7.0 False", "True"]


def test_nested_variables_reach_any_field_and_beat_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "llm.yaml", YAML)
    settings = load_settings(path, environ={
        "LLM_POOL__ACQUIRE_TIMEOUT": "60",
        "LLM_GLOBAL__ENABLE_LOGGING": "false",
        "llm_providers__anthropic__settings__temperature": "0.2",
        "LLM_PROVIDERS__ANTHROPIC__RATE_LIMITS__REQUESTS_PER_MINUTE": "20",
        "LLM_PROVIDERS__OPENAI__BASE_URL": "http://localhost:8000/v1",
        "LLM_PROVIDERS__GEMINI__MODELS": '["gemini-2.0-flash", "gemini-1.5-pro"]',
    })  # fmt: skip
    assert settings.pool.acquire_timeout == 60.0 and settings.global_.enable_logging is False
    anthropic = settings.provider("anthropic")
    assert anthropic.settings.temperature == 0.2 and anthropic.settings.max_tokens == 4096
    assert anthropic.rate_limits == (RateLimit(requests_per_minute=20, input_tokens_per_minute=5000,
                                               output_tokens_per_minute=2000),)  # the rest stays
    assert anthropic.key_values() == ["sk-test-file-1"]
    assert settings.provider("openai").base_url == "http://localhost:8000/v1"
    assert settings.provider("google").models == ("gemini-2.0-flash", "gemini-1.5-pro")


def test_one_rate_limit_entry_by_number(tmp_path: Path) -> None:
    path = write(tmp_path / "llm.yaml", """\
        providers:
          openai:
            api_keys: [k1, k2]
            rate_limits: [{requests_per_minute: 10}, {requests_per_minute: 20}]
        """)
    env = {"LLM_PROVIDERS__OPENAI__RATE_LIMITS__1__REQUESTS_PER_MINUTE": "25"}
    limits = load_settings(path, environ=env).provider("openai").rate_limits
    assert [limit.requests_per_minute for limit in limits] == [10, 25]
    env = {"LLM_PROVIDERS__OPENAI__RATE_LIMITS__5__REQUESTS_PER_MINUTE": "25"}
    with pytest.raises(ConfigurationError, match="has 2 entries; number them from 0"):
        load_settings(path, environ=env)


def test_a_section_spelt_as_an_alias_merges_with_its_variables(tmp_path: Path) -> None:
    path = write(tmp_path / "llm.yaml", "providers:\n  gemini:\n    models: [gemini-2.0-flash]\n")
    settings = load_settings(path, environ={"GOOGLE_API_KEY": "g1", "LLM_PROVIDERS__GOOGLE__BASE_URL":
                                            "http://127.0.0.1:9/"})  # fmt: skip
    google = settings.provider("google")
    assert google.key_values() == ["g1"] and google.default_model == "gemini-2.0-flash"
    assert google.base_url == "http://127.0.0.1:9/"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LLM_POOLS__ACQUIRE_TIMEOUT": "1"}, ["LLM_POOLS__ACQUIRE_TIMEOUT", "Did you mean 'pool'?"]),
        ({"LLM_PROVIDERS__ANTRHOPIC__BASE_URL": "http://x"}, ["LLM_PROVIDERS__ANTRHOPIC__BASE_URL",
                                                              "Did you mean 'anthropic'?"]),
        ({"LLM_POOL__ACQUIRE_TIMEOUT": "soon"}, ["pool.acquire_timeout = 'soon'",
                                                 "LLM_POOL__ACQUIRE_TIMEOUT from the environment"]),
        ({"LLM_PROVIDERS__OPENAI__BASE_URL": "localhost:8000"}, ["must start with http://",
                                                                 "LLM_PROVIDERS__OPENAI__BASE_URL"]),
        ({"LLM_PROVIDERS__OPENAI__API_KEYS": "[" + SECRET}, ["not valid JSON"]),
        ({"LLM_POOL__SECRET": SECRET}, ["pool.secret: unknown setting"]),
    ],
)
def test_variable_errors_name_the_variable_never_the_value(env: dict[str, str], expected: list[str]) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(environ=env)
    message = str(info.value)
    for part in expected:
        assert part in message
    assert SECRET not in message


def test_secret_files_like_docker_and_kubernetes(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    write(secrets / "ANTHROPIC_API_KEYS", f"{SECRET},sk-test-SOURCES-secret-2\n")
    write(secrets / "LLM_POOL__ACQUIRE_TIMEOUT", "45\n")
    write(secrets / "unrelated-password", "hunter2")
    settings = load_settings(environ={}, secrets_dir=secrets)
    assert settings.api_keys("anthropic") == [SECRET, "sk-test-SOURCES-secret-2"]
    assert settings.pool.acquire_timeout == 45.0
    from_var = load_settings(environ={"LLM_SECRETS_DIR": str(secrets), "ANTHROPIC_API_KEY": "env"})
    assert from_var.api_keys("anthropic") == ["env"]  # the environment beats secret files
    assert from_var.pool.acquire_timeout == 45.0
    with pytest.raises(ConfigurationError, match="is not a directory: fix the path or unset LLM_SECRETS_DIR"):
        load_settings(environ={"LLM_SECRETS_DIR": str(tmp_path / "none")})


def test_the_specs_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config_file(None, {}) is None and load_settings(environ={}).source is None
    path = write(tmp_path / "config" / "llm.yaml", YAML)
    assert find_config_file(None, {}) == (str(path), "found in the working directory")
    settings = load_settings(environ={})
    assert settings.source == str(path) and settings.api_keys("anthropic") == ["sk-test-file-1"]
    other = write(tmp_path / "other.yaml", "pool: {acquire_timeout: 5}\n")
    assert load_settings(environ={"LLM_CONFIG_PATH": str(other)}).source == str(other)  # the variable first
    client = LLMClient("anthropic", settings=settings)
    try:
        assert client.status()["config_file"] == str(path)
    finally:
        client.close()


def test_which_file_was_read_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "llm.yaml", YAML)
    with caplog.at_level(logging.DEBUG, logger="llmkit.config"):
        load_settings(path, environ={"OPENAI_API_KEY": SECRET})
    text = caplog.text
    assert f"config file {path} (passed as config_path)" in text
    assert "from the environment: OPENAI_API_KEY" in text and SECRET not in text


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "OPENAI_"))}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**environ, **env}, timeout=60, check=True)  # fmt: skip


PER_REQUEST = """\
    import logging{setup}
    from llmkit import LLMClient
    from llmkit.testing import FakeLLMServer
    with FakeLLMServer() as server:
        client = LLMClient("openai", api_keys=["{key}"], base_url=server.openai_base_url)
        client.complete("hello")
        client.close()
    """


def test_basic_config_debug_shows_one_line_per_request() -> None:
    code = PER_REQUEST.format(setup="; logging.basicConfig(level=logging.DEBUG)", key=SECRET)
    lines = [line for line in _run(code).stderr.splitlines() if "llm call" in line]
    assert len(lines) == 1, lines
    line = lines[0]
    for part in ("DEBUG:llmkit.middleware", "gpt-4o-mini", "key=key-", "latency=", "tokens=", "attempts=1"):
        assert part in line
    assert SECRET not in _run(code).stderr


def test_log_level_setting_switches_llmkit_output_on() -> None:
    code = PER_REQUEST.format(setup="", key=SECRET)
    assert "llm call" not in _run(code).stderr  # nothing set: llmkit configures no logging
    shown = _run(code, LLM_LOG_LEVEL="info").stderr
    assert "INFO llmkit.middleware: llm call openai gpt-4o-mini" in shown and SECRET not in shown
    assert "llm call" not in _run(code, LLM_LOG_LEVEL="warning").stderr
    off = _run(code, LLM_LOG_LEVEL="debug", LLM_GLOBAL__ENABLE_LOGGING="false").stderr
    assert "llm call" not in off
