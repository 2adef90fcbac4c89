"""A fake OpenAI / Anthropic HTTP server for tests and benchmarks.

:class:`FakeLLMServer` is a real HTTP/1.1 server on 127.0.0.1 (an ephemeral
port by default) that the official ``openai`` and ``anthropic`` SDKs talk to
as if it were the real API::

    from llmkit.testing import FakeLLMServer, Fault, ServerLimits, ToolCallReply

    with FakeLLMServer(limits=ServerLimits(requests_per_minute=60)) as srv:
        client = openai.OpenAI(api_key="sk-test", base_url=srv.openai_base_url)
        srv.script("hello", Fault(status=529), ToolCallReply("get_weather", {"city": "Paris"}))
        ...
        assert srv.stats()["by_status"][200] == 2

Endpoints: ``POST /v1/chat/completions`` (OpenAI), ``POST /v1/messages`` and
``POST /v1/messages/count_tokens`` (Anthropic), streamed (SSE) or not, plus
the admin endpoints ``GET /_fake/stats``, ``GET /_fake/log``,
``GET /_fake/health``, ``POST /_fake/reset``, ``POST /_fake/script`` and
``POST /_fake/faults``.

What a chat request gets, in order: a matching fault rule; a random fault
(``fault_rates``); a scripted :class:`Fault` that replaces the reply; a 429
when the key is over its :class:`ServerLimits`; the next scripted entry; the
``reply=`` function (a :class:`Reply` adds thinking, a refusal, a web search,
cache counts or a truncated stream, each in its provider's documented
shape); a call of the tool the request forces (arguments built
from its JSON schema); a JSON instance of a requested ``json_schema``
response format; else the echo of the last user message. ``max_tokens`` cuts
text replies (finish reason ``length`` / ``max_tokens``). Tokens are counted
as :func:`count_tokens` says: ``ceil(len(text) / 4)`` per text piece, 85 per
image.

Run it in its own process (benchmarks) with
``python -m llmkit.testing.fake_server --port 0 --rpm 1200 --burst-seconds 1``
(it prints ``READY http://127.0.0.1:PORT``), or with :meth:`FakeLLMServer.spawn`.
"""

from __future__ import annotations

from ._fake.buckets import ServerLimits
from ._fake.faults import FaultRule
from ._fake.log import RequestRecord
from ._fake.replies import Fault, Reply, ReplyFunction, ReplyValue, RequestInfo, ToolCallReply
from ._fake.server import FakeLLMServer
from ._fake.spawn import SpawnedFakeServer, spawn_fake_server
from ._fake.tokens import IMAGE_TOKENS, count_tokens

__all__ = [
    "IMAGE_TOKENS",
    "FakeLLMServer",
    "Fault",
    "FaultRule",
    "Reply",
    "ReplyFunction",
    "ReplyValue",
    "RequestInfo",
    "RequestRecord",
    "ServerLimits",
    "SpawnedFakeServer",
    "ToolCallReply",
    "count_tokens",
    "spawn_fake_server",
]


if __name__ == "__main__":  # python -m llmkit.testing.fake_server
    from ._fake.cli import main

    raise SystemExit(main())
