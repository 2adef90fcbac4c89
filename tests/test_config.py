"""Unit tests of llmkit.config and llmkit.config.settings: objects, validation, YAML, environment."""

from __future__ import annotations

import enum
import math
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from llmkit.config import (
    KEY_ENV_VARS,
    GlobalSettings,
    LLMConfig,
    PoolConfig,
    ProviderSettings,
    RateLimit,
    RateLimitConfig,
    RetryPolicy,
    Settings,
    load_settings,
    missing_key_message,
    normalize_provider,
    parse_key_list,
)
from llmkit.errors import ConfigurationError

SECRET = "sk-test-SECRET123"
LONG_SECRET = "sk-proj-SECRET" + "x" * 40  # as long as a real key

SEED_YAML = """\
global:
  default_provider: anthropic
  enable_logging: true
  log_level: INFO
  metrics_enabled: true

providers:
  anthropic:
    api_keys:
      - key-1
      - key-2
    models:
      - claude-3-5-haiku-20241022
    rate_limits:
      - requests_per_minute: 12
        input_tokens_per_minute: 5000
        output_tokens_per_minute: 2000
    settings:
      temperature: 0.7
      max_tokens: 4096
      timeout: 30
      max_retries: 3

pool:
  min_size: 1
  max_size: 4
  acquire_timeout: 30.0
  idle_timeout: 3600.0
  max_lifetime: 7200.0
"""


