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
the admin endpoints ``GET /_fake/stats``, ``GET /_fake/log``, ``GET /_fake/batches``,
``GET /_fake/health``, ``POST /_fake/reset``, ``POST /_fake/script`` and
``POST /_fake/faults``.

What a chat request gets, in order: the provider's billing error when its key
is one of ``out_of_credit_keys``; a matching fault rule; a random fault
(``fault_rates``); a scripted :class:`Fault` that replaces the reply; the
provider's own 429 when the key is over its :class:`ServerLimits`; the next
scripted entry; the ``reply=`` function (a :class:`Reply` adds thinking, a
refusal, a web search, cache counts or a truncated stream, each in its
provider's documented shape); a call of the tool the request forces (arguments built
from its JSON schema); a JSON instance of a requested ``json_schema``
response format; else the echo of the last user message. ``max_tokens`` cuts
text replies (finish reason ``length`` / ``max_tokens``). Tokens are counted
as :func:`count_tokens` says: ``ceil(len(text) / 4)`` per text piece, 85 per
image.

Limits are enforced the way providers do, in one of :data:`ENFORCEMENT_STYLES`
(``ServerLimits(style=...)``), for every limited dimension (requests, input,
output and combined tokens): ``"per_second"`` by default (``max(1, L/60)`` per
whole second of the server clock: the strict kind, as Anthropic documents "60
RPM may be enforced as 1 request per second"), ``"minute_bucket"``,
``"second_bucket"``, ``"leaky"`` (nginx ``limit_req rate=L/60r/s burst=1
nodelay``), ``"fixed_minute"`` and ``"sliding_minute"``; ``burst_seconds=S``
(older callers) is a continuous bucket holding ``S`` seconds. The enforcers
themselves are pure objects on an injected clock (:func:`make_enforcer`), for
simulations without a server. The server answers as each provider documents:
OpenAI/Groq ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (reset as
a Go duration) and, on a 429, ``retry-after-ms`` and ``retry-after``; Anthropic
``anthropic-ratelimit-*-{limit,remaining,reset}`` (reset in RFC 3339) and a
whole-second ``retry-after``; Gemini no headers, but a ``RESOURCE_EXHAUSTED``
body with ``QuotaFailure`` and ``RetryInfo``. ``remaining`` is what the style
admits now; ``reset`` is when it is fully replenished. ``stats()["rate_limits"]``
counts per style what was admitted and refused. ``Fault.poisoned_headers`` sends
raw header values (``-1e12``, ``inf``...) in an otherwise normal reply.

Batch APIs: OpenAI's Files and Batches (``/v1/files``, ``/v1/batches``),
Anthropic's Message Batches (``/v1/messages/batches``) and Gemini's Batch Mode
(``:batchGenerateContent``, ``/v1beta/batches``, the resumable upload and the
download), each in its provider's documented shapes, their requests answered
as the chat endpoints answer them. Time runs ``batch_time_scale`` times faster
for batches (a "24 h" batch ends in seconds); :class:`BatchFault` makes one
expire, fail some of its requests, fail validation or break its result
download off; ``batch_queue_limit`` refuses batches past a key's queued work;
:meth:`FakeLLMServer.batch_jobs` lists what was submitted.

Run it in its own process (benchmarks) with
``python -m llmkit.testing.fake_server --port 0 --rpm 1200 --style leaky``
(it prints ``READY http://127.0.0.1:PORT``), or with :meth:`FakeLLMServer.spawn`.
"""

from __future__ import annotations

from ._fake.batch_jobs import BatchFault
from ._fake.buckets import ServerLimits
from ._fake.enforcement import STYLES as ENFORCEMENT_STYLES
from ._fake.enforcement import Enforcer, make_enforcer
from ._fake.faults import FaultRule
from ._fake.log import RequestRecord
from ._fake.replies import Fault, Reply, ReplyFunction, ReplyValue, RequestInfo, ToolCallReply
from ._fake.server import FakeLLMServer
from ._fake.spawn import SpawnedFakeServer, spawn_fake_server
from ._fake.tokens import IMAGE_TOKENS, count_tokens

__all__ = [
    "ENFORCEMENT_STYLES",
    "IMAGE_TOKENS",
    "BatchFault",
    "Enforcer",
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
    "make_enforcer",
    "spawn_fake_server",
]


if __name__ == "__main__":  # python -m llmkit.testing.fake_server
    from ._fake.cli import main

    raise SystemExit(main())
