"""Gemini's JSON, both ways: request bodies from llmkit requests, replies and errors back.

Request mapping (``POST .../models/{model}:generateContent``):

* ``Request.system`` -> ``systemInstruction``; messages -> ``contents``
  (user -> ``user``, assistant -> ``model``; tool calls and their results as
  in :mod:`llmkit.providers._gemini_tools`); text parts -> ``{"text"}``; ImagePart bytes -> ``inlineData``,
  an ImagePart URL -> ``fileData`` (Gemini fetches only URLs it knows, such
  as File API URIs); ``json_mode=True`` -> ``responseMimeType: application/json``;
* ``tools`` and ``tool_choice`` -> ``tools`` and ``toolConfig``;
* ``temperature``, ``max_tokens``, ``stop`` -> ``generationConfig``
  (``temperature``, ``maxOutputTokens``, ``stopSequences``);
* ``extra`` parameters, snake_case or camelCase: GenerationConfig fields
  (``top_p``, ``top_k``, ``seed``, ``presence_penalty``,
  ``frequency_penalty``, ``response_mime_type``, ``response_schema``,
  ``thinking_config``, ...: the proto's list) go into ``generationConfig``; a
  ``generation_config`` dict is merged into it; everything else
  (``safety_settings``, ``tool_config``, ``cached_content``, ...) goes
  top-level, camelCased. ``thinking=`` becomes ``thinkingConfig`` and what the
  API refuses is refused first (:mod:`llmkit.providers._gemini_options`);
  ``cache_control=`` is not sent (Gemini caches implicitly and reports it).
  Thinking and server tool parts of earlier turns are not sent back (Gemini's
  signatures travel on the function calls).

Reply mapping: ``usageMetadata`` -> :class:`Usage` (``promptTokenCount`` +
``toolUsePromptTokenCount`` as input, ``candidatesTokenCount`` +
``thoughtsTokenCount`` as output, since thinking is billed as output, the
thoughts also as ``reasoning_tokens``; ``cachedContentTokenCount`` as cached
input); ``thought: true`` parts -> :class:`ThinkingPart` in ``Response.parts``
(``Response.thinking``), never the answer's text; ``finishReason`` passes through
as Google says it (``"STOP"``, ``"MAX_TOKENS"``, ``"SAFETY"``...); a prompt
blocked before any candidate gives empty content and its ``blockReason`` as
the finish reason; ``responseId`` is the request id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from llmkit.errors import AuthenticationError, InvalidRequestError, LLMError, ProviderError, RateLimitError
from llmkit.providers import _gemini_tools as tools
from llmkit.providers._errors import error_for_status
from llmkit.providers._gemini_options import GENERATION_FIELDS, thinking_config
from llmkit.providers._headers import MAX_RETRY_AFTER, parse_duration
from llmkit.providers._options import call_options
from llmkit.request import Request, message_text
from llmkit.types import (
    ImagePart,
    Message,
    MessageRole,
    Response,
    ServerToolPart,
    TextPart,
    ThinkingPart,
    ToolCall,
    Usage,
)

__all__ = ["build_body", "error_from_body", "parse_reply", "reply_parts", "reply_text", "usage_of"]

PROVIDER = "google"
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+);base64,(.*)$", re.DOTALL)
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"


def camel(name: str) -> str:
    """``top_p`` -> ``topP``; camelCase names stay as they are."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


# -- requests ---------------------------------------------------------------------


def build_body(request: Request) -> dict[str, Any]:
    """The JSON body of a generateContent call for ``request``."""
    options = call_options(request, PROVIDER)
    body: dict[str, Any] = {"contents": _contents(request.messages)}
    body.update(tools.tool_params(request.tools, request.tool_choice))
    if request.system:
        body["systemInstruction"] = {"parts": [{"text": request.system}]}
    config: dict[str, Any] = {}
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if request.json_mode:
        config["responseMimeType"] = "application/json"
    for name, value in options.rest.items():
        key = camel(name)
        if key == "generationConfig" and isinstance(value, Mapping):
            config.update((camel(k), v) for k, v in value.items())
        elif key in GENERATION_FIELDS:
            config[key] = value
        else:
            body[key] = value
    thinking = thinking_config(options.thinking, request.model)
    if thinking is not None:
        config.setdefault("thinkingConfig", thinking)
    if config:
        body["generationConfig"] = config
    return body