def write(tmp_path: Path, text: str, name: str = "llm.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(func: Any, *args: Any, **kwargs: Any) -> str:
    """Run ``func`` expecting a ConfigurationError (not a pydantic one); return its text."""
    with pytest.raises(ConfigurationError) as info:
        func(*args, **kwargs)
    assert not isinstance(info.value, ValidationError)
    assert info.value.__cause__ is None  # pydantic's text (which echoes input) is not chained
    return str(info.value)


# --- defaults -------------------------------------------------------------------


def test_defaults() -> None:
    assert LLMConfig().to_dict() == {}
    limit = RateLimit()
    assert limit.is_unlimited and limit.burst_seconds is None and limit.group is None  # adaptive burst
    assert limit.expected_output_tokens is None
    retry = RetryPolicy()
    assert (retry.max_retries, retry.base_delay, retry.max_delay, retry.multiplier) == (3, 1, 60, 2)
    assert retry.max_time is None and retry.jitter is True and retry.retry_malformed is False
    assert retry.retry_statuses == frozenset({408, 409, 429, 500, 502, 503, 504, 529})
    pool = PoolConfig()
    assert (pool.min_size, pool.max_size, pool.acquire_timeout) == (1, None, 30.0)
    assert (pool.idle_timeout, pool.max_lifetime, pool.max_workers) == (3600.0, 7200.0, None)
    assert (pool.failure_threshold, pool.circuit_cooldown) == (5, 30.0)
    settings = Settings()
    assert settings.providers == {} and settings.source is None
    assert settings.global_ == GlobalSettings()
    assert settings.global_.log_level is None and settings.default_provider() is None


def test_every_field_is_described() -> None:
    for model in (LLMConfig, RateLimit, RetryPolicy, PoolConfig, ProviderSettings,
                  GlobalSettings, Settings):
        assert model.__doc__
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"


def test_rate_limit_is_unlimited_only_without_limits() -> None:
    assert not RateLimit(max_concurrent=1).is_unlimited
    assert not RateLimit(tokens_per_minute=1).is_unlimited
    assert RateLimit(burst_seconds=1, expected_output_tokens=100).is_unlimited


def test_workers_for() -> None:
    """What the keys allow in flight: their max_concurrent, 4 for a key without one, in 4..64."""
    assert PoolConfig().workers_for(1) == 64
    assert PoolConfig().workers_for(3) == 192
    assert PoolConfig().workers_for(100) == 256
    assert PoolConfig().workers_for(4, [5, 5, 5, 5]) == 20
    assert PoolConfig().workers_for(2, [1, 1]) == 4
    assert PoolConfig().workers_for(3, [10, None]) == 74  # two limits: a group of two keys, one alone
    assert PoolConfig(max_workers=7).workers_for(100) == 7
    assert PoolConfig(max_workers=7).workers_for(1, [100]) == 7


# --- validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "kwargs", "expected"),
    [
        (LLMConfig, {"temperature": 2.5}, ["temperature = 2.5", "0 to 2"]),
        (LLMConfig, {"temperature": -0.1}, ["temperature = -0.1"]),
        (LLMConfig, {"max_tokens": 0}, ["max_tokens = 0", ">= 1"]),
        (LLMConfig, {"max_retries": -1}, ["max_retries = -1", "0: never retry"]),
        (LLMConfig, {"retry_delay": -1}, ["retry_delay = -1"]),
        (LLMConfig, {"timeout": 0}, ["timeout = 0", "> 0"]),
        (LLMConfig, {"timeout": math.inf}, ["timeout = inf", "finite"]),
        (LLMConfig, {"timeout": math.nan}, ["timeout = nan"]),
        (LLMConfig, {"max_tokens": "many"}, ["max_tokens = 'many'"]),
        (RateLimit, {"requests_per_minute": 0}, ["requests_per_minute = 0", "use None for no limit"]),
        (RateLimit, {"input_tokens_per_minute": -5}, ["input_tokens_per_minute = -5"]),
        (RateLimit, {"output_tokens_per_minute": 0}, ["output_tokens_per_minute", "None"]),
        (RateLimit, {"tokens_per_minute": 0}, ["tokens_per_minute = 0"]),
        (RateLimit, {"max_concurrent_requests": 0}, ["max_concurrent_requests = 0"]),
        (RateLimit, {"burst_seconds": 0}, ["burst_seconds = 0", "at most 60"]),
        (RateLimit, {"burst_seconds": 61}, ["burst_seconds = 61"]),
        (RateLimit, {"expected_output_tokens": 0}, ["expected_output_tokens = 0"]),
        (RateLimit, {"requests_per_minute": True}, ["requests_per_minute", "not True"]),
        (RateLimit, {"requests_per_minute": 1.5}, ["requests_per_minute = 1.5"]),
        (RetryPolicy, {"max_retries": -1}, ["max_retries = -1"]),
        (RetryPolicy, {"multiplier": 0.5}, ["multiplier = 0.5", ">= 1"]),
        (RetryPolicy, {"max_time": 0}, ["max_time = 0", "None: no overall limit"]),
        (RetryPolicy, {"max_delay": 0.5}, ["max_delay (0.5) is below base_delay (1.0)"]),
        (RetryPolicy, {"retry_statuses": {429, 999}}, ["retry_statuses", "999"]),
        (PoolConfig, {"acquire_timeout": -1}, ["acquire_timeout = -1", "None: wait forever"]),
        (PoolConfig, {"failure_threshold": 0}, ["failure_threshold = 0"]),
        (PoolConfig, {"max_workers": 0}, ["max_workers = 0"]),
        (PoolConfig, {"min_size": 5, "max_size": 2}, ["min_size (5) is above max_size (2)"]),
        (GlobalSettings, {"log_level": "verbose"}, ["log_level", "'verbose'", "DEBUG, INFO"]),
        (GlobalSettings, {"default_provider": "nope"}, ["default_provider", "Unknown provider"]),
        (ProviderSettings, {"base_url": "localhost:8000"}, ["base_url", "http://"]),
        (ProviderSettings, {"models": [""]}, ["models[0]"]),
    ],
)
def test_validation_errors_name_field_and_value(
    model: type, kwargs: dict[str, Any], expected: list[str]
) -> None:
    message = config_error(model, **kwargs)
    assert message.startswith(f"Invalid {model.__name__}")
    for text in expected:
        assert text in message


def test_unknown_field_suggests_the_right_one() -> None:
    message = config_error(RateLimit, requests_per_minut=5)
    assert "requests_per_minut: unknown setting" in message
    assert "Did you mean 'requests_per_minute'?" in message


def test_several_errors_are_listed() -> None:
    message = config_error(LLMConfig, temperature=9, timeout=-1)
    assert "\n  - temperature = 9" in message and "\n  - timeout = -1" in message


def test_model_validate_raises_configuration_error() -> None:
    message = config_error(RateLimit.model_validate, {"requests_per_minute": 0})
    assert "requests_per_minute = 0" in message


def test_log_level_is_normalized() -> None:
    assert GlobalSettings(log_level=" debug ").log_level == "DEBUG"


# --- aliases ----------------------------------------------------------------------


