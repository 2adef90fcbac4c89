"""Google's Gemini API over plain HTTP: ``requests``, one ``requests.Session`` per key.

Endpoints (under ``{base_url}/v1beta``, base URL ``https://generativelanguage.googleapis.com``
unless ``base_url=`` says otherwise; a base URL that already ends in ``/v1beta``,
``/v1`` or ``/v1alpha`` is used as it is):

* ``POST /models/{model}:generateContent`` for :meth:`GeminiProvider.complete`;
* ``POST /models/{model}:streamGenerateContent?alt=sse`` for :meth:`GeminiProvider.stream`;
* ``POST /models/{model}:countTokens`` for :meth:`GeminiProvider.count_tokens`.

The key travels only in the ``x-goog-api-key`` header, never in the URL, so it
cannot leak into logs or error messages that quote URLs. How requests and
replies are translated is in :mod:`llmkit.providers._gemini_wire` (function
calling in :mod:`llmkit.providers._gemini_tools`); structured
outputs use Gemini's own JSON-schema mode (:mod:`llmkit.structured.gemini`).
Gemini sends no rate-limit headers, so :meth:`GeminiProvider.limit_state` is None.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from llmkit.errors import (
    ConfigurationError,
    InvalidRequestError,
    LLMError,
    MalformedResponseError,
    NetworkError,
    ProviderError,
    RequestTimeoutError,
)
from llmkit.providers import _gemini_wire as wire
from llmkit.providers._gemini_options import check_fields
from llmkit.providers._options import call_options
from llmkit.providers._sse import SSEParser
from llmkit.providers.base import Capabilities, Provider, ProviderReply, ServerLimitState, StreamDelta
from llmkit.request import Request
from llmkit.types import Response, ThinkingPart, Usage

if TYPE_CHECKING:
    import requests

__all__ = ["GeminiProvider", "GeminiReply"]

# Seconds to wait for a connection or a read when neither the call nor the client says
# (the official SDKs' default): requests itself would wait forever.
DEFAULT_TIMEOUT = 600.0
# Connections kept open per host and key (requests' default of 10 would discard the rest).
POOL_SIZE = 64
_VERSIONS = ("/v1beta", "/v1", "/v1alpha")
_REQUEST_ID_HEADERS = ("x-goog-request-id", "x-request-id")


@dataclass(frozen=True, slots=True)
class GeminiReply:
    """One raw generateContent reply: its JSON, its headers and the model asked for."""

    data: Any
    headers: Mapping[str, str]
    model: str

    @property
    def request_id(self) -> str | None:
        return _request_id(self.headers)


def _request_id(headers: Mapping[str, str]) -> str | None:
    return next((headers[h] for h in _REQUEST_ID_HEADERS if headers.get(h)), None)


class GeminiProvider(Provider):
    """Translation for the Gemini API (Google AI Studio keys)."""

    name = "google"
    aliases = ("gemini",)
    key_env_vars = ("GOOGLE_API_KEYS", "GEMINI_API_KEYS", "GOOGLE_API_KEY", "GEMINI_API_KEY")
    default_model = "gemini-2.0-flash"
    default_base_url = "https://generativelanguage.googleapis.com"
    capabilities = Capabilities(
        streaming=True, tools=True, images=True, structured_outputs=True, json_mode=True,
        token_counting=True, thinking=True, prompt_caching=True,
    )
    structured_backend = "llmkit.structured.gemini:GeminiBackend"
    batch_api = "llmkit.providers._gemini_batch:GeminiBatch"

    def create_client(self, api_key: str) -> Any:
        import requests
        from requests.adapters import HTTPAdapter

        session = requests.Session()
        session.headers.update({"x-goog-api-key": api_key, "content-type": "application/json"})
        # Room for many requests in flight on one key; requests' own retries stay off.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    # -- plumbing ---------------------------------------------------------------------

    def url(self, model: str, method: str) -> str:
        """The URL of ``method`` (``generateContent``...) of ``model`` (``models/`` prefix optional)."""
        root = (self.base_url or self.default_base_url or "").rstrip("/")
        if not root.endswith(_VERSIONS):
            root += "/v1beta"
        model = model.removeprefix("models/")
        return f"{root}/models/{quote(model, safe='')}:{method}"

    def post(
        self, session: Any, request: Request, method: str, body: Any, *, stream: bool = False
    ) -> requests.Response:
        """POST ``body``; the reply when its status is 2xx, else the mapped LLMError raised."""
        url = self.url(request.model, method) + ("?alt=sse" if stream else "")
        timeout = request.timeout or self.timeout or DEFAULT_TIMEOUT
        try:
            # No redirects: requests would carry the key header to whatever host a 3xx names.
            reply = session.post(url, json=body, timeout=timeout, stream=stream, allow_redirects=False)
        except Exception as exc:
            raise self.map_error(exc) from exc
        if reply.status_code >= 300:
            with contextlib.closing(reply):
                raise self._status_error(reply)
        return reply

    def _status_error(self, reply: requests.Response) -> LLMError:
        try:
            text = reply.text
            body = json.loads(text) if text else None
        except Exception:  # not JSON, or the body broke off: the status still says enough
            text, body = "", None
        fallback = f"HTTP {reply.status_code} {reply.reason or ''}".strip()
        if text:
            fallback += f": {text[:200]}"
        request_id = _request_id(reply.headers)
        return wire.error_from_body(reply.status_code, body, reply.headers, request_id, fallback)

    def map_error(self, exc: BaseException) -> LLMError:
        """requests' exceptions (and bad JSON) as llmkit errors; any other exception is raised again."""
        import requests

        if isinstance(exc, LLMError):
            return exc
        from llmkit.providers._sdk import endpoint_of

        detail = f"{type(exc).__name__}: {exc}"
        where = f"Gemini at {endpoint_of(self.base_url) or self.base_url}"
        if isinstance(exc, requests.Timeout):
            return RequestTimeoutError(f"The request to {where} timed out ({detail})", provider=self.name)
        if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            return NetworkError(f"Connection to {where} failed: {detail}", provider=self.name)
        if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                            requests.exceptions.InvalidSchema)):  # fmt: skip
            return ConfigurationError(f"Bad Gemini base_url {self.base_url!r}: {detail}", provider=self.name)
        if isinstance(exc, requests.exceptions.JSONDecodeError):  # a reply that is not JSON: billed
            return MalformedResponseError(f"Malformed reply from Gemini: {detail}", provider=self.name)
        if isinstance(exc, requests.exceptions.InvalidJSONError):  # a request body that is not
            return InvalidRequestError(f"The request cannot be sent to Gemini: {detail}", provider=self.name)
        if isinstance(exc, requests.RequestException):
            return NetworkError(f"Gemini request failed: {detail}", provider=self.name)
        if isinstance(exc, (ValueError, KeyError, IndexError)):
            return MalformedResponseError(f"Malformed reply from Gemini: {detail}", provider=self.name)
        if isinstance(exc, TypeError):
            return InvalidRequestError(f"The request cannot be sent to Gemini: {detail}", provider=self.name)
        raise exc  # not one a Gemini call is known to raise: a bug, not a provider error

    def _json(self, reply: requests.Response) -> Any:
        try:
            return reply.json()
        except Exception as exc:
            raise self.map_error(exc) from exc

    # -- calls ------------------------------------------------------------------------

    def build_body(self, request: Request) -> dict[str, Any]:
        """The generateContent body for ``request`` (see :mod:`llmkit.providers._gemini_wire`)."""
        return wire.build_body(request)

    def check_request(self, request: Request) -> None:
        """Also refused: Vertex-only fields, several candidates (:mod:`llmkit.providers._gemini_options`)."""
        super().check_request(request)
        check_fields(call_options(request, self.name), wire.camel)

    def send(self, session: Any, request: Request, body: Mapping[str, Any]) -> GeminiReply:
        """One generateContent call with ``body``; the raw reply."""
        reply = self.post(session, request, "generateContent", body)
        return GeminiReply(self._json(reply), reply.headers, request.model)

    def complete(self, client: Any, request: Request) -> ProviderReply:
        raw = self.send(client, request, self.build_body(request))
        return ProviderReply(self.parse_reply(raw), self.limit_state(raw.headers))

    def parse_reply(self, raw: GeminiReply) -> Response:
        return wire.parse_reply(raw.data, raw.model, raw.request_id)

    def count_tokens(self, client: Any, request: Request) -> int:
        """Gemini's own count of the request's input tokens (``countTokens``)."""
        body = self.build_body(request)
        body["model"] = "models/" + request.model.removeprefix("models/")
        reply = self.post(client, request, "countTokens", {"generateContentRequest": body})
        data = self._json(reply)
        total = data.get("totalTokens") if isinstance(data, Mapping) else None
        if not isinstance(total, int):
            raise ProviderError("Malformed countTokens reply from Gemini: no totalTokens", provider=self.name)
        return total

    def limit_state(self, headers: Mapping[str, str]) -> ServerLimitState | None:
        """Gemini sends no rate-limit headers: the pool's own accounting stands."""
        return None

    # -- streaming --------------------------------------------------------------------

    def stream(self, client: Any, request: Request) -> Iterator[StreamDelta]:
        reply = self.post(client, request, "streamGenerateContent", self.build_body(request), stream=True)
        with contextlib.closing(reply):
            yield StreamDelta(request_id=_request_id(reply.headers))
            try:
                yield from self._deltas(reply.iter_content(chunk_size=None), request.model)
            except LLMError:
                raise
            except Exception as exc:
                raise self.map_error(exc) from exc

    def _deltas(self, chunks: Iterable[bytes], model: str) -> Iterator[StreamDelta]:
        """Deltas from the SSE bytes: text as it comes, then usage and the finish reason."""
        parser = SSEParser()
        state = _StreamState(model)
        for chunk in chunks:
            for event in parser.feed(chunk):
                delta = state.absorb(event.data)
                if delta is not None:
                    yield delta
        for event in parser.close():
            delta = state.absorb(event.data)
            if delta is not None:
                yield delta
        if state.finish is None:
            raise NetworkError("The Gemini stream ended before its finishReason", provider=self.name)
        thought = state.thought_part()
        if thought is not None:
            yield thought
        yield StreamDelta(usage=state.usage, finish_reason=state.finish, model=state.model)

    def usage_of(self, reply: Any) -> Usage:
        """The usage of one raw reply (zero when it has none). Never raises."""
        data = getattr(reply, "data", None)
        return wire.usage_of(data.get("usageMetadata") if isinstance(data, Mapping) else None)


