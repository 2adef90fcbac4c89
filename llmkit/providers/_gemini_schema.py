"""A pydantic model's JSON schema, rewritten in the OpenAPI subset Gemini's ``responseSchema`` takes.

What changes:

* ``$ref`` into ``$defs``/``definitions`` is inlined (Gemini has no references;
  a recursive model cannot be expressed and raises InvalidRequestError);
* ``anyOf``/``oneOf``/``type: [...]`` with ``null`` become ``nullable: true``;
  a one-branch ``allOf`` is merged; other unions stay ``anyOf``;
* types are upper-case (``STRING``, ``OBJECT``, ...); ``const`` becomes a
  one-value ``enum``; ``enum`` is kept for strings only (Gemini's rule);
* ``propertyOrdering`` lists the fields in the model's order (Gemini would
  otherwise order them alphabetically, which hurts answers that reason first);
* keywords Gemini does not know (``title``, ``default``, ``additionalProperties``,
  ``examples``, exclusive bounds, ...) and formats it does not know are dropped:
  pydantic still validates every reply against the full model.

A free-form object (``dict[str, X]``: no ``properties``) or a value without a
type (``Any``) cannot be expressed either and raises InvalidRequestError
naming the field, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmkit.errors import InvalidRequestError

__all__ = ["gemini_schema"]

_COPIED = (
    "description",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minProperties",
    "maxProperties",
)
_FORMATS = {
    "string": ("date-time", "enum"),
    "integer": ("int32", "int64"),
    "number": ("float", "double"),
}
_TYPES = ("string", "integer", "number", "boolean", "array", "object")


def gemini_schema(schema: Mapping[str, Any], name: str = "response_model") -> dict[str, Any]:
    """Gemini's ``responseSchema`` for a JSON schema (as ``Model.model_json_schema()`` gives)."""
    defs = dict(schema.get("$defs") or {}) | dict(schema.get("definitions") or {})
    return _Converter(defs).convert(schema, (), name)


class _Converter:
    def __init__(self, defs: Mapping[str, Any]) -> None:
        self.defs = defs

    def fail(self, where: str, why: str) -> InvalidRequestError:
        message = f"Gemini's responseSchema cannot express {where}: {why}."
        return InvalidRequestError(message, provider="google")

    def convert(self, node: Any, seen: tuple[str, ...], where: str) -> dict[str, Any]:
        if not isinstance(node, Mapping):
            raise self.fail(where, f"expected a schema object, got {node!r}")
        if "$ref" in node:
            return self._ref(node, seen, where)
        all_of = node.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            rest = {k: v for k, v in node.items() if k != "allOf"}
            return self.convert({**_resolved(all_of[0]), **rest}, seen, where)
        for union in ("anyOf", "oneOf"):
            if isinstance(node.get(union), list):
                return self._union(node, node[union], seen, where)
        kind = node.get("type")
        nullable = False
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"]
            nullable = len(kinds) < len(kind)
            if len(kinds) != 1:
                branches = [{**node, "type": k} for k in kinds]
                return self._union({}, branches + ([{"type": "null"}] if nullable else []), seen, where)
            kind = kinds[0]
        out = self._typed(node, kind, seen, where)
        if nullable:
            out["nullable"] = True
        return out

    def _ref(self, node: Mapping[str, Any], seen: tuple[str, ...], where: str) -> dict[str, Any]:
        ref = node["$ref"]
        target_name = ref.rsplit("/", 1)[-1] if isinstance(ref, str) else ""
        if target_name not in self.defs:
            raise self.fail(where, f"unresolvable reference {ref!r}")
        if target_name in seen:
            raise self.fail(where, f"{target_name} contains itself (a recursive model)")
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return self.convert({**self.defs[target_name], **siblings}, (*seen, target_name), where)

    def _union(
        self, node: Mapping[str, Any], branches: list[Any], seen: tuple[str, ...], where: str
    ) -> dict[str, Any]:
        real = [b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")]
        if not real:
            raise self.fail(where, "a value that can only be null")
        if len(real) == 1:
            out = self.convert(real[0], seen, where)
        else:
            out = {"anyOf": [self.convert(b, seen, where) for b in real]}
        if len(real) < len(branches):
            out["nullable"] = True
        if isinstance(node.get("description"), str):
            out["description"] = node["description"]
        return out

    def _typed(self, node: Mapping[str, Any], kind: Any, seen: tuple[str, ...], where: str) -> dict[str, Any]:
        if "const" in node:
            node = {"enum": [node["const"]], **node}
        enum = node.get("enum")
        if kind is None and isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
            kind = "string"
        if kind is None and "properties" in node:
            kind = "object"
        if kind not in _TYPES:
            raise self.fail(where, "a value without a type (Any?): give it a concrete type")
        out: dict[str, Any] = {"type": str(kind).upper()}
        out.update((k, node[k]) for k in _COPIED if k in node)
        if node.get("format") in _FORMATS.get(kind, ()):
            out["format"] = node["format"]
        if kind == "string" and isinstance(enum, list) and all(isinstance(v, str) for v in enum):
            out["enum"] = list(enum)
        if kind == "array":
            items = node.get("items")
            if not isinstance(items, Mapping):
                raise self.fail(where, "an array without one item type (a tuple?)")
            out["items"] = self.convert(items, seen, where + "[]")
        elif kind == "object":
            out.update(self._object(node, seen, where))
        return out

    def _object(self, node: Mapping[str, Any], seen: tuple[str, ...], where: str) -> dict[str, Any]:
        properties = node.get("properties")
        if not isinstance(properties, Mapping) or not properties:
            raise self.fail(
                where, "a free-form object (a dict field?): use a model with named fields instead"
            )
        out: dict[str, Any] = {
            "properties": {k: self.convert(v, seen, f"{where}.{k}") for k, v in properties.items()},
            "propertyOrdering": list(properties),
        }
        required = [k for k in node.get("required") or () if k in properties]
        if required:
            out["required"] = required
        return out


def _resolved(node: Any) -> Mapping[str, Any]:
    return node if isinstance(node, Mapping) else {}
