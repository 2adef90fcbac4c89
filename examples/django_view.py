"""A minimal single-file Django project with a view that calls the LLM.

    pip install django
    python examples/django_view.py runserver
    curl 'localhost:8000/complete?prompt=Hi'

As in any Django app, there is one LLMClient per process (here a module-level
singleton built on first use), shared by every request thread. Server choice
as in ``script.py``: ``LLMKIT_EXAMPLE_BASE_URL``, else your configured
provider, else a FakeLLMServer started with the process.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=True,
        SECRET_KEY="example-only-not-secret",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["localhost", "127.0.0.1", "testserver"],
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
    )

from django.http import HttpRequest, JsonResponse
from django.urls import path

from llmkit import LLMClient, LLMError, load_settings

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


def complete(request: HttpRequest) -> JsonResponse:
    prompt = request.GET.get("prompt", "").strip()
    if not prompt:
        return JsonResponse({"error": "pass ?prompt=..."}, status=400)
    try:
        response = get_client().complete(prompt, max_tokens=256)
    except LLMError as exc:
        return JsonResponse({"error": str(exc), "type": type(exc).__name__}, status=502)
    return JsonResponse({"content": response.content, "cost": response.cost, "key_id": response.key_id})


def status(request: HttpRequest) -> JsonResponse:
    return JsonResponse(get_client().status())


urlpatterns = [path("complete", complete), path("status", status)]


if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
