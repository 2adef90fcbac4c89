"""``MockLLMClient`` and ``AsyncMockLLMClient``: the client's interface for unit tests, with no network.

>>> mock = MockLLMClient(responses=["Response 1", "Response 2"])
>>> mock.complete("Hi").content
'Response 1'
>>> mock.complete("Hi again").content
'Response 2'
>>> [r.messages[-1].content for r in mock.calls]
['Hi', 'Hi again']

Code written for the async client runs against the same mock: a Response
from ``MockLLMClient.complete`` can also be awaited (the spec's
``response = await mock_client.complete(messages)``). For everything else
async (streams, ``response_model=``, ``aclose``), :class:`AsyncMockLLMClient`
is the awaitable twin, as :class:`~llmkit.AsyncLLMClient` is the client's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from llmkit.engine.estimate import estimate_input_tokens, heuristic_tokens
from llmkit.errors import LLMError, PoolClosedError
from llmkit.request import Request, build_request
from llmkit.types import MessagesInput, Response, ToolCall, Usage
from llmkit.wording import plural

__all__ = ["AsyncMockLLMClient", "MockLLMClient"]

Reply = Any  # str | Response | ToolCall(s) | BaseException | pydantic model | Callable[[Request], Reply]


class _AwaitableResponse(Response):
    """A Response that ``await`` also gives (as a plain Response); equal to, and shown as, that Response."""

    __slots__ = ()

    def plain(self) -> Response:
        return Response(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Response)})

    def __await__(self) -> Generator[Any, None, Response]:
        return _ready(self.plain()).__await__()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _AwaitableResponse):
            other = other.plain()
        return self.plain() == other if isinstance(other, Response) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.plain())

    def __repr__(self) -> str:
        return repr(self.plain())


async def _ready(value: Any) -> Any:
    return value


def _awaitable(response: Response) -> Response:
    if isinstance(response, _AwaitableResponse):
        return response
    return _AwaitableResponse(**{f.name: getattr(response, f.name) for f in dataclasses.fields(Response)})


class MockLLMClient:
    """Answers from a list of scripted replies, in order.

    Each reply may be a string, a :class:`Response`, a :class:`ToolCall` or a
    list of them (a turn that calls tools), an exception (raised), a pydantic
    model instance (returned for ``response_model=`` calls) or a callable
    taking the :class:`Request` and returning any of those. ``tools=`` and
    ``tool_choice=`` are checked as the real client checks them. When the
    list runs out, ``default`` answers (or, if None, an LLMError says so);
    ``cycle=True`` starts the list over instead. Every request is recorded in
    ``calls``.
    """

    def __init__(
        self,
        responses: Iterable[Reply] = (),
        *,
        default: Reply | None = None,
        cycle: bool = False,
        provider: str = "mock",
        model: str = "mock-model",
    ) -> None:
        replies = list(responses)
        self._replies: Iterator[Reply] = itertools.cycle(replies) if cycle and replies else iter(replies)
        self.default = default
        self.provider = provider
        self.model = model
        self.calls: list[Request] = []
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"MockLLMClient(calls={len(self.calls)})"

    def _next_reply(self, request: Request) -> Reply:
        with self._lock:
            if self._closed:
                raise PoolClosedError("The client is closed", provider=self.provider)
            self.calls.append(request)
            reply = next(self._replies, self.default)
        if reply is None:
            raise LLMError(f"MockLLMClient ran out of responses after {plural(len(self.calls) - 1, 'call')}")
        return reply(request) if callable(reply) and not isinstance(reply, type) else reply

    def _response(self, request: Request, reply: Reply) -> Response:
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, Response):
            return reply
        if isinstance(reply, ToolCall) or (
            isinstance(reply, (list, tuple)) and reply and all(isinstance(c, ToolCall) for c in reply)
        ):
            calls = (reply,) if isinstance(reply, ToolCall) else tuple(reply)
            usage = Usage(estimate_input_tokens(request), heuristic_tokens(repr(calls)))
            return Response("", request.model, self.provider, "tool_calls", usage, tool_calls=calls)
        usage = Usage(estimate_input_tokens(request), heuristic_tokens(str(reply)))
        if isinstance(reply, str):
            parsed = request.response_model.model_validate_json(reply) if request.response_model else None
            return Response(reply, request.model, self.provider, "stop", usage, parsed=parsed)
        dump = getattr(reply, "model_dump_json", None)
        content = dump() if dump is not None else str(reply)
        return Response(content, request.model, self.provider, "stop", usage, parsed=reply)

    def complete(self, messages: MessagesInput, **kwargs: Any) -> Any:
        """Like :meth:`LLMClient.complete`: a Response, or the parsed model for ``response_model``."""
        include_response = kwargs.pop("include_response", False)
        request = self._request(messages, kwargs)
        response = self._response(request, self._next_reply(request))
        if request.response_model is None:
            return _awaitable(response)  # ``await mock.complete(...)`` works too
        return (response.parsed, response) if include_response else response.parsed

    def _request(self, messages: MessagesInput, kwargs: dict[str, Any]) -> Request:
        known = (
            "system_prompt",
            "temperature",
            "max_tokens",
            "stop",
            "timeout",
            "max_retries",
            "retry_delay",
        )
        params = {name: kwargs.pop(name) for name in known if name in kwargs}
        return build_request(
            messages,
            model=kwargs.pop("model", None) or self.model,
            response_model=kwargs.pop("response_model", None),
            tools=kwargs.pop("tools", None),
            tool_choice=kwargs.pop("tool_choice", None),
            json_mode=kwargs.pop("json_mode", False),
            extra=kwargs,
            **params,
        )

    def stream(self, messages: MessagesInput, **kwargs: Any) -> Iterator[str]:
        """Yields the reply word by word."""
        response = self.complete(messages, **kwargs)
        words = response.content.split(" ")
        for i, word in enumerate(words):
            yield word if i == len(words) - 1 else word + " "

    stream_complete = stream

    def submit(self, messages: MessagesInput, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(self.complete(messages, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def map(self, prompts: Iterable[MessagesInput], **kwargs: Any) -> list[Any]:
        return [self.complete(p, **dict(kwargs)) for p in prompts]

    def status(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "total_clients": 1,
            "available_clients": 0 if self._closed else 1,
            "in_use_clients": 0,
            "client_statuses": [],
        }

    def close(self, timeout: float | None = None) -> None:
        self._closed = True

    def __enter__(self) -> MockLLMClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncMockLLMClient:
    """The awaitable twin of :class:`MockLLMClient`, shaped like :class:`~llmkit.AsyncLLMClient`.

    ``AsyncMockLLMClient(responses=[...], ...)`` takes MockLLMClient's
    arguments; ``AsyncMockLLMClient.wrap(mock)`` shares a mock's script and
    ``calls``. ``status()`` stays a plain call, as on the real async client.
    """

    def __init__(self, responses: Iterable[Reply] = (), **kwargs: Any) -> None:
        self.sync_client = MockLLMClient(responses, **kwargs)

    @classmethod
    def wrap(cls, mock: MockLLMClient) -> AsyncMockLLMClient:
        self = cls.__new__(cls)
        self.sync_client = mock
        return self

    def __repr__(self) -> str:
        return f"AsyncMockLLMClient(calls={len(self.calls)})"

    @property
    def calls(self) -> list[Request]:
        return self.sync_client.calls

    async def complete(self, messages: MessagesInput, **kwargs: Any) -> Any:
        result = self.sync_client.complete(messages, **kwargs)
        return result.plain() if isinstance(result, _AwaitableResponse) else result

    async def stream(self, messages: MessagesInput, **kwargs: Any) -> AsyncIterator[str]:
        for text in self.sync_client.stream(messages, **kwargs):
            yield text

    stream_complete = stream

    def submit(self, messages: MessagesInput, **kwargs: Any) -> asyncio.Task[Any]:
        return asyncio.get_running_loop().create_task(self.complete(messages, **kwargs))

    async def map(self, prompts: Iterable[MessagesInput], **kwargs: Any) -> list[Any]:
        return [await self.complete(p, **dict(kwargs)) for p in prompts]

    def status(self) -> dict[str, Any]:
        return self.sync_client.status()

    async def aclose(self, timeout: float | None = None) -> None:
        self.sync_client.close(timeout)

    def close(self, timeout: float | None = None) -> None:
        self.sync_client.close(timeout)

    async def __aenter__(self) -> AsyncMockLLMClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
