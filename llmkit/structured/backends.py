"""Structured-output backends: how each SDK family meets instructor.

:func:`llmkit.structured.run.run_structured` drives every provider through one
seam, instructor's ``create_with_completion(response_model=, max_retries=,
hooks=, **params) -> (model, completion)``. A backend supplies that seam for
one adapter: the wrapped client (made once per SDK client and mode, then
reused), the SDK call's parameters, and how to read the raw completion.
Adapters name their backend in ``Provider.structured_backend``; this module
never branches on a provider's name.
"""

from __future__ import annotations

import functools
import importlib
import threading
import weakref
from typing import TYPE_CHECKING, Any

from llmkit.errors import InvalidRequestError, LLMError

if TYPE_CHECKING:
    from llmkit.providers.base import Provider
    from llmkit.request import Request
    from llmkit.types import Response, Usage

__all__ = ["AnthropicBackend", "OpenAIBackend", "StructuredBackend", "backend_for", "instructor_model"]


class StructuredBackend:
    """The instructor seam for one adapter; subclasses write :meth:`wrap` and the readers."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        # instructor wrappers of SDK clients, by (id(client), mode); each entry holds its
        # client, so the id stays unique while the entry lives.
        self._wrapped: dict[tuple[int, Any], tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def client(self, client: Any, mode: Any = None) -> Any:
        """instructor's wrapper of ``client`` for ``mode``: made once, then reused (thread-safe)."""
        key = (id(client), mode)
        with self._lock:
            entry = self._wrapped.get(key)
            if entry is None:
                entry = (client, self.wrap(client, mode))
                self._wrapped[key] = entry
        return entry[1]

    def wrap(self, client: Any, mode: Any) -> Any:
        """An object with instructor's ``create_with_completion`` over ``client``."""
        raise NotImplementedError

    def response_model(self, model: Any) -> Any:
        """The class to hand to the seam for the caller's ``model`` (by default the model itself)."""
        return model

    def params(self, request: Request) -> dict[str, Any]:
        """The SDK call's parameters for instructor (it adds the tool or schema itself)."""
        return dict(self.provider.build_params(request))

    def parse(self, completion: Any) -> Response:
        """The raw completion instructor hands back, parsed."""
        raise NotImplementedError

    def usage(self, completion: Any) -> Usage:
        """The usage of one raw completion (zero when it has none). Must not raise."""
        raise NotImplementedError

    def map_error(self, exc: BaseException) -> LLMError:
        return self.provider.map_error(exc)


class _InstructorBackend(StructuredBackend):
    """A backend where instructor does the work: it gets its own wrapper class of the model."""

    def response_model(self, model: Any) -> Any:
        return instructor_model(model)


@functools.lru_cache(maxsize=256)
def _instructor_class(model: type[Any]) -> type[Any]:
    import instructor

    return instructor.openai_schema(model)


def instructor_model(model: Any) -> Any:
    """instructor's wrapper class of a pydantic model, made once per class.

    Given the plain class, instructor makes the wrapper anew on every call (a
    ``create_model`` and a JSON schema: about 0.4 ms, and a new class each
    time, so its own schema cache never hits); given its wrapper, it uses it
    as it is. The parsed reply is an instance of the wrapper, a subclass of
    the model with the same fields and validators; run_structured hands back
    an instance of the caller's own class. Anything but a plain pydantic
    model (``list[Model]``, a TypedDict, a simple type) goes as it is.
    """
    from pydantic import BaseModel

    if not isinstance(model, type) or not issubclass(model, BaseModel):
        return model
    import instructor

    if issubclass(model, instructor.OpenAISchema):
        return model
    return _instructor_class(model)


class OpenAIBackend(_InstructorBackend):
    """instructor over the openai SDK (OpenAI, Groq, local servers)."""

    def wrap(self, client: Any, mode: Any) -> Any:
        import instructor

        # No mode: from_openai's own default (tool calling) in every instructor version.
        return instructor.from_openai(client) if mode is None else instructor.from_openai(client, mode=mode)

    def parse(self, completion: Any) -> Response:
        request_id = getattr(completion, "_request_id", None)
        return self.provider.parse_completion(completion, {"x-request-id": request_id} if request_id else {})

    def usage(self, completion: Any) -> Usage:
        return self.provider.usage_of(getattr(completion, "usage", None))


class AnthropicBackend(_InstructorBackend):
    """instructor over the anthropic SDK."""

    def wrap(self, client: Any, mode: Any) -> Any:
        import instructor

        # No mode: from_anthropic's own default (tool use) in every instructor version;
        # naming Mode.ANTHROPIC_TOOLS warns as deprecated in instructor >= 1.14.
        if mode is None:
            return instructor.from_anthropic(client)
        return instructor.from_anthropic(client, mode=mode)

    def parse(self, completion: Any) -> Response:
        request_id = getattr(completion, "_request_id", None)
        return self.provider.parse_message(completion, {"request-id": request_id} if request_id else {})

    def usage(self, completion: Any) -> Usage:
        return self.provider.usage_of(getattr(completion, "usage", None))


# One backend per adapter instance (so per client), dropped with it.
_BACKENDS: weakref.WeakKeyDictionary[Provider, StructuredBackend] = weakref.WeakKeyDictionary()
_BACKENDS_LOCK = threading.Lock()


def backend_for(provider: Provider) -> StructuredBackend:
    """The structured backend of ``provider``, or InvalidRequestError when it has none."""
    spec = type(provider).structured_backend
    if not spec or not provider.capabilities.structured_outputs:
        raise InvalidRequestError(f"{provider.name} does not support response_model= in llmkit yet.")
    with _BACKENDS_LOCK:
        backend = _BACKENDS.get(provider)
        if backend is None:
            module, _, name = spec.partition(":")
            backend = _BACKENDS[provider] = getattr(importlib.import_module(module), name)(provider)
    return backend
