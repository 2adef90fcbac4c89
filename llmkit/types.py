"""Public data types: messages in, responses out.

These are plain frozen dataclasses rather than pydantic models: they are built
on every call, and ``import llmkit`` must stay fast (pydantic alone costs more
than our whole import budget). Validation happens in ``__post_init__`` and in
:func:`normalize_messages`, before anything is sent.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from llmkit.blocks import ServerToolPart, ThinkingPart, is_server_tool_block
from llmkit.errors import InvalidRequestError

__all__ = [
    "IMAGE_MEDIA_TYPES",
    "ImagePart",
    "Message",
    "MessageRole",
    "Response",
    "ServerToolPart",
    "TextPart",
    "ThinkingPart",
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
class TextPart:
    """A piece of text inside a message's list of content parts."""

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise InvalidRequestError(f"TextPart text must be a string, got {type(self.text).__name__}.")

    def to_dict(self) -> dict[str, Any]:
        """``{"type": "text", "text": ...}`` (how sessions save it)."""
        return {"type": "text", "text": self.text}


IMAGE_MEDIA_TYPES: tuple[str, ...] = ("image/png", "image/jpeg", "image/gif", "image/webp")
"""The image types every provider llmkit speaks to accepts."""

_SUFFIX_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".gif": "image/gif", ".webp": "image/webp",
}
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"),
)


def _check_media_type(media_type: Any, where: str) -> str:
    kind = media_type.strip().lower() if isinstance(media_type, str) else media_type
    if kind == "image/jpg":
        kind = "image/jpeg"
    if kind not in IMAGE_MEDIA_TYPES:
        raise InvalidRequestError(
            f"{where}: unsupported image media type {media_type!r}; "
            f"use one of {', '.join(IMAGE_MEDIA_TYPES)}."
        )
    return str(kind)


def _sniff(data: bytes) -> str | None:
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _check_image_url(url: Any) -> str:
    """``url`` if it is an http(s) or data: URL; InvalidRequestError otherwise (before anything is sent)."""
    if not isinstance(url, str):
        raise InvalidRequestError(f"ImagePart url must be a string, got {type(url).__name__}.")
    lowered = url.lower()
    web = lowered.startswith(("http://", "https://"))
    if not (web and url.partition("://")[2].split("/", 1)[0]) and not _is_data_url(url):
        raise InvalidRequestError(
            f"Image URL must start with https://, http:// or data:, got {url!r}; "
            "for a local file use ImagePart.from_path(path)."
        )
    return url


def _is_data_url(url: str) -> bool:
    return url[:5].lower() == "data:"


