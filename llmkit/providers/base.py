r"""The adapter contract: a provider translates, and does nothing else.

An adapter declares what it is (its name, aliases, key variables, default
model and base URL, :class:`Capabilities`) and writes the translation: it
builds the provider's request from a :class:`~llmkit.request.Request`, parses
the reply into a :class:`~llmkit.types.Response` (and a stream into
:class:`StreamDelta`\ s), reads the rate-limit headers into a
:class:`ServerLimitState`, and maps the SDK's exceptions into llmkit's error
tree. Keys, limits, retries and health belong to the engine; nothing outside
``providers/`` branches on a provider's name.

Shared helpers live beside this module: ``_errors`` (statuses as errors),
``_headers`` (numbers, durations, Retry-After), ``_urls`` (the insecure-URL
warning); fingerprints and redaction are :mod:`llmkit.redaction`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from llmkit.errors import InvalidRequestError, LLMError, ProviderError
from llmkit.providers._options import call_options
from llmkit.providers._urls import warn_if_insecure
from llmkit.request import Request
from llmkit.types import Response, ToolCall, Usage

__all__ = ["Capabilities", "KeyAccess", "Provider", "ProviderReply", "ServerLimitState", "StreamDelta"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an adapter can do in llmkit (``docs/providers.md`` shows the table; a test checks it).

    ``streaming``: ``client.stream``; ``tools``: ``tools=`` and ``Response.tool_calls``;
    ``images``: ImagePart content; ``structured_outputs``: ``response_model=``;
    ``json_mode``: ``json_mode=True``; ``token_counting``: exact server-side
    token counts before a call; ``rate_limit_headers``: the server's limit
    headers correct the local limiter; ``thinking``: ``thinking=`` (extended
    thinking, reasoning effort), thinking blocks and reasoning tokens read
    back; ``refusals``: the provider's refusals come back as
    ``finish_reason="refusal"`` (and ``Response.refusal``); ``server_tools``:
    ``server_tools=`` and tools the provider runs itself, kept apart from
    ``tool_calls``; ``prompt_caching``: prompt-cache reads (and writes) in
    ``Usage``, priced, and ``cache_control=`` where the provider needs marks.
    Requests using a missing capability are refused with InvalidRequestError
    before anything is sent.
    """

    streaming: bool = False
    tools: bool = False
    images: bool = False
    structured_outputs: bool = False
    json_mode: bool = False
    token_counting: bool = False
    rate_limit_headers: bool = False
    thinking: bool = False
    refusals: bool = False
    server_tools: bool = False
    prompt_caching: bool = False


@dataclass(frozen=True, slots=True)
class ServerLimitState:
    """What a provider's rate-limit headers said about a key (None = not said).

    ``remaining_*`` is what the server had left when it admitted the call,
    ``limit_*`` its limit per minute, ``reset_*`` the seconds until the limit is
    whole again: from when the server answered (OpenAI's durations), or, with
    ``resets_from_reply``, from when the reply was read (Anthropic's RFC 3339
    timestamps, turned into seconds from that moment).
    """

    remaining_requests: float | None = None
    remaining_input_tokens: float | None = None
    remaining_output_tokens: float | None = None
    remaining_tokens: float | None = None
    limit_requests: float | None = None
    limit_input_tokens: float | None = None
    limit_output_tokens: float | None = None
    limit_tokens: float | None = None
    reset_requests: float | None = None
    reset_input_tokens: float | None = None
    reset_output_tokens: float | None = None
    reset_tokens: float | None = None
    resets_from_reply: bool = False


@dataclass(frozen=True, slots=True)
class ProviderReply:
    """A parsed reply: the response (without pool fields) and the server's limit state.

    ``limit_input_tokens`` is how many input tokens the provider charges to
    its input-tokens-per-minute limit for this call, when that differs from
    ``response.usage.input_tokens`` (Anthropic does not count cache reads on
    current models); None means ``usage.input_tokens``.
    """

    response: Response
    limits: ServerLimitState | None = None
    limit_input_tokens: int | None = None


