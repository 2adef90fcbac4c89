"""Fallbacks: when the client's provider fails for good, try other providers in order.

``LLMClient(..., fallbacks=[("anthropic", "claude-3-5-haiku-latest"), other_client])``.
Each entry is a ``(provider, model)`` pair, a ``(provider, model, options)``
triple (``options``: LLMClient keyword arguments such as ``base_url`` or
``api_keys``), or an :class:`~llmkit.LLMClient`. Pairs and triples are built
when the client is built, from the same settings (keys from the environment or
the YAML file), so a fallback without keys fails at once, not in an outage;
the client closes the fallback clients it built, never the ones it was given.

When the primary fails, the request goes to each fallback in turn, with the
fallback's model, through the fallback's own pool, limits and retries. It
falls back on:

* a retryable error the primary's retries did not cure (429, 5xx, 529,
  network errors and timeouts, once ``max_retries`` is spent);
* :class:`~llmkit.errors.CapacityTimeoutError` / ``PoolExhaustedError``: no
  key could be had within ``acquire_timeout``;
* ``AuthenticationError`` / ``PermissionDeniedError`` once every key of the
  provider is refused (the provider is unusable for us).

It does not fall back (the error is raised as it is) on
``InvalidRequestError`` (the request is wrong, and would be wrong elsewhere
too), ``StructuredOutputError`` (the model answered, but never validly),
``BudgetExceededError``, ``PoolClosedError``, ``ConfigurationError``,
``StreamError``, or on anything that is not an :class:`~llmkit.errors.LLMError`.
A fallback whose adapter lacks a capability the request needs (images, tools,
JSON mode) is skipped. When every fallback fails too, the last error is raised,
chained (``__cause__``) to the one before it.

The answer says who gave it: ``Response.provider`` and ``Response.model``, and
``Response.fallback_index`` (0: the primary; ``i + 1``: ``fallbacks[i]``).
The primary's middleware (logging, metrics, costs, cache) sees the call once,
whoever answered; ``stream()`` does not fall back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, cast

from llmkit.errors import (
    AuthenticationError,
    BudgetExceededError,
    CapacityTimeoutError,
    ConfigurationError,
    InvalidRequestError,
    LLMError,
    PermissionDeniedError,
    PoolClosedError,
    StreamError,
    StructuredOutputError,
)

if TYPE_CHECKING:
    from llmkit.request import Request
    from llmkit.types import Response

__all__ = ["FallbackTarget", "Fallbacks", "should_fall_back"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

Send = Callable[["Request"], "Response"]
AsyncSend = Callable[["Request"], Awaitable["Response"]]


class FallbackTarget(Protocol):
    """What a fallback is: an :class:`~llmkit.LLMClient` is one (this module never imports it)."""

    provider: str
    model: str

    def _check(self, request: Request) -> None:
        """Raise InvalidRequestError when this target cannot take ``request``."""

    def _send(self, request: Request) -> Response:
        """Send ``request`` through this target's own pool, limits and retries."""

    async def _asend(self, request: Request) -> Response:
        """:meth:`_send` in asyncio."""

    def close(self, timeout: float | None = ...) -> None: ...


# Builds a fallback client from LLMClient keyword arguments (the client passes its own class).
MakeTarget = Callable[..., FallbackTarget]

_FINAL = (
    InvalidRequestError,
    StructuredOutputError,
    BudgetExceededError,
    PoolClosedError,
    ConfigurationError,
    StreamError,
)


def should_fall_back(error: BaseException) -> bool:
    """Whether ``error`` (from a client that already ran its retries) moves the call on."""
    if not isinstance(error, LLMError) or isinstance(error, _FINAL):
        return False
    if isinstance(error, (CapacityTimeoutError, AuthenticationError, PermissionDeniedError)):
        return True
    return error.retryable