def _contents(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The ``contents``: one turn per message, the results of one turn's calls in one turn."""
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, from the turns so far
    for index, message in enumerate(messages):
        names.update((call.id, call.name) for call in message.tool_calls)
        result = tools.function_response(message, names) if message.role is MessageRole.TOOL else None
        if result is None:
            contents.append(_content(message, index))
        elif contents and _only_results(contents[-1]):
            contents[-1]["parts"].append(result)
        else:
            contents.append({"role": "user", "parts": [result]})
    return contents


def _only_results(content: Mapping[str, Any]) -> bool:
    return content["role"] == "user" and all("functionResponse" in p for p in content["parts"])


def _content(message: Message, index: int) -> dict[str, Any]:
    role = "model" if message.role is MessageRole.ASSISTANT else "user"
    if message.role is MessageRole.TOOL or isinstance(message.content, str):
        text = message_text(message)
        parts = [{"text": text}] if text or not message.tool_calls else []
    else:
        kept = [p for p in message.content if not isinstance(p, (ThinkingPart, ServerToolPart))]
        parts = [_part(p, f"messages[{index}]") for p in kept]
        if not parts and not message.tool_calls:
            parts = [{"text": ""}]
    return {"role": role, "parts": parts + tools.function_call_parts(message.tool_calls)}


def _part(part: Any, where: str) -> dict[str, Any]:
    text = getattr(part, "text", None)
    if text is None and isinstance(part, Mapping):
        text = part.get("text")
    if isinstance(text, str):
        return {"text": text}
    if isinstance(part, ImagePart):
        if part.data is not None:
            return {"inlineData": {"mimeType": part.media_type, "data": part.base64()}}
        if part.media_type is None:
            raise InvalidRequestError(
                f"{where}: Gemini needs the media type of an image URL: "
                "ImagePart.from_url(url, media_type='image/png').",
                provider=PROVIDER,
            )
        return {"fileData": {"mimeType": part.media_type, "fileUri": part.url}}
    if isinstance(part, Mapping):
        if part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            match = _DATA_URL.match(url) if isinstance(url, str) else None
            if match:
                return {"inlineData": {"mimeType": match.group(1), "data": match.group(2)}}
        if len(part) == 1 and next(iter(part)) in ("inlineData", "fileData", "inline_data", "file_data"):
            return {camel(k): v for k, v in part.items()}  # already Gemini's shape
    raise InvalidRequestError(
        f"{where}: Gemini takes text parts, data: image URLs and inlineData/fileData parts here, "
        f"not {type(part).__name__} {str(part)[:80]!r}.",
        provider=PROVIDER,
    )


# -- replies ----------------------------------------------------------------------


def usage_of(metadata: Any) -> Usage:
    """llmkit's Usage for a ``usageMetadata`` object (zero when absent or odd). Never raises."""
    if not isinstance(metadata, Mapping):
        return Usage()

    def count(name: str) -> int:
        value = metadata.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    prompt = count("promptTokenCount") + count("toolUsePromptTokenCount")
    thoughts = count("thoughtsTokenCount")
    answer = count("candidatesTokenCount") or count("responseTokenCount")
    return Usage(prompt, answer + thoughts, count("cachedContentTokenCount"), reasoning_tokens=thoughts)


def reply_text(candidate: Mapping[str, Any]) -> tuple[str, tuple[ToolCall, ...]]:
    """The text (thoughts left out) and the function calls of one candidate."""
    text, calls, _ = reply_parts(candidate)
    return text, calls


def reply_parts(candidate: Mapping[str, Any]) -> tuple[str, tuple[ToolCall, ...], tuple[ThinkingPart, ...]]:
    """The text, the function calls and the thought parts of one candidate."""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, Mapping) else None
    texts: list[str] = []
    calls: list[ToolCall] = []
    thoughts: list[ThinkingPart] = []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, Mapping):
            continue
        text = part.get("text") if isinstance(part.get("text"), str) else None
        if part.get("thought"):
            signature = part.get("thoughtSignature")
            thoughts.append(ThinkingPart(text or "", signature if isinstance(signature, str) else None))
            continue
        if text is not None:
            texts.append(text)
        call = tools.read_call(part)
        if call is not None:
            calls.append(call)
    return "".join(texts), tuple(calls), tuple(thoughts)