def test_rate_limit_aliases() -> None:
    assert RateLimitConfig is RateLimit
    limit = RateLimitConfig(requests_per_minute=20, max_concurrent_requests=5)
    assert limit.max_concurrent == 5
    assert RateLimit(max_concurrent=5) == limit.new(requests_per_minute=None)
    assert limit.new(max_concurrent_requests=2).max_concurrent == 2
    assert limit.new(max_concurrent=3).max_concurrent == 3


def test_retry_delay_alias() -> None:
    assert RetryPolicy(retry_delay=0.5).base_delay == 0.5
    assert RetryPolicy().new(retry_delay=2).base_delay == 2


@pytest.mark.parametrize(
    ("name", "canonical"),
    [("gemini", "google"), ("Google", "google"), (" OpenAI ", "openai"), ("ollama", "local"),
     ("vllm", "local"), ("llamacpp", "local"), ("groq", "groq")],
)
def test_provider_aliases(name: str, canonical: str) -> None:
    assert normalize_provider(name) == canonical


def test_provider_enum_members_are_accepted() -> None:
    class Provider(str, enum.Enum):
        ANTHROPIC = "anthropic"
        GEMINI = "gemini"

    assert normalize_provider(Provider.ANTHROPIC) == "anthropic"
    assert normalize_provider(Provider.GEMINI) == "google"


def test_unknown_provider() -> None:
    message = config_error(normalize_provider, "antrhopic")
    assert "Unknown provider 'antrhopic'" in message and "Did you mean 'anthropic'?" in message


# --- immutability and .new() --------------------------------------------------------


def test_new_returns_a_validated_copy() -> None:
    base = RateLimit(requests_per_minute=10)
    changed = base.new(input_tokens_per_minute=1000)
    assert type(changed) is RateLimit and changed is not base
    assert base.input_tokens_per_minute is None and changed.requests_per_minute == 10
    assert "requests_per_minute = 0" in config_error(base.new, requests_per_minute=0)
    assert "unknown setting" in config_error(base.new, rpm=3)


def test_objects_are_immutable() -> None:
    limit = RateLimit(requests_per_minute=10)
    with pytest.raises(AttributeError, match=r"immutable: use \.new\(requests_per_minute="):
        limit.requests_per_minute = 5
    with pytest.raises(AttributeError):
        del limit.requests_per_minute
    assert hash(limit) == hash(RateLimit(requests_per_minute=10))


def test_new_on_every_object() -> None:
    assert PoolConfig().new(acquire_timeout=None).acquire_timeout is None
    assert RetryPolicy().new(max_retries=0).max_retries == 0
    assert GlobalSettings().new(log_level="error").log_level == "ERROR"
    assert ProviderSettings().new(models="gpt-4o-mini").default_model == "gpt-4o-mini"
    assert Settings().new(global_={"default_provider": "groq"}).default_provider() == "groq"


def test_objects_pickle() -> None:
    settings = load_settings(environ={"OPENAI_API_KEYS": "k1,k2"})
    assert pickle.loads(pickle.dumps(settings)) == settings


# --- LLMConfig ---------------------------------------------------------------------


def test_to_dict_feeds_complete() -> None:
    def complete(
        messages: Any, *, temperature: float | None = None, max_tokens: int | None = None,
        max_retries: int | None = None, retry_delay: float | None = None,
        timeout: float | None = None, system_prompt: str | None = None,
    ) -> dict[str, Any]:
        return {"temperature": temperature, "max_tokens": max_tokens, "timeout": timeout,
                "max_retries": max_retries, "retry_delay": retry_delay,
                "system_prompt": system_prompt}

    config = LLMConfig(temperature=0.7, max_tokens=2000, max_retries=3, retry_delay=1.0,
                       timeout=30.0, system_prompt="You are a technical assistant")
    assert complete(["hi"], **config.to_dict()) == config.to_dict()
    assert LLMConfig(temperature=0).to_dict() == {"temperature": 0.0}  # 0 is kept, None dropped


def test_merged() -> None:
    base = LLMConfig(temperature=0.7, max_tokens=100)
    merged = base.merged(LLMConfig(max_tokens=50, timeout=5))
    assert merged.to_dict() == {"temperature": 0.7, "max_tokens": 50, "timeout": 5.0}
    assert base.merged(None) is base and base.merged(LLMConfig()) == base


# --- ProviderSettings ----------------------------------------------------------------


