"""Where settings come from: the YAML file, secret files and the environment, read through pydantic-settings.

Precedence, lowest first: the library's defaults, the YAML file, secret files,
the environment (then, in :class:`~llmkit.LLMClient`, constructor arguments).
Each source is a pydantic-settings source: the file is read by its
``YamlConfigSettingsSource`` (``yaml.safe_load`` only), the variables by
:class:`VariablesSource`, a small ``PydanticBaseSettingsSource`` over any
mapping (``os.environ``, a dict in tests, the files of a secrets directory);
pydantic-settings merges them, and :class:`~llmkit.config.settings.Settings`
validates the result, so every error names the file or variable at fault.

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

import json
import logging
import os
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from llmkit.config.checks import count_of
from llmkit.config.models import build, closest
from llmkit.config.settings import (
    CONFIG_PATH_VAR,
    DEFAULT_CONFIG_FILE,
    KEY_ENV_VARS,
    LOG_LEVELS,
    Settings,
    parse_key_list,
)
from llmkit.errors import ConfigurationError
from llmkit.providers import normalize_provider

__all__ = ["NESTED_DELIMITER", "VariablesSource", "collect", "find_config_file"]

logger = logging.getLogger("llmkit.config")
logger.addHandler(logging.NullHandler())

NESTED_DELIMITER = "__"
SECRETS_DIR_VAR = "LLM_SECRETS_DIR"
DEFAULT_SECRETS_DIR = "/run/secrets"
_PREFIX = "LLM_"
_SECTIONS = ("global", "providers", "pool")
_LOG_LEVEL_VAR = "LLM_LOG_LEVEL"
_DEFAULT_PROVIDER_VAR = "LLM_DEFAULT_PROVIDER"
_NOT_SETTINGS = {CONFIG_PATH_VAR, SECRETS_DIR_VAR}
_SECRET_FILE_LIMIT = 64 * 1024


# --- the YAML file ---------------------------------------------------------------


def find_config_file(config_path: Any, env: Mapping[str, str]) -> tuple[str, str] | None:
    """The YAML file to read and what chose it (see the module doc), or None."""
    if config_path is not None and os.fspath(config_path) != "":
        return os.path.expanduser(os.fspath(config_path)), "passed as config_path"
    named = env.get(CONFIG_PATH_VAR, "").strip()
    if named:
        return os.path.expanduser(named), f"named by {CONFIG_PATH_VAR}"
    if os.path.isfile(DEFAULT_CONFIG_FILE):
        return os.path.abspath(DEFAULT_CONFIG_FILE), "found in the working directory"
    return None


def _yaml_source(path: str, origin: str) -> YamlConfigSettingsSource:
    """pydantic-settings' YAML source for ``path``, with errors that say what and where (never the text)."""
    if not os.path.exists(path):
        fix = "fix the path" + (f" or unset {CONFIG_PATH_VAR}" if CONFIG_PATH_VAR in origin else "")
        raise ConfigurationError(f"Config file {path!r} ({origin}) does not exist: {fix}.")
    if not os.path.isfile(path):
        raise ConfigurationError(f"Cannot read config file {path!r} ({origin}): it is not a file.")
    import yaml  # here: without a file, PyYAML is never imported

    try:
        return YamlConfigSettingsSource(_Collected, yaml_file=path)
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot read config file {path!r} ({origin}): {exc.strerror or exc}.") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(
            f"Config file {path!r} ({origin}) is not valid YAML: {_yaml_problem(exc)}") from None
    except (TypeError, ValueError):  # the file is YAML, but not a mapping
        raise ConfigurationError(
            f"Config file {path!r} ({origin}) must hold a mapping with the sections global, "
            f"providers and pool; it holds a {_top_level_type(path)}.") from None


def _top_level_type(path: str) -> str:
    import yaml

    with open(path, "rb") as stream:
        return type(yaml.safe_load(stream)).__name__


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


# --- variables: the environment, a dict, secret files -------------------------------


def _section_spelling(provider: str, file_data: Mapping[str, Any]) -> str:
    """The file's name for ``provider``'s section (``gemini:`` for google), so sources merge."""
    sections = file_data.get("providers")
    if isinstance(sections, Mapping):
        for spelt in sections:
            try:
                if normalize_provider(spelt) == provider:
                    return str(spelt)
            except ConfigurationError:
                continue  # the Settings validation reports it
    return provider


