"""Settings and where they come from: the YAML file, the environment, the provider table.

* :class:`Settings` (with :class:`ProviderSettings` and :class:`GlobalSettings`):
  everything read from the YAML file and the environment;
* the provider names, their aliases and their API-key variables
  (:data:`KEY_ENV_VARS`, the one table of them), :func:`missing_key_message`;
* :func:`load_settings`, which reads the file and the environment.

:mod:`llmkit.config` re-exports every public name here (on first access).

Precedence, lowest first: the library's defaults, the YAML file, the
environment. The file is ``config_path``, else ``$LLM_CONFIG_PATH``, else none.
It is read with ``yaml.safe_load`` only.

Environment variables (empty ones count as unset):

* ``OPENAI_API_KEY(S)``, ``ANTHROPIC_API_KEY(S)``, ``GROQ_API_KEY(S)``,
  ``GOOGLE_API_KEY(S)`` and ``GEMINI_API_KEY(S)`` (both for google): the keys,
  comma-separated; which one wins is in :data:`KEY_ENV_VARS`;
* ``LLM_CONFIG_PATH``: the YAML file;
* ``LLM_LOG_LEVEL``: DEBUG, INFO, WARNING, ERROR or CRITICAL, any case;
* ``LLM_DEFAULT_PROVIDER``: a provider name or alias.

Keys from the environment replace (not extend) the file's keys for that
provider; the rest of the provider's section (models, rate_limits, ...) stays.

pydantic-settings is deliberately not used: importing it costs 160-270 ms,
more than the rest of llmkit; it cannot read an injected mapping (``environ=``)
without private API; and its errors name fields rather than variables. The
dozen variables above are read directly instead.
"""

from __future__ import annotations

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

from llmkit.config.models import (
    ConfigModel,
    LLMConfig,
    PoolConfig,
    RateLimit,
    build,
    closest,
    evolve,
    safe_repr,
)
from llmkit.errors import ConfigurationError

__all__ = [
    "KEY_ENV_VARS", "LOG_LEVELS", "PROVIDERS", "PROVIDER_ALIASES", "GlobalSettings",
    "ProviderSettings", "Settings", "load_settings", "missing_key_message",
    "normalize_provider", "parse_key_list",
]


PROVIDERS: tuple[str, ...] = ("openai", "anthropic", "google", "groq", "local")
"""The canonical provider names; the first four are tried in order for a default."""

PROVIDER_ALIASES: Mapping[str, str] = MappingProxyType({
    "claude": "anthropic",
    "gemini": "google",
    "ollama": "local",
    "vllm": "local",
    "llamacpp": "local",
    "llama.cpp": "local",
    "lmstudio": "local",
})
"""Other accepted names (YAML sections, arguments, LLM_DEFAULT_PROVIDER)."""

KEY_ENV_VARS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "openai": ("OPENAI_API_KEYS", "OPENAI_API_KEY"),
    "anthropic": ("ANTHROPIC_API_KEYS", "ANTHROPIC_API_KEY"),
    "google": ("GOOGLE_API_KEYS", "GEMINI_API_KEYS", "GOOGLE_API_KEY", "GEMINI_API_KEY"),
    "groq": ("GROQ_API_KEYS", "GROQ_API_KEY"),
    "local": (),
})
"""Environment variables holding each provider's API keys, in precedence order.

The first variable that yields at least one key wins and the rest are ignored:
a pool variable ``*_API_KEYS`` beats a single ``*_API_KEY``, so a stray
``OPENAI_API_KEY`` exported for other tools never joins an explicit pool. Any
of them may hold a comma-separated list. ``local`` needs no key.
"""

LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_CONFIG_PATH_VAR = "LLM_CONFIG_PATH"
_LOG_LEVEL_VAR = "LLM_LOG_LEVEL"
_DEFAULT_PROVIDER_VAR = "LLM_DEFAULT_PROVIDER"


# --- names ---------------------------------------------------------------------


def _known_providers() -> str:
    aliases: dict[str, list[str]] = {}
    for alias, name in PROVIDER_ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    return ", ".join(
        f"{name} (alias {', '.join(aliases[name])})" if name in aliases else name
        for name in PROVIDERS
    )


def normalize_provider(name: object) -> str:
    """Return the canonical provider name for ``name`` (a str or a str enum member).

    Case and surrounding spaces are ignored; aliases map to their provider
    ("gemini" -> "google", "ollama" -> "local"). An unknown name raises
    ConfigurationError listing the known ones.
    """
    raw = getattr(name, "value", name)
    key = raw.strip().lower() if isinstance(raw, str) else ""
    if key in PROVIDERS:
        return key
    if key in PROVIDER_ALIASES:
        return PROVIDER_ALIASES[key]
    raise ConfigurationError(
        f"Unknown provider {safe_repr(raw)}. Known providers: {_known_providers()}."
        + closest(key, [*PROVIDERS, *PROVIDER_ALIASES])
    )


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
        f"in the YAML file named by {_CONFIG_PATH_VAR}."
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
        if url is not None and not url.strip().startswith(("http://", "https://")):
            raise ValueError(f"base_url {safe_repr(url)} must start with http:// or https://")
        return url.strip() if url is not None else None

    @model_validator(mode="after")
    def _limits_fit_keys(self) -> ProviderSettings:
        n_limits, n_keys = len(self.rate_limits), len(self.api_keys)
        if n_keys and n_limits not in (0, 1, n_keys):
            raise ValueError(
                f"rate_limits has {n_limits} entries but there are {n_keys} API keys: give "
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
            f"rate_limits has {len(self.rate_limits)} entries, one per key, but key "
            f"#{index + 1} has none: give one entry for all keys, or one per key")


