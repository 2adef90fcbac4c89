"""llmkit's own call options, read out of ``Request.extra`` and checked before anything is sent.

Every keyword a call does not know goes to the provider untouched
(``Request.extra``); these few are llmkit's, the same for every provider, and
each adapter translates them (or refuses them) instead of sending them:

* ``thinking=``: extended thinking / reasoning. ``True`` (on, the provider's
  default depth), ``False`` (off where it can be turned off), an effort
  (``"minimal"``, ``"low"``, ``"medium"``, ``"high"``, ``"xhigh"``, ``"none"``),
  a token budget (a whole number), or the provider's own object (a dict:
  Anthropic's ``thinking``, Gemini's ``thinkingConfig``).
* ``cache_control=``: mark the stable prefix of the prompt for the
  provider's prompt cache (``True``: the default lifetime; ``"5m"``/``"1h"``;
  or Anthropic's own ``{"type": "ephemeral", ...}``). Providers that cache by
  themselves (OpenAI, Gemini) ignore it.
* ``server_tools=``: tools the provider runs itself, in its own shape
  (Anthropic ``{"type": "web_search_20250305", "name": "web_search"}``).
* ``max_tokens_param=``: the field the output limit goes in on
  OpenAI-compatible APIs, ``"max_tokens"`` or ``"max_completion_tokens"``
  (default: by model family, see :mod:`llmkit.providers.openai`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmkit.errors import InvalidRequestError
from llmkit.request import Request

__all__ = ["EFFORTS", "EFFORT_BUDGETS", "CallOptions", "call_options", "thinking_budget"]

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
# Token budgets that stand for an effort on providers that take budgets (Anthropic, Gemini 2.5).
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 4096, "high": 16384, "xhigh": 32768}
_OWN = ("thinking", "cache_control", "server_tools", "max_tokens_param")
_TTLS = ("5m", "1h")
_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")


@dataclass(frozen=True, slots=True)
class CallOptions:
    """The llmkit options of one call, checked, and ``extra`` without them (``rest``)."""

    thinking: Any = None
    cache_control: Mapping[str, Any] | None = None
    server_tools: tuple[Mapping[str, Any], ...] = ()
    max_tokens_param: str | None = None
    rest: Mapping[str, Any] = field(default_factory=dict)

    @property
    def thinking_on(self) -> bool:
        """Whether thinking was asked for (``False``, ``"none"`` and None are off)."""
        return self.thinking is not None and self.thinking is not False and self.thinking != "none"


_NONE = CallOptions()


def call_options(request: Request, provider: str) -> CallOptions:
    """The llmkit options of ``request``; InvalidRequestError when one is malformed."""
    extra = request.extra
    if not extra or not any(name in extra for name in _OWN):
        return _NONE if not extra else CallOptions(rest=extra)
    rest = {k: v for k, v in extra.items() if k not in _OWN}
    return CallOptions(
        thinking=_thinking(extra.get("thinking"), provider),
        cache_control=_cache_control(extra.get("cache_control"), provider),
        server_tools=_server_tools(extra.get("server_tools"), provider),
        max_tokens_param=_max_tokens_param(extra.get("max_tokens_param"), provider),
        rest=rest,
    )


def _refuse(message: str, provider: str) -> InvalidRequestError:
    return InvalidRequestError(message, provider=provider)


def _thinking(value: Any, provider: str) -> Any:
    if value is None or isinstance(value, (bool, Mapping)):
        return dict(value) if isinstance(value, Mapping) else value
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, str) and value.strip().lower() in EFFORTS:
        return value.strip().lower()
    raise _refuse(
        f"thinking={value!r} is not understood: pass True or False, a token budget (a whole number > 0), "
        f"an effort ({', '.join(repr(e) for e in EFFORTS)}) or {provider}'s own thinking dict.",
        provider,
    )


def thinking_budget(thinking: Any) -> int | None:
    """The token budget ``thinking`` stands for (True: medium; None when it names none)."""
    if thinking is True:
        return EFFORT_BUDGETS["medium"]
    if isinstance(thinking, str):
        return EFFORT_BUDGETS.get(thinking)
    if isinstance(thinking, int) and not isinstance(thinking, bool):
        return thinking
    return None


def _cache_control(value: Any, provider: str) -> Mapping[str, Any] | None:
    if value is None or value is False:
        return None
    if value is True:
        return {"type": "ephemeral"}
    if isinstance(value, str) and value in _TTLS:
        return {"type": "ephemeral", "ttl": value}
    if isinstance(value, Mapping) and value.get("type") == "ephemeral":
        return dict(value)
    raise _refuse(
        f"cache_control={value!r} is not understood: pass True, '5m', '1h' or "
        '{"type": "ephemeral", "ttl": "1h"}.',
        provider,
    )


def _server_tools(value: Any, provider: str) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    tools = [value] if isinstance(value, Mapping) else value
    usable = isinstance(tools, Sequence) and not isinstance(tools, str)
    if not usable or not all(isinstance(t, Mapping) for t in tools):
        raise _refuse(
            "server_tools= takes the provider's own tool definitions as dicts, e.g. "
            '[{"type": "web_search_20250305", "name": "web_search"}].',
            provider,
        )
    return tuple(dict(t) for t in tools)


def _max_tokens_param(value: Any, provider: str) -> str | None:
    if value is None or value in _TOKEN_FIELDS:
        return value
    message = f"max_tokens_param must be 'max_tokens' or 'max_completion_tokens', got {value!r}."
    raise _refuse(message, provider)
