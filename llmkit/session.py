"""Sessions: a conversation kept between calls, safe to share between threads.

>>> session = Session("Be brief.", client=client)         # doctest: +SKIP
>>> session.complete("My name is Alice").content            # doctest: +SKIP
>>> session.complete("What's my name?").content             # doctest: +SKIP
'Alice.'

Or by hand, as the spec's users write it (``client.complete`` is any client)::

    session.add_message(MessageRole.USER, "My name is Alice")
    response = client.complete(session.get_messages())
    session.add_message(MessageRole.ASSISTANT, response.content)

Async code: :class:`Session` has ``aadd_message`` and ``acomplete``. The
spec's ``SessionManager`` is the same class with an ``add_message`` that can
also be awaited (``await session.add_message(...)``), so the spec's async
code runs unchanged; adding a message does no I/O, so it works at once either
way.

Trimming: with ``max_tokens_budget`` every change trims the oldest turns until
the estimated input tokens (:func:`llmkit.engine.estimate.estimate_input_tokens`) fit;
:meth:`Session.trim` does the same on demand. A turn is a user message and the
replies after it, dropped together so that the conversation still opens with
a user message. The system prompt always stays, and so does the newest turn
(the last user message and what follows it), even when they alone are over
the budget.

Errors: when ``complete()`` fails, the session is left exactly as it was
before the call (the user message it added is rolled back), so the same call
can simply be made again.

Thinking and server tools: a reply's thinking blocks (with their signatures)
and the blocks of tools the provider ran itself are kept with the reply that
called tools (:meth:`Message.assistant_tool_calls`), so the next call sends
them back, as Anthropic requires during tool use with extended thinking.

Prompt caching: ``Session(cache_control=True)`` (or ``"1h"``) passes
``cache_control=`` to every ``complete()`` that does not give its own, so the
conversation's stable prefix is cached where the provider needs it marked
(Anthropic; OpenAI and Gemini cache by themselves).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from llmkit.engine.estimate import PER_REQUEST_OVERHEAD, estimate_input_tokens
from llmkit.errors import ConfigurationError, InvalidRequestError
from llmkit.request import Request, message_text
from llmkit.types import Message, MessageRole, Response, normalize_messages

__all__ = ["AddedMessage", "Session", "SessionManager"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

FORMAT_VERSION = 1

_S = TypeVar("_S", bound="Session")


def message_tokens(message: Message) -> int:
    """Estimated input tokens of one message, its per-message overhead included."""
    return estimate_input_tokens(Request(messages=(message,), model="-")) - PER_REQUEST_OVERHEAD


def _turns(history: list[Message]) -> list[list[Message]]:
    """Split a history into turns: a user message and what follows it up to the next one."""
    turns: list[list[Message]] = []
    for message in history:
        if message.role is MessageRole.USER or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


def _trimmed(system: list[Message], history: list[Message], budget: int) -> list[Message]:
    """``history`` without its oldest turns, so that the whole conversation fits ``budget``."""
    used = PER_REQUEST_OVERHEAD + sum(message_tokens(m) for m in system)
    turns = _turns(history)
    costs = [sum(message_tokens(m) for m in turn) for turn in turns]
    total = used + sum(costs)
    drop = 0
    while total > budget and drop < len(turns) - 1:
        total -= costs[drop]
        drop += 1
    if total > budget:
        logger.debug("session over its token budget: %d > %d with only the newest turn left", total, budget)
    return [m for turn in turns[drop:] for m in turn]


def _ask_for_response(kwargs: dict[str, Any]) -> tuple[bool, bool]:
    """For structured calls, ask for ``(model, Response)`` so the reply can be kept."""
    wants_pair = bool(kwargs.get("include_response", False))
    structured = kwargs.get("response_model") is not None
    if structured:
        kwargs["include_response"] = True
    return wants_pair, structured


def _reply_text(reply: Any) -> str:
    """The text to keep for a reply: a structured answer's JSON, else its content."""
    dump = getattr(getattr(reply, "parsed", None), "model_dump_json", None)
    if callable(dump):
        return str(dump())
    content = getattr(reply, "content", reply)
    return content if isinstance(content, str) else ""


def _jsonable(value: Any) -> Any:
    for method in ("model_dump", "to_dict"):
        if callable(getattr(value, method, None)):
            return getattr(value, method)()
    raise TypeError(f"{type(value).__name__} in a message cannot be saved as JSON")


