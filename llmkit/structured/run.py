"""Structured outputs: ``complete(..., response_model=Model)`` returns a validated ``Model``.

:func:`run_structured` runs ``instructor`` over the SDK client of the key the
pool leases, inside the retry loop. Who does what:

* **Validation re-asks are instructor's.** When a reply does not validate,
  instructor sends the errors back and asks again (``max_reasks=``, default
  2, so at most 3 replies), all on the leased key.
* **Transport retries are llmkit's.** instructor retries only parse and
  validation errors; an SDK error (429, 5xx, network) ends its loop at once,
  wrapped in ``InstructorRetryException``. We unwrap the SDK exception and
  let the adapter map it, so the retry loop cools the key down and starts
  the call again, normally on another key.
* **Every re-ask waits for capacity.** Before each request after the first,
  instructor's ``completion:kwargs`` hook takes one more request (and its
  tokens) on the leased key, waiting while the key's limits are full, so
  re-asks do not burst past a key's requests per minute.
* **Every reply's tokens count once.** instructor's ``completion:response``
  hook hands us each raw reply before instructor folds its usage into a
  running total; we sum them ourselves rather than rely on how a given
  instructor version accumulates. That sum is the usage of the returned
  :class:`~llmkit.types.Response` and what the pool reconciles.
* **A reply that never validates** is a success for the key (its tokens
  were spent and are reconciled), then :class:`StructuredOutputError` is
  raised with the last validation errors. It is not retried.

Provider specifics (which ``instructor.from_*``, the SDK parameters, parsing
the raw completion) live in the backends the adapters name
(:mod:`llmkit.structured.backends`, :mod:`llmkit.structured.gemini`).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from llmkit.engine.limiter import Cost
from llmkit.errors import InvalidRequestError, StructuredOutputError
from llmkit.providers.base import ProviderReply
from llmkit.structured.backends import StructuredBackend, backend_for
from llmkit.structured.models import check_max_reasks, check_response_model, instructor_mode
from llmkit.types import Response, Usage
from llmkit.wording import plural

if TYPE_CHECKING:
    from llmkit.engine.loop import RetryLoop
    from llmkit.engine.slot import Lease
    from llmkit.request import Request

__all__ = ["DEFAULT_MAX_REASKS", "run_structured"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

# Validation re-asks after the first reply, unless the call says ``max_reasks=``.
DEFAULT_MAX_REASKS = 2

# How many validation errors the exception's message lists (``.errors`` has all).
_ERRORS_IN_MESSAGE = 3


def _pydantic_user_errors() -> tuple[type[BaseException], ...]:
    from pydantic import PydanticUndefinedAnnotation, PydanticUserError

    return (PydanticUserError, PydanticUndefinedAnnotation)


def run_structured(loop: RetryLoop, request: Request) -> Response:
    """Send a ``response_model`` request through the pool; the Response carries ``parsed``.

    Own keyword arguments (taken out of ``request.extra``): ``max_reasks``
    (validation re-asks, default 2) and ``instructor_mode`` (an
    ``instructor.Mode`` or its value, e.g. ``"json_mode"``; default: the
    provider's tool calling). Raises InvalidRequestError before anything is
    sent when these or the model are wrong.
    """
    model = check_response_model(request.response_model)
    check_model_is_usable(model)
    extra = dict(request.extra)
    max_reasks = check_max_reasks(extra.pop("max_reasks", DEFAULT_MAX_REASKS))
    mode = instructor_mode(extra.pop("instructor_mode", None))
    request = request.with_changes(extra=extra)
    backend = backend_for(loop.pool.provider)  # a provider without structured outputs says so now
    call = _StructuredCall(loop, backend, model, max_reasks, mode)
    call.first_params = backend.params(request)  # bad parameters say so now, too
    call.warm()
    response = loop.execute(request, send=call.send, cancel=request.cancel)
    if call.failure is not None:
        raise call.error(response) from call.failure
    return response


@functools.lru_cache(maxsize=256)
def _json_schema(model: Any) -> Any:
    """The model's JSON schema, made once per class (a failure is not cached: a fixed class passes)."""
    return model.model_json_schema()


def check_model_is_usable(model: Any) -> None:
    """InvalidRequestError now, before a key is taken, when pydantic cannot describe ``model``.

    A class not fully defined (a forward reference nothing resolves) or a
    field with no JSON schema (a callable, an arbitrary class) is the
    caller's to fix: instructor would raise pydantic's own error on every
    attempt, after the call took a key and its rate-limit capacity.
    """
    try:
        _json_schema(model)
    except _pydantic_user_errors() as exc:
        raise _model_error(model, exc) from exc


def _model_error(model: type[Any], exc: BaseException) -> InvalidRequestError:
    """The InvalidRequestError for a pydantic user error raised by ``model``: what is wrong, how to fix it."""
    from pydantic import PydanticInvalidForJsonSchema

    name = getattr(model, "__name__", repr(model))
    said = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, PydanticInvalidForJsonSchema):
        said = (
            f"pydantic cannot make its JSON schema ({said}); give every field a type "
            "pydantic can describe as JSON (str, int, float, bool, lists, dicts, other models)"
        )
    return InvalidRequestError(f"response_model {name} cannot be used: {said}")


