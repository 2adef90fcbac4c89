"""Adapters that speak their API over llmkit's own HTTP (:mod:`llmkit.transport`): the lean path.

An :class:`HttpProvider` builds the JSON body from the same parameters the SDK
would have been given, POSTs it on the endpoint every key of the client shares
(one connection pool, the key in the headers), and reads the JSON reply or the
SSE stream itself: no SDK request transformation, no SDK response models. The
SDK object stays one attribute away (``Response.raw``, built on first use), and
each key's SDK client (for instructor) is built on first use over the same
connection pool. What a subclass writes: the path, the auth headers, how a
JSON reply and a stream are read.
"""

from __future__ import annotations

import json
import threading
from abc import abstractmethod
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, ClassVar

from llmkit.errors import LLMError, MalformedResponseError, RateLimitError
from llmkit.providers._errors import error_for_status
from llmkit.providers.base import KeyAccess, Provider, ProviderReply, StreamDelta
from llmkit.request import Request
from llmkit.transport import Endpoint, HttpCall, HttpReply

__all__ = ["HttpProvider", "OpeningEvents"]

# SDK call options that are not part of the JSON body.
_TRANSPORT_OPTIONS = ("timeout", "extra_headers", "extra_query", "extra_body")


class HttpProvider(Provider):
    """The lean path for an API with a JSON request and reply (see the module docstring)."""

    lean = True
    path: ClassVar[str]
    """Where calls go, after the base URL (``"/chat/completions"``)."""
    request_id_header: ClassVar[str] = "x-request-id"

    def __init__(self, *, base_url: str | None = None, timeout: float | None = None) -> None:
        super().__init__(base_url=base_url, timeout=timeout)
        self._endpoint: Endpoint | None = None
        self._endpoint_lock = threading.Lock()

    # -- what a subclass writes ------------------------------------------------------------

    @abstractmethod
    def auth_headers(self, api_key: str) -> dict[str, str]:
        """The headers that carry ``api_key`` (and the API version, where one is required)."""

    @abstractmethod
    def read_json(self, data: dict[str, Any], headers: Mapping[str, str], request: Request) -> ProviderReply:
        """A 2xx reply's JSON as a ProviderReply (ValueError/KeyError when it is not what the API sends)."""

    @abstractmethod
    def read_events(self, headers: Mapping[str, str], request: Request) -> Any:
        """A parser of one stream: ``feed(chunk)`` and ``end()`` give its StreamDeltas, the first
        of them with the reply's request id and rate-limit state; ``deltas(chunks)`` all of them."""

    def stream_params(self, params: dict[str, Any]) -> None:
        """Turn a call's parameters into a streaming call's (in place)."""
        params["stream"] = True

    # -- the endpoint ------------------------------------------------------------------------

    def endpoint(self) -> Endpoint:
        """This adapter's endpoint (one per client), made on first use."""
        endpoint = self._endpoint
        if endpoint is None:
            with self._endpoint_lock:
                if self._endpoint is None:
                    self._endpoint = Endpoint(self.name, self.base_url or "", timeout=self.timeout)
                endpoint = self._endpoint
        return endpoint

    def warm(self) -> None:
        self.endpoint().warm()

    def abort(self) -> int:
        return self._endpoint.abort() if self._endpoint is not None else 0

    def close(self) -> None:
        if self._endpoint is not None:
            self._endpoint.close()

    def close_client(self, client: Any) -> None:
        """Nothing: every key's SDK client shares the endpoint's connections, closed with it."""

    def reset_after_fork(self) -> None:
        if self._endpoint is not None:
            self._endpoint.reset_after_fork()
        self._endpoint_lock = threading.Lock()

    # -- one call ------------------------------------------------------------------------------

    def http_call(self, request: Request, key: str, *, stream: bool = False) -> HttpCall:
        """The POST for ``request`` with ``key``: the body the SDK would have sent."""
        params = self.build_params(request)  # type: ignore[attr-defined]
        timeout = params.pop("timeout", None)
        headers = {**(params.pop("extra_headers", None) or {}), **self.auth_headers(key)}
        query = params.pop("extra_query", None)
        body = {**params, **(params.pop("extra_body", None) or {})}
        body.pop("extra_body", None)
        if stream:
            self.stream_params(body)
        path = self.path if not query else f"{self.path}?{_query(query)}"
        return HttpCall(path, body, headers, timeout)

    def call(self, key: KeyAccess, request: Request, deadline: float | None = None) -> ProviderReply:
        reply = self.endpoint().send(self.http_call(request, key.secret), deadline)
        return self.read_reply(reply, request)

    async def acall(self, key: KeyAccess, request: Request, deadline: float | None = None) -> ProviderReply:
        reply = await self.endpoint().asend(self.http_call(request, key.secret), deadline)
        return self.read_reply(reply, request)

    def read_reply(self, reply: HttpReply, request: Request) -> ProviderReply:
        if reply.status >= 300:
            raise self.error_of(reply)
        try:
            data = json.loads(reply.body)
            if not isinstance(data, dict):
                raise ValueError(f"the reply body is a {type(data).__name__}, not a JSON object")
            return self.read_json(data, reply.headers, request)
        except (ValueError, KeyError, IndexError, TypeError) as exc:  # billed, unreadable: not retried
            raise MalformedResponseError(f"Malformed reply from {self.name}: {exc}", provider=self.name,
                                         status_code=reply.status,
                                         request_id=reply.headers.get(self.request_id_header)) from exc

    def error_of(self, reply: HttpReply) -> LLMError:
        """The llmkit error for a status reply: its JSON error's message and type (or code)."""
        message, kind = _error_fields(reply.body)
        error = error_for_status(
            reply.status, message or f"HTTP {reply.status} from {self.name}", provider=self.name,
            headers=reply.headers, request_id=reply.headers.get(self.request_id_header), kind=kind,
        )  # fmt: skip
        if isinstance(error, RateLimitError):
            error.limits = self.limit_state(reply.headers)  # type: ignore[attr-defined]
        return error

    # -- one stream ------------------------------------------------------------------------------

    def call_stream(self, key: KeyAccess, request: Request,
                    deadline: float | None = None) -> Iterator[StreamDelta]:  # fmt: skip
        call = self.http_call(request, key.secret, stream=True)
        first, between = request.first_token_timeout, request.chunk_timeout
        with self.endpoint().stream(call, first_chunk=first, between=between, deadline=deadline) as opened:
            reply, chunks = opened
            if reply.status >= 300:
                raise self.error_of(HttpReply(reply.status, reply.headers, b"".join(chunks)))
            yield from self.read_events(reply.headers, request).deltas(chunks)

    async def acall_stream(self, key: KeyAccess, request: Request,
                           deadline: float | None = None) -> AsyncIterator[StreamDelta]:  # fmt: skip
        call = self.http_call(request, key.secret, stream=True)
        first, between = request.first_token_timeout, request.chunk_timeout
        async with self.endpoint().astream(call, first_chunk=first, between=between,
                                           deadline=deadline) as opened:  # fmt: skip
            reply, chunks = opened
            if reply.status >= 300:
                body = b"".join([chunk async for chunk in chunks])
                raise self.error_of(HttpReply(reply.status, reply.headers, body))
            parser = self.read_events(reply.headers, request)
            feed = parser.feed  # parsed as the chunks come, in this task (no thread, no layer per chunk)
            async for chunk in chunks:
                for delta in feed(chunk):
                    yield delta
            for delta in parser.end():
                yield delta


