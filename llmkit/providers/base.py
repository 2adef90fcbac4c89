"""The adapter contract: a provider translates, and does nothing else.

An adapter builds the provider's request from a :class:`~llmkit.request.Request`,
parses the reply into a :class:`~llmkit.types.Response`, reads the
rate-limit headers into a :class:`~llmkit.ratelimit.ServerLimitState`, and
maps the SDK's exceptions into llmkit's error tree. Keys, limits, retries and
health belong to the pool; nothing outside ``providers/`` branches on a
provider's name.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from llmkit.errors import (
    AuthenticationError,
    InvalidRequestError,
    LLMError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    RequestTimeoutError,
)
from llmkit.ratelimit import ServerLimitState
from llmkit.request import Request
from llmkit.retry import parse_retry_after
from llmkit.types import Response, ToolCall, Usage

__all__ = [
    "Capabilities",
    "Provider",
    "ProviderReply",
    "StreamDelta",
    "error_for_status",
    "fingerprint",
    "redact",
    "warn_if_insecure",
]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an adapter can do in llmkit (``docs/providers.md`` shows the table; a test checks it).

    ``streaming``: ``client.stream``; ``tools``: ``tools=`` and ``Response.tool_calls``;
    ``images``: ImagePart content; ``structured_outputs``: ``response_model=``;
    ``json_mode``: ``json_mode=True``; ``token_counting``: exact server-side
    token counts before a call; ``rate_limit_headers``: the server's limit
    headers correct the local limiter. Requests using a missing capability are
    refused with InvalidRequestError before anything is sent.
    """

    streaming: bool = False
    tools: bool = False
    images: bool = False
    structured_outputs: bool = False
    json_mode: bool = False
    token_counting: bool = False
    rate_limit_headers: bool = False


_LOCAL_HOSTS = ("localhost", "host.docker.internal")


def _is_local_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOCAL_HOSTS or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def warn_if_insecure(base_url: str | None, provider: str) -> bool:
    """Log a warning when ``base_url`` is plain ``http://`` to a host that is not this machine.

    Keys and prompts would cross the network unencrypted. Returns whether it warned.
    """
    if not base_url or not base_url.lower().startswith("http://"):
        return False
    from urllib.parse import urlsplit

    try:
        host = urlsplit(base_url).hostname or ""
    except ValueError:
        return False
    if _is_local_host(host):
        return False
    logger.warning(
        "%s base_url %s uses plain http:// to %s: API keys and prompts travel unencrypted; use https://",
        provider, base_url, host,
    )
    return True


@dataclass(frozen=True, slots=True)
class ProviderReply:
    """A parsed reply: the response (without pool fields) and the server's limit state."""

    response: Response
    limits: ServerLimitState | None = None


@dataclass(frozen=True, slots=True)
class StreamDelta:
    """One piece of a stream: text, finished tool calls, and at the end usage and the finish reason."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str | None = None
    request_id: str | None = None
    limits: ServerLimitState | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    key_id: str | None = None  # set by the pool: the key that serves the stream, and on which try
    attempts: int = 0


def fingerprint(api_key: str) -> str:
    """A short, stable, non-reversible id for a key: safe in logs, status and Redis."""
    return "key-" + hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:8]


# Shapes of common API keys; anything matching is masked in error messages.
_KEY_PATTERN = re.compile(r"\b(?:sk-ant-|sk-|gsk_|AIza)[A-Za-z0-9_\-*.]{6,}")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with the given secrets and anything shaped like an API key masked."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, fingerprint(secret))
    return _KEY_PATTERN.sub("[redacted]", text)


_STATUS_ERRORS: dict[int, type[LLMError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    408: RequestTimeoutError,
    409: ProviderError,
    429: RateLimitError,
    529: OverloadedError,
}


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    headers: Mapping[str, str] | None = None,
    request_id: str | None = None,
) -> LLMError:
    """The llmkit error for an HTTP status, carrying the server's Retry-After."""
    cls = _STATUS_ERRORS.get(status)
    if cls is None:
        cls = ProviderError if status >= 500 else InvalidRequestError
    return cls(
        message,
        provider=provider,
        status_code=status,
        request_id=request_id,
        retry_after=parse_retry_after(headers),
    )