class Fallbacks:
    """The ordered fallback clients of one LLMClient."""

    def __init__(self, clients: Sequence[FallbackTarget] = (), owned: Sequence[FallbackTarget] = ()) -> None:
        self.clients = list(clients)
        self._owned = list(owned)

    @classmethod
    def build(cls, specs: Sequence[Any] | None, make: MakeTarget, target_type: type[Any]) -> Fallbacks:
        """Fallback clients for ``specs``: instances of ``target_type`` as given, the rest built
        with ``make(**arguments)``."""
        if not specs:
            return cls()
        if isinstance(specs, (str, target_type)) or (isinstance(specs, tuple) and isinstance(specs[0], str)):
            raise ConfigurationError(
                "fallbacks must be a list: fallbacks=[('anthropic', 'claude-3-5-haiku-latest'), ...]."
            )
        clients: list[FallbackTarget] = []
        owned: list[FallbackTarget] = []
        try:
            for index, spec in enumerate(specs):
                if isinstance(spec, target_type):
                    clients.append(cast(FallbackTarget, spec))
                    continue
                client = make(**_arguments(spec, index))
                clients.append(client)
                owned.append(client)
        except BaseException:
            for client in owned:
                client.close()
            raise
        return cls(clients, owned)

    def wrap(self, send: Send) -> Send:
        """``send`` with the fallbacks behind it (``send`` itself when there are none)."""
        if not self.clients:
            return send

        def send_with_fallbacks(request: Request) -> Response:
            try:
                return send(request)
            except LLMError as error:
                if not should_fall_back(error):
                    raise
                return self._fall_back(request, error)

        return send_with_fallbacks

    def wrap_async(self, send: AsyncSend) -> AsyncSend:
        """:meth:`wrap` in asyncio."""
        if not self.clients:
            return send

        async def send_with_fallbacks(request: Request) -> Response:
            try:
                return await send(request)
            except LLMError as first:
                if not should_fall_back(first):
                    raise
                error = first
            for index, client in self._usable(request):
                _announce(client, index, error)
                try:
                    response = await client._asend(request.with_changes(model=client.model))
                except LLMError as next_error:
                    error = _next(next_error, error)
                    continue
                return replace(response, fallback_index=index)
            raise error

        return send_with_fallbacks

    def _fall_back(self, request: Request, error: LLMError) -> Response:
        for index, client in self._usable(request):
            _announce(client, index, error)
            try:
                response = client._send(request.with_changes(model=client.model))
            except LLMError as next_error:
                error = _next(next_error, error)
                continue
            return replace(response, fallback_index=index)
        raise error

    def _usable(self, request: Request) -> Iterator[tuple[int, FallbackTarget]]:
        """The fallbacks able to take ``request``, in order (the others are logged as skipped)."""
        for index, client in enumerate(self.clients, start=1):
            try:
                client._check(request)
            except InvalidRequestError as refusal:
                logger.warning("fallback %d (%s) skipped: %s", index, client.provider, refusal.message)
                continue
            yield index, client

    def status(self) -> list[dict[str, Any]]:
        return [{"provider": c.provider, "model": c.model} for c in self.clients]

    def close(self, timeout: float | None = None) -> None:
        """Close the fallback clients built here (idempotent)."""
        for client in self._owned:
            client.close(timeout)


def _announce(client: FallbackTarget, index: int, error: LLMError) -> None:
    logger.warning(
        "falling back to %s %s (fallback %d) after %s", client.provider, client.model, index, error
    )


def _next(error: LLMError, previous: LLMError) -> LLMError:
    """The error to carry on with (chained to ``previous``); raised when it ends the fallbacks."""
    if not should_fall_back(error):
        raise error
    error.__cause__ = previous
    return error


def _arguments(spec: Any, index: int) -> dict[str, Any]:
    if isinstance(spec, Mapping):
        return dict(spec)
    if isinstance(spec, (tuple, list)) and len(spec) in (2, 3) and isinstance(spec[0], str):
        options = dict(spec[2]) if len(spec) == 3 else {}
        return {"provider": spec[0], "model": spec[1] or None, **options}
    raise ConfigurationError(
        f"fallbacks[{index}] is {spec!r}: use (provider, model), (provider, model, options) or an LLMClient."
    )