class GlobalSettings(ConfigModel, init=False):
    """The YAML ``global:`` section."""

    default_provider: str | None = Field(
        default=None, description="Provider used when none is named (a name or alias). None: the "
        "first of openai, anthropic, google, groq that has keys, else local if configured.")
    enable_logging: bool = Field(
        default=True, description="Log each request through the 'llmkit' loggers (keys never "
        "appear). False: no request logging.")
    log_level: str = Field(
        default="INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL, any case "
        "(LLM_LOG_LEVEL overrides it).")
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
    def _known_level(cls, level: str) -> str:
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
        """global.default_provider, else the first of openai, anthropic, google, groq
        that has keys, else local if it has a section, else None."""
        if self.global_.default_provider:
            return self.global_.default_provider
        for name in PROVIDERS[:4]:
            if self.provider(name).api_keys:
                return name
        return "local" if "local" in self.providers else None


# --- loading: the YAML file, then the environment --------------------------------


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the settings: the YAML file, then the environment over it.

    The file is ``config_path``, else ``$LLM_CONFIG_PATH``, else there is none.
    ``environ`` defaults to ``os.environ`` (tests pass a dict). Every problem
    raises ConfigurationError naming the file or variable at fault.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    found = _config_file(config_path, env)
    settings = _read_file(*found) if found else Settings()
    return _apply_environment(settings, env)


def _config_file(config_path: Any, env: Mapping[str, str]) -> tuple[str, str] | None:
    """The file to read and what named it, or None."""
    if config_path is not None and os.fspath(config_path) != "":
        return os.path.expanduser(os.fspath(config_path)), "passed as config_path"
    named = env.get(_CONFIG_PATH_VAR, "").strip()
    if named:
        return os.path.expanduser(named), f"named by {_CONFIG_PATH_VAR}"
    return None


def _read_file(path: str, origin: str) -> Settings:
    data = _read_yaml(path, origin)
    if data is None:
        data = {}  # an empty file
    if not isinstance(data, Mapping):
        raise ConfigurationError(
            f"Config file {path!r} ({origin}) must hold a mapping with the sections "
            f"global, providers and pool; it holds a {type(data).__name__}.")
    return build(Settings, {**data, "source": path}, where=f"settings in config file {path!r}")


def _read_yaml(path: str, origin: str) -> Any:
    import yaml  # imported here: only loading needs it

    try:
        with open(path, "rb") as stream:
            return yaml.safe_load(stream)  # never yaml.load: no arbitrary objects
    except FileNotFoundError:
        fix = "fix the path" + (f" or unset {_CONFIG_PATH_VAR}" if _CONFIG_PATH_VAR in origin else "")
        raise ConfigurationError(
            f"Config file {path!r} ({origin}) does not exist: {fix}.") from None
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot read config file {path!r} ({origin}): {exc.strerror or exc}.") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(
            f"Config file {path!r} ({origin}) is not valid YAML: {_yaml_problem(exc)}"
        ) from None


def _yaml_problem(exc: Exception) -> str:
    """Where and what, without the snippet of the file (which may hold a key)."""
    import yaml

    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or type(exc).__name__
    context = getattr(exc, "context", None)
    text = f"{where}{problem}" + (f" ({context})" if context else "")
    if isinstance(exc, yaml.constructor.ConstructorError):
        text += (". Only plain YAML is read (yaml.safe_load): tags such as "
                 "!!python/object are refused")
    return text + "."


def _env_keys(env: Mapping[str, str], provider: str) -> tuple[str, list[str]] | None:
    """The first of the provider's key variables that holds a key, and its keys."""
    for variable in KEY_ENV_VARS[provider]:
        keys = parse_key_list(env.get(variable, ""))
        if keys:
            return variable, keys
    return None


def _apply_environment(settings: Settings, env: Mapping[str, str]) -> Settings:
    providers = dict(settings.providers)
    for name in KEY_ENV_VARS:
        found = _env_keys(env, name)
        if found is None:
            continue
        variable, keys = found
        where = f"providers.{name} with the API keys from {variable}"
        if settings.source:
            where += f" and config file {settings.source!r}"
        providers[name] = evolve(settings.provider(name), {"api_keys": keys}, where=where)
    overrides: dict[str, Any] = {}
    level = env.get(_LOG_LEVEL_VAR, "").strip()
    if level:
        if level.upper() not in LOG_LEVELS:
            raise ConfigurationError(
                f"{_LOG_LEVEL_VAR}={safe_repr(level)} is not a log level: set it to one of "
                f"{', '.join(LOG_LEVELS)} (any case), or unset it.")
        overrides["log_level"] = level.upper()
    default = env.get(_DEFAULT_PROVIDER_VAR, "").strip()
    if default:
        try:
            overrides["default_provider"] = normalize_provider(default)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{_DEFAULT_PROVIDER_VAR}: {exc.message}") from None
    return settings.new(global_=settings.global_.new(**overrides), providers=providers)
