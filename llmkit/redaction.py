"""Keeping API keys out of everything llmkit shows: fingerprints, redaction, scrubbed exceptions.

A key is shown only as its :func:`fingerprint` (``key-1a2b3c4d``): in logs,
``status()``, errors, Redis keys and checkpoints. :func:`redact` masks known
keys, the fragments servers echo of them, and anything shaped like a key,
in a text that came from elsewhere (a server's error message).
:func:`scrub_exception` does it to an exception and its whole chain in place.

The rules, for each known key:

* the whole key is replaced by its fingerprint: anywhere in the text when it
  has 16 characters or more, and only as a whole token (not inside a longer
  run of letters, digits, ``-`` and ``_``) when it is shorter, so that a
  short test key cannot cut a word in two. Keys under 4 characters are not
  redacted at all: they are not secrets, and would match inside words;
* an echo of the key, a mask (3 or more ``*``, ``...`` or ``…``) with a
  start of the key before it and/or an end of the key after it, 4 visible
  characters at least, is replaced by the fingerprint, mask and all: OpenAI's
  ``Incorrect API key provided: sk-abc12***...***wxyz``, a proxy's
  ``corpLEAK****zzQQ``, ``key ending in ****wxyz`` (keys of 8 characters or more).

Anything shaped like an OpenAI, Anthropic, Groq or Google key is masked as
``[redacted]`` whether known or not.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["fingerprint", "redact", "scrub_exception"]


def fingerprint(api_key: str) -> str:
    """A short, stable, non-reversible id for a key: safe in logs, status and Redis."""
    return "key-" + hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:8]


# Shapes of common API keys; anything matching is masked in error messages.
_KEY_PATTERN = re.compile(r"\b(?:sk-ant-|sk-|gsk_|AIza)[A-Za-z0-9_\-*.]{6,}")
_MASK = re.compile(r"\*{3,}|\.{3,}|\u2026+")
_TOKEN = "A-Za-z0-9_\\-"

MIN_SECRET = 4  # shorter keys are not redacted
MIN_ANYWHERE = 16  # shorter keys are redacted as whole tokens only
MIN_ECHO_KEY = 8  # shorter keys have no echoed fragments worth finding
MIN_ECHO_VISIBLE = 4  # an echo shows at least this many characters of the key


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the given secrets, their echoed fragments, and anything shaped like an API key masked."""
    for secret in secrets:
        if isinstance(secret, str) and len(secret) >= MIN_SECRET:
            text = _redact_whole(text, secret)
            if len(secret) >= MIN_ECHO_KEY:
                text = _redact_echoes(text, secret)
    return _KEY_PATTERN.sub("[redacted]", text)


def _redact_whole(text: str, secret: str) -> str:
    if secret not in text:
        return text
    if len(secret) >= MIN_ANYWHERE:
        return text.replace(secret, fingerprint(secret))
    whole = re.compile(f"(?<![{_TOKEN}]){re.escape(secret)}(?![{_TOKEN}])")
    return whole.sub(lambda _: fingerprint(secret), text)


def _redact_echoes(text: str, secret: str) -> str:
    """Replace ``<start of secret><mask><end of secret>`` (either side may be empty) by the fingerprint."""
    spans = []
    for mask in _MASK.finditer(text):
        before = _shown_before(text, secret, mask.start())
        after = _shown_after(text, secret, mask.end())
        if before + after >= MIN_ECHO_VISIBLE:
            spans.append((mask.start() - before, mask.end() + after))
    for start, end in reversed(spans):
        text = text[:start] + fingerprint(secret) + text[end:]
    return text


def _shown_before(text: str, secret: str, end: int) -> int:
    """How many of the secret's first characters ``text`` shows just before ``end`` (not all of them)."""
    limit = min(len(secret) - 1, end)
    return next((n for n in range(limit, 0, -1) if text.endswith(secret[:n], 0, end)), 0)


def _shown_after(text: str, secret: str, start: int) -> int:
    """How many of the secret's last characters ``text`` shows from ``start`` on (not all of them)."""
    return next((n for n in range(len(secret) - 1, 0, -1) if text.startswith(secret[-n:], start)), 0)


# -- exceptions ---------------------------------------------------------------------------------

