"""The settings' places and variables, read without pydantic-settings: the YAML file's path, the
secrets directory, and what the variables of a mapping (the environment, secret files) say.

:mod:`llmkit.config.sources` decides, and :mod:`llmkit.config.merging` hands these to
pydantic-settings when there is more than the environment to merge.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from llmkit.config.checks import count_of
from llmkit.config.models import closest
from llmkit.config.settings import (
    CONFIG_PATH_VAR,
    DEFAULT_CONFIG_FILE,
    KEY_ENV_VARS,
    LOG_LEVELS,
    parse_key_list,
)
from llmkit.errors import ConfigurationError
from llmkit.providers import normalize_provider

__all__ = ["SECRETS_DIR_VAR", "Variables", "find_config_file", "secret_files", "secrets_dir_of"]

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


class Variables:
    """Settings from variables in a mapping: ``os.environ``, a dict, or a secrets directory's files.

    ``file_data`` is what the YAML file holds, so that a variable for one
    ``rate_limits`` field changes that field of the file's entries rather than
    replacing them, and a provider section keeps the file's spelling.
    """

    def __init__(self, variables: Mapping[str, str], origin: str, file_data: Mapping[str, Any]) -> None:
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


def secret_files(directory: str) -> dict[str, str]:
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


def secrets_dir_of(secrets_dir: Any, env: Mapping[str, str], is_process_env: bool) -> tuple[str, str] | None:
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
