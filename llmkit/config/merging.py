"""pydantic-settings puts the sources together: the YAML file, secret files and the environment.

Imported only when there is a YAML file or a secrets directory to merge with
the environment (pydantic-settings' import is ~60 ms of a cold start; the
environment alone needs no merging).
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from llmkit.config.settings import CONFIG_PATH_VAR
from llmkit.config.variables import Variables
from llmkit.errors import ConfigurationError

__all__ = ["VariablesSource", "merged", "source", "yaml_source"]


def yaml_source(path: str, origin: str) -> YamlConfigSettingsSource:
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


class VariablesSource(PydanticBaseSettingsSource):
    """A pydantic-settings source over :class:`~llmkit.config.variables.Variables`."""

    def __init__(self, settings_cls: type[BaseSettings], variables: Variables) -> None:
        super().__init__(settings_cls)
        self.variables = variables

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.variables.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self.variables.data


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


def source(variables: Variables) -> VariablesSource:
    """The pydantic-settings source of what ``variables`` say."""
    return VariablesSource(_Collected, variables)


def merged(sources: tuple[PydanticBaseSettingsSource, ...]) -> dict[str, Any]:
    token = _SOURCES.set(sources)
    try:
        return _Collected().model_dump()
    finally:
        _SOURCES.reset(token)