def parse_reply(data: Any, model: str, request_id: str | None) -> Response:
    """A Response for a GenerateContentResponse; ProviderError when it is not one."""
    if not isinstance(data, Mapping):
        raise ProviderError(f"Malformed reply from {PROVIDER}: not a JSON object", provider=PROVIDER)
    candidates = data.get("candidates")
    usage = usage_of(data.get("usageMetadata"))
    request_id = data.get("responseId") or request_id
    model = data.get("modelVersion") or model
    if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], Mapping):
        blocked = block_reason(data)
        if blocked is None:
            raise ProviderError(f"Malformed reply from {PROVIDER}: no candidates", provider=PROVIDER)
        return Response("", model, PROVIDER, blocked, usage, request_id=request_id, raw=data)
    text, calls, thoughts = reply_parts(candidates[0])
    finish = candidates[0].get("finishReason")
    return Response(
        content=text,
        model=model,
        provider=PROVIDER,
        finish_reason=finish if isinstance(finish, str) else None,
        usage=usage,
        request_id=request_id,
        tool_calls=calls,
        raw=data,
        parts=(*thoughts, TextPart(text)) if thoughts else (),
    )


def block_reason(data: Mapping[str, Any]) -> str | None:
    """``promptFeedback.blockReason`` of a reply whose prompt was blocked, else None."""
    feedback = data.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
    return reason if isinstance(reason, str) else None


# -- errors -----------------------------------------------------------------------


def error_from_body(
    status: int, body: Any, headers: Mapping[str, str] | None, request_id: str | None, fallback: str
) -> LLMError:
    """The llmkit error for Google's ``{"error": {"code", "message", "status", "details"}}``.

    A RetryInfo ``retryDelay`` is the Retry-After when no header gives one. A
    400 whose ErrorInfo says ``API_KEY_INVALID`` (how Gemini refuses a bad key)
    is an AuthenticationError, so the pool disables that key.
    """
    error = body.get("error") if isinstance(body, Mapping) else None
    error = error if isinstance(error, Mapping) else {}
    message = str(error["message"]) if isinstance(error.get("message"), str) else fallback
    details = [d for d in error.get("details") or () if isinstance(d, Mapping)]
    if status == 400 and any(
        d.get("@type") == _ERROR_INFO and d.get("reason") == "API_KEY_INVALID" for d in details
    ):
        return AuthenticationError(message, provider=PROVIDER, status_code=status, request_id=request_id)
    mapped = error_for_status(status, message, provider=PROVIDER, headers=headers, request_id=request_id)
    if mapped.retry_after is None:
        mapped.retry_after = retry_delay(details)
    if isinstance(mapped, RateLimitError):
        mapped.limit, mapped.limit_kind = quota_limit(details)
    return mapped


def quota_limit(details: list[Mapping[str, Any]]) -> tuple[float | None, str | None]:
    """The per-minute limit a QuotaFailure names (its ``quotaValue``) and what it counts."""
    for detail in details:
        if detail.get("@type") != _QUOTA_FAILURE:
            continue
        for violation in detail.get("violations") or ():
            quota_id = str(violation.get("quotaId", "")) if isinstance(violation, Mapping) else ""
            if "PerMinute" not in quota_id:
                continue
            value = violation.get("quotaValue")
            try:
                limit = float(value) if isinstance(value, (str, int, float)) else None
            except ValueError:
                limit = None
            return limit, _counts(quota_id)
    return None, None


def _counts(quota_id: str) -> str:
    """What a Gemini quota counts, from its id (GenerateRequestsPerMinute..., ...InputTokens...)."""
    for marker, lane in (("InputToken", "input_tokens"), ("OutputToken", "output_tokens"),
                         ("Token", "tokens")):  # fmt: skip
        if marker in quota_id:
            return lane
    return "requests"


def retry_delay(details: list[Mapping[str, Any]]) -> float | None:
    """Seconds of the first RetryInfo detail (``"retryDelay": "2.5s"``), clamped like Retry-After."""
    for detail in details:
        if detail.get("@type") == _RETRY_INFO:
            value = detail.get("retryDelay")
            seconds = parse_duration(value) if isinstance(value, str) else None
            if seconds is not None:
                return min(max(seconds, 0.0), MAX_RETRY_AFTER)
    return None