def test_rate_limit_for() -> None:
    one = RateLimit(requests_per_minute=1)
    two = RateLimit(requests_per_minute=2)
    assert ProviderSettings(api_keys=["a", "b"]).rate_limit_for(1) is None
    shared = ProviderSettings(api_keys=["a", "b"], rate_limits=[one])
    assert shared.rate_limit_for(0) == shared.rate_limit_for(1) == one
    per_key = ProviderSettings(api_keys=["a", "b"], rate_limits=[one, two])
    assert (per_key.rate_limit_for(0), per_key.rate_limit_for(1)) == (one, two)
    keyless = ProviderSettings(rate_limits=[one, two])  # keys may come from LLMClient later
    assert "key #3 has none" in config_error(keyless.rate_limit_for, 2)
    with pytest.raises(IndexError):
        per_key.rate_limit_for(-1)


def test_rate_limits_must_fit_keys() -> None:
    message = config_error(ProviderSettings, api_keys=["a", "b"], rate_limits=[{}, {}, {}])
    assert "rate_limits has 3 entries but there are 2 API keys" in message


def test_lenient_shapes() -> None:
    provider = ProviderSettings(api_keys=" k1, k2 ", models="m", rate_limits={"max_concurrent": 2})
    assert provider.key_values() == ["k1", "k2"]
    assert provider.models == ("m",) and provider.rate_limits == (RateLimit(max_concurrent=2),)
    empty = ProviderSettings(api_keys=None, models=None, rate_limits=None, settings=None)
    assert empty == ProviderSettings()


def test_repeated_or_blank_keys_are_refused() -> None:
    assert "key #3 repeats key #1" in config_error(ProviderSettings, api_keys=["a", "b", "a"])
    assert "key #2 is empty" in config_error(ProviderSettings, api_keys=["a", " "])


def test_settings_provider_lookup() -> None:
    settings = Settings(providers={"gemini": {"api_keys": ["g1"]}, "ollama": None})
    assert set(settings.providers) == {"google", "local"}
    assert settings.provider("GEMINI") is settings.providers["google"]
    assert settings.api_keys("google") == ["g1"]
    assert settings.provider("openai") == ProviderSettings()
    assert "Unknown provider 'nope'" in config_error(settings.provider, "nope")
    assert "are both google" in config_error(Settings, providers={"gemini": {}, "google": {}})


@pytest.mark.parametrize(
    ("providers", "default", "expected"),
    [
        ({}, None, None),
        ({"groq": {"api_keys": ["q"]}, "anthropic": {"api_keys": ["a"]}}, None, "anthropic"),
        ({"openai": {}, "groq": {"api_keys": ["q"]}}, None, "groq"),
        ({"local": {"base_url": "http://localhost:11434/v1"}}, None, "local"),
        ({"openai": {"api_keys": ["o"]}}, "gemini", "google"),
    ],
)
def test_default_provider(providers: dict[str, Any], default: str | None, expected: str) -> None:
    settings = Settings(providers=providers, global_={"default_provider": default})
    assert settings.default_provider() == expected


# --- loading: YAML ---------------------------------------------------------------------


def test_load_seed_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, SEED_YAML)
    settings = load_settings(path, environ={})
    assert settings.source == str(path)
    assert settings.global_ == GlobalSettings(default_provider="anthropic", log_level="INFO")
    anthropic = settings.provider("anthropic")
    assert anthropic.key_values() == ["key-1", "key-2"] == settings.api_keys("anthropic")
    assert anthropic.default_model == "claude-3-5-haiku-20241022"
    limit = RateLimit(requests_per_minute=12, input_tokens_per_minute=5000,
                      output_tokens_per_minute=2000)
    assert anthropic.rate_limit_for(0) == anthropic.rate_limit_for(1) == limit
    assert anthropic.settings == LLMConfig(temperature=0.7, max_tokens=4096, timeout=30,
                                           max_retries=3)
    assert settings.pool == PoolConfig(max_size=4)
    assert settings.default_provider() == "anthropic"


def test_no_file_and_no_environment() -> None:
    assert load_settings(environ={}) == Settings()


def test_empty_file_and_empty_sections(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), environ={}).providers == {}
    text = "global:\nproviders:\n  anthropic:\n    settings:\n    api_keys:\npool:\n"
    settings = load_settings(write(tmp_path, text), environ={})
    assert settings.provider("anthropic") == ProviderSettings()


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "global: {log_level: warning}")
    assert load_settings(environ={"LLM_CONFIG_PATH": str(path)}).global_.log_level == "WARNING"
    other = write(tmp_path, "global: {log_level: error}", "other.yaml")
    chosen = load_settings(other, environ={"LLM_CONFIG_PATH": str(path)})
    assert chosen.global_.log_level == "ERROR" and chosen.source == str(other)


