"""Internals of :mod:`llmkit.testing.fake_server` (not public API; import from llmkit.testing).

Layout: ``tokens`` and ``schema`` (pure helpers), ``replies`` (Fault,
ToolCallReply, RequestInfo), ``buckets`` (server-side limits), ``faults``
(script, rules, random faults), ``log`` (request log), ``dialect_base`` with
one ``dialect_*`` module per provider, ``engine`` (request -> reply, no
sockets), ``handler`` (HTTP), ``spawn`` and ``cli`` (subprocess mode). The
batch APIs: ``batch_jobs`` (jobs, their scaled clock, :class:`BatchFault`),
``batch_http`` (what the endpoints share), one ``batch_*`` module per provider,
``batch_routes`` (keys, faults and the log for them).
"""