@dataclass(slots=True)
class StreamDelta:
    """One piece of a stream: text, finished tool calls, and at the end usage and the finish reason.

    Treat it as immutable (``dataclasses.replace`` for a changed copy). It is not frozen
    because a stream makes one per chunk: a frozen dataclass's ``__init__`` took 1.6 µs, this
    one 0.3 µs.

    ``thinking`` and ``refusal`` are pieces of the thinking text and of a
    refusal as they arrive; ``parts`` are finished non-text blocks of the turn
    (:class:`~llmkit.types.ThinkingPart`, :class:`~llmkit.types.ServerToolPart`)
    in their place among the text. ``limit_input_tokens`` comes with the final
    usage, as in :class:`ProviderReply`.
    """

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str | None = None
    request_id: str | None = None
    limits: ServerLimitState | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    key_id: str | None = None  # set by the pool: the key that serves the stream, and on which try
    attempts: int = 0
    thinking: str = ""
    refusal: str = ""
    parts: tuple[Any, ...] = ()
    limit_input_tokens: int | None = None

    def delivers_output(self) -> bool:
        """Whether this delta hands the caller output (a retry would repeat it).

        Text, tool calls and a refusal do. Thinking does not: it is never
        yielded, and a new attempt starts the stream's thinking afresh
        (:class:`~llmkit.streaming.TextStream` drops what an earlier try thought).
        """
        return bool(self.text or self.tool_calls or self.refusal)


class KeyAccess(Protocol):
    """What an adapter gets of a key for one call: the key itself and its SDK client (made on first use)."""

    @property
    def secret(self) -> str: ...

    @property
    def client(self) -> Any: ...


