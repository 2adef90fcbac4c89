"""The cache backend contract, the cache key, and how responses are stored.

A backend stores strings under string keys; the expiry (``ttl``) is its own
business. Any object with these methods works as a backend::

    get(key) -> str | None     set(key, value) -> None     delete(key) -> None
    clear() -> None            close() -> None

The key is the SHA-256 of the normalized request: provider, the endpoint
(the base URL, when it is not the provider's default), model, system
prompt, messages (role, content, name, tool_call_id), temperature,
max_tokens, stop, the extra provider parameters, and the JSON schema of
``response_model`` when one is set. Timeouts and retry settings are not part
of it: they do not change the answer.

A stored response is JSON: the answer as :mod:`llmkit.response_json` writes
it (content, model, provider, finish_reason, every usage count, tool_calls,
request_id, refusal, the parts: thinking blocks with their signatures and the
blocks of server tools, and fallback_index) and the structured object
(``model_dump(mode="json")``, validated again with the request's
``response_model`` when read). A hit is the Response the live call gave,
but for what describes the call: ``cached=True``, ``cost=0.0``,
``attempts=0``, its own ``latency``, no ``key_id``. The SDK's ``raw``
object and the key id are never stored. A response whose parts the cache
cannot write back exactly is not cached.

Entries of the first format (``"v": 1``: usage as three numbers, no refusal
or parts) still load when they hold a plain answer; one with tool calls or a
``refusal``/``pause_turn`` finish is a miss (it may lack the refusal text or
the thinking blocks that must go back with a tool result), and the call's
answer replaces it.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from llmkit.request import Request
    from llmkit.types import Response

__all__ = [
    "CacheBackend",
    "TimeSource",
    "UncacheableError",
    "cache_key",
    "decode_response",
    "default_cache_path",
    "encode_response",
    "time_source",
]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

KEY_VERSION = 1  # part of every key: a new value orphans every entry
ENTRY_VERSION = 2  # the stored form; 2 keeps refusals, parts and every usage count
_FIRST_ENTRY_VERSION = 1  # usage as three numbers; no refusal, parts or fallback_index
TimeSource = Callable[[], float]


@runtime_checkable
class CacheBackend(Protocol):
    """Where cached responses live: strings by key, with the backend's own expiry."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...


class UncacheableError(ValueError):
    """The request or response holds something that cannot be written as JSON."""


def time_source(clock: Any = None) -> TimeSource:
    """Wall-clock seconds for expiry (shared across processes): ``time.time`` by default.

    ``clock`` may be a callable returning seconds or an object with ``now()``
    (such as :class:`llmkit.engine.clock.FakeClock`), so tests control expiry.
    """
    if clock is None:
        return time.time
    now = getattr(clock, "now", None)
    if callable(now):
        return now
    if callable(clock):
        return clock
    raise TypeError(f"clock must be a callable or have a now() method, got {clock!r}")


