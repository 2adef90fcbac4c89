"""Reading a provider's reply without paying for the SDK's object model.

Building the SDK's pydantic objects for a reply costs the openai and anthropic
SDKs 0.6-0.7 ms per call here, more than all of llmkit's own work. Adapters
read the JSON body directly (``reply_json``) with :func:`field`, which reads a
dict and an SDK object alike, so one parser serves both the fast path and
paths that only have SDK objects (instructor). The SDK object stays available
as ``Response.raw``: a :class:`LazySDKObject` builds it on first use.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["LazySDKObject", "field", "reply_json"]

_MISSING = object()


def field(obj: Any, name: str) -> Any:
    """``obj[name]`` for a dict, ``obj.name`` for an object; None when absent."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def reply_json(raw: Any) -> Any:
    """The decoded JSON body of an SDK's raw (``with_raw_response``) reply."""
    data = json.loads(raw.http_response.content)
    if not isinstance(data, dict):
        raise ValueError(f"the reply body is a {type(data).__name__}, not a JSON object")
    return data


class LazySDKObject:
    """The SDK's own reply object, built on first attribute access.

    Attribute access is passed through (``response.raw.choices[0]``);
    :meth:`get` returns the object itself (for ``isinstance`` and the like).
    Pickling stores the built object.
    """

    __slots__ = ("_factory", "_lock", "_value")

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._value: Any = _MISSING
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._value is _MISSING:
            with self._lock:
                if self._value is _MISSING:
                    self._value = self._factory()
        return self._value

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)

    def __repr__(self) -> str:
        return repr(self.get())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_identity, (self.get(),))


def _identity(value: Any) -> Any:
    return value