class Provider(ABC):
    """One provider's translation layer. One instance per client; one SDK client per key.

    The engine calls :meth:`call` and :meth:`call_stream` (and their async
    twins) with a :class:`KeyAccess`; an adapter that talks through its SDK
    writes :meth:`complete` and :meth:`stream` over the key's SDK client, one
    on llmkit's own HTTP derives from :class:`llmkit.providers._http.HttpProvider`.
    """

    name: ClassVar[str]
    """The canonical provider name (``"openai"``): settings, status and errors use it."""
    aliases: ClassVar[tuple[str, ...]] = ()
    """Other names users may give for it (``"claude"``, ``"ollama"``), lower case."""
    key_env_vars: ClassVar[tuple[str, ...]] = ()
    """Environment variables holding its keys, most specific first (``*_API_KEYS`` first)."""
    default_model: ClassVar[str]
    requires_key: ClassVar[bool] = True
    default_base_url: ClassVar[str | None] = None
    capabilities: ClassVar[Capabilities] = Capabilities()
    structured_backend: ClassVar[str | None] = None
    """``"module:Class"`` of its structured-output backend (:mod:`llmkit.structured`); None: none."""
    lean: ClassVar[bool] = False
    """True when calls go over llmkit's own HTTP (:mod:`llmkit.transport`), not the SDK's."""
    batch_api: ClassVar[str | None] = None
    """``"module:Class"`` of its batch API translation (:mod:`llmkit.providers._batch`), which
    ``client.batch(..., via="provider")`` uses; None: the provider has no batch API."""

    def __init__(self, *, base_url: str | None = None, timeout: float | None = None) -> None:
        self.base_url = base_url or self.default_base_url
        self.timeout = timeout
        warn_if_insecure(self.base_url, self.name)

    @abstractmethod
    def create_client(self, api_key: str) -> Any:
        """The SDK client for one key, with the SDK's own retries off."""

    @abstractmethod
    def complete(self, client: Any, request: Request) -> ProviderReply:
        """Send one request and parse the reply. Raises an LLMError on failure."""

    def stream(self, client: Any, request: Request) -> Iterator[StreamDelta]:
        """Send one streaming request, yielding deltas. Raises an LLMError on failure."""
        raise InvalidRequestError(f"{self.name} does not support streaming in llmkit yet.")

    # -- what the engine calls ------------------------------------------------------------

    def call(self, key: KeyAccess, request: Request, deadline: float | None = None) -> ProviderReply:
        """One call with ``key``, ending by ``deadline`` (``time.monotonic()``) where it can."""
        return self.complete(key.client, request)

    def call_stream(self, key: KeyAccess, request: Request,
                    deadline: float | None = None) -> Iterator[StreamDelta]:  # fmt: skip
        return self.stream(key.client, request)

    async def acall(self, key: KeyAccess, request: Request, deadline: float | None = None) -> ProviderReply:
        """:meth:`call` in asyncio; an SDK-based adapter runs it in a thread."""
        import asyncio

        return await asyncio.to_thread(self.call, key, request, deadline)

    async def acall_stream(self, key: KeyAccess, request: Request,
                           deadline: float | None = None) -> AsyncIterator[StreamDelta]:  # fmt: skip
        """:meth:`call_stream` in asyncio; an SDK-based adapter reads it in a thread, chunk by chunk."""
        import asyncio

        deltas = self.call_stream(key, request, deadline)
        try:
            while True:
                delta = await asyncio.to_thread(next, deltas, None)
                if delta is None:
                    return
                yield delta
        finally:
            close = getattr(deltas, "close", None)
            if close is not None:
                await asyncio.to_thread(close)

    def warm(self) -> None:  # noqa: B027 - optional: nothing to do for most adapters
        """Load what the first call would otherwise wait for (imports, connection pools)."""

    def abort(self) -> int:
        """End the calls on the wire at once, where the adapter can; how many connections it ended."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional
        """Release what the adapter holds beyond the keys' clients (idempotent)."""

    def reset_after_fork(self) -> None:  # noqa: B027 - optional
        """In a forked child: forget connections that belong to the parent."""

    def warm_client(self, client: Any) -> None:
        """Load what the SDK would otherwise load lazily on the first call.

        The pool builds every key's client before its first reservation so
        that no second-long import falls between reserving capacity and
        sending (the provider counts the request when it arrives).
        """
        return None

    def close_client(self, client: Any) -> None:
        """Release the client's connections."""
        close = getattr(client, "close", None)
        if close is not None:
            close()

    def map_error(self, exc: BaseException) -> LLMError:
        """The llmkit error for an exception the SDK raised outside :meth:`complete`."""
        if isinstance(exc, LLMError):
            return exc
        return ProviderError(f"{self.name} call failed: {type(exc).__name__}: {exc}", provider=self.name)

    def sdk_options(self) -> dict[str, Any]:
        """Keyword arguments for an SDK client: our base URL, the SDK's retries off, and
        our timeout only when one is set (None keeps the SDK's own default, not "no timeout")."""
        options: dict[str, Any] = {"base_url": self.base_url, "max_retries": 0}
        if self.timeout is not None:
            options["timeout"] = self.timeout
        return options

    def check_request(self, request: Request) -> None:
        """InvalidRequestError when ``request`` needs a capability this adapter lacks."""
        caps = self.capabilities
        options = call_options(request, self.name)
        needs = (
            ("tools", bool(request.tools), caps.tools),
            ("json_mode", request.json_mode, caps.json_mode),
            ("images", _has_images(request), caps.images),
            ("streaming", request.stream, caps.streaming),
            ("thinking=", options.thinking_on, caps.thinking),
            ("server_tools=", bool(options.server_tools), caps.server_tools),
        )
        for what, needed, able in needs:
            if needed and not able:
                message = f"{self.name} does not support {what} in llmkit."
                raise InvalidRequestError(message, provider=self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"


def _has_images(request: Request) -> bool:
    from llmkit.types import ImagePart

    return any(
        isinstance(part, ImagePart)
        for message in request.messages
        if not isinstance(message.content, str)
        for part in message.content
    )

