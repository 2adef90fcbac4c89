"""What the Gemini API takes besides the conversation: thinking, and the fields it refuses.

Thinking (``thinking=``), as Google's thinking guide and the v1beta
``ThinkingConfig`` describe it:

* a token budget -> ``{"thinkingBudget": N, "includeThoughts": true}``;
* an effort: Gemini 3 and later -> ``thinkingLevel`` (``"low"``, ``"high"``;
  Flash also ``"minimal"``, ``"medium"``: the API says which it takes); Gemini
  2.5 -> the budget the effort stands for (:data:`llmkit.providers._options.EFFORT_BUDGETS`);
* ``True`` -> ``{"includeThoughts": true}`` (the model's own depth, thoughts
  shown); ``False`` or ``"none"`` -> ``{"thinkingBudget": 0}`` (off, where the
  model allows it);
* a dict -> sent as the ``thinkingConfig`` itself.

Thought summaries come back as ``thought: true`` parts, which llmkit keeps as
:class:`~llmkit.types.ThinkingPart` (``Response.thinking``), not as the answer;
``thoughtsTokenCount`` is ``Usage.reasoning_tokens``.

Refused before sending (the Gemini API answers them with a 400): Vertex AI's
own fields (top-level ``labels``; ``audioTimestamp``, ``routingConfig``,
``modelSelectionConfig`` in ``generationConfig``), and ``candidateCount``
above 1: llmkit returns one answer per call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from llmkit.errors import InvalidRequestError
from llmkit.providers._options import CallOptions, thinking_budget

__all__ = ["GENERATION_FIELDS", "VERTEX_ONLY", "check_fields", "thinking_config"]

PROVIDER = "google"

GENERATION_FIELDS = frozenset(
    {
        "candidateCount", "stopSequences", "maxOutputTokens", "temperature", "topP", "topK", "seed",
        "responseMimeType", "responseSchema", "responseJsonSchema", "presencePenalty", "frequencyPenalty",
        "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers", "responseModalities", "speechConfig",
        "thinkingConfig", "imageConfig", "mediaResolution",
    }
)  # fmt: skip
"""The fields of the v1beta ``GenerationConfig`` message (generative_service.proto)."""

VERTEX_ONLY = frozenset({"labels", "audioTimestamp", "routingConfig", "modelSelectionConfig"})
"""Fields of Vertex AI's generateContent that the Gemini API does not know."""

_LEVELS_FROM = re.compile(r"^(?:models/)?gemini-(?:[3-9]|\d{2,})")


def thinking_config(thinking: Any, model: str) -> dict[str, Any] | None:
    """The ``thinkingConfig`` for ``thinking=`` on ``model`` (None: send none)."""
    if thinking is None:
        return None
    if isinstance(thinking, Mapping):
        return dict(thinking)
    if thinking is False or thinking == "none":
        return {"thinkingBudget": 0}
    if thinking is True:
        return {"includeThoughts": True}
    if isinstance(thinking, str) and _LEVELS_FROM.match(model.lower()):
        return {"thinkingLevel": thinking, "includeThoughts": True}
    return {"thinkingBudget": thinking_budget(thinking), "includeThoughts": True}


def check_fields(options: CallOptions, camel: Any) -> None:
    """InvalidRequestError for what the Gemini API would refuse (see the module doc)."""
    config: dict[str, Any] = {}
    for name, value in options.rest.items():
        key = camel(name)
        if key == "generationConfig" and isinstance(value, Mapping):
            config.update((camel(k), v) for k, v in value.items())
        else:
            config[key] = value
    vertex = sorted(VERTEX_ONLY & set(config))
    if vertex:
        raise InvalidRequestError(
            f"{vertex[0]!r} is a Vertex AI field; the Gemini API (generativelanguage) does not take it: "
            "leave it out.",
            provider=PROVIDER,
        )
    count = config.get("candidateCount")
    if count is not None and count != 1:
        raise InvalidRequestError(
            f"candidateCount={count!r}: llmkit returns one answer per call (and reserves rate-limit "
            "capacity for one). For several candidates make several calls, "
            f"e.g. client.map([prompt] * {count}).",
            provider=PROVIDER,
        )
    if options.server_tools:
        raise InvalidRequestError("Gemini has no server_tools= in llmkit: leave it out.", provider=PROVIDER)