def test_missing_file_named_by_variable(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    message = config_error(load_settings, environ={"LLM_CONFIG_PATH": missing})
    assert missing in message and "named by LLM_CONFIG_PATH" in message
    assert "does not exist" in message and "unset LLM_CONFIG_PATH" in message
    message = config_error(load_settings, missing, environ={})
    assert missing in message and "passed as config_path" in message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert "Cannot read config file" in config_error(load_settings, tmp_path, environ={})


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"providers:\n  openai:\n    api_keys: [{SECRET}\n    models: [a]\n")
    message = config_error(load_settings, path, environ={})
    assert str(path) in message and "not valid YAML" in message and "line " in message
    assert SECRET not in message


def test_yaml_line_number(tmp_path: Path) -> None:
    path = write(tmp_path, "global:\n  log_level: INFO\n bad: indentation\n")
    assert "line 3" in config_error(load_settings, path, environ={})


def test_safe_load_refuses_python_tags(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write(tmp_path, f'global: !!python/object/apply:os.system ["touch {marker}"]\n')
    message = config_error(load_settings, path, environ={})
    assert "safe_load" in message and str(path) in message
    assert not marker.exists()
    path = write(tmp_path, "pool: !!python/object:llmkit.config.PoolConfig {}\n")
    assert "python/object" in config_error(load_settings, path, environ={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", ["must hold a mapping", "it holds a list"]),
        ("providers: [openai]\n", ["providers", "valid dictionary"]),
        ("providers:\n  anthropc: {}\n", ["unknown provider section 'anthropc'",
                                          "Did you mean 'anthropic'?"]),
        ("globals: {}\n", ["globals: unknown setting", "Did you mean 'global'?"]),
        ("pool: {acquire_timeout: soon}\n", ["pool.acquire_timeout = 'soon'"]),
        ("providers:\n  openai:\n    rate_limits: [{requests_per_minute: 0}]\n",
         ["providers.openai.rate_limits[0].requests_per_minute = 0", "use None for no limit"]),
        ("providers:\n  groq:\n    settings: {temperature: 7}\n",
         ["providers.groq.settings.temperature = 7"]),
        ("global: {log_level: loud}\n", ["global.log_level", "'loud' is not a log level"]),
        ("providers:\n  openai:\n    api_keys: [a, b]\n    rate_limits: [{}, {}, {}]\n",
         ["providers.openai: rate_limits has 3 entries but there are 2 API keys"]),
    ],
)
def test_bad_yaml_content_names_file_and_place(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = write(tmp_path, text)
    message = config_error(load_settings, path, environ={})
    assert str(path) in message
    for part in expected:
        assert part in message


# --- loading: environment -----------------------------------------------------------------


def test_environment_keys() -> None:
    env = {"OPENAI_API_KEY": "o1", "ANTHROPIC_API_KEYS": " a1, a2,,a1 ,", "GROQ_API_KEY": "q1",
           "GEMINI_API_KEY": "g1"}
    settings = load_settings(environ=env)
    assert settings.api_keys("openai") == ["o1"]
    assert settings.api_keys("anthropic") == ["a1", "a2"]
    assert settings.api_keys("groq") == ["q1"]
    assert settings.api_keys("gemini") == ["g1"]
    assert settings.default_provider() == "openai"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ANTHROPIC_API_KEY": "single", "ANTHROPIC_API_KEYS": "p1,p2"}, ["p1", "p2"]),
        ({"ANTHROPIC_API_KEY": "single", "ANTHROPIC_API_KEYS": " , "}, ["single"]),
        ({"ANTHROPIC_API_KEY": "s1,s2"}, ["s1", "s2"]),
        ({"ANTHROPIC_API_KEY": ""}, []),
    ],
)
def test_pool_variable_wins(env: dict[str, str], expected: list[str]) -> None:
    assert load_settings(environ=env).api_keys("anthropic") == expected