class OpeningEvents:
    """A stream parser whose first deltas are given before any chunk: the reply's request id and
    rate-limit state, and anything an adapter puts in front (Anthropic's JSON prefill)."""

    def __init__(self, first: StreamDelta, parser: Any, prefix: tuple[StreamDelta, ...] = ()) -> None:
        self._opening: list[StreamDelta] | None = [first, *prefix]
        self._parser = parser

    def _open(self) -> list[StreamDelta]:
        opening, self._opening = self._opening or [], None
        return opening

    def feed(self, chunk: bytes) -> list[StreamDelta]:
        if self._opening is None:
            return self._parser.feed(chunk)
        return [*self._open(), *self._parser.feed(chunk)]

    def end(self) -> Iterator[StreamDelta]:
        yield from self._open()
        yield from self._parser.end()

    def deltas(self, chunks: Iterable[bytes]) -> Iterator[StreamDelta]:
        feed = self.feed
        for chunk in chunks:
            yield from feed(chunk)
        yield from self.end()


def _error_fields(body: bytes) -> tuple[str | None, str | None]:
    """The message and type (or code) of a JSON error body, when there is one."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return (body.decode("utf-8", "replace")[:300] or None), None
    error = data.get("error", data) if isinstance(data, Mapping) else None
    if not isinstance(error, Mapping):
        return None, None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    for name in ("code", "type"):
        kind = error.get(name)
        if isinstance(kind, str) and kind != "error":
            return message, kind
    return message, None


def _query(query: Mapping[str, Any]) -> str:
    from urllib.parse import urlencode

    return urlencode(query)
