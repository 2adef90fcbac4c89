"""Input digests: what a checkpoint record was answered for, so a rerun reuses it only for the same inputs.

A digest is written ``v2:<messages>:<arguments>:<response_model>``, each part
the start of the SHA-256 of canonical JSON:

* messages: the item's messages, content parts by value (an image's bytes,
  or its URL), not by ``repr``;
* arguments: every keyword argument that reaches ``complete``: the client's
  defaults (``run_batch(client_defaults=...)``), the batch's, then the item's
  own, a later one winning over an earlier one. None (and ``json_mode=False``,
  an empty ``tools`` or ``stop`` list) means "the default", as in ``complete``,
  and is left out; so are the transport settings
  (``timeout``, ``max_retries``, ``retry_delay``, ``cache``), which do not
  change the answer, so a rerun may raise a timeout. Tools count by the
  schema that is sent (a function's from its signature and docstring), not
  by the object;
* response_model: its JSON schema.

Keeping the parts apart lets :class:`~llmkit.batch.CheckpointMismatchError`
say which of them changed. Records written before digests covered the
arguments hold one 24-hex-digit hash of the messages and the item's own
arguments (:meth:`llmkit.batch.items._Item.legacy_digest`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from llmkit.types import ImagePart, Message, TextPart

__all__ = ["PARTS", "InputDigest", "changed_parts", "is_current"]

VERSION = "v2"
PARTS = ("messages", "arguments", "response_model")
_TRANSPORT = frozenset({"timeout", "max_retries", "retry_delay", "cache", "include_response"})


def _canonical(value: Any) -> Any:
    """``json.dumps`` default: a value as the JSON of what it sends, stable across processes."""
    if isinstance(value, Message):
        return value.to_dict()
    if isinstance(value, TextPart):
        return {"text": value.text}
    if isinstance(value, ImagePart):
        image = value.url if value.data is None else {"sha256": hashlib.sha256(value.data).hexdigest()}
        return {"image": image, "media_type": value.media_type}
    if isinstance(value, (bytes, bytearray)):
        return {"sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, type):
        schema = getattr(value, "model_json_schema", None)
        return schema() if callable(schema) else value.__qualname__
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if callable(value) and hasattr(value, "__qualname__"):  # e.g. tool_choice=a_function: its name is sent
        return value.__qualname__
    return repr(value)


def _hash(value: Any, length: int = 16) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=_canonical, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _is_default(name: str, value: Any) -> bool:
    """None, or what ``complete`` does without the argument (``json_mode=False``, no tools, no stop)."""
    if value is None:
        return True
    if name == "json_mode":
        return value is False
    return name in ("tools", "stop") and isinstance(value, (list, tuple)) and not value


def _answer_arguments(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments that can change an answer, tools as the schemas sent."""
    chosen = {k: v for k, v in kwargs.items() if k not in _TRANSPORT and not _is_default(k, v)}
    if "tools" in chosen:
        from llmkit.errors import InvalidRequestError
        from llmkit.tools import normalize_tools

        with contextlib.suppress(InvalidRequestError):  # the call itself refuses them, saying why
            chosen["tools"] = [dataclasses.asdict(spec) for spec in normalize_tools(chosen["tools"])]
    return chosen


def _schema(response_model: Any) -> Any:
    if response_model is None:
        return None
    schema = getattr(response_model, "model_json_schema", None)
    if callable(schema):
        return schema()
    try:
        from pydantic import TypeAdapter

        return TypeAdapter(response_model).json_schema()
    except Exception:  # not a type pydantic knows: the call will say so
        return _canonical(response_model)


class InputDigest:
    """Digests of a batch's items, the arguments they share hashed once."""

    def __init__(
        self, shared: Mapping[str, Any], response_model: Any, client_defaults: Mapping[str, Any] | None = None
    ) -> None:
        self._shared = {**_answer_arguments(client_defaults or {}), **_answer_arguments(shared)}
        self._shared_hash = _hash(self._shared)
        self._model_hash = _hash(_schema(response_model))
        self.model_name = getattr(response_model, "__name__", None) or repr(response_model)

    def of(self, item: Any) -> str:
        """The digest of one item (an ``_Item``: its ``messages`` and own ``kwargs``)."""
        arguments = self._shared_hash
        if item.kwargs:
            arguments = _hash({**self._shared, **_answer_arguments(item.kwargs)})
        return f"{VERSION}:{_hash(item.messages)}:{arguments}:{self._model_hash}"


def is_current(digest: Any) -> bool:
    """True for a digest of this format; False for one an older llmkit wrote."""
    return isinstance(digest, str) and digest.startswith(VERSION + ":")


def changed_parts(old: str, new: str) -> list[str]:
    """The parts (of :data:`PARTS`) in which two current digests differ."""
    return [part for part, a, b in zip(PARTS, old.split(":")[1:], new.split(":")[1:]) if a != b]