class _ReplyLog:
    """What instructor received during one attempt: each reply's usage and each parse error.

    Filled through per-call instructor hooks, so a wrapped client shared by
    threads needs no locking.
    """

    def __init__(self, backend: StructuredBackend, before_reask: Callable[[_ReplyLog], None]) -> None:
        self.backend = backend
        self.before_reask = before_reask
        self.usage = Usage()
        self.requests = 0
        self.replies = 0
        self.last: Any = None
        self.parse_errors: list[BaseException] = []

    def hooks(self) -> Any:
        from instructor.core.hooks import Hooks

        hooks = Hooks()
        hooks.on("completion:kwargs", _Handler(self.on_request))
        hooks.on("completion:response", _Handler(self.on_reply))
        hooks.on("parse:error", _Handler(self.on_parse_error))
        return hooks

    def on_request(self, *_: Any, **__: Any) -> None:
        self.requests += 1
        if self.requests > 1:
            self.before_reask(self)

    def on_reply(self, completion: Any) -> None:
        self.usage += self.backend.usage(completion)
        self.replies += 1
        self.last = completion

    def on_parse_error(self, error: BaseException, **_: Any) -> None:
        self.parse_errors.append(error)


class _Handler:
    """A hook handler instructor calls without inspecting it. instructor asks each handler's
    ``inspect.signature`` before every call it makes with keyword arguments (~30 µs a
    structured call); a fixed ``__signature__`` answers at once."""

    __slots__ = ("fn",)
    __signature__ = inspect.Signature([
        inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
        inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
    ])  # fmt: skip

    def __init__(self, fn: Callable[..., None]) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.fn(*args, **kwargs)


# Pools whose SDK and instructor are loaded and one key's wrapped client built (see _StructuredCall.warm).
_WARM: weakref.WeakSet[Any] = weakref.WeakSet()


