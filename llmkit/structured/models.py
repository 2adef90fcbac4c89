"""Checking what a structured call asks for: the response model, re-asks and instructor's mode."""

from __future__ import annotations

from typing import Any

from llmkit.errors import InvalidRequestError

__all__ = ["check_max_reasks", "check_response_model", "instructor_mode"]


def check_response_model(response_model: Any) -> type[Any]:
    """``response_model`` if it is a pydantic model class, else InvalidRequestError."""
    from pydantic import BaseModel

    if isinstance(response_model, type) and issubclass(response_model, BaseModel):
        return response_model
    if isinstance(response_model, BaseModel):
        hint = f"pass the class {type(response_model).__name__}, not an instance of it"
    else:
        hint = "define one with `class Answer(pydantic.BaseModel): ...` and pass the class"
    raise InvalidRequestError(
        f"response_model must be a pydantic model class, got {response_model!r}: {hint}."
    )


def check_max_reasks(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequestError(f"max_reasks must be a whole number >= 0, got {value!r}.")
    return value


def instructor_mode(value: Any) -> Any:
    """``instructor.Mode`` for ``instructor_mode=`` (a Mode, its value or its name); None stays None."""
    if value is None:
        return None
    from instructor import Mode

    if isinstance(value, Mode):
        return value
    if isinstance(value, str):
        for candidate in (value, value.lower()):
            try:
                return Mode(candidate)
            except ValueError:
                pass
        if value.upper() in Mode.__members__:
            return Mode[value.upper()]
    raise InvalidRequestError(
        f"instructor_mode must be an instructor.Mode (or its value, e.g. 'tool_call', 'json_mode'), "
        f"got {value!r}."
    )
