"""Structured outputs for Gemini without instructor: its native JSON-schema mode, and re-asks.

:func:`llmkit.structured.run.run_structured` drives every provider through the
same seam, instructor's ``create_with_completion(response_model=, max_retries=,
hooks=, **params) -> (model, completion)``. :class:`GeminiStructured` is that
seam for Gemini:

* the body asks for ``responseMimeType: application/json`` with a
  ``responseSchema`` built from the model's JSON schema
  (:func:`llmkit.providers._gemini_schema.gemini_schema`);
* the reply text is validated by pydantic; when it does not validate, the
  reply and the validation errors go back as a ``model`` and a ``user`` turn
  and Gemini is asked again, at most ``max_retries`` more times;
* every reply is reported to ``hooks`` (``completion:response``) so
  run_structured sums the usage of all of them, and every validation error
  (``parse:error``); after the last failure the last ValidationError is raised
  (run_structured turns it into StructuredOutputError);
* a reply cut off at ``maxOutputTokens`` that does not validate ends the call
  at once with instructor's IncompleteOutputException (asking again would cut
  again);
* transport errors are raised mapped, for the dispatcher to retry on another key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmkit.errors import InvalidRequestError
from llmkit.providers._gemini_schema import gemini_schema
from llmkit.request import Request
from llmkit.structured.backends import StructuredBackend
from llmkit.structured.models import check_response_model

if TYPE_CHECKING:
    from pydantic import ValidationError

    from llmkit.providers.gemini import GeminiProvider, GeminiReply
    from llmkit.types import Response, Usage

__all__ = ["GeminiBackend", "GeminiStructured", "check_mode", "reask_text", "structured_body"]

# instructor modes that mean "JSON matching the schema", which is what Gemini does natively.
_JSON_MODES = frozenset({"json_mode", "json_schema_mode", "gemini_json", "genai_json",
                         "genai_structured_outputs", "vertexai_json"})  # fmt: skip
_ERRORS_SHOWN = 10


def check_mode(mode: Any) -> None:
    """Gemini has one structured mode: accept no mode or a JSON one, refuse the others."""
    value = getattr(mode, "value", mode)
    if mode is not None and value not in _JSON_MODES:
        raise InvalidRequestError(
            f"instructor_mode={value!r} is not available for google: Gemini structured outputs "
            "always use its JSON-schema mode (leave instructor_mode unset).",
            provider="google",
        )


def structured_body(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` asking for JSON that matches ``request.response_model``."""
    model = check_response_model(request.response_model)
    config = dict(body.get("generationConfig") or {})
    config["responseMimeType"] = "application/json"
    config["responseSchema"] = gemini_schema(model.model_json_schema(), model.__name__)
    config.pop("responseJsonSchema", None)
    return {**body, "generationConfig": config}


def reask_text(error: ValidationError) -> str:
    """The user turn that reports why a reply did not validate."""
    lines = []
    for item in error.errors(include_url=False)[:_ERRORS_SHOWN]:
        where = ".".join(str(part) for part in item.get("loc", ())) or "(root)"
        lines.append(f"- {where}: {item.get('msg')}")
    hidden = error.error_count() - _ERRORS_SHOWN
    if hidden > 0:
        lines.append(f"- ... and {hidden} more")
    return (
        "Your reply did not validate against the required JSON schema:\n"
        + "\n".join(lines)
        + "\nReply again with only the corrected JSON object."
    )


class GeminiStructured:
    """instructor's ``create_with_completion`` over one key's session (thread-safe: no state)."""

    def __init__(self, provider: GeminiProvider, session: Any) -> None:
        self.provider = provider
        self.session = session

    def create_with_completion(
        self,
        *,
        response_model: type[Any],
        max_retries: int,
        request: Request,
        body: Mapping[str, Any],
        hooks: Any = None,
    ) -> tuple[Any, GeminiReply]:
        from pydantic import ValidationError

        contents = list(body["contents"])
        last_error: ValidationError | None = None
        for _ in range(max_retries + 1):
            if hooks is not None:
                hooks.emit_completion_arguments(contents=contents)
            completion = self.provider.send(self.session, request, {**body, "contents": contents})
            if hooks is not None:
                hooks.emit_completion_response(completion)
            response = self.provider.parse_reply(completion)
            try:
                return response_model.model_validate_json(response.content), completion
            except ValidationError as exc:
                last_error = exc
                if hooks is not None:
                    hooks.emit_parse_error(exc)
            if response.finish_reason == "MAX_TOKENS":
                from instructor.core import IncompleteOutputException

                raise IncompleteOutputException(last_completion=completion) from last_error
            contents += [
                {"role": "model", "parts": [{"text": response.content or "(an empty reply)"}]},
                {"role": "user", "parts": [{"text": reask_text(last_error)}]},
            ]
        assert last_error is not None
        raise last_error


class GeminiBackend(StructuredBackend):
    """The structured backend of :class:`~llmkit.providers.gemini.GeminiProvider`."""

    provider: GeminiProvider

    def wrap(self, client: Any, mode: Any) -> Any:
        check_mode(mode)
        return GeminiStructured(self.provider, client)

    def params(self, request: Request) -> dict[str, Any]:
        return {"request": request, "body": structured_body(request, self.provider.build_body(request))}

    def parse(self, completion: Any) -> Response:
        return self.provider.parse_reply(completion)

    def usage(self, completion: Any) -> Usage:
        return self.provider.usage_of(completion)
