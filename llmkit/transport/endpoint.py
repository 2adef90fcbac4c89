"""One provider endpoint (a base URL): a connection pool shared by every key, and sends with a deadline.

:meth:`Endpoint.send` POSTs an :class:`~llmkit.transport.messages.HttpCall`
and reads the whole reply before its deadline; :meth:`Endpoint.stream` yields
a streamed reply's chunks, each within the stream's first-chunk or
between-chunks timeout and all within its deadline; :meth:`Endpoint.asend`
and :meth:`Endpoint.astream` do the same in asyncio, on one connection pool
per event loop. Deadlines are ``time.monotonic()``.

Requests go straight to httpcore2's connection pool (:mod:`~llmkit.transport.wire`
builds them); the SDK clients of every key reach the same blocking pool
through :attr:`Endpoint.client`, an ``httpx2.Client`` over it.

How a deadline holds in a blocking call: connecting is bounded by the time
left; the wait for the reply's headers is bounded by what is left when that
wait begins (httpcore2's trace hook sets it); the body is read while the
watchdog (:mod:`~llmkit.transport.watchdog`) stands ready to shut the socket
at the deadline; a stream keeps one watchdog timer and moves it chunk by
chunk. In asyncio an :class:`~llmkit.transport.aguard.AsyncGuard` cancels
the call's own task when its time comes. :meth:`Endpoint.abort` shuts every
socket of the endpoint and cancels every async call, which ends every call
on it at once with PoolClosedError (``close()`` after its timeout). Errors
raised here are the transport's: timeouts, connections, protocol errors.
What a status means is the adapter's to say.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from llmkit.errors import LLMError, NetworkError, PoolClosedError, RequestTimeoutError
from llmkit.transport import watchdog
from llmkit.transport.messages import HttpCall, HttpReply
from llmkit.transport.sockets import TrackingBackend, shut, socket_of
from llmkit.transport.wire import Inflate, ReplyHeaders, Target, decoder_for, ssl_context

if TYPE_CHECKING:
    import asyncio
    import ssl

    import httpcore2
    import httpx2

    from llmkit.transport.aguard import AsyncGuard

__all__ = ["DEFAULT_TIMEOUT", "Endpoint"]

_Opened = tuple[HttpReply, AsyncIterator[bytes]]  # a streamed reply's status and headers, and its chunks

DEFAULT_TIMEOUT = 600.0  # seconds for a complete reply when nothing says (the official SDKs' default)
CONNECT_TIMEOUT = 10.0
MAX_CONNECTIONS = 1000
KEEPALIVE_CONNECTIONS = 100
KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept (httpx2's default)


class Endpoint:
    """The HTTP side of one adapter (one provider and base URL), shared by all its keys."""

    def __init__(self, provider: str, base_url: str, *, timeout: float | None = None) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout if timeout is not None else DEFAULT_TIMEOUT
        self._target: Target | None = None
        self._ssl: ssl.SSLContext | None = None
        self._pool: httpcore2.ConnectionPool | None = None
        self._sync: httpx2.Client | None = None
        self._backend: TrackingBackend | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpcore2.AsyncConnectionPool] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._closed = False
        self._aborted = False
        self._guards: set[AsyncGuard] = set()  # the async calls on the wire, for abort()

    def __repr__(self) -> str:
        return f"Endpoint({self.provider}, {self.base_url!r})"

    # -- connection pools ---------------------------------------------------------------------

    def warm(self) -> None:
        """Build the blocking connection pool now (imports httpcore2; no connection is opened)."""
        self._sync_pool()

    def _sync_pool(self) -> httpcore2.ConnectionPool:
        pool = self._pool
        if pool is None:
            import httpcore2

            with self._lock:
                if self._closed:
                    raise PoolClosedError("The client is closed", provider=self.provider)
                if self._pool is None:
                    self._backend = TrackingBackend(httpcore2.SyncBackend())  # its sockets are known
                    backend: Any = self._backend
                    self._pool = httpcore2.ConnectionPool(network_backend=backend, **self._limits())
                pool = self._pool
        return pool

    def _limits(self) -> dict[str, Any]:
        """The connection pools' settings (httpx2's defaults, but for the number of connections)."""
        return {"ssl_context": self._tls(self._wire()), "max_connections": MAX_CONNECTIONS,
                "max_keepalive_connections": KEEPALIVE_CONNECTIONS,
                "keepalive_expiry": KEEPALIVE_EXPIRY}  # fmt: skip

    def _wire(self) -> Target:
        if self._target is None:
            self._target = Target(self.base_url)
        return self._target

    def _tls(self, target: Target) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl_context(target.scheme)
        return self._ssl

    @property
    def client(self) -> httpx2.Client:
        """An ``httpx2.Client`` over the blocking pool (made on first use): every key's SDK client uses it."""
        client = self._sync
        if client is None:
            import httpx2

            pool = self._sync_pool()
            with self._lock:
                if self._sync is None:
                    transport = httpx2.HTTPTransport(verify=self._tls(self._wire()))
                    transport._pool.close()
                    transport._pool = pool  # the SDKs' requests share our connections
                    self._sync = httpx2.Client(transport=transport, follow_redirects=False)
                client = self._sync
        return client

    def _async_pool(self) -> httpcore2.AsyncConnectionPool:
        """The asyncio connection pool of the running loop (one per loop, made on first use)."""
        import asyncio  # here: the sync path never imports asyncio

        loop = asyncio.get_running_loop()
        pool = self._async.get(loop)
        if pool is None:
            import httpcore2

            with self._lock:
                if self._closed:
                    raise PoolClosedError("The client is closed", provider=self.provider)
                pool = self._async.get(loop)
                if pool is None:
                    pool = self._async[loop] = httpcore2.AsyncConnectionPool(**self._limits())
        return pool

    def deadline(self, call: HttpCall, cap: float | None = None) -> float:
        """When ``call`` must be over: its timeout (or the endpoint's) from now, at most ``cap``."""
        deadline = time.monotonic() + (call.timeout if call.timeout is not None else self.timeout)
        return deadline if cap is None else min(deadline, cap)

    def _request(self, call: HttpCall, deadline: float, *, headers_due: float | None = None,
                 blocking: bool = True) -> httpcore2.Request:  # fmt: skip
        """The POST for ``call``. Its socket timeouts are what is left of ``deadline``; for a blocking
        call, the wait for headers gets what is left of ``headers_due`` (default: ``deadline``)
        when it starts, and the body what is left of ``deadline`` (an async call is bounded by
        its guard instead)."""
        import httpcore2

        target = self._wire()
        left = max(0.001, deadline - time.monotonic())
        timeouts = {"connect": min(left, CONNECT_TIMEOUT), "read": left, "write": left, "pool": left}
        body = json.dumps(call.body, separators=(",", ":"), ensure_ascii=False).encode()
        url = httpcore2.URL(scheme=target.scheme, host=target.host, port=target.port,
                            target=(target.prefix + call.path).encode("ascii"))  # fmt: skip
        extensions: dict[str, Any] = {"timeout": timeouts}
        if blocking:
            headers_by = deadline if headers_due is None else headers_due

            def trace(event: str, info: dict[str, Any]) -> None:
                if event == "http11.receive_response_headers.started":
                    timeouts["read"] = max(0.001, headers_by - time.monotonic())
                elif event == "http11.receive_response_headers.complete":
                    timeouts["read"] = max(0.001, deadline - time.monotonic())

            extensions["trace"] = trace
        return httpcore2.Request(b"POST", url, headers=target.header_list(call.headers, body), content=body,
                                 extensions=extensions)  # fmt: skip

    # -- blocking --------------------------------------------------------------------------

    def send(self, call: HttpCall, deadline: float | None = None) -> HttpReply:
        """POST ``call`` and read the whole reply by ``deadline`` (default: from its timeout)."""
        deadline = self.deadline(call, deadline)
        pool = self._sync_pool()
        request = self._request(call, deadline)
        timer: watchdog.Timer | None = None
        try:
            response = pool.handle_request(request)
            try:
                sock = socket_of(response.extensions.get("network_stream"))
                timer = watchdog.arm(deadline, lambda: shut(sock))
                body = b"".join(response.stream)  # type: ignore[arg-type]
            finally:
                if timer is not None:
                    timer.cancel()
                response.close()
        except Exception as exc:
            error = self._failure(exc, deadline, "a complete reply", timer)
            if error is None:
                raise
            raise error from exc
        headers = ReplyHeaders.of(response.headers)
        decoder = decoder_for(headers, self.provider)
        if decoder is not None:
            body = self._inflated(decoder, body)
        return HttpReply(response.status, headers, body)

    def _inflated(self, decoder: Inflate, body: bytes) -> bytes:
        try:
            return decoder.feed(body) + decoder.flush()
        except Exception as exc:
            raise NetworkError(f"The reply from {self._where()} could not be decoded: {exc}",
                               provider=self.provider) from exc  # fmt: skip

    @contextlib.contextmanager
    def stream(self, call: HttpCall, *, first_chunk: float | None = None, between: float | None = None,
               deadline: float | None = None) -> Iterator[tuple[HttpReply, Iterator[bytes]]]:  # fmt: skip
        """POST ``call`` and yield ``(reply headers, chunks)``: the first chunk must come within
        ``first_chunk`` seconds of sending, each next one within ``between`` of the one before,
        all by ``deadline``."""
        deadline = self.deadline(call, deadline)
        first_due = _due(deadline, first_chunk)
        pool = self._sync_pool()
        request = self._request(call, deadline, headers_due=first_due)
        try:
            response = pool.handle_request(request)
        except Exception as exc:
            error = self._failure(exc, first_due, _stage(first_chunk))
            if error is None:
                raise
            raise error from exc
        try:
            headers = ReplyHeaders.of(response.headers)
            chunks = self._chunks(response, decoder_for(headers, self.provider), deadline, first_due, between)
            yield HttpReply(response.status, headers), chunks
        finally:
            response.close()

    def _chunks(self, response: Any, decoder: Inflate | None, deadline: float, first_due: float,
                between: float | None) -> Iterator[bytes]:  # fmt: skip
        """The body's chunks, one watchdog timer moved along: due while a chunk is awaited,
        paused while the caller has the one before."""
        sock = socket_of(response.extensions.get("network_stream"))
        raw = iter(response.stream)
        timer = watchdog.arm(first_due, lambda: shut(sock))
        due, stage = first_due, "first chunk" if first_due < deadline else "chunk"
        try:
            while True:
                try:
                    chunk = next(raw, None)
                except Exception as exc:
                    error = self._failure(exc, due, stage, timer)
                    if error is None:
                        raise
                    raise error from exc
                if chunk is None:
                    break
                timer.pause()
                yield decoder.feed(chunk) if decoder is not None else chunk
                due, stage = _due(deadline, between), "chunk"
                timer.due(due)
            if decoder is not None:
                yield decoder.flush()
        finally:
            timer.cancel()

    def _failure(self, exc: BaseException, deadline: float, stage: str,
                 timer: watchdog.Timer | None = None) -> LLMError | None:  # fmt: skip
        """httpcore2's errors as llmkit's (a timeout, or a watchdog's shutdown, says what it
        waited for); None for anything else (raised as it is)."""
        import httpcore2

        if isinstance(exc, httpcore2.TimeoutException):
            return RequestTimeoutError(self._late(stage, deadline), provider=self.provider)
        if isinstance(exc, (httpcore2.NetworkError, httpcore2.ProtocolError, httpcore2.ProxyError,
                            httpcore2.UnsupportedProtocol, OSError)):  # fmt: skip
            if self._closed or self._aborted:
                return self._closed_error()
            if timer is not None and timer.fired:
                return RequestTimeoutError(self._late(stage, deadline), provider=self.provider)
            return NetworkError(f"Connection to {self._where()} failed: {type(exc).__name__}: {exc}",
                                provider=self.provider)  # fmt: skip
        return None

    def _closed_error(self) -> PoolClosedError:
        return PoolClosedError("The client was closed while this call was in flight", provider=self.provider)

    def _late(self, stage: str, deadline: float) -> str:
        return f"No {stage} from {self._where()} in time (the call's deadline or timeout passed)"

    def _where(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.base_url)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"

    # -- asyncio ---------------------------------------------------------------------------

    async def asend(self, call: HttpCall, deadline: float | None = None) -> HttpReply:
        """:meth:`send` in asyncio: the deadline cancels the request (no thread is held)."""
        deadline = self.deadline(call, deadline)
        pool = self._async_pool()
        request = self._request(call, deadline, blocking=False)
        with self._guarded(deadline, "a complete reply") as guard:
            guard.watch()
            response = await pool.handle_async_request(request)
            try:
                body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
            finally:
                await response.aclose()
        headers = ReplyHeaders.of(response.headers)
        decoder = decoder_for(headers, self.provider)
        if decoder is not None:
            body = self._inflated(decoder, body)
        return HttpReply(response.status, headers, body)

    @contextlib.contextmanager
    def _guarded(self, due: float, stage: str) -> Iterator[AsyncGuard]:
        """An async call's guard, registered for :meth:`abort`; its errors mapped as llmkit's.
        The caller's own cancellation passes through as it is."""
        from llmkit.transport.aguard import AsyncGuard

        guard = AsyncGuard(due, stage)
        with self._lock:
            if self._aborted:
                raise self._closed_error()
            self._guards.add(guard)
        try:
            yield guard
        except BaseException as exc:
            if guard.caused(exc):
                if guard.aborted:
                    raise self._closed_error() from None
                late = self._late(guard.stage, guard.due)
                raise RequestTimeoutError(late, provider=self.provider) from None
            error = self._failure(exc, guard.due, guard.stage)
            if error is None:
                raise
            raise error from exc
        finally:
            guard.close()
            with self._lock:
                self._guards.discard(guard)

    @contextlib.asynccontextmanager
    async def astream(self, call: HttpCall, *, first_chunk: float | None = None, between: float | None = None,
                      deadline: float | None = None) -> AsyncIterator[_Opened]:  # fmt: skip
        """:meth:`stream` in asyncio."""
        deadline = self.deadline(call, deadline)
        first_due = _due(deadline, first_chunk)
        pool = self._async_pool()
        request = self._request(call, deadline, blocking=False)
        with self._guarded(first_due, _stage(first_chunk)) as guard:
            guard.watch()
            response = await pool.handle_async_request(request)
            guard.rest()
        try:
            headers = ReplyHeaders.of(response.headers)
            decoder = decoder_for(headers, self.provider)
            chunks = self._achunks(response, decoder, deadline, first_due, between)
            yield HttpReply(response.status, headers), chunks
        finally:
            await response.aclose()

    async def _achunks(self, response: Any, decoder: Inflate | None, deadline: float, first_due: float,
                       between: float | None) -> AsyncIterator[bytes]:  # fmt: skip
        raw = response.stream.__aiter__()
        stage = "first chunk" if first_due < deadline else "chunk"
        with self._guarded(first_due, stage) as guard:
            due = first_due
            while True:
                guard.watch(due)
                try:
                    chunk = await raw.__anext__()
                except StopAsyncIteration:
                    break
                guard.rest()
                yield decoder.feed(chunk) if decoder is not None else chunk
                due, guard.stage = _due(deadline, between), "chunk"
            if decoder is not None:
                yield decoder.flush()

    # -- lifetime --------------------------------------------------------------------------

    def abort(self) -> int:
        """End every call on the wire at once, blocking and async (they raise PoolClosedError)."""
        self._aborted = True
        with self._lock:
            guards, self._guards = list(self._guards), set()
        for guard in guards:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nothing runs there
                guard.loop.call_soon_threadsafe(guard.abort)
        backend = self._backend
        return len(guards) + (backend.shut_all() if backend is not None else 0)

    def close(self) -> None:
        """Close the connections (idempotent); async pools of other loops are left to their loops."""
        with self._lock:
            self._closed = True
            client, self._sync = self._sync, None
            pool, self._pool = self._pool, None
            pools, self._async = list(self._async.values()), weakref.WeakKeyDictionary()
        if client is not None:
            client.close()  # closes the pool too
        elif pool is not None:
            pool.close()
        for async_pool in pools:
            _close_async(async_pool)

    def reset_after_fork(self) -> None:
        """In a forked child: forget the parent's connections (they belong to the parent)."""
        self._sync, self._pool, self._backend = None, None, None
        self._async = weakref.WeakKeyDictionary()
        self._guards = set()
        self._lock = threading.Lock()


def _close_async(pool: Any) -> None:
    """Close an async pool from outside its loop, as far as that can be done."""
    with contextlib.suppress(Exception):
        for connection in list(getattr(pool, "connections", ()) or ()):
            stream = getattr(getattr(connection, "_connection", None), "_network_stream", None)
            shut(socket_of(stream))


def _stage(first: float | None) -> str:
    return "first chunk" if first is not None else "reply"


def _due(deadline: float, seconds: float | None) -> float:
    """``seconds`` from now, but no later than ``deadline`` (None: ``deadline`` itself)."""
    return deadline if seconds is None else min(deadline, time.monotonic() + seconds)
