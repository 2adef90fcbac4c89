"""llmkit's own HTTP: one connection pool per provider endpoint, shared by all its keys, with deadlines.

* :mod:`~llmkit.transport.messages`: what an adapter asks to send (:class:`HttpCall`) and
  what came back (:class:`HttpReply`);
* :mod:`~llmkit.transport.endpoint`: :class:`Endpoint`, one base URL's connection pools
  (httpcore2's, blocking and one per event loop), sending with a deadline;
* :mod:`~llmkit.transport.wire`: what goes on the wire at httpcore2's level (target,
  headers, content decoding, TLS): what httpx2's client layer did for the SDKs;
* :mod:`~llmkit.transport.watchdog`, :mod:`~llmkit.transport.aguard`: a blocking call's
  deadline (one timer thread shuts a late socket) and an async call's (its task is cancelled);
* :mod:`~llmkit.transport.sockets`: the sockets an endpoint opened, so that a deadline or
  ``close()`` can end a call that is stuck on the wire.

A ``timeout`` here is a deadline for the complete reply, not a per-read timeout:
a body trickling a byte a second ends when its time is up. The lean path builds
the request and reads the JSON reply itself, importing no SDK and no httpx2.
The SDKs are still used for what they do best (instructor's structured outputs,
``Response.raw``, provider batches): their ``httpx2.Client`` is made, on first
use, over the same blocking connection pool.
"""

from llmkit.transport.endpoint import Endpoint
from llmkit.transport.messages import HttpCall, HttpReply

__all__ = ["Endpoint", "HttpCall", "HttpReply"]
