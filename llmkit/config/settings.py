"""Settings: the objects read from the YAML file and the environment, and the provider names.

* :class:`Settings` (with :class:`ProviderSettings` and :class:`GlobalSettings`):
  everything read from the YAML file, secret files and the environment;
* the provider names, their aliases and their API-key variables
  (:data:`KEY_ENV_VARS`), read off the adapters, and :func:`missing_key_message`.

They are read by :func:`llmkit.config.sources.load_settings` (pydantic-settings,
imported only when settings are loaded).

:mod:`llmkit.config` re-exports every public name here (on first access).
``Settings()`` itself reads nothing: it is the library's defaults.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from llmkit.config.checks import base_url_problem, count_of
from llmkit.config.models import (
    ConfigModel,
    LLMConfig,
    PoolConfig,
    RateLimit,
    safe_repr,
)
from llmkit.errors import ConfigurationError
from llmkit.providers import normalize_provider

__all__ = [
    "CONFIG_PATH_VAR", "DEFAULT_CONFIG_FILE", "KEY_ENV_VARS", "LOG_LEVELS", "PROVIDERS",
    "PROVIDER_ALIASES", "GlobalSettings", "ProviderSettings", "Settings",
    "missing_key_message", "normalize_provider", "parse_key_list",
]  # fmt: skip

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())


def _derived_tables() -> tuple[tuple[str, ...], Mapping[str, str], Mapping[str, tuple[str, ...]]]:
    """PROVIDERS, PROVIDER_ALIASES and KEY_ENV_VARS, read off the adapters (llmkit.providers)."""
    from llmkit.providers import adapters

    found = adapters()
    aliases = {alias: a.name for a in found for alias in a.aliases}
    return (tuple(a.name for a in found), MappingProxyType(aliases),
            MappingProxyType({a.name: tuple(a.key_env_vars) for a in found}))


PROVIDERS, PROVIDER_ALIASES, KEY_ENV_VARS = _derived_tables()
"""``PROVIDERS``: the canonical provider names, in the order a default provider is looked for.

``PROVIDER_ALIASES``: other accepted names (YAML sections, arguments,
LLM_DEFAULT_PROVIDER) and the provider each names.

``KEY_ENV_VARS``: the environment variables holding each provider's API keys,
in precedence order. The first variable that yields at least one key wins and
the rest are ignored: a pool variable ``*_API_KEYS`` beats a single
``*_API_KEY``, so a stray ``OPENAI_API_KEY`` exported for other tools never
joins an explicit pool. Any of them may hold a comma-separated list. ``local``
needs no key. All three are read off the adapters' class attributes (``name``,
``aliases``, ``key_env_vars``), the one place they are declared.
"""

LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

CONFIG_PATH_VAR = "LLM_CONFIG_PATH"
DEFAULT_CONFIG_FILE = os.path.join("config", "llm.yaml")
"""The spec's location of the YAML file, relative to the working directory."""


# --- names ---------------------------------------------------------------------


def parse_key_list(value: str) -> list[str]:
    """Split a comma-separated key list; whitespace is stripped, empty items dropped.

    Whitespace (spaces, newlines) separates keys too, since no API key holds
    any. A repeated key is dropped, keeping the first: "k1, k2,,k1" -> [k1, k2].
    """
    keys: list[str] = []
    for item in re.split(r"[,\s]+", value):
        if item and item not in keys:
            keys.append(item)
    return keys


def missing_key_message(provider: object) -> str:
    """Say exactly how to give ``provider`` an API key (the text of 'no key' errors)."""
    name = normalize_provider(provider)
    variables = KEY_ENV_VARS[name]
    if not variables:
        return (
            f"The {name} provider needs no API key: point it at your server with "
            f"base_url=... or providers.{name}.base_url in the YAML file."
        )
    singles = " or ".join(v for v in variables if v.endswith("_KEY"))
    pool = next(v for v in variables if v.endswith("_KEYS"))
    return (
        f"No API key for {name}: set {singles} (or {pool}=key1,key2 for a pool), "
        f"pass api_keys=[...] to LLMClient, or list them under providers.{name}.api_keys "
        f"in the YAML file ({DEFAULT_CONFIG_FILE} or the file named by {CONFIG_PATH_VAR})."
    )


