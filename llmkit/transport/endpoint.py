"""One provider endpoint (a base URL): a connection pool shared by every key, and sends with a deadline.

:meth:`Endpoint.send` POSTs an :class:`~llmkit.transport.messages.HttpCall`
and reads the whole reply before its deadline; :meth:`Endpoint.stream` yields
a streamed reply's chunks, each within the stream's first-chunk or
between-chunks timeout and all within its deadline; :meth:`Endpoint.asend`
and :meth:`Endpoint.astream` do the same in asyncio, on one
``httpx2.AsyncClient`` per event loop. Deadlines are ``time.monotonic()``.

How a deadline holds in a blocking call: connecting is bounded by the time
left; the wait for the reply's headers is bounded by what is left when that
wait begins (httpcore2's trace hook sets it); the body is read while the
watchdog (:mod:`~llmkit.transport.watchdog`) stands ready to shut the socket
at the deadline. An async call's exchange and each of its chunk reads is a
task bounded by ``asyncio.wait_for``. :meth:`Endpoint.abort` shuts every
socket of the endpoint and cancels every async exchange, which ends every
call on it at once with PoolClosedError (``close()`` after its timeout).
Errors raised here are the transport's: timeouts, connections, protocol
errors. What a status means is the adapter's to say.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from llmkit.errors import NetworkError, PoolClosedError, RequestTimeoutError
from llmkit.transport import watchdog
from llmkit.transport.messages import HttpCall, HttpReply
from llmkit.transport.sockets import TrackingBackend, shut, socket_of

if TYPE_CHECKING:
    import httpx2

__all__ = ["DEFAULT_TIMEOUT", "Endpoint"]

_T = TypeVar("_T")

_Opened = tuple[HttpReply, AsyncIterator[bytes]]  # a streamed reply's status and headers, and its chunks

DEFAULT_TIMEOUT = 600.0  # seconds for a complete reply when nothing says (the official SDKs' default)
CONNECT_TIMEOUT = 10.0
MAX_CONNECTIONS = 1000


class Endpoint:
    """The HTTP side of one adapter (one provider and base URL), shared by all its keys."""

    def __init__(self, provider: str, base_url: str, *, timeout: float | None = None) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout if timeout is not None else DEFAULT_TIMEOUT
        self._sync: httpx2.Client | None = None
        self._backend: TrackingBackend | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx2.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._closed = False
        self._aborted = False
        self._async_calls: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = set()

    def __repr__(self) -> str:
        return f"Endpoint({self.provider}, {self.base_url!r})"

    # -- clients ---------------------------------------------------------------------------

    @property
    def client(self) -> httpx2.Client:
        """The blocking client (made on first use); the SDK clients of every key share it too."""
        client = self._sync
        if client is None:
            with self._lock:
                if self._closed:
                    raise PoolClosedError("The client is closed", provider=self.provider)
                if self._sync is None:
                    self._sync, self._backend = _sync_client()
                client = self._sync
        return client

    def async_client(self) -> httpx2.AsyncClient:
        """The asyncio client of the running loop (one per loop, made on first use)."""
        import httpx2

        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            with self._lock:
                if self._closed:
                    raise PoolClosedError("The client is closed", provider=self.provider)
                client = self._async.get(loop)
                if client is None:
                    limits = httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=100)
                    client = self._async[loop] = httpx2.AsyncClient(limits=limits, follow_redirects=False)
        return client

    def deadline(self, call: HttpCall, cap: float | None = None) -> float:
        """When ``call`` must be over: its timeout (or the endpoint's) from now, at most ``cap``."""
        deadline = time.monotonic() + (call.timeout if call.timeout is not None else self.timeout)
        return deadline if cap is None else min(deadline, cap)

    # -- blocking --------------------------------------------------------------------------

    def send(self, call: HttpCall, deadline: float | None = None) -> HttpReply:
        """POST ``call`` and read the whole reply by ``deadline`` (default: from its timeout)."""
        deadline = self.deadline(call, deadline)
        request = self._request(self.client, call, deadline)
        with self._mapped(call, deadline):
            response = self.client.send(request, stream=True)
            try:
                with self._guarded(response, deadline):
                    body = response.read()
            finally:
                response.close()
        return HttpReply(response.status_code, response.headers, body)

    @contextlib.contextmanager
    def stream(self, call: HttpCall, *, first_chunk: float | None = None, between: float | None = None,
               deadline: float | None = None) -> Iterator[tuple[HttpReply, Iterator[bytes]]]:  # fmt: skip
        """POST ``call`` and yield ``(reply headers, chunks)``: the first chunk must come within
        ``first_chunk`` seconds of sending, each next one within ``between`` of the one before,
        all by ``deadline``."""
        deadline = self.deadline(call, deadline)
        first_due = _due(deadline, first_chunk)
        request = self._request(self.client, call, deadline, headers_due=first_due)
        stage = _stage(first_chunk, first_chunk)
        with self._mapped(call, first_due, stage=stage):
            response = self.client.send(request, stream=True)
        try:
            chunks = self._chunks(response, call, deadline, first_due, between)
            yield HttpReply(response.status_code, response.headers), chunks
        finally:
            response.close()

    def _chunks(self, response: Any, call: HttpCall, deadline: float, first_due: float,
                between: float | None) -> Iterator[bytes]:  # fmt: skip
        sock = socket_of(response.extensions.get("network_stream"))
        raw = response.iter_raw()
        due, stage = first_due, "first chunk" if first_due < deadline else "chunk"
        while True:
            timer = watchdog.arm(due, lambda: shut(sock))
            try:
                with self._mapped(call, due, timer=timer, stage=stage):
                    chunk = next(raw, None)
            finally:
                timer.cancel()
            if chunk is None:
                return
            yield chunk
            due, stage = _due(deadline, between), "chunk"

    def _request(self, client: httpx2.Client | httpx2.AsyncClient, call: HttpCall, deadline: float,
                 headers_due: float | None = None) -> Any:  # fmt: skip
        """The POST for ``call``. Its socket timeouts are what is left of ``deadline``; for a blocking
        call, the wait for headers gets what is left of ``headers_due`` (default: ``deadline``)
        when it starts, and the body what is left of ``deadline`` (an async call's exchange is
        bounded by ``asyncio.wait_for`` instead)."""
        import httpx2

        left = max(0.001, deadline - time.monotonic())
        timeouts = {"connect": min(left, CONNECT_TIMEOUT), "read": left, "write": left, "pool": left}
        body = json.dumps(call.body, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"content-type": "application/json", **call.headers}
        request = client.build_request("POST", self.base_url + call.path, content=body, headers=headers,
                                       timeout=httpx2.Timeout(**timeouts))  # fmt: skip
        request.extensions["timeout"] = timeouts
        if isinstance(client, httpx2.Client):

            headers_by = deadline if headers_due is None else headers_due

            def trace(event: str, info: dict[str, Any]) -> None:
                if event == "http11.receive_response_headers.started":
                    timeouts["read"] = max(0.001, headers_by - time.monotonic())
                elif event == "http11.receive_response_headers.complete":
                    timeouts["read"] = max(0.001, deadline - time.monotonic())

            request.extensions["trace"] = trace
        return request

    @contextlib.contextmanager
    def _guarded(self, response: Any, deadline: float) -> Iterator[None]:
        """Shut the response's socket if its body is not in by ``deadline``."""
        sock = socket_of(response.extensions.get("network_stream"))
        timer = watchdog.arm(deadline, lambda: shut(sock))
        try:
            with self._mapped(None, deadline, timer=timer):
                yield
        finally:
            timer.cancel()

    @contextlib.contextmanager
    def _mapped(self, call: HttpCall | None, deadline: float, *, timer: watchdog.Timer | None = None,
                stage: str = "a complete reply") -> Iterator[None]:  # fmt: skip
        """httpx2's errors as llmkit's: a timeout (or a watchdog's shutdown) says what it waited for."""
        import httpx2

        try:
            yield
        except httpx2.TimeoutException as exc:
            raise RequestTimeoutError(self._late(stage, deadline), provider=self.provider) from exc
        except (httpx2.TransportError, OSError) as exc:
            if self._closed or self._aborted:
                raise PoolClosedError("The client was closed while this call was in flight",
                                      provider=self.provider) from exc  # fmt: skip
            if timer is not None and timer.fired:
                raise RequestTimeoutError(self._late(stage, deadline), provider=self.provider) from exc
            raise NetworkError(f"Connection to {self._where()} failed: {type(exc).__name__}: {exc}",
                               provider=self.provider) from exc  # fmt: skip

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
        client = self.async_client()
        request = self._request(client, call, deadline)

        async def exchange() -> HttpReply:
            response = await client.send(request)
            return HttpReply(response.status_code, response.headers, response.content)

        with self._mapped(call, deadline):
            return await self._abortable(exchange(), deadline, "a complete reply")

    async def _abortable(self, work: Awaitable[_T], deadline: float, stage: str) -> _T:
        """Await ``work`` until ``deadline``; :meth:`abort` (from any thread) ends it with
        PoolClosedError. The caller's own cancellation passes through as it is."""
        task = asyncio.ensure_future(work)
        entry = (asyncio.get_running_loop(), task)
        with self._lock:
            self._async_calls.add(entry)
        try:
            return await asyncio.wait_for(task, max(0.001, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise RequestTimeoutError(self._late(stage, deadline), provider=self.provider) from None
        except asyncio.CancelledError:
            if self._aborted and task.cancelled() and not _cancelling():
                raise PoolClosedError("The client was closed while this call was in flight",
                                      provider=self.provider) from None  # fmt: skip
            raise
        finally:
            with self._lock:
                self._async_calls.discard(entry)

    @contextlib.asynccontextmanager
    async def astream(self, call: HttpCall, *, first_chunk: float | None = None, between: float | None = None,
                      deadline: float | None = None) -> AsyncIterator[_Opened]:  # fmt: skip
        """:meth:`stream` in asyncio."""
        deadline = self.deadline(call, deadline)
        first_due = _due(deadline, first_chunk)
        client = self.async_client()
        request = self._request(client, call, deadline)
        stage = _stage(first_chunk, first_chunk)
        with self._mapped(call, first_due, stage=stage):
            response = await self._abortable(client.send(request, stream=True), first_due, stage)
        try:
            chunks = self._achunks(response, call, deadline, first_due, between)
            yield HttpReply(response.status_code, response.headers), chunks
        finally:
            await response.aclose()

    async def _achunks(self, response: Any, call: HttpCall, deadline: float, first_due: float,
                       between: float | None) -> AsyncIterator[bytes]:  # fmt: skip
        raw = response.aiter_raw()
        due, stage = first_due, "first chunk" if first_due < deadline else "chunk"
        while True:
            with self._mapped(call, due, stage=stage):
                try:
                    chunk = await self._abortable(raw.__anext__(), due, stage)
                except StopAsyncIteration:
                    return
            yield chunk
            due, stage = _due(deadline, between), "chunk"

    # -- lifetime --------------------------------------------------------------------------

    def abort(self) -> int:
        """End every call on the wire at once, blocking and async (they raise PoolClosedError)."""
        self._aborted = True
        with self._lock:
            calls, self._async_calls = list(self._async_calls), set()
        for loop, task in calls:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nothing runs there
                loop.call_soon_threadsafe(task.cancel)
        backend = self._backend
        return len(calls) + (backend.shut_all() if backend is not None else 0)

    def close(self) -> None:
        """Close the connections (idempotent); async clients of other loops are left to their loops."""
        with self._lock:
            self._closed = True
            client, self._sync = self._sync, None
            clients, self._async = list(self._async.values()), weakref.WeakKeyDictionary()
        if client is not None:
            client.close()
        for async_client in clients:
            _close_async(async_client)

    def reset_after_fork(self) -> None:
        """In a forked child: forget the parent's connections (they belong to the parent)."""
        self._sync, self._backend = None, None
        self._async = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()


def _cancelling() -> int:
    """Whether the running task itself was asked to stop (Python 3.11+; 0 before)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling() if cancelling is not None else 0


def _sync_client() -> tuple[httpx2.Client, TrackingBackend]:
    import httpx2

    limits = httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=100)
    transport = httpx2.HTTPTransport(limits=limits)
    backend = TrackingBackend(transport._pool._network_backend)
    transport._pool._network_backend = backend  # type: ignore[assignment]  # its sockets are known
    return httpx2.Client(transport=transport, follow_redirects=False), backend


def _close_async(client: Any) -> None:
    """Close an async client from outside its loop, as far as that can be done."""
    with contextlib.suppress(Exception):
        transport = client._transport
        pool = getattr(transport, "_pool", None)
        for connection in list(getattr(pool, "connections", ()) or ()):
            stream = getattr(getattr(connection, "_connection", None), "_network_stream", None)
            shut(socket_of(stream))


def _stage(wait: float | None, first: float | None) -> str:
    return "first chunk" if wait is first and first is not None else "reply"


def _due(deadline: float, seconds: float | None) -> float:
    """``seconds`` from now, but no later than ``deadline`` (None: ``deadline`` itself)."""
    return deadline if seconds is None else min(deadline, time.monotonic() + seconds)
