"""Token estimates made before a call, to reserve rate-limit capacity.

The estimate only has to be close: after the call the reservation is
reconciled with the real usage the provider reports. It errs a little high
(per-message overhead), because an estimate that is too low can draw a 429,
while one that is too high only delays the next request until the refund.

Where ``tiktoken`` is installed and its encoding is available offline, its
exact count is used for text; otherwise a heuristic of one token per four
characters, which is close for English text on current tokenizers.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmkit.request import Request

__all__ = ["count_text_tokens", "estimate_input_tokens", "heuristic_tokens"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

CHARS_PER_TOKEN = 4
PER_MESSAGE_OVERHEAD = 3
PER_REQUEST_OVERHEAD = 3
IMAGE_TOKENS = 85


def heuristic_tokens(text: str) -> int:
    """About one token per four characters (rounded up)."""
    return -(-len(text) // CHARS_PER_TOKEN)


@functools.lru_cache(maxsize=1)
def _tiktoken_counter() -> Callable[[str], int] | None:
    try:
        import tiktoken  # type: ignore[import-not-found,unused-ignore]

        encoding = tiktoken.get_encoding("o200k_base")
        encoding.encode("warm up")
    except Exception:  # not installed, or its files cannot be fetched offline
        return None
    logger.debug("using tiktoken for token estimates")
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def count_text_tokens(text: str, exact: bool = False) -> int:
    """Tokens in ``text``: exact with tiktoken when asked for and available."""
    if exact:
        counter = _tiktoken_counter()
        if counter is not None:
            return counter(text)
    return heuristic_tokens(text)


def estimate_input_tokens(request: Request, exact: bool = False) -> int:
    """Estimated input tokens of a request: its text plus per-message overhead."""
    total = PER_REQUEST_OVERHEAD
    if request.system:
        total += count_text_tokens(request.system, exact) + PER_MESSAGE_OVERHEAD
    for message in request.messages:
        total += PER_MESSAGE_OVERHEAD
        content = message.content
        if isinstance(content, str):
            total += count_text_tokens(content, exact)
            continue
        for part in content:
            text = getattr(part, "text", None)
            if text is None and isinstance(part, dict):
                text = part.get("text")
            total += count_text_tokens(text, exact) if isinstance(text, str) else IMAGE_TOKENS
    for tool in request.tools:  # definitions are sent as JSON alongside the messages
        total += heuristic_tokens(f"{tool.name} {tool.description} {tool.parameters}")
    return total
