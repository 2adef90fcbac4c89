"""A provider batch's answers read back: an item's error when its batch said nothing, its model validated."""

from __future__ import annotations

from typing import Any

from llmkit.batch.provider_errors import UNFINISHED, ProviderBatchError
from llmkit.errors import LLMError, StructuredOutputError
from llmkit.providers._batch import BatchState, LineOutcome
from llmkit.types import Response

__all__: list[str] = []


def unfinished_error(outcome: LineOutcome, provider: str) -> LLMError:
    """The error of an item the provider never ran (expired, cancelled), with its reason."""
    error_class = UNFINISHED.get(outcome.unfinished or "", ProviderBatchError)
    return error_class(f"{outcome.unfinished}: {outcome.reason}", provider=provider)


def no_answer(state: BatchState, provider: str) -> LLMError:
    """The error of an item its ended batch reports nothing about."""
    if state.outcome == "failed":
        message = f"the {provider} batch {state.batch_id} failed: {state.reason}"
        return UNFINISHED["failed"](message, provider=provider)
    error_class = UNFINISHED.get(state.outcome or "", ProviderBatchError)
    message = f"the {provider} batch {state.batch_id} ended ({state.status}) without an answer for this item"
    return error_class(message, provider=provider)


def validated(response: Response, response_model: Any, provider: str) -> Any:
    """The item's model, validated from the forced tool call's arguments or the JSON text."""
    if response_model is None:
        return None
    from pydantic import ValidationError

    try:
        if response.tool_calls:
            return response_model.model_validate(response.tool_calls[0].arguments)
        return response_model.model_validate_json(response.content)
    except ValidationError as exc:
        errors = [dict(e) for e in exc.errors(include_url=False)]
        raise StructuredOutputError(
            f"The reply did not validate as {response_model.__name__} (a batch asks no re-asks: "
            f"retry_failed_live=True asks again live): {exc.error_count()} errors",
            errors=errors, provider=provider, request_id=response.request_id,
        ) from exc  # fmt: skip