class Provider(ABC):
    """One provider's translation layer. One instance per client; one SDK client per key."""

    name: ClassVar[str]
    default_model: ClassVar[str]
    requires_key: ClassVar[bool] = True
    default_base_url: ClassVar[str | None] = None
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, *, base_url: str | None = None, timeout: float | None = None) -> None:
        self.base_url = base_url or self.default_base_url
        self.timeout = timeout
        warn_if_insecure(self.base_url, self.name)
        # instructor wrappers of SDK clients, by (id(client), mode); each entry
        # holds its client, so the id stays unique until close_client drops it.
        self._structured: dict[tuple[int, Any], tuple[Any, Any]] = {}
        self._structured_lock = threading.Lock()

    @abstractmethod
    def create_client(self, api_key: str) -> Any:
        """The SDK client for one key, with the SDK's own retries off."""

    @abstractmethod
    def complete(self, client: Any, request: Request) -> ProviderReply:
        """Send one request and parse the reply. Raises an LLMError on failure."""

    def stream(self, client: Any, request: Request) -> Iterator[StreamDelta]:
        """Send one streaming request, yielding deltas. Raises an LLMError on failure."""
        raise InvalidRequestError(f"{self.name} does not support streaming in llmkit yet.")

    def warm_client(self, client: Any) -> None:
        """Load what the SDK would otherwise load lazily on the first call.

        The pool builds every key's client before its first reservation so
        that no second-long import falls between reserving capacity and
        sending (the provider counts the request when it arrives).
        """
        return None

    def close_client(self, client: Any) -> None:
        """Release the client's connections (and forget its instructor wrappers)."""
        with self._structured_lock:
            for key in [k for k, (c, _) in self._structured.items() if c is client]:
                del self._structured[key]
        close = getattr(client, "close", None)
        if close is not None:
            close()

    # -- structured outputs (instructor; driven by llmkit.structured) ---------------

    def structured_client(self, client: Any, mode: Any = None) -> Any:
        """instructor's wrapper of ``client`` for ``mode``: made once, then reused (thread-safe)."""
        key = (id(client), mode)
        with self._structured_lock:
            entry = self._structured.get(key)
            if entry is None:
                entry = (client, self.wrap_structured(client, mode))
                self._structured[key] = entry
        return entry[1]

    def wrap_structured(self, client: Any, mode: Any) -> Any:
        """Wrap an SDK client for structured outputs (``mode=None``: instructor's default).

        The result needs instructor's ``create_with_completion(response_model=,
        max_retries=, hooks=, **params) -> (model, completion)``; an adapter
        without an instructor integration may return its own object with it.
        """
        raise InvalidRequestError(f"{self.name} does not support response_model= in llmkit yet.")

    def structured_params(self, request: Request) -> dict[str, Any]:
        """The SDK call's parameters for instructor (it adds the tool or schema itself)."""
        raise InvalidRequestError(f"{self.name} does not support response_model= in llmkit yet.")

    def parse_structured(self, completion: Any) -> Response:
        """The raw completion instructor hands back, parsed (no headers: the SDK object's id)."""
        raise NotImplementedError

    def completion_usage(self, completion: Any) -> Usage:
        """The usage of one raw completion (zero when it has none). Must not raise."""
        return Usage()

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
        needs = (
            ("tools", bool(request.tools), caps.tools),
            ("json_mode", request.json_mode, caps.json_mode),
            ("images", _has_images(request), caps.images),
            ("streaming", request.stream, caps.streaming),
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


def header_number(headers: Mapping[str, str], name: str) -> float | None:
    """A numeric header, or None when absent or not a number."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str | None) -> float | None:
    """Seconds in a Go-style duration as OpenAI sends it ("1s", "6m0s", "20ms")."""
    if not text:
        return None
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
