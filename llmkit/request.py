"""The normalized request that flows from the client through middleware to a provider.

``build_request`` validates what the user passed (messages, parameters) and
raises :class:`InvalidRequestError` before anything is sent or any capacity is
spent.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from llmkit.errors import InvalidRequestError
from llmkit.types import Message, MessageRole, MessagesInput, normalize_messages

if TYPE_CHECKING:
    from llmkit.tools import ToolChoice, ToolSpec

__all__ = ["DEFAULT_MAX_TOKENS", "Request", "build_request"]

DEFAULT_MAX_TOKENS = 1024
"""Output tokens assumed when neither the call nor the settings give ``max_tokens``: what the
limiter reserves and the budget prices, and what is sent where a provider requires a number."""


@dataclass(frozen=True, slots=True)
class Request:
    """One call, normalized: what a provider adapter needs to send it.

    ``system`` is the system prompt gathered from ``system_prompt=`` and the
    SYSTEM messages; ``messages`` holds the rest. ``extra`` holds
    provider-specific parameters passed through untouched. ``tools`` and
    ``tool_choice`` are normalized (:mod:`llmkit.tools`); ``json_mode`` asks
    for a JSON object as the answer. Adapters translate all three.
    ``timeout`` is the seconds one attempt has for its complete reply (a
    deadline, not a per-read timeout); for a stream, ``first_token_timeout``
    and ``chunk_timeout`` bound the wait for its first chunk and between chunks.
    """

    messages: tuple[Message, ...]
    model: str
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    timeout: float | None = None
    max_retries: int | None = None
    retry_delay: float | None = None
    stream: bool = False
    response_model: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    json_mode: bool = False
    first_token_timeout: float | None = None
    chunk_timeout: float | None = None
    cancel: threading.Event | None = field(default=None, compare=False, repr=False)
    """Set by whoever may cancel this call (the async layer): a wait for a key or a backoff stops."""

    def with_changes(self, **changes: Any) -> Request:
        """A copy with some fields replaced (requests are immutable)."""
        return replace(self, **changes)

    def text(self) -> str:
        """All text of the request (system and messages), for token estimates."""
        parts = [self.system] if self.system else []
        for message in self.messages:
            parts.append(message_text(message))
        return "\n".join(parts)


def message_text(message: Message) -> str:
    """The text of a message, skipping non-text parts."""
    if isinstance(message.content, str):
        return message.content
    texts = []
    for part in message.content:
        text = getattr(part, "text", None)
        if text is None and isinstance(part, Mapping):
            text = part.get("text")
        if isinstance(text, str):
            texts.append(text)
    return "\n".join(texts)


def _check_number(name: str, value: Any, low: float, high: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequestError(f"{name} must be a finite number, got {value!r}.")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidRequestError(f"{name} must be {bound}, got {value!r}.")


def _check_params(
    temperature: Any, max_tokens: Any, timeout: Any, max_retries: Any, retry_delay: Any
) -> None:
    _check_number("temperature", temperature, 0.0, 2.0)
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise InvalidRequestError(f"max_tokens must be a whole number of at least 1, got {max_tokens!r}.")
    if timeout is not None:
        _check_number("timeout", timeout, 0.0, None)
        if timeout == 0:
            raise InvalidRequestError("timeout must be more than 0 seconds (None waits forever).")
    if max_retries is not None and (
        isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
    ):
        raise InvalidRequestError(f"max_retries must be a whole number >= 0, got {max_retries!r}.")
    _check_number("retry_delay", retry_delay, 0.0, None)


def _normalize_stop(stop: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        return (stop,)
    stops = tuple(stop)
    if not all(isinstance(s, str) and s for s in stops):
        raise InvalidRequestError(f"stop must be a string or a list of non-empty strings, got {stop!r}.")
    return stops


def _split_system(
    messages: tuple[Message, ...], system_prompt: str | None
) -> tuple[str | None, tuple[Message, ...]]:
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise InvalidRequestError(f"system_prompt must be a string, got {type(system_prompt).__name__}.")
    if not any(m.role is MessageRole.SYSTEM for m in messages):
        return system_prompt or None, messages
    system_texts = [system_prompt] if system_prompt else []
    rest = []
    for message in messages:
        if message.role is MessageRole.SYSTEM:
            system_texts.append(message_text(message))
        else:
            rest.append(message)
    return "\n\n".join(system_texts) or None, tuple(rest)


def build_request(
    messages: MessagesInput,
    *,
    model: str,
    system_prompt: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    stop: str | Sequence[str] | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    retry_delay: float | None = None,
    stream: bool = False,
    response_model: Any = None,
    extra: Mapping[str, Any] | None = None,
    tools: Any = None,
    tool_choice: Any = None,
    json_mode: bool = False,
    first_token_timeout: float | None = None,
    chunk_timeout: float | None = None,
    cancel: threading.Event | None = None,
) -> Request:
    """Validate and normalize one call. Raises InvalidRequestError on bad input."""
    normalized = normalize_messages(messages)
    specs, choice = _tools(tools, tool_choice, json_mode, response_model)
    _check_params(temperature, max_tokens, timeout, max_retries, retry_delay)
    for name, value in (("first_token_timeout", first_token_timeout), ("chunk_timeout", chunk_timeout)):
        _check_number(name, value, 0.0, None)
        if value == 0:
            raise InvalidRequestError(f"{name} must be more than 0 seconds (None: bounded by timeout only).")
    if not model or not isinstance(model, str):
        raise InvalidRequestError(
            f"model must be a non-empty string, got {model!r}: pass model=... or set one in settings."
        )
    system, rest = _split_system(normalized, system_prompt)
    if not rest:
        raise InvalidRequestError("Only system messages were given: add a user message to complete.")
    return Request(
        messages=rest,
        model=model,
        system=system,
        temperature=temperature,
        max_tokens=max_tokens,
        stop=_normalize_stop(stop),
        timeout=timeout,
        max_retries=max_retries,
        retry_delay=retry_delay,
        stream=stream,
        response_model=response_model,
        extra=dict(extra or {}),
        tools=specs,
        tool_choice=choice,
        json_mode=json_mode,
        first_token_timeout=first_token_timeout,
        chunk_timeout=chunk_timeout,
        cancel=cancel,
    )


def _tools(
    tools: Any, tool_choice: Any, json_mode: Any, response_model: Any
) -> tuple[tuple[ToolSpec, ...], ToolChoice | None]:
    if not isinstance(json_mode, bool):
        raise InvalidRequestError(f"json_mode must be True or False, got {json_mode!r}.")
    if response_model is not None and (json_mode or tools):
        raise InvalidRequestError(
            "response_model= cannot be combined with tools= or json_mode=: it makes its own tool call."
        )
    if tools is None and tool_choice is None:
        return (), None
    from llmkit.tools import normalize_tool_choice, normalize_tools

    specs = normalize_tools(tools)
    return specs, normalize_tool_choice(tool_choice, specs)