class _StreamState:
    """What the chunks of one stream said so far besides text.

    Thought parts come before the answer: their text goes out as it arrives
    (``thinking``), and once the answer starts (or the stream ends) as one
    :class:`~llmkit.types.ThinkingPart`, in its place before the text.
    """

    __slots__ = ("finish", "model", "signature", "thoughts", "usage")

    def __init__(self, model: str) -> None:
        self.model = model
        self.usage: Usage | None = None
        self.finish: str | None = None
        self.thoughts: list[str] = []
        self.signature: str | None = None

    def thought_part(self) -> StreamDelta | None:
        """The thoughts so far as one part (once), or None."""
        if not self.thoughts:
            return None
        part = ThinkingPart("".join(self.thoughts), self.signature)
        self.thoughts, self.signature = [], None
        return StreamDelta(parts=(part,))

    def absorb(self, data: str) -> StreamDelta | None:
        """Read one event's JSON; its text and calls, if any. Raises the error an error event reports."""
        if data.strip() == "[DONE]":
            return None
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise ProviderError(f"Malformed stream event from Gemini: {exc}", provider="google") from exc
        if not isinstance(chunk, Mapping):
            raise ProviderError("Malformed stream event from Gemini: not a JSON object", provider="google")
        if "error" in chunk:
            error = chunk["error"] if isinstance(chunk["error"], Mapping) else {}
            code = error.get("code")
            status = code if isinstance(code, int) and code >= 400 else 500
            raise wire.error_from_body(status, chunk, None, chunk.get("responseId"), "stream error")
        if "usageMetadata" in chunk:
            self.usage = wire.usage_of(chunk["usageMetadata"])
        if isinstance(chunk.get("modelVersion"), str):
            self.model = chunk["modelVersion"]
        candidates = chunk.get("candidates")
        if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], Mapping):
            self.finish = wire.block_reason(chunk) or self.finish
            return None
        finish = candidates[0].get("finishReason")
        if isinstance(finish, str):
            self.finish = finish
        text, calls, thoughts = wire.reply_parts(candidates[0])
        thinking = "".join(t.thinking for t in thoughts)
        if thoughts:
            self.thoughts.append(thinking)
            self.signature = next((t.signature for t in thoughts if t.signature), self.signature)
        if not (text or calls):
            return StreamDelta(thinking=thinking) if thinking else None
        part = self.thought_part()
        return StreamDelta(text=text, tool_calls=calls, thinking=thinking, parts=part.parts if part else ())
