"""Configuration: the immutable config objects, and the settings read from YAML and the environment.

* :mod:`llmkit.config.models`: :class:`LLMConfig`, :class:`RateLimit` (alias
  ``RateLimitConfig``), :class:`RetryPolicy`, :class:`PoolConfig`, and the
  validation that turns pydantic's errors into safe :class:`~llmkit.errors.ConfigurationError`\\ s;
* :mod:`llmkit.config.settings`: :class:`Settings`, the provider names,
  aliases and key variables (read off the adapters);
* :mod:`llmkit.config.sources`: :func:`load_settings`, and where settings come
  from (the YAML file, secret files, the environment, through pydantic-settings),
  with the search order; :mod:`llmkit.config.variables` reads the places and the
  variables, :mod:`llmkit.config.merging` is the pydantic-settings side;
* :mod:`llmkit.config.logging_setup`: what ``global.log_level`` and
  ``global.enable_logging`` switch on.

``from llmkit.config import RateLimit`` loads the models only; the settings
names are loaded on first access; PyYAML and pydantic-settings only when
settings are loaded from a file or a secrets directory (the environment alone
needs neither).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmkit.config.models import LLMConfig, PoolConfig, RateLimit, RateLimitConfig, RetryPolicy

if TYPE_CHECKING:
    from llmkit.config.settings import (
        CONFIG_PATH_VAR,
        DEFAULT_CONFIG_FILE,
        KEY_ENV_VARS,
        LOG_LEVELS,
        PROVIDER_ALIASES,
        PROVIDERS,
        GlobalSettings,
        ProviderSettings,
        Settings,
        missing_key_message,
        normalize_provider,
        parse_key_list,
    )
    from llmkit.config.sources import load_settings

__all__ = [
    "CONFIG_PATH_VAR", "DEFAULT_CONFIG_FILE", "KEY_ENV_VARS", "LOG_LEVELS", "PROVIDERS",
    "PROVIDER_ALIASES", "GlobalSettings", "LLMConfig",
    "PoolConfig", "ProviderSettings", "RateLimit", "RateLimitConfig", "RetryPolicy", "Settings",
    "load_settings", "missing_key_message", "normalize_provider", "parse_key_list",
]  # fmt: skip

_MODEL_NAMES = ("LLMConfig", "PoolConfig", "RateLimit", "RateLimitConfig", "RetryPolicy")


def __getattr__(name: str) -> Any:
    if name == "load_settings":
        from llmkit.config.sources import load_settings

        return load_settings
    if name in __all__ and name not in _MODEL_NAMES:
        from llmkit.config import settings

        return getattr(settings, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
