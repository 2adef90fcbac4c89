"""Build a small valid instance of a JSON schema (used for forced tool calls).

Rules: strings are ``"example"`` (or a sample of their ``format``, padded to
``minLength``), integers ``1`` and numbers ``1.0`` (moved into
``minimum``/``maximum`` when those exclude 1), booleans ``true``, ``null`` for
``null``; arrays hold ``max(1, minItems)`` items; objects hold every declared
property; ``enum`` takes its first value and ``const`` its value; ``anyOf`` and
``oneOf`` take their first non-null branch, ``allOf`` merges its branches;
``$ref`` into ``#/$defs`` or ``#/definitions`` is resolved. Recursive schemas
stop at a fixed depth with an empty array or object.
"""

from __future__ import annotations

from typing import Any

__all__ = ["example_from_schema"]

_MAX_DEPTH = 12
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
}


def example_from_schema(schema: Any, root: Any = None) -> Any:
    """Return a minimal instance that validates against ``schema``."""
    return _example(schema, schema if root is None else root, 0)


def _example(schema: Any, root: Any, depth: int) -> Any:
    if not isinstance(schema, dict):
        return {}
    if "$ref" in schema:
        return _example(_resolve(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combo in ("anyOf", "oneOf"):
        if schema.get(combo):
            options = [s for s in schema[combo] if not (isinstance(s, dict) and s.get("type") == "null")]
            return _example((options or schema[combo])[0], root, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = _example(part, root, depth + 1)
            if not isinstance(value, dict):
                return value
            merged.update(value)
        return merged
    return _typed(schema, _type_of(schema), root, depth)


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        return "object" if "properties" in schema else "string" if not schema else "object"
    return str(kind)


def _typed(schema: dict[str, Any], kind: str, root: Any, depth: int) -> Any:
    if kind == "string":
        text = _FORMATS.get(str(schema.get("format")), "example")
        return text.ljust(int(schema.get("minLength", 0)), "x")
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "array":
        if depth >= _MAX_DEPTH:
            return []
        items = schema.get("items", {})
        if isinstance(items, list):  # tuple form
            return [_example(s, root, depth + 1) for s in items]
        count = max(1, int(schema.get("minItems", 1)))
        return [_example(items, root, depth + 1) for _ in range(count)]
    if depth >= _MAX_DEPTH:
        return {}
    props = schema.get("properties") or {}
    return {name: _example(sub, root, depth + 1) for name, sub in props.items()}


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    value: float = 1
    low, low_x = schema.get("minimum"), schema.get("exclusiveMinimum")
    high, high_x = schema.get("maximum"), schema.get("exclusiveMaximum")
    if isinstance(low, (int, float)) and value < low:
        value = low
    if isinstance(low_x, (int, float)) and value <= low_x:
        value = low_x + 1
    if isinstance(high, (int, float)) and value > high:
        value = high
    if isinstance(high_x, (int, float)) and value >= high_x:
        value = high_x - 1 if integer or not isinstance(low_x, (int, float)) else (low_x + high_x) / 2
    return int(value) if integer else float(value)


def _resolve(ref: Any, root: Any) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}
    node = root
    for part in ref.lstrip("#/").split("/"):
        if not part:
            continue
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node
