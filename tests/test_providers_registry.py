"""Each provider's name, aliases and key variables are declared once, on its adapter; the rest agrees."""

from __future__ import annotations

import pytest

from llmkit import LLMProvider
from llmkit.config import KEY_ENV_VARS, PROVIDER_ALIASES, PROVIDERS, missing_key_message
from llmkit.providers import PROVIDER_NAMES, adapters, normalize_provider, provider_class


def test_the_settings_tables_are_read_off_the_adapters() -> None:
    assert PROVIDERS == PROVIDER_NAMES == tuple(a.name for a in adapters())
    assert dict(KEY_ENV_VARS) == {a.name: a.key_env_vars for a in adapters()}
    assert dict(PROVIDER_ALIASES) == {alias: a.name for a in adapters() for alias in a.aliases}


def test_the_manager_enum_names_every_adapter() -> None:
    assert sorted(member.value for member in LLMProvider) == sorted(PROVIDER_NAMES)
    for member in LLMProvider:
        assert member.name == member.value.upper() and provider_class(member).name == member.value


@pytest.mark.parametrize("adapter", adapters(), ids=lambda a: a.name)
def test_every_adapter_declares_itself(adapter: type) -> None:
    assert adapter.name and adapter.name == adapter.name.lower()
    assert all(alias == alias.lower() for alias in adapter.aliases)
    for name in (adapter.name, *adapter.aliases):
        assert provider_class(name.upper()) is adapter and normalize_provider(name) == adapter.name
    if adapter.requires_key:
        pools = [v for v in adapter.key_env_vars if v.endswith("_API_KEYS")]
        assert pools and adapter.key_env_vars[0] in pools  # a pool variable comes first
        assert "set " in missing_key_message(adapter.name)
    else:
        assert adapter.key_env_vars == ()


def test_subclassed_adapters_do_not_inherit_names() -> None:
    groq, local, openai = provider_class("groq"), provider_class("local"), provider_class("openai")
    assert issubclass(groq, openai) and groq.key_env_vars == ("GROQ_API_KEYS", "GROQ_API_KEY")
    assert local.key_env_vars == () and "ollama" in local.aliases and openai.aliases == ()
