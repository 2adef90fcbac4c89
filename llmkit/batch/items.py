"""The items of a batch: parsing what the user passed, stable ids, shards.

Their input digests are :mod:`llmkit.batch.digest`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llmkit.errors import InvalidRequestError
from llmkit.types import Message

__all__ = ["plain_json", "shard_of"]


def plain_json(value: Any) -> Any:
    """JSON for what ``json`` cannot encode in a checkpoint record (and in legacy digests)."""
    if isinstance(value, Message):
        return value.to_dict()
    if isinstance(value, type):  # e.g. a pydantic model class
        return f"{value.__module__}.{value.__qualname__}"
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return repr(value)


@dataclass(slots=True)
class _Item:
    index: int  # position in the input
    id: Any
    messages: Any
    kwargs: dict[str, Any]
    pos: int = 0  # position in this batch's result (differs from index under sharding)

    @property
    def key(self) -> str:
        return str(self.id)

    def legacy_digest(self) -> str:
        """The hash older llmkit versions wrote: the messages and the item's own arguments only.

        Content parts went in by ``repr`` (an image without its bytes); the
        current digest is :class:`llmkit.batch.digest.InputDigest`.
        """
        inputs = [self.messages, self.kwargs]
        text = json.dumps(inputs, sort_keys=True, default=plain_json, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def _parse_item(index: int, raw: Any) -> _Item:
    if isinstance(raw, Mapping) and ("messages" in raw or "prompt" in raw):
        data = dict(raw)
        if "messages" in data and "prompt" in data:
            raise InvalidRequestError(f"Item {index} has both 'messages' and 'prompt': give one.")
        item_id = data.pop("id", index)
        if not isinstance(item_id, (str, int)) or isinstance(item_id, bool):
            raise InvalidRequestError(f"Item {index} has id {item_id!r}: ids are strings or integers.")
        messages = data.pop("messages") if "messages" in data else data.pop("prompt")
        return _Item(index, item_id, _materialize(messages), data)
    return _Item(index, index, _materialize(raw), {})


def _materialize(messages: Any) -> Any:
    if isinstance(messages, (str, Message, Mapping)) or messages is None:
        return messages
    return list(messages)  # a generator would be used up by hashing


def shard_of(item_id: Any, count: int) -> int:
    """The shard (0..count-1) of an item id: sha256 based, the same on every machine."""
    return int(hashlib.sha256(str(item_id).encode()).hexdigest()[:16], 16) % count


def _plan(items: Iterable[Any], shard: tuple[int, int] | None) -> list[_Item]:
    plan = [_parse_item(i, raw) for i, raw in enumerate(items)]
    seen: set[str] = set()
    for item in plan:
        if item.key in seen:
            raise InvalidRequestError(f"Two items have id {item.id!r}: ids must be unique.")
        seen.add(item.key)
    if shard is not None:
        index, count = shard
        plan = [item for item in plan if shard_of(item.id, count) == index]
    for pos, item in enumerate(plan):
        item.pos = pos
    return plan


