"""What the retry loops (sync and async) keep of an attempt's stream, and how a broken one is raised."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkit.errors import LLMError, StreamError

if TYPE_CHECKING:
    from llmkit.types import Usage

__all__ = ["StreamState", "broken", "usage_counts"]


def usage_counts(usage: Usage, counted_input: int | None) -> tuple[int | None, int | None]:
    """The tokens to reconcile a reservation with; (None, None) when the reply reported none."""
    if usage.input_tokens == 0 and usage.output_tokens == 0:
        return None, None
    return (usage.input_tokens if counted_input is None else counted_input), usage.output_tokens


def broken(error: LLMError, state: StreamState) -> StreamError:
    return StreamError(
        f"The stream broke after {state.chars} characters: {error.message}",
        provider=error.provider,
        status_code=error.status_code,
        key_id=error.key_id,
        request_id=state.request_id,
    )


class StreamState:
    __slots__ = ("attempts", "chars", "delivered", "request_id")

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts
        self.delivered = False  # output reached the caller: no retry after this
        self.chars = 0
        self.request_id: str | None = None