def test_google_variables_precedence() -> None:
    env = {"GOOGLE_API_KEY": "g", "GEMINI_API_KEY": "m"}
    assert load_settings(environ=env).api_keys("google") == ["g"]
    env["GEMINI_API_KEYS"] = "m1,m2"
    assert load_settings(environ=env).api_keys("google") == ["m1", "m2"]
    env["GOOGLE_API_KEYS"] = "g1,g2"
    assert load_settings(environ=env).api_keys("google") == ["g1", "g2"]
    assert KEY_ENV_VARS["google"][0] == "GOOGLE_API_KEYS" and KEY_ENV_VARS["local"] == ()


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, SEED_YAML)
    env = {"ANTHROPIC_API_KEYS": "env-1,env-2,env-3", "LLM_LOG_LEVEL": "debug",
           "LLM_DEFAULT_PROVIDER": "Gemini", "OPENAI_API_KEY": "o"}
    settings = load_settings(path, environ=env)
    anthropic = settings.provider("anthropic")
    assert anthropic.key_values() == ["env-1", "env-2", "env-3"]
    assert anthropic.default_model == "claude-3-5-haiku-20241022"  # the rest of the file stays
    assert anthropic.rate_limit_for(2) == anthropic.rate_limits[0]
    assert settings.global_.log_level == "DEBUG"
    assert settings.default_provider() == "google"
    assert settings.global_.metrics_enabled is True and settings.pool.max_size == 4
    assert settings.api_keys("openai") == ["o"]


def test_environment_keys_must_fit_the_file_rate_limits(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  openai:\n    rate_limits: [{}, {}]\n")
    assert load_settings(path, environ={}).provider("openai").rate_limits  # no keys: fine
    message = config_error(load_settings, path,
                           environ={"OPENAI_API_KEYS": "a,b,c", "OPENAI_API_KEY": SECRET})
    assert "OPENAI_API_KEYS" in message and str(path) in message
    assert "rate_limits has 2 entries but there are 3 API keys" in message


@pytest.mark.parametrize("level", ["debug", "Info", "WARNING", " error ", "critical"])
def test_log_level_variable(level: str) -> None:
    settings = load_settings(environ={"LLM_LOG_LEVEL": level})
    assert settings.global_.log_level == level.strip().upper()


def test_bad_log_level_variable() -> None:
    message = config_error(load_settings, environ={"LLM_LOG_LEVEL": "verbose"})
    assert "LLM_LOG_LEVEL='verbose'" in message and "DEBUG, INFO, WARNING, ERROR, CRITICAL" in message


def test_bad_default_provider_variable() -> None:
    message = config_error(load_settings, environ={"LLM_DEFAULT_PROVIDER": "opneai"})
    assert "LLM_DEFAULT_PROVIDER" in message and "Did you mean 'openai'?" in message


def test_missing_key_message() -> None:
    assert missing_key_message("anthropic") == (
        "No API key for anthropic: set ANTHROPIC_API_KEY (or ANTHROPIC_API_KEYS=key1,key2 "
        "for a pool), pass api_keys=[...] to LLMClient, or list them under "
        "providers.anthropic.api_keys in the YAML file (config/llm.yaml or the file named by "
        "LLM_CONFIG_PATH)."
    )
    google = missing_key_message("gemini")
    assert "GOOGLE_API_KEY or GEMINI_API_KEY" in google and "GOOGLE_API_KEYS=" in google
    assert "needs no API key" in missing_key_message("ollama")


# --- secrets ------------------------------------------------------------------------------------


def _outputs(settings: Settings) -> list[str]:
    provider = settings.provider("anthropic")
    return [repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump()),
            repr(provider), str(provider), provider.model_dump_json(),
            settings.model_dump_json(by_alias=True)]


def test_keys_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, f"providers:\n  anthropic:\n    api_keys: [{SECRET}-file]\n")
    for settings in (load_settings(path, environ={}),
                     load_settings(environ={"ANTHROPIC_API_KEYS": f"{SECRET},other"})):
        assert any(SECRET in key for key in settings.api_keys("anthropic"))
        for text in _outputs(settings):
            assert SECRET not in text