class Session:
    """A conversation: an optional system prompt and the messages since.

    Args:
        system_prompt: sent first on every call; never trimmed.
        client: the client ``complete()`` uses when none is passed to it.
        max_tokens_budget: trim the oldest turns whenever the conversation's
            estimated input tokens pass this. None: never trim automatically.
        cache_control: passed as ``cache_control=`` to every ``complete()`` that
            gives none (``True``, ``"5m"``, ``"1h"``: cache the stable prefix).
            None: not passed.

    Every method is thread-safe. ``complete()`` calls are serialized per
    session, so turns never interleave; ``add_message`` from other threads
    during a call lands between the user message and its reply.
    """

    def __init__(
        self,
        system_prompt: str | None = None,
        *,
        client: Any = None,
        max_tokens_budget: int | None = None,
        cache_control: Any = None,
    ) -> None:
        if max_tokens_budget is not None and (
            isinstance(max_tokens_budget, bool)
            or not isinstance(max_tokens_budget, int)
            or max_tokens_budget < 1
        ):
            raise ConfigurationError(
                f"max_tokens_budget must be a whole number >= 1, got {max_tokens_budget!r}."
            )
        self.client = client
        self.max_tokens_budget = max_tokens_budget
        self.cache_control = cache_control
        self._lock = threading.RLock()
        self._turn_lock = threading.Lock()
        self._system: list[Message] = []
        self._history: list[Message] = []
        if system_prompt:
            self._system.append(Message(MessageRole.SYSTEM, system_prompt))

    # -- messages --------------------------------------------------------------

    @property
    def system_prompt(self) -> str | None:
        """The system prompt's text (system messages joined by blank lines), or None."""
        with self._lock:
            return "\n\n".join(message_text(m) for m in self._system) or None

    def _add(self, message: Message) -> Message:
        with self._lock:
            if message.role is MessageRole.SYSTEM:
                self._system.append(message)
            else:
                self._history.append(message)
            if self.max_tokens_budget is not None:
                self._history = _trimmed(self._system, self._history, self.max_tokens_budget)
        return message

    def add_message(self, role: MessageRole | str, content: Any, name: str | None = None) -> Message:
        """Append a message and return it. A SYSTEM message joins the system prompt."""
        return self._add(Message(cast(MessageRole, role), content, name))  # Message coerces a str role

    async def aadd_message(self, role: MessageRole | str, content: Any, name: str | None = None) -> Message:
        """The async twin of :meth:`add_message` (it does no I/O: it runs at once)."""
        return Session.add_message(self, role, content, name)

    def add_user(self, text: Any) -> Message:
        return self._add(Message(MessageRole.USER, text))

    def add_assistant(self, text: Any) -> Message:
        return self._add(Message(MessageRole.ASSISTANT, text))

    def extend(self, messages: Iterable[Message | Mapping[str, Any]]) -> None:
        """Append several messages (Messages or ``{"role", "content"}`` dicts)."""
        for message in normalize_messages(list(messages)):
            self._add(message)

    def run_tool_calls(
        self, response: Response, functions: Sequence[Callable[..., Any]] | Mapping[str, Callable[..., Any]]
    ) -> list[Message]:
        """Run the tool calls of ``response`` and add their results; returns the results.

        Then ``session.complete(tools=...)`` (no new text) lets the model answer.
        The assistant turn that made the calls is added first unless the session
        kept it already (as ``complete`` does). See :func:`llmkit.tools.run_tool_calls`.
        """
        from llmkit.tools import run_tool_calls

        if not response.tool_calls:
            return []
        messages = run_tool_calls(response, functions)  # the functions run outside the lock
        with self._lock:
            kept = any(m.tool_calls == messages[0].tool_calls for m in self._history if m.tool_calls)
        for message in messages[1:] if kept else messages:
            self._add(message)
        return messages[1:]

    def get_messages(self) -> list[Message]:
        """A copy of the conversation, system prompt first: what the next call sends."""
        with self._lock:
            return [*self._system, *self._history]

    def clear(self, keep_system: bool = True) -> None:
        """Forget the conversation; the system prompt stays unless ``keep_system=False``."""
        with self._lock:
            self._history = []
            if not keep_system:
                self._system = []

    def __len__(self) -> int:
        """How many messages ``get_messages()`` returns (the system prompt included)."""
        with self._lock:
            return len(self._system) + len(self._history)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(messages={len(self)}, max_tokens_budget={self.max_tokens_budget})"

    # -- tokens ----------------------------------------------------------------

    def estimate_tokens(self) -> int:
        """Estimated input tokens of the whole conversation (as ``estimate_input_tokens``)."""
        with self._lock:
            messages = [*self._system, *self._history]
        return PER_REQUEST_OVERHEAD + sum(message_tokens(m) for m in messages)

    def trim(self, max_tokens: int) -> int:
        """Drop the oldest turns until the conversation fits ``max_tokens``; return how many messages went."""
        with self._lock:
            before = len(self._history)
            self._history = _trimmed(self._system, self._history, max_tokens)
            return before - len(self._history)

    # -- completing --------------------------------------------------------------

    def _client(self, client: Any) -> Any:
        client = client if client is not None else self.client
        if client is None:
            raise ConfigurationError(
                "This session has no client: pass client= to Session() or to complete()."
            )
        return client

    def _call_options(self, kwargs: dict[str, Any]) -> None:
        """The session's own call options, where the call gives none."""
        if self.cache_control is not None:
            kwargs.setdefault("cache_control", self.cache_control)

    def _begin(self, text: Any) -> tuple[list[Message], Message | None]:
        """Add the user's text (if any); return the history as it was, and the message added."""
        with self._lock:
            before = list(self._history)
            added = self._add(Message(MessageRole.USER, text)) if text is not None else None
            if not self._history:
                raise InvalidRequestError("The session has no messages to complete: pass some text.")
            return before, added

    def _rollback(self, before: list[Message], added: Message | None) -> None:
        """Undo ``_begin``: restore the history, keeping messages other threads added since."""
        with self._lock:
            later: list[Message] = []
            if added is not None:
                index = next((i for i, m in enumerate(self._history) if m is added), None)
                later = self._history[index + 1 :] if index is not None else []
            self._history = before + later

    def _finish(self, result: Any, wants_pair: bool, structured: bool) -> Any:
        """Keep the reply; return what the caller asked ``client.complete`` for."""
        reply = result[1] if isinstance(result, tuple) else result
        text = _reply_text(reply)
        if getattr(reply, "tool_calls", None) or getattr(reply, "parts", None):
            # its text, calls, thinking and server tool blocks, in order: a valid history
            self._add(Message.assistant_tool_calls(reply))
        elif text:
            self.add_assistant(text)
        else:
            logger.debug("session: the reply had no text to keep (%r)", type(reply).__name__)
        if structured and not wants_pair and isinstance(result, tuple):
            return result[0]
        return result

    def complete(self, text: Any = None, client: Any = None, **kwargs: Any) -> Any:
        """Add ``text`` as a user message (if given), complete the conversation, keep the reply.

        ``kwargs`` go to ``client.complete``; its result is returned (a
        :class:`Response`, or the validated model with ``response_model=``,
        whose JSON is kept as the reply). On an error the session is left as
        it was before the call, and the error propagates.
        """
        client = self._client(client)
        wants_pair, structured = _ask_for_response(kwargs)
        self._call_options(kwargs)
        with self._turn_lock:
            before, added = self._begin(text)
            try:
                result = client.complete(self.get_messages(), **kwargs)
            except BaseException:
                self._rollback(before, added)
                raise
            return self._finish(result, wants_pair, structured)

    async def acomplete(self, text: Any = None, client: Any = None, **kwargs: Any) -> Any:
        """The async twin of :meth:`complete`: awaits an async client, or runs a blocking one in a thread."""
        client = self._client(client)
        send = client.complete
        wants_pair, structured = _ask_for_response(kwargs)
        self._call_options(kwargs)
        while not self._turn_lock.acquire(blocking=False):  # a thread lock: poll, cancellable
            await asyncio.sleep(0.002)
        try:
            before, added = self._begin(text)
            try:
                if inspect.iscoroutinefunction(send):
                    result = await send(self.get_messages(), **kwargs)
                else:
                    result = await asyncio.to_thread(send, self.get_messages(), **kwargs)
            except BaseException:
                self._rollback(before, added)
                raise
            return self._finish(result, wants_pair, structured)
        finally:
            self._turn_lock.release()

    # -- saving ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready form: ``{"version", "max_tokens_budget", "messages": [...]}``."""
        return {
            "version": FORMAT_VERSION,
            "max_tokens_budget": self.max_tokens_budget,
            "messages": [m.to_dict() for m in self.get_messages()],
        }

    @classmethod
    def from_dict(cls: type[_S], data: Mapping[str, Any], *, client: Any = None) -> _S:
        """Rebuild a session from :meth:`to_dict`'s form (messages are validated)."""
        version = data.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ConfigurationError(
                f"Unknown session format version {version!r}: expected {FORMAT_VERSION}."
            )
        session = cls(client=client, max_tokens_budget=data.get("max_tokens_budget"))
        messages = data.get("messages") or []
        if messages:
            session.extend(messages)
        return session

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the session to ``path`` as JSON (atomically: a crash leaves the old file)."""
        target = Path(path)
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=1, default=_jsonable)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls: type[_S], path: str | os.PathLike[str], *, client: Any = None) -> _S:
        """Read a session written by :meth:`save`."""
        with open(path, encoding="utf-8") as file:
            return cls.from_dict(json.load(file), client=client)


class AddedMessage:
    """What :meth:`SessionManager.add_message` returns: the message, already added, and awaitable."""

    __slots__ = ("message",)

    def __init__(self, message: Message) -> None:
        self.message = message

    def __await__(self) -> Generator[Any, None, Message]:
        return self.message
        yield  # a generator that finishes at once

    def __repr__(self) -> str:
        return f"AddedMessage({self.message!r})"


class SessionManager(Session):
    """The spec's name: a :class:`Session` whose ``add_message`` may also be awaited.

    ``await session.add_message(MessageRole.USER, "...")`` (the spec's async
    code) and a plain ``session.add_message(...)`` both add the message at once.
    """

    def add_message(  # type: ignore[override]
        self, role: MessageRole | str, content: Any, name: str | None = None
    ) -> AddedMessage:
        return AddedMessage(super().add_message(role, content, name))