def check_ttl(ttl: float | None) -> float | None:
    """``ttl`` in seconds; None never expires."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        from llmkit.errors import ConfigurationError

        raise ConfigurationError(f"ttl must be a number of seconds > 0 (None: never expire), got {ttl!r}.")
    return float(ttl)


def default_cache_path() -> Path:
    """The default SQLite file: ``responses.sqlite3`` in ``$LLMKIT_CACHE_DIR``,
    else in ``$XDG_CACHE_HOME/llmkit``, else in ``~/.cache/llmkit``."""
    directory = os.environ.get("LLMKIT_CACHE_DIR")
    if directory:
        return Path(directory).expanduser() / "responses.sqlite3"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "llmkit" / "responses.sqlite3"


def _jsonable(value: Any) -> Any:
    """``json.dumps`` default: what a request or a structured answer may hold besides plain data."""
    if hasattr(value, "model_dump") and not isinstance(value, type):
        return value.model_dump(mode="json")
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return value.model_json_schema()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (bytes, bytearray)):
        return {"sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise UncacheableError(f"{type(value).__name__} cannot be part of a cache key")


@functools.lru_cache(maxsize=256)
def response_schema(response_model: Any) -> Any:
    """The JSON schema of a ``response_model`` (a pydantic model or any type pydantic knows)."""
    if hasattr(response_model, "model_json_schema"):
        return response_model.model_json_schema()
    from pydantic import TypeAdapter

    return TypeAdapter(response_model).json_schema()


def cache_key(provider: str, request: Request, endpoint: str | None = None) -> str:
    """The SHA-256 (hex) of the normalized request; raises UncacheableError if it cannot be.

    ``endpoint`` is the base URL the request goes to, None for the provider's
    default: two servers under one provider name (a proxy and the real API,
    two local models) never share answers.
    """
    doc: dict[str, Any] = {
        "v": KEY_VERSION,
        "provider": provider,
        "model": request.model,
        "system": request.system,
        "messages": [[m.role.value, m.content, m.name, m.tool_call_id] for m in request.messages],
        "temperature": None if request.temperature is None else float(request.temperature),
        "max_tokens": request.max_tokens,
        "stop": list(request.stop) if request.stop else None,
        "extra": dict(request.extra),
        "schema": None if request.response_model is None else _schema_of(request.response_model),
    }
    if request.tools or request.tool_choice is not None or request.json_mode:  # absent: keys unchanged
        doc["tools"] = [request.tools, request.tool_choice, request.json_mode]
    if endpoint is not None:  # absent for the provider's default endpoint: keys unchanged
        doc["endpoint"] = endpoint.rstrip("/")
    if any(m.tool_calls for m in request.messages):
        doc["tool_calls"] = [m.tool_calls for m in request.messages]
    try:
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_jsonable)
    except (TypeError, ValueError) as exc:
        raise UncacheableError(str(exc)) from exc
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _schema_of(response_model: Any) -> Any:
    try:
        return response_schema(response_model)
    except TypeError:  # unhashable: not cached by lru_cache
        return response_schema.__wrapped__(response_model)
    except Exception as exc:
        raise UncacheableError(f"no JSON schema for {response_model!r}: {exc}") from exc


def _adapter(response_model: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(response_model)


def encode_response(response: Response, response_model: Any = None) -> str:
    """The JSON stored for ``response`` (raises UncacheableError if it cannot be)."""
    from llmkit.response_json import answer_to_json

    try:
        data: dict[str, Any] = {"v": ENTRY_VERSION, **answer_to_json(response)}
    except ValueError as exc:  # a part of a type the cache cannot write back
        raise UncacheableError(str(exc)) from exc
    if response_model is not None:
        if response.parsed is None:
            raise UncacheableError("a structured response without its parsed object")
        parsed = response.parsed
        dump = getattr(parsed, "model_dump", None)
        data["parsed"] = (
            dump(mode="json") if dump else _adapter(response_model).dump_python(parsed, mode="json")
        )
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise UncacheableError(str(exc)) from exc


def decode_response(text: str, response_model: Any = None, latency: float = 0.0) -> Response:
    """A cached Response (``cached=True``, ``cost=0.0``) from its JSON; ValueError if it is unusable.

    An entry of the first format (``"v": 1``) is read as it was written when
    it holds a plain answer, and is unusable (a miss) when it may have lost
    what the caller needs to act on: a refusal's text, or the thinking and
    server tool blocks that go back with tool calls or a paused turn.
    """
    from llmkit.response_json import answer_from_json
    from llmkit.types import Response

    data = json.loads(text)
    if not isinstance(data, dict) or data.get("v") not in (ENTRY_VERSION, _FIRST_ENTRY_VERSION):
        raise ValueError("not a cache entry of this llmkit version")
    if data["v"] == _FIRST_ENTRY_VERSION and _may_have_lost_blocks(data):
        raise ValueError("an entry of the first format, which kept no refusal or thinking blocks")
    parsed = None
    if response_model is not None:
        if "parsed" not in data:
            raise ValueError("the entry has no structured object")
        validate = getattr(response_model, "model_validate", None)
        raw = data["parsed"]
        parsed = validate(raw) if validate else _adapter(response_model).validate_python(raw)
    answer = answer_from_json(data)
    return Response(**answer, latency=latency, cost=0.0, cached=True, attempts=0, parsed=parsed)


def _may_have_lost_blocks(entry: dict[str, Any]) -> bool:
    """Whether a first-format entry may lack a refusal, thinking or server tool blocks its answer needs."""
    return bool(entry.get("tool_calls")) or entry.get("finish_reason") in ("refusal", "pause_turn")
