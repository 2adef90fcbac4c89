"""Where settings come from: the YAML file, secret files and the environment, read through pydantic-settings.

Precedence, lowest first: the library's defaults, the YAML file, secret files,
the environment (then, in :class:`~llmkit.LLMClient`, constructor arguments).
Each source is a pydantic-settings source: the file is read by its
``YamlConfigSettingsSource`` (``yaml.safe_load`` only), the variables by
:class:`VariablesSource`, a small ``PydanticBaseSettingsSource`` over any
mapping (``os.environ``, a dict in tests, the files of a secrets directory);
pydantic-settings merges them, and :class:`~llmkit.config.settings.Settings`
validates the result, so every error names the file or variable at fault.
When the environment is the only source (no file, no secrets directory) there
is nothing to merge, and pydantic-settings is not imported at all (~60 ms of
a cold start): :mod:`llmkit.config.variables` reads the variables either way,
:mod:`llmkit.config.merging` is the pydantic-settings side.

The YAML file, first found wins:

1. ``load_settings(config_path)`` / ``LLMClient(config_path=...)``;
2. ``$LLM_CONFIG_PATH``;
3. ``config/llm.yaml`` in the working directory (the spec's place), if it exists.

Variables (empty ones count as unset):

* the API keys: ``OPENAI_API_KEY(S)``, ``ANTHROPIC_API_KEY(S)``, ``GROQ_API_KEY(S)``,
  ``GOOGLE_API_KEY(S)`` / ``GEMINI_API_KEY(S)``, comma-separated; ``*_API_KEYS``
  beats ``*_API_KEY`` (:data:`~llmkit.config.settings.KEY_ENV_VARS`);
* ``LLM_LOG_LEVEL``, ``LLM_DEFAULT_PROVIDER``, ``LLM_CONFIG_PATH``, ``LLM_SECRETS_DIR``;
* any field of the YAML file as ``LLM_<SECTION>__<FIELD>[__<FIELD>...]``, any case:
  ``LLM_POOL__ACQUIRE_TIMEOUT=60``, ``LLM_GLOBAL__ENABLE_LOGGING=false``,
  ``LLM_PROVIDERS__OPENAI__BASE_URL=http://localhost:8000/v1``,
  ``LLM_PROVIDERS__ANTHROPIC__RATE_LIMITS__REQUESTS_PER_MINUTE=20`` (changes that
  field of every ``rate_limits`` entry; ``...__RATE_LIMITS__0__...`` only the first).
  A value starting with ``[`` or ``{`` is read as JSON.

Keys from a variable replace (not extend) the file's keys for that provider;
the rest of the provider's section stays. Secret files hold one variable
each, named like it (``/run/secrets/ANTHROPIC_API_KEYS``); they are read from
``secrets_dir``, else ``$LLM_SECRETS_DIR``, else ``/run/secrets`` (Docker's
place) when reading the process environment. Only the names above are read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from llmkit.config.models import build
from llmkit.config.settings import CONFIG_PATH_VAR, DEFAULT_CONFIG_FILE, Settings
from llmkit.config.variables import Variables, find_config_file, secret_files, secrets_dir_of

__all__ = ["collect", "find_config_file", "load_settings"]

logger = logging.getLogger("llmkit.config")
logger.addHandler(logging.NullHandler())


def collect(config_path: Any, env: Mapping[str, str], secrets_dir: Any) -> Settings:
    """Read and validate the settings from the file, secret files and ``env`` (see load_settings)."""
    found = find_config_file(config_path, env)
    secrets = secrets_dir_of(secrets_dir, env, env is os.environ)
    if found is None and secrets is None:  # the environment alone: nothing to merge
        environment = Variables(env, "the environment", {})
        data, places = environment.data, list[str]()
    else:
        data, places, environment = _merge(found, secrets, env)
    if environment.used:
        places.append(f"{', '.join(environment.used)} from the environment")
    _log_sources(found, secrets, environment.used)
    where = "settings" + (" in " + " with ".join(places) if places else "")
    return build(Settings, {**data, "source": found[0] if found else None}, where=where)


def _merge(found: tuple[str, str] | None, secrets: tuple[str, str] | None,
           env: Mapping[str, str]) -> tuple[dict[str, Any], list[str], Variables]:  # fmt: skip
    """The file, secret files and environment merged by pydantic-settings; the places read from."""
    from llmkit.config import merging

    yaml_source = merging.yaml_source(*found) if found else None
    file_data: Mapping[str, Any] = yaml_source.yaml_data if yaml_source is not None else {}
    environment = Variables(env, "the environment", file_data)
    sources: list[Any] = [merging.source(environment)]
    places = [f"config file {found[0]!r}"] if found else []
    if secrets is not None:
        files = Variables(secret_files(secrets[0]), f"secret files in {secrets[0]!r}", file_data)
        sources.append(merging.source(files))
        if files.used:
            places.append(f"{', '.join(files.used)} from secret files in {secrets[0]!r}")
    if yaml_source is not None:
        sources.append(yaml_source)
    return merging.merged(tuple(sources)), places, environment


def _log_sources(found: tuple[str, str] | None, secrets: tuple[str, str] | None, used: list[str]) -> None:
    if found:
        logger.debug("settings: config file %s (%s)", found[0], found[1])
    else:
        logger.debug("settings: no config file (%s unset, no %s here)", CONFIG_PATH_VAR, DEFAULT_CONFIG_FILE)
    if secrets:
        logger.debug("settings: secret files in %s (%s)", secrets[0], secrets[1])
    if used:
        logger.debug("settings: from the environment: %s", ", ".join(used))


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    secrets_dir: str | os.PathLike[str] | None = None,
) -> Settings:
    """Read the settings: the YAML file, secret files over it, the environment over both.

    The file is ``config_path``, else ``$LLM_CONFIG_PATH``, else
    ``config/llm.yaml`` in the working directory if it exists, else none.
    ``environ`` defaults to ``os.environ`` (tests pass a dict). Secret files
    (one file per variable, named like it: Docker and Kubernetes secrets) are
    read from ``secrets_dir``, else ``$LLM_SECRETS_DIR``, else ``/run/secrets``
    when reading the process environment. Every problem raises
    ConfigurationError naming the file or variable at fault, never a key.
    """
    return collect(config_path, os.environ if environ is None else environ, secrets_dir)
