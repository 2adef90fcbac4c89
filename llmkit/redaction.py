"""Keeping API keys out of everything llmkit shows: fingerprints and redaction.

A key is shown only as its :func:`fingerprint` (``key-1a2b3c4d``): in logs,
``status()``, errors, Redis keys and checkpoints. :func:`redact` masks a known
key, and anything shaped like one, in a text that came from elsewhere (a
server's error message).
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["fingerprint", "redact"]


def fingerprint(api_key: str) -> str:
    """A short, stable, non-reversible id for a key: safe in logs, status and Redis."""
    return "key-" + hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:8]


# Shapes of common API keys; anything matching is masked in error messages.
_KEY_PATTERN = re.compile(r"\b(?:sk-ant-|sk-|gsk_|AIza)[A-Za-z0-9_\-*.]{6,}")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with the given secrets and anything shaped like an API key masked."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, fingerprint(secret))
    return _KEY_PATTERN.sub("[redacted]", text)
