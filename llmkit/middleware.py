"""Middleware: code that wraps every call on its way to the pool.

A middleware is any callable ``(request, call_next) -> Response``. It may
inspect or change the request, call ``call_next(request)`` (or not: a cache
hit answers by itself), and inspect or change the response::

    def timing(request, call_next):
        started = time.monotonic()
        response = call_next(request)
        print(f"{request.model}: {time.monotonic() - started:.2f} s")
        return response

    client = LLMClient(middleware=[timing])

The chain, outermost first::

    your middleware (in the order given)
      -> built-ins the client was asked for (logging, metrics, cost/budget, cache)
        -> the pool: for each attempt, acquire a key within its rate limits,
           send, release; retry with backoff on another key

so your middleware sees one call per ``complete()`` however many attempts
the pool made (``response.attempts`` says how many). Structured outputs pass
through the chain too (``response.parsed`` holds the validated model).

Streams do not pass through the chain: their text arrives piece by piece,
after ``complete`` would have returned. A middleware that also wants to see
streams defines ``observe_stream(request, response, error)``: it is called
once when a stream ends (or fails, or is closed early), with what arrived as
a Response. The built-in logging and metrics middleware do, so streams are
logged and counted; the budget charges them directly; they are never cached.

The built-ins, in the order the client chains them after yours:

1. :class:`LoggingMiddleware` (``LLMClient(log_level="INFO")``): one line per
   call, one per failure. It sits outside metrics so that a line is written
   for every call the metrics count.
2. :class:`~llmkit.metrics.MetricsMiddleware` (on unless ``metrics=False``):
   counters behind ``client.metrics()``.
3. cost/budget, then the cache (when the client is asked for them): innermost,
   so that a cache hit is still logged and counted (as ``cached``).

A middleware that answers without calling ``call_next`` (a cache, a stub in
tests) short-circuits everything inside it, the pool included: nothing is sent.

In asyncio (:class:`~llmkit.AsyncLLMClient`) a middleware may also define
``async acall(request, acall_next)``, the same step awaited. The built-ins do;
when every middleware of a client has one, async calls run on the event loop
and hold no thread. A middleware with only ``__call__`` still works there: the
async client then runs that call's whole chain in a worker thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import CancelledError
from typing import Any, Protocol

from llmkit.errors import ConfigurationError, LLMError
from llmkit.metrics import MetricsMiddleware
from llmkit.redaction import redact
from llmkit.request import Request, message_text
from llmkit.types import Response

__all__ = [
    "AsyncHandler", "Handler", "LoggingMiddleware", "Middleware", "StreamHook", "build_async_chain",
    "build_chain", "builtin_middleware", "stream_observers",
]  # fmt: skip

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

Handler = Callable[[Request], Response]
AsyncHandler = Callable[[Request], Awaitable[Response]]


class Middleware(Protocol):
    def __call__(self, request: Request, call_next: Handler) -> Response: ...


def _link(middleware: Middleware, call_next: Handler) -> Handler:
    def handler(request: Request) -> Response:
        return middleware(request, call_next)

    return handler


def build_chain(middlewares: Sequence[Middleware], terminal: Handler) -> Handler:
    """One handler that runs ``middlewares`` in order around ``terminal``."""
    handler = terminal
    for middleware in reversed(middlewares):
        if not callable(middleware):
            raise TypeError(f"middleware must be callable as (request, call_next), got {middleware!r}")
        handler = _link(middleware, handler)
    return handler


def _alink(middleware: Any, call_next: AsyncHandler) -> AsyncHandler:
    acall = middleware.acall

    async def handler(request: Request) -> Response:
        return await acall(request, call_next)

    return handler


def build_async_chain(middlewares: Sequence[Middleware], terminal: AsyncHandler) -> AsyncHandler | None:
    """The async twin of :func:`build_chain`; None when some middleware has no ``acall``."""
    if not all(callable(getattr(m, "acall", None)) for m in middlewares):
        return None
    handler = terminal
    for middleware in reversed(middlewares):
        handler = _alink(middleware, handler)
    return handler


def _level(level: int | str) -> int:
    if isinstance(level, str):
        value = logging.getLevelName(level.strip().upper())
        if isinstance(value, int):
            return value
    elif isinstance(level, int) and not isinstance(level, bool) and level >= 0:
        return level
    raise ConfigurationError(f"log level must be a logging level or its name ('INFO', ...), got {level!r}.")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...(+{len(text) - limit} chars)"


class LoggingMiddleware:
    """Logs one line per call, and one per failed call, through ``logger``.

    Success lines go out at ``level`` (an int or a name such as ``"DEBUG"``);
    failure lines at ``level`` or WARNING, whichever is higher. A line names
    the provider, model, key (its ``key_id`` fingerprint: requests carry no
    key), the latency through the chain, tokens in/out, attempts and whether
    the answer was cached; a failure line names the error class, status and
    key. Message text (the last message sent and the reply, each cut to
    ``max_content_chars``) is logged only with ``log_content=True``.
    ``logger`` is a Logger or a logger name; default ``llmkit.middleware``.
    Each record also carries the fields as ``record.llmkit`` (a dict), for
    structured log handlers.
    """

    def __init__(
        self,
        level: int | str = logging.INFO,
        logger: logging.Logger | str | None = None,
        log_content: bool = False,
        *,
        provider: str | None = None,
        max_content_chars: int = 1000,
    ) -> None:
        self.level = _level(level)
        self.failure_level = max(self.level, logging.WARNING)
        if isinstance(logger, str):
            logger = logging.getLogger(logger)
        self.logger = logger if logger is not None else logging.getLogger(__name__)
        self.log_content = log_content
        self.provider = provider
        self.max_content_chars = max_content_chars

    def __call__(self, request: Request, call_next: Handler) -> Response:
        started = time.perf_counter()
        try:
            response = call_next(request)
        except Exception as error:
            self._failed(request, error, started)
            raise
        return self._answered(request, response, started)

    async def acall(self, request: Request, call_next: AsyncHandler) -> Response:
        """:meth:`__call__` in asyncio."""
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as error:
            self._failed(request, error, started)
            raise
        return self._answered(request, response, started)

    def _answered(self, request: Request, response: Response, started: float) -> Response:
        if self.logger.isEnabledFor(self.level):
            self._success(request, response, time.perf_counter() - started)
        return response

    def _failed(self, request: Request, error: Exception, started: float) -> None:
        if self.logger.isEnabledFor(self._level_of(error)):
            self._failure(request, error, time.perf_counter() - started)

    def observe_stream(self, request: Request, response: Response, error: BaseException | None) -> None:
        """Log a stream when it ends, as a call (``llm stream ...``); ``response`` is what arrived."""
        if error is None:
            if self.logger.isEnabledFor(self.level):
                self._success(request, response, response.latency, "llm stream")
        elif isinstance(error, Exception) and self.logger.isEnabledFor(self.failure_level):
            self._failure(request, error, response.latency, "llm stream")

    def _success(self, request: Request, response: Response, elapsed: float, kind: str = "llm call") -> None:
        fields: dict[str, Any] = {
            "provider": response.provider,
            "model": response.model,
            "key_id": response.key_id,
            "latency": elapsed,
            "input_tokens": response.usage.input_tokens,
            "output_tokens": response.usage.output_tokens,
            "attempts": response.attempts,
            "cached": response.cached,
        }
        template = kind + " %s %s key=%s latency=%.3fs tokens=%d/%d attempts=%d cached=%s"
        args: list[Any] = list(fields.values())
        if self.log_content:
            fields["prompt"] = _clip(message_text(request.messages[-1]), self.max_content_chars)
            fields["reply"] = _clip(response.content, self.max_content_chars)
            template += " prompt=%r reply=%r"
            args += [fields["prompt"], fields["reply"]]
        self.logger.log(self.level, template, *args, extra={"llmkit": fields})

    def _level_of(self, error: Exception) -> int:
        """A failure's level; a call cancelled by its caller (``map`` after an error) is no failure."""
        return logging.DEBUG if isinstance(error, CancelledError) else self.failure_level

    def _failure(self, request: Request, error: Exception, elapsed: float, kind: str = "llm call") -> None:
        # LLMError messages are scrubbed of the key that made the call where the engine tags
        # them (llmkit.redaction.scrub_exception); anything shaped like a key is masked here
        # too. Other exceptions' messages are not ours to vouch for: only their class is logged.
        message = redact(error.message) if isinstance(error, LLMError) else None
        fields: dict[str, Any] = {
            "provider": getattr(error, "provider", None) or self.provider,
            "model": request.model,
            "error": type(error).__name__,
            "status": getattr(error, "status_code", None),
            "key_id": getattr(error, "key_id", None),
            "latency": elapsed,
            "message": None if message is None else _clip(message, 300),
        }
        self.logger.log(
            self._level_of(error),
            kind + " failed %s %s: %s status=%s key=%s latency=%.3fs %s",
            *fields.values(),
            extra={"llmkit": fields},
        )

    def __repr__(self) -> str:
        return (
            f"LoggingMiddleware(level={logging.getLevelName(self.level)!r}, "
            f"logger={self.logger.name!r}, log_content={self.log_content})"
        )


StreamHook = Callable[[Request, Response, "BaseException | None"], None]


def stream_observers(middlewares: Sequence[Middleware]) -> list[StreamHook]:
    """The ``observe_stream`` methods of the middleware that have one, in chain order."""
    return [hook for m in middlewares if callable(hook := getattr(m, "observe_stream", None))]


def builtin_middleware(
    provider: str, *, log_level: int | str | None = None, metrics: bool = True
) -> tuple[list[Middleware], MetricsMiddleware | None]:
    """The built-ins a client asked for, in chain order, and its metrics middleware (or None)."""
    chain: list[Middleware] = []
    if log_level is not None:
        chain.append(LoggingMiddleware(log_level, provider=provider))
    recorder = MetricsMiddleware(provider=provider) if metrics else None
    if recorder is not None:
        chain.append(recorder)
    return chain, recorder
