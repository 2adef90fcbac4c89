"""Public data types: messages in, responses out.

These are plain frozen dataclasses rather than pydantic models: they are built
on every call, and ``import llmkit`` must stay fast (pydantic alone costs more
than our whole import budget). Validation happens in ``__post_init__`` and in
:func:`normalize_messages`, before anything is sent.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from llmkit.errors import InvalidRequestError

__all__ = [
    "Message",
    "MessageRole",
    "Response",
    "ToolCall",
    "Usage",
    "normalize_messages",
]


class MessageRole(str, enum.Enum):
    """Who speaks a message. Compares equal to its string value ("user", ...)."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"

    def __str__(self) -> str:
        return self.value


_ROLE_NAMES = ", ".join(repr(r.value) for r in MessageRole)


def _coerce_role(role: Any) -> MessageRole:
    if isinstance(role, MessageRole):
        return role
    if isinstance(role, str):
        try:
            return MessageRole(role.lower())
        except ValueError:
            pass
    raise InvalidRequestError(f"Unknown message role {role!r}: use one of {_ROLE_NAMES}.")


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation: ``Message(MessageRole.USER, "Hi")``.

    ``content`` is a string, or a list of content parts (text, images) for
    providers that accept them. ``name`` and ``tool_call_id`` are passed on to
    providers that use them.
    """

    role: MessageRole
    content: Any
    name: str | None = None
    tool_call_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", _coerce_role(self.role))
        if isinstance(self.content, str):
            return
        if isinstance(self.content, list) and self.content:
            return
        raise InvalidRequestError(
            f"Message content must be a string (or a list of content parts), "
            f"got {type(self.content).__name__}: convert it with str() first."
        )

    def to_dict(self) -> dict[str, Any]:
        """The plain ``{"role", "content"}`` form (as OpenAI takes it)."""
        data: dict[str, Any] = {"role": self.role.value, "content": self.content}
        if self.name is not None:
            data["name"] = self.name
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        return data


MessagesInput = Union[str, Message, Mapping[str, Any], Iterable[Union[Message, Mapping[str, Any]]]]  # noqa: UP007 - a runtime alias on 3.10


def _message_from(item: Any, index: int) -> Message:
    if isinstance(item, Message):
        return item
    if isinstance(item, Mapping):
        if "role" not in item or "content" not in item:
            raise InvalidRequestError(
                f"Message {index} is missing 'role' or 'content': "
                'write {"role": "user", "content": "..."}.'
            )
        extra = {k: item[k] for k in ("name", "tool_call_id") if item.get(k) is not None}
        return Message(item["role"], item["content"], **extra)
    raise InvalidRequestError(
        f"Message {index} is a {type(item).__name__}: pass Message objects, "
        '{"role", "content"} dicts, or one string.'
    )


def normalize_messages(messages: MessagesInput) -> tuple[Message, ...]:
    """Turn what users pass (a string, Messages, dicts) into a tuple of Messages.

    Raises :class:`InvalidRequestError` for empty input, unknown roles or
    content that is not text, before anything is sent.
    """
    if isinstance(messages, str):
        if not messages:
            raise InvalidRequestError("The prompt is empty: pass some text to complete.")
        return (Message(MessageRole.USER, messages),)
    if isinstance(messages, (Message, Mapping)):
        return (_message_from(messages, 0),)
    if messages is None:
        raise InvalidRequestError("No messages given: pass a prompt string or a list of messages.")
    result = tuple(_message_from(item, i) for i, item in enumerate(messages))
    if not result:
        raise InvalidRequestError("The message list is empty: add at least one user message.")
    return result


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a call used. ``cached_input_tokens`` counts inside ``input_tokens``."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
        )


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool (function) call the model asked for, the same shape for every provider."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Response:
    """The result of one completion.

    ``key_id`` is a short fingerprint of the API key that answered, never the
    key. ``raw`` is the provider SDK's own response object. ``cost`` is in US
    dollars where the model's price is known, else None. ``parsed`` holds the
    validated object of a structured-output call (``response_model=``).
    ``cached`` is True when the answer came from the response cache.
    """

    content: str
    model: str
    provider: str
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    latency: float = 0.0
    request_id: str | None = None
    key_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    cost: float | None = None
    cached: bool = False
    attempts: int = 1
    parsed: Any = field(default=None, repr=False, compare=False)
    raw: Any = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return self.content