def _decode_data_url(url: str) -> tuple[bytes, str]:
    """The bytes and media type of a base64 ``data:`` URL."""
    import base64
    import binascii

    header, _, payload = url[5:].partition(",")
    kind, _, encoding = header.partition(";")
    if encoding != "base64" or not payload:
        raise InvalidRequestError("A data: image URL must be base64: data:image/png;base64,....")
    try:
        return base64.b64decode(payload, validate=True), kind
    except binascii.Error as exc:
        raise InvalidRequestError(f"The data: image URL is not valid base64: {exc}.") from exc


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image inside a message: its bytes and media type, or a URL.

    Build one with :meth:`from_path`, :meth:`from_bytes` or :meth:`from_url`;
    each adapter sends it in its provider's own form (OpenAI ``image_url``,
    Anthropic ``image`` blocks). Exactly one of ``data`` and ``url`` is set;
    ``media_type`` is always set for ``data`` and may be None for a URL.

    ``url`` must be ``http://`` or ``https://`` (the provider fetches it) or a
    base64 ``data:`` URL, which is decoded into ``data`` here so that every
    provider gets the bytes in its own form. Anything else (``file://``, a
    path) is refused with :class:`InvalidRequestError`: read a local file
    with :meth:`from_path`.
    """

    data: bytes | None = field(default=None, repr=False)
    media_type: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.url is None):
            raise InvalidRequestError("ImagePart needs exactly one of data= (bytes) and url=.")
        if self.url is not None and _is_data_url(_check_image_url(self.url)):
            data, kind = _decode_data_url(self.url)
            object.__setattr__(self, "data", data)
            object.__setattr__(self, "media_type", self.media_type or kind)
            object.__setattr__(self, "url", None)
        if self.data is not None:
            if not isinstance(self.data, (bytes, bytearray)) or not self.data:
                raise InvalidRequestError("ImagePart data must be non-empty bytes.")
            object.__setattr__(self, "data", bytes(self.data))
            object.__setattr__(self, "media_type", _check_media_type(self.media_type, "ImagePart"))
        elif self.media_type is not None:
            object.__setattr__(self, "media_type", _check_media_type(self.media_type, "ImagePart"))

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str | None = None) -> ImagePart:
        """An image from its bytes; ``media_type=None`` recognises PNG, JPEG, GIF and WebP."""
        if media_type is None and isinstance(data, (bytes, bytearray)):
            media_type = _sniff(bytes(data[:16]))
            if media_type is None:
                raise InvalidRequestError(
                    "Cannot tell the image type from its bytes: pass media_type='image/png' (or another)."
                )
        return cls(data=data, media_type=media_type)

    @classmethod
    def from_path(cls, path: Any, media_type: str | None = None) -> ImagePart:
        """An image read from a file now; the media type comes from the suffix or the bytes."""
        import os

        name = os.fspath(path)
        try:
            with open(name, "rb") as stream:
                data = stream.read()
        except OSError as exc:
            raise InvalidRequestError(f"Cannot read image file {name!r}: {exc.strerror or exc}.") from exc
        suffix = os.path.splitext(name)[1].lower()
        media_type = media_type or _SUFFIX_TYPES.get(suffix) or _sniff(data[:16])
        if media_type is None:
            raise InvalidRequestError(
                f"Image file {name!r}: unknown image type {suffix or '(no suffix)'!r}; "
                f"use PNG, JPEG, GIF or WebP, or pass media_type=."
            )
        return cls(data=data, media_type=_check_media_type(media_type, f"Image file {name!r}"))

    @classmethod
    def from_url(cls, url: str, media_type: str | None = None) -> ImagePart:
        """An image the provider fetches itself (http(s)), or a ``data:`` URL (decoded here)."""
        return cls(url=url, media_type=media_type)

    def base64(self) -> str:
        """The image bytes in base64 (for an image given by bytes)."""
        import base64

        if self.data is None:
            raise InvalidRequestError("This image is a URL; it has no bytes to encode.")
        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        """``data:<media type>;base64,...`` for bytes; the URL itself otherwise."""
        if self.url is not None:
            return self.url
        return f"data:{self.media_type};base64,{self.base64()}"


_PART_TYPES = (TextPart, ImagePart, ThinkingPart, ServerToolPart, Mapping)


def _check_parts(parts: list[Any]) -> list[Any]:
    """Content parts, plain strings made TextParts; provider-native dicts pass untouched,
    except saved thinking and server tool blocks, which become their parts again."""
    checked: list[Any] = []
    for index, part in enumerate(parts):
        if isinstance(part, str):
            part = TextPart(part)
        elif isinstance(part, Mapping):
            part = _part_from_dict(part)
        elif not isinstance(part, _PART_TYPES):
            raise InvalidRequestError(
                f"Content part {index} is a {type(part).__name__}: use TextPart, ImagePart, a string "
                "or a provider's own part dict."
            )
        checked.append(part)
    return checked


def _part_from_dict(part: Mapping[str, Any]) -> Any:
    kind = part.get("type")
    if kind == "text" and set(part) == {"type", "text"} and isinstance(part["text"], str):
        return TextPart(part["text"])
    if kind == "thinking" and isinstance(part.get("thinking"), str):
        signature = part.get("signature")
        return ThinkingPart(part["thinking"], signature if isinstance(signature, str) else None)
    if kind == "redacted_thinking" and isinstance(part.get("data"), str):
        return ThinkingPart(redacted=part["data"])
    if is_server_tool_block(kind):
        return ServerToolPart(dict(part))
    return part


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation: ``Message(MessageRole.USER, "Hi")``.

    ``content`` is a string, or a list of content parts (:class:`TextPart`,
    :class:`ImagePart`, plain strings, or a provider's own part dicts) for
    providers that accept them. ``name`` and ``tool_call_id`` are passed on to
    providers that use them. ``tool_calls`` are the tool calls an assistant
    message made (see :meth:`assistant_tool_calls`); a TOOL message answers
    one of them by its ``tool_call_id``.
    """

    role: MessageRole
    content: Any
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", _coerce_role(self.role))
        if self.tool_calls:
            object.__setattr__(self, "tool_calls", tuple(self.tool_calls))
        if isinstance(self.content, str):
            return
        if isinstance(self.content, list) and self.content:
            object.__setattr__(self, "content", _check_parts(self.content))
            return
        raise InvalidRequestError(
            f"Message content must be a string (or a list of content parts), "
            f"got {type(self.content).__name__}: convert it with str() first."
        )

    def to_dict(self) -> dict[str, Any]:
        """The plain ``{"role", "content"}`` form (as OpenAI takes it, ``tool_calls`` included)."""
        data: dict[str, Any] = {"role": self.role.value, "content": self.content}
        if self.name is not None:
            data["name"] = self.name
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        if self.tool_calls:
            data["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        return data

    @classmethod
    def assistant_tool_calls(cls, response: Response) -> Message:
        """The assistant turn of ``response`` with its tool calls, to send back before the results.

        When the reply had thinking or server tool blocks (``response.parts``),
        the content is those parts in their order, so that the adapter can send
        them back as the provider requires (Anthropic refuses a tool-use turn
        without its thinking block); else it is the reply's text.
        """
        content: Any = list(response.parts) if response.parts else (response.content or "")
        return cls(MessageRole.ASSISTANT, content, tool_calls=tuple(response.tool_calls))

    @classmethod
    def from_response(cls, response: Response) -> Message:
        """The assistant turn of ``response`` as it goes back into a conversation.

        The same as :meth:`assistant_tool_calls`, under a name that fits a reply without calls.
        """
        return cls.assistant_tool_calls(response)


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
        calls = tuple(ToolCall.from_dict(c) for c in item.get("tool_calls") or ())
        content = item["content"]
        if content is None and calls:  # OpenAI's assistant turn that only calls tools
            content = ""
        return Message(item["role"], content, tool_calls=calls, **extra)
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
    """Tokens a call used, as the provider counted them.

    ``input_tokens`` is every input token of the call, whatever the cache did;
    of those, ``cached_input_tokens`` were read from the provider's prompt
    cache and ``cache_write_tokens`` were written to it (Anthropic; of these,
    ``cache_write_1h_tokens`` into its one-hour cache). ``output_tokens`` is
    every output token billed, thinking included; ``reasoning_tokens`` is the
    part the provider says went to thinking or reasoning (0: not reported).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens neither read from nor written to the prompt cache."""
        return max(self.input_tokens - self.cached_input_tokens - self.cache_write_tokens, 0)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.cache_write_1h_tokens + other.cache_write_1h_tokens,
        )


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool (function) call the model asked for, the same shape for every provider.

    ``thought_signature`` is Gemini's opaque ``thoughtSignature`` for the call
    (None elsewhere). It travels back with the call when the conversation goes
    on, as Gemini's thinking models require.
    """

    id: str
    name: str
    arguments: dict[str, Any]
    thought_signature: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The call in OpenAI's ``tool_calls`` form (a Gemini signature under ``extra_content``)."""
        data: dict[str, Any] = {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)},
        }
        if self.thought_signature is not None:
            data["extra_content"] = {"google": {"thought_signature": self.thought_signature}}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        """A call from OpenAI's ``tool_calls`` form or ``{"id", "name", "arguments"}``."""
        if not isinstance(data, Mapping):
            raise InvalidRequestError(f"A tool call must be a dict, got {type(data).__name__}.")
        nested = data.get("function")
        function: Mapping[str, Any] = nested if isinstance(nested, Mapping) else data
        arguments = function.get("arguments", {})
        try:
            if isinstance(arguments, str):
                arguments = json.loads(arguments) if arguments.strip() else {}
            if not isinstance(data.get("id"), str) or not isinstance(function.get("name"), str):
                raise ValueError("it needs a string 'id' and a function 'name'")
            if not isinstance(arguments, Mapping):
                raise ValueError("its arguments are not a JSON object")
        except ValueError as exc:
            raise InvalidRequestError(
                f"Cannot read the tool call {dict(data)!r}: {exc}. Write "
                '{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}.'
            ) from exc
        extra = data.get("extra_content")
        google = extra.get("google") if isinstance(extra, Mapping) else None
        signature = google.get("thought_signature") if isinstance(google, Mapping) else None
        if not isinstance(signature, str):
            signature = data.get("thought_signature")
        signature = signature if isinstance(signature, str) else None
        return cls(data["id"], function["name"], dict(arguments), signature)


