"""Deterministic token arithmetic of the fake server.

The fake server does not tokenize: it counts ``ceil(len(text) / 4)`` tokens for
a piece of text (so any non-empty text is at least one token, the empty string
is zero). A request's input tokens are the sum of that count over every text
piece of the request (each string content, each text part or block, the
system prompt, tool-call arguments and tool results), plus :data:`IMAGE_TOKENS`
for each image (or other non-text) part. Output tokens are counted the same way
on the reply text, or on the JSON text of a tool call's arguments.
"""

from __future__ import annotations

import re

__all__ = ["CHARS_PER_TOKEN", "IMAGE_TOKENS", "count_tokens", "split_deltas", "truncate_tokens"]

CHARS_PER_TOKEN = 4
"""Characters per token of the fake server's heuristic."""

IMAGE_TOKENS = 85
"""Tokens counted for each image (or other non-text) content part."""

_PIECES = re.compile(r"\S+\s*|\s+")


def count_tokens(text: str) -> int:
    """Return ``ceil(len(text) / 4)``: 0 for ``""``, at least 1 for any other text."""
    return -(-len(text) // CHARS_PER_TOKEN)


def truncate_tokens(text: str, max_tokens: int | None) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_tokens`` tokens; return it and whether it was cut."""
    if max_tokens is None or count_tokens(text) <= max_tokens:
        return text, False
    return text[: max(0, max_tokens) * CHARS_PER_TOKEN], True


def split_deltas(text: str) -> list[str]:
    """Split ``text`` into stream deltas, one word with its trailing spaces each.

    ``"".join(split_deltas(t)) == t`` always holds; the empty text gives ``[]``.
    """
    return _PIECES.findall(text)