class _StructuredCall:
    """One structured call: the ``send`` the retry loop runs per attempt, and its outcome."""

    def __init__(
        self, loop: RetryLoop, backend: StructuredBackend, model: type[Any], max_reasks: int, mode: Any
    ) -> None:
        self.loop = loop
        self.backend = backend
        self.provider = loop.pool.provider
        self.model = model
        self.handed = backend.response_model(model)  # what instructor gets (its wrapper, made once)
        self.max_reasks = max_reasks
        self.mode = mode
        self.failure: BaseException | None = None  # why the last attempt never validated
        self.replies = 0
        self.lease: Lease | None = None  # the current attempt's
        self.first_cost = Cost()
        self.reask_error: Exception | None = None  # instructor's hooks swallow errors: kept here
        self.cancel: Any = None
        self.first_params: dict[str, Any] | None = None  # the first attempt's (later ones: made afresh)

    def warm(self) -> None:
        """Before any capacity is taken: import the SDK and instructor and build one key's SDK
        client and its wrapper (a second or more, once per client). Every other key's client is
        made on its first use, a millisecond and no import: a thousand keys do not build a
        thousand clients up front. A mode this provider cannot take is refused here."""
        pool = self.loop.pool
        if pool in _WARM:
            return
        slot = next((s for s in pool.slots if not s.health.disabled), pool.slots[0])
        self._wrapped(slot.client)
        _WARM.add(pool)

    def before_reask(self, log: _ReplyLog) -> None:
        """Take a re-ask's capacity on the leased key: its input has grown by the replies so far."""
        if self.lease is None:
            return
        first = self.first_cost
        input_tokens = first.input_tokens + log.usage.output_tokens if first.input_tokens else 0
        try:
            self.loop.extend(self.lease, Cost(1, input_tokens, first.output_tokens), self.cancel)
        except Exception as exc:  # e.g. shared limits down with on_unavailable="fail"
            self.reask_error = self.reask_error or exc

    def _raise_reask_error(self) -> None:
        error, self.reask_error = self.reask_error, None
        if error is not None:
            raise error

    def send(self, lease: Lease, request: Request) -> ProviderReply:
        """Run instructor once on the lease's client; raise a mapped LLMError on transport failure."""
        self.lease, self.first_cost, self.cancel = lease, lease.reservation.cost, request.cancel
        wrapped = self._wrapped(lease.client)
        log = _ReplyLog(self.backend, self.before_reask)
        self.failure = None
        # Fresh parameters on every attempt: instructor appends its re-ask
        # messages to the list it was given.
        params, self.first_params = self.first_params or self.backend.params(request), None
        try:
            parsed, completion = wrapped.create_with_completion(
                response_model=self.handed, max_retries=self.max_reasks, hooks=log.hooks(), **params
            )
        except Exception as exc:
            self._raise_reask_error()
            self.failure = self._validation_failure(exc, log)  # or raises the mapped error
            parsed, completion = None, log.last
        self._raise_reask_error()
        self.replies = log.replies
        return ProviderReply(self._response(parsed, completion, log, request))

    def _wrapped(self, client: Any) -> Any:
        from instructor.core import InstructorError

        try:
            return self.backend.client(client, self.mode)
        except InstructorError as exc:  # a mode this provider does not have, mostly
            raise InvalidRequestError(
                f"instructor cannot wrap the {self.provider.name} client: {exc}", provider=self.provider.name
            ) from exc

    def _validation_failure(self, exc: Exception, log: _ReplyLog) -> BaseException:
        """The parse or validation error that ended ``exc``; anything else is raised mapped."""
        from instructor.core import IncompleteOutputException, InstructorError
        from pydantic import ValidationError

        cause = _root_cause(exc)
        if isinstance(cause, _pydantic_user_errors()):  # the caller's class, whatever instructor made of it
            raise _model_error(self.model, cause) from cause
        if any(cause is seen for seen in log.parse_errors) or isinstance(
            cause, (ValidationError, json.JSONDecodeError, IncompleteOutputException)
        ):
            return cause
        if isinstance(cause, InstructorError):
            raise InvalidRequestError(
                f"instructor refused the call: {cause}", provider=self.provider.name
            ) from exc
        raise self.backend.map_error(cause) from cause

    def _response(self, parsed: Any, completion: Any, log: _ReplyLog, request: Request) -> Response:
        """The Response of this attempt: summed usage, ``parsed``, and the model's JSON as content."""
        if completion is None:  # cannot happen after a reply failed to validate; be safe
            return Response(content="", model=request.model, provider=self.provider.name, usage=log.usage)
        try:
            response = self.backend.parse(completion)
        except Exception as exc:
            raise self.backend.map_error(exc) from exc
        if parsed is None:
            return replace(response, usage=log.usage)
        parsed = _as_users_model(parsed, self.model)
        return replace(response, content=parsed.model_dump_json(), usage=log.usage, parsed=parsed)

    def error(self, response: Response) -> StructuredOutputError:
        """The StructuredOutputError for a call whose replies never validated."""
        from instructor.core import IncompleteOutputException

        errors = _error_list(self.failure)
        name = self.model.__name__
        if isinstance(self.failure, IncompleteOutputException):
            message = f"The reply was cut off by max_tokens before a complete {name}: raise max_tokens."
        else:
            replies = plural(self.replies, "reply", "replies")
            message = f"The reply did not validate as {name} after {replies}: {_summary(errors)}"
        logger.info("structured output failed: %s", message)
        return StructuredOutputError(
            message,
            errors=errors,
            provider=response.provider,
            key_id=response.key_id,
            request_id=response.request_id,
        )


def _as_users_model(parsed: Any, model: type[Any]) -> Any:
    """``parsed`` as an instance of the user's own class, without instructor's attributes.

    instructor returns an instance of a same-named subclass it made, carrying
    ``_raw_response`` and ``_total_usage``: it would not compare equal to a
    ``model`` built by the user, would not pickle (caches, batch checkpoints,
    process pools), and would keep the raw completion alive. The values are
    validated already, so they are copied over without validating again;
    ``Response.raw`` and ``Response.usage`` carry the rest.
    """
    if type(parsed) is model:
        for name in ("_raw_response", "_total_usage"):
            parsed.__dict__.pop(name, None)
        return parsed
    return model.model_construct(_fields_set=set(parsed.model_fields_set), **dict(parsed))


def _root_cause(exc: BaseException) -> BaseException:
    """The exception inside instructor's ``InstructorRetryException`` wrappers."""
    from instructor.core import InstructorRetryException

    while isinstance(exc, InstructorRetryException) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _error_list(failure: BaseException | None) -> list[dict[str, Any]]:
    """Validation errors as pydantic's plain dicts (one synthetic entry for other failures)."""
    from pydantic import ValidationError

    if isinstance(failure, ValidationError):
        return [dict(e) for e in failure.errors(include_url=False)]
    return [{"type": type(failure).__name__, "loc": (), "msg": str(failure)}]


def _summary(errors: list[dict[str, Any]]) -> str:
    """``"population: Input should be a valid integer; ..."`` for the first few errors."""
    parts = []
    for error in errors[:_ERRORS_IN_MESSAGE]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    hidden = len(errors) - _ERRORS_IN_MESSAGE
    return "; ".join(parts) + (f" (and {hidden} more)" if hidden > 0 else "")
