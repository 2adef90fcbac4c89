"""Plain English for messages: a count with its noun ("1 key", "2 keys", "1 entry", "3 entries")."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, in the plural unless the count is 1 (``many``: an irregular plural)."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"
