"""A Flask app sharing one LLMClient between all its threads.

    pip install flask
    flask --app examples/flask_app.py run          # or: python examples/flask_app.py
    curl -X POST localhost:5000/complete -H 'content-type: application/json' -d '{"prompt": "Hi"}'

One client per process: it owns the key pool, the rate limiters and the
connections, and it is thread-safe, so every request thread uses the same one.
Server choice as in ``script.py``: ``LLMKIT_EXAMPLE_BASE_URL``, else your
configured provider, else a FakeLLMServer started with the app.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from flask import Flask, jsonify, request

from llmkit import LLMClient, LLMError, load_settings

app = Flask(__name__)

_client: LLMClient | None = None
_lock = threading.Lock()


def _build_client() -> LLMClient:
    url = os.environ.get("LLMKIT_EXAMPLE_BASE_URL")
    if url:
        return LLMClient(
            "openai", api_keys=[os.environ.get("OPENAI_API_KEY", "sk-example-key")], base_url=url
        )
    if load_settings().default_provider():
        return LLMClient()
    from llmkit.testing import FakeLLMServer

    server = FakeLLMServer().start()
    atexit.register(server.stop)
    return LLMClient("openai", api_keys=["sk-fake-key-1", "sk-fake-key-2"], base_url=server.openai_base_url)


def get_client() -> LLMClient:
    """The process-wide client, built on first use."""
    global _client
    with _lock:
        if _client is None:
            _client = _build_client()
            atexit.register(_client.close)
        return _client


@app.post("/complete")
def complete() -> Any:
    data = request.get_json(silent=True) or {}
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return jsonify(error="send JSON with a non-empty 'prompt'"), 400
    try:
        response = get_client().complete(prompt, max_tokens=data.get("max_tokens", 256))
    except LLMError as exc:  # the provider failed after retries, or no key could be had in time
        return jsonify(error=str(exc), type=type(exc).__name__), 502
    return jsonify(
        content=response.content,
        input_tokens=response.usage.input_tokens,
        output_tokens=response.usage.output_tokens,
        cost=response.cost,
    )


@app.get("/status")
def status() -> Any:
    return jsonify(get_client().status())


if __name__ == "__main__":
    app.run(threaded=True)