@dataclass(frozen=True, slots=True)
class Response:
    """The result of one completion.

    ``key_id`` is a short fingerprint of the API key that answered, never the
    key. ``raw`` is the provider SDK's own response object. ``cost`` is in US
    dollars where the model's price is known, else None. ``parsed`` holds the
    validated object of a structured-output call (``response_model=``).
    ``cached`` is True when the answer came from the response cache.
    ``fallback_index`` is 0 when the client's own provider answered, ``i + 1``
    when its ``fallbacks[i]`` did (``provider`` and ``model`` say which).

    ``content`` is the answer's text only. ``refusal`` is the provider's
    refusal message when the model refused (OpenAI ``message.refusal``);
    ``finish_reason == "refusal"`` is the sign on every provider that says so.
    ``parts`` is the whole assistant turn in order when it held more than text
    (:class:`TextPart`, :class:`ThinkingPart`, :class:`ServerToolPart`; empty
    for a plain answer): :meth:`Message.assistant_tool_calls` sends it back.
    ``thinking`` is the thinking text, ``server_tool_calls`` the tools the
    provider ran itself (never in ``tool_calls``).
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
    fallback_index: int = 0
    refusal: str | None = None
    parts: tuple[Any, ...] = field(default=(), repr=False)

    def __str__(self) -> str:
        return self.content

    @property
    def thinking_parts(self) -> tuple[ThinkingPart, ...]:
        """The thinking blocks of the turn (with their signatures), in order."""
        return tuple(p for p in self.parts if isinstance(p, ThinkingPart))

    @property
    def thinking(self) -> str:
        """The thinking text of the turn, blocks joined by blank lines ("" when none was shown)."""
        return "\n\n".join(p.thinking for p in self.thinking_parts if p.thinking)

    @property
    def server_tool_calls(self) -> tuple[ServerToolPart, ...]:
        """The calls of tools the provider ran itself (web search...), in order."""
        return tuple(p for p in self.parts if isinstance(p, ServerToolPart) and p.is_call)

    @property
    def server_tool_results(self) -> tuple[ServerToolPart, ...]:
        """The results of those calls, as the provider sent them."""
        return tuple(p for p in self.parts if isinstance(p, ServerToolPart) and not p.is_call)