@pytest.mark.parametrize(
    "text",
    [
        f"providers:\n  anthropic:\n    api_keys: [{SECRET}, k2]\n    rate_limits: [{{}}, {{}}, {{}}]\n",
        f"providers:\n  anthropic:\n    api_keys: [{SECRET}, {SECRET}]\n",
        f"providers:\n  anthropic:\n    api_key: {SECRET}\n",
        f"providers:\n  anthropic:\n    api_keys: {{a: {SECRET}}}\n",
        f"providers:\n  anthropic: {LONG_SECRET}\n",
        f"providers:\n  anthropic:\n    models: [{{x: {SECRET}}}]\n",
        f"global: {LONG_SECRET}\n",
        f"{LONG_SECRET}: 1\n",
        f"providers: {{{LONG_SECRET}: {{}}}}\n",
        f"pool:\n  {LONG_SECRET}: 1\n",
        f"providers:\n  anthropic:\n    api_keys: [{SECRET}]\n  - broken\n",
    ],
)
def test_keys_never_in_errors(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    message = config_error(load_settings, path, environ={})
    for secret in (SECRET, LONG_SECRET):
        assert secret not in message and secret not in repr(ConfigurationError(message))


def test_keys_never_in_direct_errors() -> None:
    for kwargs in ({"api_keys": [SECRET, SECRET]}, {"api_keys": [SECRET, 5]},
                   {"api_key": SECRET}, {"api_keys": SECRET, "rate_limits": [{}, {}]},
                   {LONG_SECRET: 1}, {"models": [LONG_SECRET, {}]}):
        message = config_error(ProviderSettings, **kwargs)
        assert SECRET not in message and LONG_SECRET not in message
    for bad in (LONG_SECRET, {"x": SECRET}):
        message = config_error(normalize_provider, bad)
        assert SECRET not in message and LONG_SECRET not in message
    message = config_error(load_settings, environ={"LLM_DEFAULT_PROVIDER": LONG_SECRET})
    assert LONG_SECRET not in message


# --- properties ------------------------------------------------------------------------------------

_KEY = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters="-_."),
               min_size=1, max_size=12)
_SEPARATOR = st.sampled_from([",", ", ", " ,", ",,", "\n", " , ", ",\t"])


@given(keys=st.lists(_KEY, max_size=6), separators=st.data())
def test_parse_key_list_round_trip(keys: list[str], separators: st.DataObject) -> None:
    text = separators.draw(_SEPARATOR)
    for key in keys:
        text += key + separators.draw(_SEPARATOR)
    assert parse_key_list(text) == list(dict.fromkeys(keys))


@given(st.text(max_size=40))
def test_parse_key_list_items_are_clean(text: str) -> None:
    keys = parse_key_list(text)
    assert len(keys) == len(set(keys))
    for key in keys:
        assert key and "," not in key and not any(c.isspace() for c in key)


_FIELDS = ["requests_per_minute", "input_tokens_per_minute", "output_tokens_per_minute",
           "tokens_per_minute", "max_concurrent", "max_concurrent_requests",
           "expected_output_tokens"]


@given(field=st.sampled_from(_FIELDS), value=st.integers(min_value=1, max_value=10**9))
def test_rate_limit_accepts_positive(field: str, value: int) -> None:
    limit = RateLimit(**{field: value})
    assert value in limit.model_dump().values()
    assert limit.is_unlimited == (field == "expected_output_tokens")


@given(field=st.sampled_from(_FIELDS), value=st.integers(max_value=0))
def test_rate_limit_refuses_zero_and_negative(field: str, value: int) -> None:
    with pytest.raises(ConfigurationError, match=f"{field} = {value}"):
        RateLimit(**{field: value})


@given(st.floats(min_value=0, max_value=60, exclude_min=True))
def test_burst_seconds_range(seconds: float) -> None:
    assert RateLimit(burst_seconds=seconds).burst_seconds == seconds


# --- import cost -------------------------------------------------------------------------------------


def test_import_does_not_load_yaml_or_pydantic_settings() -> None:
    code = ("import sys, llmkit.config; from llmkit.config import RateLimit; "
            "print(sorted(m for m in ('yaml', 'pydantic_settings', 'llmkit.config.settings') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_pool_fields_llmkit_ignores_are_named_once_when_set(caplog):
    from llmkit.config import PoolConfig, models

    models._warned_fields.clear()
    with caplog.at_level("WARNING", logger="llmkit.config"):
        PoolConfig()  # nothing set: nothing said
        assert not caplog.records
        PoolConfig(min_size=2, max_size=10)
        PoolConfig(max_size=20)  # said once per process
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert "PoolConfig.max_size is accepted for compatibility and has no effect" in said[0]
    assert "RateLimit(max_concurrent=...)" in said[0] and "PoolConfig.min_size" in said[1]