_MAX_DEPTH = 6  # how deep into an exception's dicts and lists scrubbing goes


def scrub_exception(error: BaseException, secrets: Iterable[str]) -> BaseException:
    """Redact ``error`` and every exception chained to it, in place; returns ``error``.

    For each exception of the chain (``__cause__``, ``__context__``, an
    exception group's members): its ``args``, its string, bytes, dict and
    list attributes (``message``, ``body``, notes...), and an HTTP request or
    response it holds (an SDK's ``response``: its body text and headers; its
    ``request``: headers such as ``Authorization``/``x-api-key`` and the URL).
    Idempotent, and safe on any exception: what cannot be changed is left as it is.
    """
    keys = tuple(s for s in secrets if isinstance(s, str) and s)
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        _scrub_one(current, keys)
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
        pending += [e for e in getattr(current, "exceptions", ()) if isinstance(e, BaseException)]
    return error


def _scrub_one(error: BaseException, keys: tuple[str, ...]) -> None:
    args = _scrub_value(error.args, keys)
    if args is not error.args:
        _set_quietly(error, "args", args)
    attributes = getattr(error, "__dict__", None)
    if not isinstance(attributes, dict):
        return
    for name, value in list(attributes.items()):
        scrubbed = _scrub_value(value, keys)
        if scrubbed is not value:
            _set_quietly(error, name, scrubbed)


def _scrub_value(value: Any, keys: tuple[str, ...], depth: int = 0) -> Any:
    """``value`` redacted: a new str/bytes/dict/list/tuple when something changed, else ``value`` itself."""
    if isinstance(value, str):
        cleaned = redact(value, keys)
        return value if cleaned == value else cleaned
    if isinstance(value, bytes):
        text = value.decode("utf-8", "surrogateescape")
        cleaned = redact(text, keys)
        return value if cleaned == text else cleaned.encode("utf-8", "surrogateescape")
    if depth >= _MAX_DEPTH:
        return value
    if type(value) is dict:
        items = {k: _scrub_value(v, keys, depth + 1) for k, v in value.items()}
        return value if all(items[k] is value[k] for k in value) else items
    if type(value) in (list, tuple):
        parts = [_scrub_value(v, keys, depth + 1) for v in value]
        return value if all(a is b for a, b in zip(parts, value)) else type(value)(parts)
    if _is_http_message(value):
        _scrub_http(value, keys, depth)
    return value


def _is_http_message(value: Any) -> bool:
    kind = type(value)
    names = ("Request", "Response", "PreparedRequest")
    return kind.__module__.startswith(("httpx", "requests")) and kind.__name__ in names


def _scrub_http(message: Any, keys: tuple[str, ...], depth: int) -> None:
    """An httpx (or requests) request or response, in place: its headers, body and URL."""
    with contextlib.suppress(Exception):  # headers that cannot be changed stay as they are
        headers = message.headers
        for name, value in list(headers.items()):
            cleaned = redact(value, keys)
            if cleaned != value:
                headers[name] = cleaned
    for name in ("_content", "_text", "body"):
        current = getattr(message, "__dict__", {}).get(name)
        if isinstance(current, (str, bytes)):
            cleaned = _scrub_value(current, keys)
            if cleaned is not current:
                _set_quietly(message, name, cleaned)
    _scrub_url(message, keys)
    attributes = getattr(message, "__dict__", {})
    request = attributes.get("_request") or attributes.get("request")  # httpx, requests
    if request is not None and _is_http_message(request) and depth < _MAX_DEPTH:
        _scrub_http(request, keys, depth + 1)


def _scrub_url(message: Any, keys: tuple[str, ...]) -> None:
    url = getattr(message, "url", None)
    if url is None:
        return
    text = str(url)
    cleaned = redact(text, keys)
    if cleaned == text:
        return
    with contextlib.suppress(Exception):  # the URL type may refuse the redacted text
        _set_quietly(message, "url", cleaned if isinstance(url, str) else type(url)(cleaned))


def _set_quietly(target: Any, name: str, value: Any) -> None:
    """Set an attribute; past a ``__setattr__`` that refuses, if the object allows; else leave it."""
    try:
        setattr(target, name, value)
    except Exception:
        with contextlib.suppress(Exception):
            object.__setattr__(target, name, value)
