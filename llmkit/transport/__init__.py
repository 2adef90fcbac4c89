"""llmkit's own HTTP: one connection pool per provider endpoint, shared by all its keys, with deadlines.

* :mod:`~llmkit.transport.messages`: what an adapter asks to send (:class:`HttpCall`) and
  what came back (:class:`HttpReply`);
* :mod:`~llmkit.transport.endpoint`: :class:`Endpoint`, the sync and async clients of one
  base URL (``httpx2``, the library the official SDKs are built on), sending with a deadline;
* :mod:`~llmkit.transport.sockets`: the sockets an endpoint opened, so that a deadline or
  ``close()`` can end a call that is stuck on the wire.

A ``timeout`` here is a deadline for the complete reply, not a per-read timeout:
a body trickling a byte a second ends when its time is up. The SDKs are still
used for what they do best (instructor's structured outputs, ``Response.raw``),
over the same connection pool.
"""

from llmkit.transport.endpoint import Endpoint
from llmkit.transport.messages import HttpCall, HttpReply

__all__ = ["Endpoint", "HttpCall", "HttpReply"]