def _put(data: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        child = data.get(part)
        if not isinstance(child, dict):
            child = data[part] = {}
        data = child
    data[path[-1]] = value


def _value(name: str, raw: str) -> Any:
    text = raw.strip()
    if not text.startswith(("[", "{")):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:  # the value is never shown: it may be a key
        raise ConfigurationError(
            f"{name} starts like JSON but is not valid JSON ({exc.msg}, column {exc.colno}): "
            "give a JSON list or mapping, or a plain value.") from None


class VariablesSource(PydanticBaseSettingsSource):
    """Settings from variables in a mapping: ``os.environ``, a dict, or a secrets directory's files.

    ``file_data`` is what the YAML file holds, so that a variable for one
    ``rate_limits`` field changes that field of the file's entries rather than
    replacing them, and a provider section keeps the file's spelling.
    """

    def __init__(self, settings_cls: type[BaseSettings], variables: Mapping[str, str], origin: str,
                 file_data: Mapping[str, Any]) -> None:  # fmt: skip
        super().__init__(settings_cls)
        self.origin = origin
        self.used: list[str] = []
        self.data: dict[str, Any] = {}
        self._file = file_data
        self._limits: dict[str, list[tuple[str, list[str], Any]]] = {}
        self._read_keys(variables)
        for name in sorted(variables):
            upper = name.upper()
            if upper.startswith(_PREFIX) and upper not in _NOT_SETTINGS and variables[name].strip():
                self._read_setting(name, variables[name])
        self._merge_rate_limits()

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self.data

    def _read_keys(self, variables: Mapping[str, str]) -> None:
        for provider, names in KEY_ENV_VARS.items():
            for name in names:
                keys = parse_key_list(variables.get(name, ""))
                if keys:
                    spelt = _section_spelling(provider, self._file)
                    _put(self.data, ["providers", spelt, "api_keys"], keys)
                    self.used.append(name)
                    break

    def _read_setting(self, name: str, raw: str) -> None:
        upper = name.upper()
        if upper == _LOG_LEVEL_VAR:
            level = raw.strip().upper()
            if level not in LOG_LEVELS:
                raise ConfigurationError(
                    f"{name}={raw.strip()!r:.40} is not a log level: set it to one of "
                    f"{', '.join(LOG_LEVELS)} (any case), or unset it.")
            _put(self.data, ["global", "log_level"], level)
        elif upper == _DEFAULT_PROVIDER_VAR:
            try:
                _put(self.data, ["global", "default_provider"], normalize_provider(raw))
            except ConfigurationError as exc:
                raise ConfigurationError(f"{name}: {exc.message}") from None
        elif NESTED_DELIMITER in upper:
            self._read_nested(name, raw)
        else:
            return  # another program's LLM_ variable
        self.used.append(name)

    def _read_nested(self, name: str, raw: str) -> None:
        path = name[len(_PREFIX):].lower().split(NESTED_DELIMITER)
        if path[0] not in _SECTIONS or not all(path):
            raise ConfigurationError(
                f"{name}: variables for settings are LLM_<SECTION>__<FIELD>, the section one of "
                f"{', '.join(_SECTIONS)} (e.g. LLM_POOL__ACQUIRE_TIMEOUT=60)."
                + closest(path[0], _SECTIONS))
        if path[0] == "providers" and len(path) > 1:
            try:
                path[1] = _section_spelling(normalize_provider(path[1]), self._file)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{name}: {exc.message}") from None
        value = _value(name, raw)
        if path[0] == "providers" and len(path) > 3 and path[2] == "rate_limits":
            self._limits.setdefault(path[1], []).append((name, path[3:], value))
        else:
            _put(self.data, path, value)

    def _merge_rate_limits(self) -> None:
        """Apply ``...__RATE_LIMITS__<field>`` to every entry of the file's (``__<n>__<field>``: entry n)."""
        for provider, changes in self._limits.items():
            section = (self._file.get("providers") or {}).get(provider) or {}
            entries = section.get("rate_limits") if isinstance(section, Mapping) else None
            if isinstance(entries, Mapping):
                entries = [entries]
            merged = [dict(e) if isinstance(e, Mapping) else {} for e in entries or [{}]]
            for name, path, value in changes:
                targets = merged
                if path[0].isdigit():
                    index, path = int(path[0]), path[1:]
                    if index >= len(merged) or not path:
                        raise ConfigurationError(
                            f"{name}: providers.{provider}.rate_limits has "
                            f"{count_of(len(merged), 'entry', 'entries')}; number them from 0 and "
                            "name a field after the number.")
                    targets = [merged[index]]
                for entry in targets:
                    _put(entry, path, value)
            _put(self.data, ["providers", provider, "rate_limits"], merged)


def _secret_files(directory: str) -> dict[str, str]:
    """The secrets directory's files that are named like a variable llmkit reads, and their text."""
    wanted = {name for names in KEY_ENV_VARS.values() for name in names}
    found: dict[str, str] = {}
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        name = entry.name
        known = name in wanted or (name.upper().startswith(_PREFIX) and name.upper() not in _NOT_SETTINGS)
        if known and entry.is_file() and entry.stat().st_size <= _SECRET_FILE_LIMIT:
            with open(entry.path, encoding="utf-8") as stream:
                found[name] = stream.read().strip()
    return found


def _secrets_dir(secrets_dir: Any, env: Mapping[str, str], is_process_env: bool) -> tuple[str, str] | None:
    if secrets_dir is not None and os.fspath(secrets_dir) != "":
        chosen, origin = os.fspath(secrets_dir), "passed as secrets_dir"
    elif env.get(SECRETS_DIR_VAR, "").strip():
        chosen, origin = env[SECRETS_DIR_VAR].strip(), f"named by {SECRETS_DIR_VAR}"
    elif is_process_env and os.path.isdir(DEFAULT_SECRETS_DIR):
        return DEFAULT_SECRETS_DIR, "the default"
    else:
        return None
    if not os.path.isdir(chosen):
        raise ConfigurationError(
            f"Secrets directory {chosen!r} ({origin}) is not a directory: fix the path"
            + (f" or unset {SECRETS_DIR_VAR}." if SECRETS_DIR_VAR in origin else "."))
    return chosen, origin


# --- pydantic-settings puts the sources together ---------------------------------------

_SOURCES: ContextVar[tuple[PydanticBaseSettingsSource, ...]] = ContextVar("llmkit_settings_sources")


class _Collected(BaseSettings):
    """What the sources hold, merged by pydantic-settings (highest first); Settings validates it."""

    model_config = SettingsConfigDict(extra="allow")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:  # fmt: skip
        return _SOURCES.get()


def _merged(sources: tuple[PydanticBaseSettingsSource, ...]) -> dict[str, Any]:
    token = _SOURCES.set(sources)
    try:
        return _Collected().model_dump()
    finally:
        _SOURCES.reset(token)


def collect(config_path: Any, env: Mapping[str, str], secrets_dir: Any) -> Settings:
    """Read and validate the settings from the file, secret files and ``env`` (see load_settings)."""
    found = find_config_file(config_path, env)
    yaml_source = _yaml_source(*found) if found else None
    file_data: Mapping[str, Any] = yaml_source.yaml_data if yaml_source is not None else {}
    environment = VariablesSource(_Collected, env, "the environment", file_data)
    sources: list[PydanticBaseSettingsSource] = [environment]
    places = [f"config file {found[0]!r}"] if found else []
    secrets = _secrets_dir(secrets_dir, env, env is os.environ)
    if secrets is not None:
        files = VariablesSource(_Collected, _secret_files(secrets[0]), f"secret files in {secrets[0]!r}",
                                file_data)  # fmt: skip
        sources.append(files)
        if files.used:
            places.append(f"{', '.join(files.used)} from secret files in {secrets[0]!r}")
    if environment.used:
        places.append(f"{', '.join(environment.used)} from the environment")
    if yaml_source is not None:
        sources.append(yaml_source)
    data = _merged(tuple(sources))
    _log_sources(found, secrets, environment.used)
    where = "settings" + (" in " + " with ".join(places) if places else "")
    return build(Settings, {**data, "source": found[0] if found else None}, where=where)


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