# --- the settings objects ---------------------------------------------------------


_Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class ProviderSettings(ConfigModel, init=False):
    """One ``providers.<name>:`` section: keys, models, limits and defaults."""

    api_keys: tuple[SecretStr, ...] = Field(
        default=(), description="API keys, never shown (a comma-separated string is accepted). "
        "Empty: keys come from the environment or LLMClient(api_keys=...); local needs none.")
    models: tuple[_Name, ...] = Field(
        default=(),
        description="Model names; the first is the default. Empty: the client's default.")
    rate_limits: tuple[RateLimit, ...] = Field(
        default=(), description="One RateLimit for all keys, or one per key in key order. "
        "Empty: no client-side limits.")
    settings: LLMConfig = Field(
        default=LLMConfig(),
        description="Request defaults for this provider; None fields: the client's defaults.")
    base_url: str | None = Field(
        default=None, description="Another server for this API (a proxy, a local model server), "
        "an http(s) URL. None: the provider's own endpoint.")

    @field_validator("api_keys", "models", "rate_limits", "settings", mode="before")
    @classmethod
    def _lenient_shapes(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name
        if value is None:  # an empty YAML entry: the default
            return LLMConfig() if name == "settings" else ()
        if isinstance(value, str) and name == "api_keys":  # "k1,k2", as in the environment
            return [k for k in re.split(r"[,\s]+", value) if k]
        if isinstance(value, str) and name == "models":
            return [value]
        if isinstance(value, Mapping) and name == "rate_limits":  # one entry for all keys
            return [value]
        return value

    @field_validator("api_keys")
    @classmethod
    def _clean_keys(cls, keys: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        seen: dict[str, int] = {}
        for index, key in enumerate(keys):
            value = key.get_secret_value().strip()
            if not value or any(c.isspace() for c in value):
                raise ValueError(
                    f"key #{index + 1} is empty or holds spaces; give each key as one item")
            if value in seen:
                raise ValueError(
                    f"key #{index + 1} repeats key #{seen[value] + 1}; list each key once "
                    "(a key listed twice would be driven at twice its limits)")
            seen[value] = index
        return tuple(SecretStr(value) for value in seen)

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        problem = None if url is None else base_url_problem(url)
        if problem is not None:
            raise ValueError(f"base_url {problem}")
        return url.strip() if url is not None else None

    @model_validator(mode="after")
    def _limits_fit_keys(self) -> ProviderSettings:
        n_limits, n_keys = len(self.rate_limits), len(self.api_keys)
        if n_keys and n_limits not in (0, 1, n_keys):
            raise ValueError(
                f"rate_limits has {count_of(n_limits, 'entry', 'entries')} but there are "
                f"{count_of(n_keys, 'API key')}: give "
                f"one entry for all keys, or exactly {n_keys}, one per key in key order")
        return self

    def key_values(self) -> list[str]:
        """The API keys in clear text, for building SDK clients. Never log them."""
        return [key.get_secret_value() for key in self.api_keys]

    @property
    def default_model(self) -> str | None:
        """The first of ``models``, or None."""
        return self.models[0] if self.models else None

    def rate_limit_for(self, index: int) -> RateLimit | None:
        """The RateLimit of key number ``index`` (from 0); None when none is set.

        A single entry applies to every key. With one entry per key, an index
        past the list (keys given elsewhere than here) is a ConfigurationError.
        """
        if index < 0:
            raise IndexError(f"key index {index} is negative")
        if len(self.rate_limits) <= 1:
            return self.rate_limits[0] if self.rate_limits else None
        if index < len(self.rate_limits):
            return self.rate_limits[index]
        raise ConfigurationError(
            f"rate_limits has {count_of(len(self.rate_limits), 'entry', 'entries')}, one per key, but key "
            f"#{index + 1} has none: give one entry for all keys, or one per key")


class GlobalSettings(ConfigModel, init=False):
    """The YAML ``global:`` section."""

    default_provider: str | None = Field(
        default=None, description="Provider used when none is named (a name or alias). None: the "
        "first of openai, anthropic, google, groq that has keys, else local if configured.")
    enable_logging: bool = Field(
        default=True, description="Log one line per request (key fingerprint, model, latency, "
        "tokens, attempts; never a key) through the 'llmkit' loggers. False: no request lines.")
    log_level: str | None = Field(
        default=None, description="DEBUG, INFO, WARNING, ERROR or CRITICAL, any case (LLM_LOG_LEVEL "
        "overrides it): the level of the 'llmkit' logger, and a stderr handler when the program "
        "has set up no logging. None: llmkit leaves logging to the program (docs/configuration.md).")
    metrics_enabled: bool = Field(
        default=True, description="Collect usage, latency and cost metrics. False: collect none.")

    @field_validator("default_provider")
    @classmethod
    def _known_provider(cls, name: str | None) -> str | None:
        try:
            return None if name is None else normalize_provider(name)
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, level: str | None) -> str | None:
        if level is None:
            return None
        if level.strip().upper() not in LOG_LEVELS:
            raise ValueError(f"{level!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
        return level.strip().upper()


class Settings(ConfigModel, init=False):
    """Everything read from the YAML file and the environment (see load_settings)."""

    global_: GlobalSettings = Field(
        default=GlobalSettings(), validation_alias=AliasChoices("global", "global_"),
        serialization_alias="global", description="The YAML global: section.")
    providers: dict[str, ProviderSettings] = Field(
        default_factory=dict, description="Provider sections by canonical name (aliases "
        "such as gemini are folded in); read-only. Absent: empty settings.")
    pool: PoolConfig = Field(default=PoolConfig(), description="The YAML pool: section.")
    source: str | None = Field(
        default=None, description="The YAML file these settings came from. None: no file.")

    @field_validator("global_", "pool", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("providers", mode="before")
    @classmethod
    def _canonical_names(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            return value  # pydantic reports the wrong type
        sections: dict[str, Any] = {}
        spelt: dict[str, str] = {}
        for raw_name, section in value.items():
            try:
                name = normalize_provider(raw_name)
            except ConfigurationError as exc:
                known = exc.message.split(". ", 1)[1]
                raise ValueError(
                    f"unknown provider section {safe_repr(raw_name)}. {known}") from None
            if name in sections:
                raise ValueError(f"sections {spelt[name]!r} and {raw_name!r} are both {name}; "
                                 "keep one")
            sections[name], spelt[name] = ({} if section is None else section), str(raw_name)
        return sections

    def provider(self, name: object) -> ProviderSettings:
        """The settings of provider ``name`` (aliases accepted); empty when absent."""
        found = self.providers.get(normalize_provider(name))
        return ProviderSettings() if found is None else found

    def api_keys(self, name: object) -> list[str]:
        """Provider ``name``'s API keys in clear text. Never log them."""
        return self.provider(name).key_values()

    def default_provider(self) -> str | None:
        """global.default_provider, else the first provider in :data:`PROVIDERS` order
        (openai, anthropic, google, groq) that has keys, else the first keyless one
        (local) that has a section, else None."""
        from llmkit.providers import provider_class

        if self.global_.default_provider:
            return self.global_.default_provider
        keyless = [name for name in PROVIDERS if not provider_class(name).requires_key]
        for name in PROVIDERS:
            if name not in keyless and self.provider(name).api_keys:
                return name
        return next((name for name in keyless if name in self.providers), None)


# --- loading ------------------------------------------------------------------------
